"""Attribution accuracy over a built zoo: fpfast's default fingerprint vs the baselines.

    python -m benchmarks.bench_accuracy ZOO_DIR [--out benchmarks/results] [--name accuracy] [--methods ...] [--note TEXT]

Every method is fitted on ``train`` (all gallery classes incl. ``real``) and scored on the clean
test split, its degraded variants and the unseen-seed split (accuracy + macro-F1 over the labels
present), and on open-set AUROC (known = clean test images, unknown = the open-set model's images;
score = the method's confidence: max class probability, max NCC or minus the 1-NN distance).

fpfast's classifier here is a stand-in until the gallery lands: standardise + logistic regression,
and standardise + 1-nearest-neighbour (Euclidean).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fpfast.baselines import BASELINES, ManiFPT2024  # noqa: E402
from fpfast.baselines.base import LinearHead, fit_size, load_images  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.projectors import fingerprint_with_projector  # noqa: E402
from fpfast.spec import PRESETS as SPEC_PRESETS  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402

EVAL_SPLITS = ("test", "test_jpeg90", "test_jpeg75", "test_resize", "test_crop", "unseen_seed")


def fpfast_features(images, spec, device) -> np.ndarray:
    """Fingerprints [N, D] of images of possibly different sizes (batched per size)."""
    out = np.zeros((len(images), spec.dim), np.float32)
    by_shape: dict = {}
    if spec.projector is not None:  # as ManiFPT's row: to the reference set's size (crop / bilinear up-scale)
        images = [fit_size(a, spec.size) for a in images]
    for i, a in enumerate(images):
        by_shape.setdefault(a.shape, []).append(i)
    for idx in by_shape.values():
        for s in range(0, len(idx), 512):
            part = idx[s:s + 512]
            x = torch.from_numpy(np.stack([images[i] for i in part])).to(device)
            f = fingerprint_features(x, spec) if spec.projector is None else fingerprint_with_projector(x, spec)
            out[part] = f.cpu().numpy()
    return out


def degraded_copies(images: list[np.ndarray]) -> list[np.ndarray]:
    """JPEG 90, JPEG 75 and 0.5x bilinear copies of every image (the same transforms as the test
    variants: an upper bound for augmentation, not a held-out robustness claim; crop is left out)."""
    import io

    from PIL import Image

    def jpeg(a, q):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=q)
        return np.asarray(Image.open(buf).convert("RGB"))

    half = [np.asarray(Image.fromarray(a).resize((a.shape[1] // 2, a.shape[0] // 2), Image.BILINEAR)) for a in images]
    return [jpeg(a, 90) for a in images] + [jpeg(a, 75) for a in images] + half


class Fpfast:
    def __init__(self, size: int, classifier: str, device: str, augment: bool = False, spec=None, what="default"):
        self.spec = spec or SPEC_PRESETS["default"].replace(size=size)
        self.classifier, self.device, self.augment = classifier, device, augment
        self.name = f"fpfast {what} ({'logistic' if classifier == 'logistic' else '1-NN'})"
        if augment:
            self.name += " + JPEG/resize-augmented train"

    def fit(self, images, labels):
        images = load_images(images)
        if self.augment:
            images = images + degraded_copies(images)
            labels = list(labels) * 4
        X = fpfast_features(images, self.spec, self.device)
        if self.classifier == "logistic":
            self.head = LinearHead("logistic", max_iter=3000).fit(X, labels)
        else:
            from sklearn.preprocessing import StandardScaler

            self.scaler = StandardScaler().fit(np.nan_to_num(X))
            self.X, self.y = self.scaler.transform(np.nan_to_num(X)), np.asarray(labels)
        return self

    def predict_score(self, images):
        X = np.nan_to_num(fpfast_features(load_images(images), self.spec, self.device))
        if self.classifier == "logistic":
            return self.head.predict_score(X)
        Z = torch.from_numpy(self.scaler.transform(X))
        d = torch.cdist(Z, torch.from_numpy(self.X))
        dmin, j = d.min(1)
        return self.y[j.numpy()], -dmin.numpy()


def positive(v: str) -> int:
    if int(v) < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return int(v)


def cap(split, n: int | None, seed: int = 0):
    """At most ``n`` images per source model of a ``load_zoo_split`` triple (a seeded random subset,
    in file order)."""
    imgs, labels, sources = split
    if n is None:
        return split
    src = np.asarray(sources, dtype=object)
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(src == m))[:n] for m in dict.fromkeys(sources)]))
    return [imgs[i] for i in keep], [labels[i] for i in keep], [sources[i] for i in keep]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("zoo")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--methods", nargs="*", default=None, help="subset: fpfast_logistic fpfast_1nn fpfast_logistic_aug " + " ".join(BASELINES)
                    + " (with --refset: manifpt_rgb manifpt_freq manifpt_tiny_encoder fpfast_manifold_logistic fpfast_manifold_1nn)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--note", default="")
    ap.add_argument("--name", default="accuracy", help="output stem: NAME.md and NAME.csv")
    ap.add_argument("--refset", help="a ManiFPT reference set at the zoo's size: adds manifpt_rgb, manifpt_freq and "
                                     "manifpt_tiny_encoder (a random TinyEncoder, seed 0)")
    ap.add_argument("--max-train", type=positive, help="at most this many training images per model (a seeded "
                    "random subset): a big zoo at a smaller sample")
    ap.add_argument("--max-test", type=positive, help="at most this many images per model in every evaluated split")
    a = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    zoo = json.loads((Path(a.zoo) / "zoo.json").read_text())
    size = zoo["image_size"]
    data = {s: cap(load_zoo_split(a.zoo, s), a.max_train if s == "train" else a.max_test)
            for s in ("train",) + EVAL_SPLITS + ("open_set",)}
    methods = {"fpfast_logistic": lambda: Fpfast(size, "logistic", a.device),
               "fpfast_1nn": lambda: Fpfast(size, "1nn", a.device),
               "fpfast_logistic_aug": lambda: Fpfast(size, "logistic", a.device, augment=True)}
    methods.update({k: v for k, v in BASELINES.items()})
    if a.refset:
        from fpfast.analyze.encoders import TinyEncoder
        from fpfast.jobs.specs import resolve_spec
        man = resolve_spec(f"manifold:{a.refset}")  # the default spec's features of x - its nearest real image
        for cls in ("logistic", "1nn"):
            methods[f"fpfast_manifold_{cls}"] = (lambda c: lambda: Fpfast(size, c, a.device, spec=man,
                                                                      what="default on ManiFPT RGB artifacts"))(cls)
        torch.manual_seed(0)
        tiny = TinyEncoder().eval()
        methods.update({"manifpt_rgb": lambda: ManiFPT2024(a.refset, "rgb"),
                        "manifpt_freq": lambda: ManiFPT2024(a.refset, "freq"),
                        "manifpt_tiny_encoder": lambda: ManiFPT2024(a.refset, "encoder", tiny,
                                                                    "tiny random encoder (3 conv, 32-d)")})
    chosen = a.methods or list(methods)
    rows = []
    for key in chosen:
        t0 = time.perf_counter()
        m = methods[key]()
        imgs, labels, _ = data["train"]
        m.fit(imgs, labels)
        known_scores = None
        for split in EVAL_SPLITS:
            imgs, labels, _ = data[split]
            pred, score = m.predict_score(imgs)
            present = sorted(set(labels))
            rows.append(dict(method=m.name, key=key, split=split, n=len(labels),
                             accuracy=accuracy_score(labels, pred),
                             macro_f1=f1_score(labels, pred, labels=present, average="macro", zero_division=0)))
            if split == "test":
                known_scores = score
        _, open_score = m.predict_score(data["open_set"][0])
        y = np.r_[np.ones(len(known_scores)), np.zeros(len(open_score))]
        auroc = roc_auc_score(y, np.r_[known_scores, open_score])
        rows.append(dict(method=m.name, key=key, split="open_set_auroc", n=len(y), accuracy=auroc, macro_f1=float("nan")))
        print(f"{m.name}: done in {time.perf_counter() - t0:.1f}s", flush=True)
    write(rows, zoo, a)
    return 0


def write(rows, zoo, a) -> None:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.node()} {platform.machine()}, {os.cpu_count()} cpus, device {a.device}"
    with open(out / f"{a.name}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["method", "split", "n", "accuracy", "macro_f1", "preset", "seed", "date", "machine"])
        w.writeheader()
        for r in rows:
            w.writerow(dict(method=r["method"], split=r["split"], n=r["n"], accuracy=f"{r['accuracy']:.4f}",
                            macro_f1=f"{r['macro_f1']:.4f}", preset=zoo["preset"], seed=zoo["seed"], date=date,
                            machine=machine))
    names = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["method"], r["split"]): r for r in rows}
    gallery = [m["name"] for m in zoo["models"] if m["role"] == "gallery"]
    lines = [f"# Attribution accuracy on the GM-zoo `{zoo['preset']}` preset", "",
             f"- zoo: preset `{zoo['preset']}`, seed {zoo['seed']}, {zoo['image_size']}x{zoo['image_size']} images, "
             f"{len(gallery)} gallery classes ({', '.join(gallery)}); unseen seed: "
             + ", ".join(f"{m['name']} (-> {m['label']})" for m in zoo["models"] if m["role"] == "unseen_seed")
             + "; open set: " + ", ".join(m["name"] for m in zoo["models"] if m["role"] == "open_set"),
             f"- train / test images per class: {zoo['splits']['train'].get('real')} / {zoo['splits']['test'].get('real')}"
             + (f"; this run used at most {a.max_train or 'all'} / {a.max_test or 'all'} per model (seeded random subsets)"
                if a.max_train or a.max_test else ""),
             f"- machine: {machine}; date {date}; zoo built in {zoo['build_seconds']}s",
             "- fpfast: `fingerprint_features` with the `default` spec at size "
             f"{zoo['image_size']}; its classifier is a stand-in until the gallery lands "
             "(standardise + logistic regression; standardise + 1-NN).",
             "- Cells: accuracy / macro-F1 (macro over the labels present in the split). "
             "Open-set AUROC: known = clean test, unknown = open-set model; score = confidence.", ""]
    if a.note:
        lines += [f"- note: {a.note}", ""]
    hdr = ["method", "clean", "JPEG 90", "JPEG 75", "resize 0.5x", "crop 3/4", "unseen seed", "open-set AUROC"]
    lines += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for n in names:
        cells = [f"{cell[(n, s)]['accuracy']:.3f} / {cell[(n, s)]['macro_f1']:.3f}" for s in EVAL_SPLITS]
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {cell[(n, 'open_set_auroc')]['accuracy']:.3f} |")
    (out / f"{a.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
