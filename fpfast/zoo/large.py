"""The zoo's ``large`` split (issue 14, any resolution): the zoo's fully convolutional generators
(its autoencoders, retrained exactly as the build trains them: same preset, seeds and fitting
patches) applied to ``size`` x ``size`` crops of the same real photos, so that a fingerprint spec
can be measured on images larger than its working size (one centre crop vs several crops).

    from fpfast.zoo.large import build_large
    build_large("/tmp/zoo_small", "/tmp/zoo_small_large", size=256)   # -> out/<split>/<model>/*.png

Written like a zoo (``out/<split>/<model>/`` with ``model.json``, readable by
:func:`fpfast.zoo.load_zoo_split`): ``train`` and ``test`` (plus the derived ``test_jpeg90``,
``test_jpeg75``, ``test_resize``, ``test_crop`` of :mod:`.images`) for the gallery autoencoders
and ``real`` (the crops themselves), ``unseen_seed`` / ``open_set`` for the held-out
autoencoders. The GAN and diffusion models are left out: they sample from a prior at the zoo's
size and do not take a photo as input. Deterministic for a zoo on one machine (the build's
thread count and deterministic algorithms).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from . import real as realmod
from . import train as tr
from .build import ATTRS, prepare_out
from .images import DERIVED, write_images
from .presets import get_preset

LARGE_SEED_OFFSET = 3  # the build draws fitting patches from seed*1000+1 and its images from +2


def build_large(zoo, out, size: int = 256, n_train: int = 40, n_test: int = 40, threads: int | None = None,
                only: list[str] | None = None, progress: bool = True) -> dict:
    """Write the large split of the built zoo ``zoo`` under ``out`` (new or empty); returns its
    summary. ``only``: just these autoencoders (and ``real``); each depends only on its own seed."""
    t0 = time.perf_counter()
    info = json.loads((Path(zoo) / "zoo.json").read_text())
    p, seed = get_preset(info["preset"]), int(info["seed"])
    real_meta = next(m for m in info["models"] if m["name"] == "real")
    real_dir = None if real_meta.get("source", "bundled") == "bundled" else real_meta["source"]
    out = Path(out)
    prepare_out(out, overwrite=False)
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads or min(2, old_threads))
    torch.use_deterministic_algorithms(True, warn_only=True)
    log = (lambda *a: print("[zoo large]", *a, flush=True)) if progress else (lambda *a: None)
    try:
        photos = realmod.photos(real_dir)
        fit_np = realmod.random_patches(photos, p["n_fit_patches"], p["size"], seed * 1000 + 1)
        big_np = realmod.random_patches(photos, n_train + n_test, size, seed * 1000 + LARGE_SEED_OFFSET)
        to_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float().div(255.0)
        fit, big = to_t(fit_np), to_t(big_np)
        counts: dict = {}
        meta = dict(real_meta, image_size=size)
        _write(out, "real", meta, {"train": big_np[:n_train], "test": big_np[n_train:]}, counts)
        built = {m["name"] for m in info["models"]}  # a zoo built with ``only`` holds fewer models than its preset
        for m in p["models"]:
            if (m["family"] != "autoencoder" or m["role"] == "validation" or m["name"] not in built
                    or (only is not None and m["name"] not in only)):
                continue   # validation designs: for bench_finetune's 64-px galleries only
            t = time.perf_counter()
            mseed = 100 * seed + m["seed_index"]
            model = tr.train_autoencoder(fit, mseed, p["ae_steps"], m["upsampling"], m["normalization"],
                                         m["activation"], m["loss"], width=p["width"], bs=p["batch"])
            if m["role"] == "gallery":
                imgs = tr.reconstruct(model, big, bs=16)
                splits = {"train": imgs[:n_train], "test": imgs[n_train:]}
            else:
                splits = {m["role"]: tr.reconstruct(model, big[n_train:], bs=16)}
            meta = {k: m[k] for k in ATTRS}
            meta.update(name=m["name"], seed=mseed, training_steps=p["ae_steps"], role=m["role"], label=m["label"],
                        image_size=size, width=p["width"], trained_at=p["size"])
            _write(out, m["name"], meta, splits, counts)
            log(f"{m['name']}: {sum(len(v) for v in splits.values())} images, {time.perf_counter() - t:.1f}s")
        summary = dict(zoo=str(zoo), preset=info["preset"], seed=seed, image_size=size, splits=counts,
                       build_seconds=round(time.perf_counter() - t0, 2))
        (out / "zoo.json").write_text(json.dumps({**summary, "models": [], "large_of": str(zoo)}, indent=1,
                                                 sort_keys=True) + "\n")
        return summary
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _write(out: Path, name: str, meta: dict, splits: dict[str, np.ndarray], counts: dict) -> None:
    if "test" in splits:
        splits = {**splits, **{s: splits["test"] for s in DERIVED}}
    for split, imgs in splits.items():
        d = out / split / name
        write_images(imgs, d, split)
        (d / "model.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        counts.setdefault(split, {})[name] = len(imgs)
