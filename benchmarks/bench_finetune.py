"""What `fpfast train` does to a default gallery, chosen on the zoo's *training* images (never a
test split; issue 14's "universal + fine-tune" rows).

    python benchmarks/bench_finetune.py ZOO --work /tmp/ft_val --out results/finetune_val_standard.json
        [--enroll 1000] [--queries 100] [--variants "none;train;train, network alone"]

The first ``--enroll`` training images of every gallery model but the two left out (below) are
enrolled by ``fpfast enroll`` (the default gallery: universal ⊕ handcrafted, LDA, views); each
variant is then built from that gallery:

* ``none``: no training;
* ``train``: ``fpfast train G --from-folders ENROLL`` (fine-tuned from the universal embedding,
  the handcrafted fingerprint kept behind it, LDA: the command's default since the thirteenth
  session; `unknown` decided on the network's dimensions since the fourteenth);
* ``train, open-set vector``: `unknown` decided on the whole vector (``--open-set-from vector``,
  the thirteenth session's default); ``train, open-set network``: on the fine-tuned network's
  dimensions alone (the fourteenth and fifteenth sessions'); ``train, open-set ensemble``: three
  nearest-sample spaces (the sixteenth's; ``train`` itself: each model's own Gaussian since the
  eighteenth);
* ``train, network alone``: the fine-tuned network's vectors alone (``--network-alone``, the
  default before);
* ``…, union``: the same gallery recalibrated with each open-set test at its union-bound share of
  the FRR (``Gallery.recalibrate(joint=False)``: the thresholds before 2026-12-07);
* ``…, lr X``: the same with ``--lr X``; ``…, epochs N``: with ``--epochs N``; ``…, flips N``: with
  ``--flips N`` (``train`` itself: 4 since the fifteenth session).

Validation queries, as ``bench_unknown.py`` measures the test splits: each enrolled model's next
``--queries`` training images, clean, JPEG 90 / 75 (encoded as the zoo's splits), 0.75x / 0.5x
bilinear down-scales and the centred 3/4 crop; the left-out seed (``--left-seed``,
``ae_nearest_seed1``: its clean images, to be answered as its architecture, the name without
``_seedN``) and the unknown designs (``--unknowns``: their clean images the unknowns of AUROC /
OSCR, pooled, and each design's own AUROC / OSCR / `unknown` rate as ``open_set:NAME``). An unknown
design is a model of the train split, left out of the gallery with its own retrained seeds (the
same design), or a design of the zoo's ``validation`` split (siblings of gallery designs that no
test split holds: nothing is left out for them). The default, ``ae_bilinear`` alone, was the
unknown of the thirteenth to fifteenth sessions; its AUROC disagreed with the test split's on every
open-set change (it has no enrolled up-sampling sibling; the test's ``ae_bicubic`` has
``ae_bilinear``): ``--unknowns`` naming the zoo's validation designs
(``fpfast.zoo.presets.VALIDATION``) asks those instead (the sixteenth session's choice was made
on the first three). Galleries are kept in ``--work`` and reused: one work folder per set of
left-out models.

``--test``: once a variant is chosen, the same galleries built from the whole train split (every
gallery model, ``--enroll`` ignored) and measured on the zoo's test splits exactly as
``bench_unknown.py`` does (``--queries`` images per model; the unseen seed and open-set splits).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_universal import _resize  # noqa: E402
from benchmarks.bench_unknown import baseline_copy, measure, zoo_splits  # noqa: E402
from fpfast.gallery.attribution import UNKNOWN  # noqa: E402
from fpfast.gallery.views import jpeg_file  # noqa: E402
from fpfast.io.decode import DEFAULT_MAX_PIXELS, decode_image, read_image  # noqa: E402
from fpfast.jobs.options import StreamOptions  # noqa: E402
from fpfast.spec import FingerprintSpec  # noqa: E402
from fpfast.zoo.images import derive  # noqa: E402

LEFT_SEED = "ae_nearest_seed1"   # a retrained seed, to be named as its architecture
# a design the gallery never saw, its images the unknowns: an up-sampling sibling, as the zoo's open-set
# model (ae_bicubic) is (a first choice, ae_tconv_groupnorm, was told apart at AUROC 0.997: no information)
LEFT_DESIGN = "ae_bilinear"
MARK = ".bench_finetune"


def files(zoo: str, model: str, split: str = "train") -> list[str]:
    """A model's images of ``split`` (sorted, as ``load_zoo_split`` reads them; not its model.json)."""
    d = os.path.join(zoo, split, model)
    return [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith((".png", ".jpg"))]


