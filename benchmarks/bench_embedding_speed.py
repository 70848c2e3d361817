"""Embedding inference speed: precision x torch.compile, against the handcrafted fused op, in one run.

    python benchmarks/bench_embedding_speed.py --device cpu  [--sizes 32,64,256] [--note "..."]
    python benchmarks/bench_embedding_speed.py --device cuda                      # on a lent GPU

The network is the default architecture with random weights (speed does not depend on training);
``--universal``: the shipped universal embedding and ``universal+handcrafted`` instead
(``--flips 2,4``: and the latter averaged over that many mirror images; ``--reference``: and each
followed by the universal network's one-pass vector, as a fine-tuned gallery's embedder is).
Input: uint8 [B, S, S, 3] already on the device (the stream's batches after decode), output:
unit vectors copied back to the host, as :meth:`Embedder.embed` returns them. Every row is timed
by :func:`fpfast.bench.time_fn` (median, warm-up first: compilation is not counted) and compared
with eager fp32 of the same size (``vs_eager_fp32``) and with the handcrafted fused op
(``fingerprint_features``, backend auto) on the same batch (``vs_handcrafted``: < 1 means
slower than the handcrafted vector). Appends to ``results/embedding_speed.csv`` and rewrites
the table of ``results/embedding_speed.md`` (its sections after the table are kept).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fpfast.bench import device_name, time_fn  # noqa: E402
from fpfast.embed import Embedder, ResidualEmbedNet  # noqa: E402
from fpfast.embed.universal import load_universal  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.spec import FingerprintSpec  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
COLUMNS = ["device", "size", "batch", "precision", "compile", "median_s", "images_per_s", "vs_eager_fp32",
           "vs_handcrafted", "threads", "torch", "date", "note"]


def batch_for(size: int, device: str) -> int:
    pixels = (1 << 22) if device == "cpu" else (1 << 26)  # ~12 MB / ~200 MB of uint8 per call
    return max(8, min(4096, pixels // (size * size)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="32,64,256")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--note", default="")
    ap.add_argument("--universal", action="store_true", help="time the shipped universal embedding and "
                    "universal+handcrafted (its vector followed by the handcrafted one) instead of the default "
                    "architecture")
    ap.add_argument("--flips", default="1", help="with --universal: also universal+handcrafted averaged over "
                    "these counts of mirror images (Embedder.with_flips), e.g. 1,2,4")
    ap.add_argument("--reference", action="store_true", help="with --universal: also universal+handcrafted at "
                    "each --flips count followed by the universal network's one-pass vector (the shape of a "
                    "fine-tuned gallery's embedder with its reference network, Embedder.with_reference)")
    a = ap.parse_args(argv)
    dev = a.device
    torch.manual_seed(0)
    if a.universal:
        u = load_universal()
        embs = {"universal": u, "universal+handcrafted": u.with_handcrafted()}
        counts = [int(n) for n in a.flips.split(",")]
        embs.update({f"universal+handcrafted, {n} flips": u.with_handcrafted().with_flips(n) for n in counts if n > 1})
        if a.reference:
            embs.update({f"universal+handcrafted, {n} flips, + reference": u.with_handcrafted().with_flips(n)
                         .with_reference(u) for n in counts})
    else:
        embs = {"": Embedder(ResidualEmbedNet(), {"spec": FingerprintSpec().to_dict()})}
    precisions = ["fp32", "bf16"] + (["fp16"] if dev == "cuda" else [])
    compiles = [False] + ([] if a.no_compile else [True])
    rows, date = [], dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    for size in (int(s) for s in a.sizes.split(",")):
        b = batch_for(size, dev)
        x = [torch.randint(0, 256, (b, size, size, 3), dtype=torch.uint8, device=dev) for _ in range(2)]
        spec = FingerprintSpec(size=size)
        t_hand = time_fn(lambda t: fingerprint_features(t, spec), x, a.repeats, 2)
        for name, emb in embs.items():
            base = None
            for prec in precisions:
                for comp in compiles:
                    t = time_fn(lambda t: emb.embed(t, device=dev, layout="hwc", batch_size=b, precision=prec,
                                                    compile=comp), x, a.repeats, 2)
                    base = base or t
                    rows.append({"device": device_name(dev), "size": size, "batch": b, "precision": prec,
                                 "compile": comp, "median_s": t, "images_per_s": b / t, "vs_eager_fp32": base / t,
                                 "vs_handcrafted": t_hand / t, "threads": torch.get_num_threads(),
                                 "torch": torch.__version__, "date": date,
                                 "note": "; ".join(n for n in (name, a.note) if n)})
                    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
    path = os.path.join(RESULTS, "embedding_speed.csv")
    new = not os.path.exists(path)
    with open(path, "a", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        if new:
            w.writeheader()
        w.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    with open(path, newline="", encoding="utf-8") as fh:
        allrows = list(csv.DictReader(fh))
    lines = ["# Embedding inference speed (`benchmarks/bench_embedding_speed.py`)", "",
             "Default architecture, uint8 input on the device, vectors back on the host; median of "
             "repeats after warm-up. `vs eager fp32`: speed-up over eager fp32 at the same size; "
             "`vs handcrafted`: speed relative to the fused handcrafted op on the same batch.", "",
             "| date | device | size | batch | precision | compile | images/s | vs eager fp32 | vs handcrafted | note |",
             "|---|---|---:|---:|---|---|---:|---:|---:|---|"]
    for r in allrows:
        lines.append(f"| {r['date']} | {r['device']} | {r['size']} | {r['batch']} | {r['precision']} | "
                     f"{r['compile']} | {float(r['images_per_s']):,.0f} | {float(r['vs_eager_fp32']):.2f} | "
                     f"{float(r['vs_handcrafted']):.3f} | {r['note']} |")
    md = os.path.join(RESULTS, "embedding_speed.md")
    notes = ""  # the written sections after the table ("## ...") are kept
    if os.path.exists(md):
        with open(md, encoding="utf-8") as fh:
            old = fh.read()
        notes = old[old.index("\n## ") :] if "\n## " in old else ""
    with open(md, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n" + notes)


if __name__ == "__main__":
    main()