def encoded(img, split: str):
    """The zoo's derived variant ``split`` of ``img``, through its file format, decoded as the stream
    decodes (JPEG by simplejpeg)."""
    im, _, kw = derive(img, split)
    buf = io.BytesIO()
    im.save(buf, **kw)
    return decode_image(buf.getvalue(), FingerprintSpec(geometry="none"), DEFAULT_MAX_PIXELS)[0]


def seed_of(model: str) -> str:
    """The architecture a retrained seed is to be named as (``ae_nearest_seed1`` -> ``ae_nearest``)."""
    head, sep, tail = model.rpartition("_seed")
    if not (sep and tail.isdigit()):
        raise SystemExit(f"--left-seed {model!r}: not a retrained seed (NAME_seedN)")
    return head


def left_out(zoo: str, models: list[str], designs: list[str], seed: str) -> set[str]:
    """The models a validation fold keeps out of the gallery: each unknown design of the train split
    (with its own retrained seeds, the same design) and the unseen seed (a seed of the zoo's
    ``validation`` split, e.g. ``ae_nearest_seed3``, needs nothing left out: its architecture's seeds 0
    and 1 stay enrolled, as the test's unseen seeds find them)."""
    in_validation = seed not in models and os.path.isdir(os.path.join(zoo, "validation", seed))
    if not (seed in models or in_validation) or seed_of(seed) not in models:
        raise SystemExit(f"--left-seed {seed}: it must be a model of the train split or of {zoo}/validation, "
                         f"and {seed_of(seed)} one of the train split")
    out = set() if in_validation else {seed}
    for d in designs:
        if d in models:
            out |= {d} | {m for m in models if m.startswith(d + "_seed")}
        elif not os.path.isdir(os.path.join(zoo, "validation", d)):
            raise SystemExit(f"--unknowns {d}: neither a model of the train split nor a design of {zoo}/validation "
                             "(a zoo built before the validation designs: rebuild it, or --only them into "
                             "another folder and link its validation/)")
    if seed_of(seed) in out:
        raise SystemExit(f"--left-seed {seed}: its architecture is a left-out design")
    return out


def query_images(zoo: str, model: str, n_enroll: int, n_queries: int) -> list:
    """A left-out model's query images: a train-split model's past its first ``n_enroll`` (those a
    gallery of the others would have enrolled), a validation-split model's first ones."""
    if os.path.isdir(os.path.join(zoo, "train", model)):
        return [read_image(p) for p in files(zoo, model)[n_enroll:n_enroll + n_queries]]
    return [read_image(p) for p in files(zoo, model, "validation")[:n_queries]]


def validation_splits(zoo: str, enrolled: list[str], n_enroll: int, n_queries: int,
                      designs: tuple[str, ...] = (LEFT_DESIGN,), seed: str = LEFT_SEED) -> dict:
    """{split: (images, expected answers, JPEG flags)} in ``bench_unknown.zoo_splits``' form; the
    unknowns pooled in ``open_set`` and each design's alone in ``open_set:NAME``."""
    out: dict = {}

    def add(split, imgs, want, jpeg=False):
        s = out.setdefault(split, ([], [], []))
        s[0].extend(imgs)
        s[1].extend([want] * len(imgs))
        s[2].extend([jpeg_file("x.jpg" if jpeg else "x.png")] * len(imgs))
    for m in enrolled:
        clean = [read_image(p) for p in files(zoo, m)[n_enroll:n_enroll + n_queries]]
        add("test", clean, m)
        for split in ("test_jpeg90", "test_jpeg75"):
            add(split, [encoded(im, split) for im in clean], m, jpeg=True)
        add("resize075", [_resize(im, 0.75) for im in clean], m)
        for split in ("test_resize", "test_crop"):
            add(split, [encoded(im, split) for im in clean], m)
    add("unseen_seed", query_images(zoo, seed, n_enroll, n_queries), seed_of(seed))
    for d in designs:
        imgs = query_images(zoo, d, n_enroll, n_queries)
        add("open_set", imgs, UNKNOWN)
        if len(designs) > 1:
            add("open_set:" + d, imgs, UNKNOWN)
    return out


def fpfast(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "fpfast", *args, "-q"], check=True)


def build(variant: str, work: str, enroll_dir: str, universal: str | None = None) -> str:
    """The variant's gallery under ``work`` (built from the untrained one, enrolled with the
    universal embedding of ``universal``, a ``fpfast pretrain`` output, else the shipped one), its path."""
    base, gdir = os.path.join(work, "g_none"), os.path.join(work, "g_" + variant.replace(" ", "").replace(",", "_"))
    head, *opts = [p.strip() for p in variant.split(",")]
    if "union" in opts:   # the variant's gallery recalibrated with each test at its union-bound share
        src = build(", ".join([head] + [o for o in opts if o != "union"]), work, enroll_dir, universal)
        if not os.path.isdir(gdir):
            baseline_copy(src, gdir + ".tmp", "union")
            os.replace(gdir + ".tmp", gdir)
        return gdir
    if variant == "none":
        if not os.path.isdir(base):
            fpfast("enroll", base, "--from-folders", enroll_dir, *(["--universal", universal] if universal else []))
        return base
    if os.path.isdir(gdir):
        return gdir
    if head != "train":
        raise SystemExit(f"unknown variant {variant!r}")
    args = []
    for o in opts:
        k, *v = o.split()
        args += {"network": ["--network-alone"], "lr": ["--lr", *v], "epochs": ["--epochs", *v],
                 "open-set": ["--open-set-from", *v], "flips": ["--flips", *v]}[k]
    shutil.copytree(base, gdir + ".tmp")
    fpfast("train", gdir + ".tmp", "--from-folders", enroll_dir, *args)
    os.replace(gdir + ".tmp", gdir)
    return gdir


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--work", required=True, help="a folder of this benchmark's (its galleries are kept there)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--enroll", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--variants", default="none;train;train, network alone",
                    help="separated by semicolons (or commas when no variant has options)")
    ap.add_argument("--unknowns", default=LEFT_DESIGN,
                    help="validation: the unknown designs, comma-separated (train-split models are left out)")
    ap.add_argument("--left-seed", default=LEFT_SEED, help="validation: the retrained seed left out (or one of the "
                    "zoo's validation split, e.g. ae_nearest_seed3: another seed, its architecture's two enrolled)")
    ap.add_argument("--test", action="store_true", help="the whole train split enrolled, the zoo's test splits queried")
    ap.add_argument("--universal", default=None,
                    help="a `fpfast pretrain` output: the untrained gallery's embedding (default: the shipped one)")
    a = ap.parse_args(argv)
    if os.path.isdir(a.work) and os.listdir(a.work) and not os.path.exists(os.path.join(a.work, MARK)):
        raise SystemExit(f"--work {a.work} is not empty and not this benchmark's: choose another folder")
    os.makedirs(a.work, exist_ok=True)
    open(os.path.join(a.work, MARK), "w").close()
    if a.test:
        enroll_dir, splits = os.path.join(a.zoo, "train"), zoo_splits(a.zoo, a.queries)
    else:
        models = sorted(os.listdir(os.path.join(a.zoo, "train")))
        designs = tuple(d.strip() for d in a.unknowns.split(",") if d.strip())
        kept_out = left_out(a.zoo, models, list(designs), a.left_seed)
        enrolled = [m for m in models if m not in kept_out]
        enroll_dir = os.path.join(a.work, "enroll")
        for m in enrolled:
            os.makedirs(os.path.join(enroll_dir, m), exist_ok=True)
            for p in files(a.zoo, m)[:a.enroll]:
                link = os.path.join(enroll_dir, m, os.path.basename(p))
                if not os.path.lexists(link):
                    os.symlink(os.path.abspath(p), link)
        splits = validation_splits(a.zoo, enrolled, a.enroll, a.queries, designs, a.left_seed)
    res = {"zoo": a.zoo, "split": "test" if a.test else "validation (training images)",
           **({"universal": a.universal} if a.universal else {}),
           "enroll": "all" if a.test else a.enroll, "queries": a.queries,
           "left_out": [] if a.test else sorted(kept_out),
           **({} if a.test else {"unknown_designs": list(designs), "unseen_seed": a.left_seed}),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": {}}
    opts = StreamOptions(device="cpu", quiet=True)
    for variant in a.variants.split(";" if ";" in a.variants else ","):
        if not variant.strip():   # "X;": one variant with options (a comma alone would split them)
            continue
        t0 = time.perf_counter()
        gdir = build(variant.strip(), a.work, enroll_dir, a.universal)
        row = measure(gdir, a.zoo, a.queries, opts, ("auto",), splits=splits)["auto"]
        res["rows"][variant.strip()] = {"build_and_measure_s": round(time.perf_counter() - t0, 1), **row}
        print(variant, json.dumps({s: round(v["accuracy"], 3) if isinstance(v, dict) else v
                                   for s, v in row.items()}), flush=True)
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
