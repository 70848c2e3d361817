"""The zoo builder: train every model of a preset, generate its images, write the splits.

How images are made (so that a model's only trace is its design):
  * autoencoders decode *reconstructions* of real patches. Every autoencoder reconstructs the very
    same real patches, which are also the ``real`` class's images: content is identical across
    these classes, so only the decoder's design (and weights) can tell them apart. A latent-prior
    sample of a briefly trained AE/VAE is a blur whose content would differ per model and leak the label.
  * the GAN samples its prior (z ~ N(0, I)); the diffusion model samples from noise with DDPM
    (ancestral, every training step) and, with the same weights, DDIM (eta = 0, fewer steps).

Content (counterfactual metadata): ``content.parquet`` at the zoo's root has one row per image
file: ``split``, ``model``, ``label``, ``file`` (relative to the root), ``content_id`` (``g00042``:
the 42nd real patch of the train/test draw, ``x00007``: the 7th of the cross-content draw; null
for prior samples of GANs and diffusion models, which have no real source), ``photo``, ``top``,
``left``, ``flip`` (where the patch was cut). The real class and every autoencoder share each
content id, so "same content, other generator" and "same generator, other content" pairs are
groups of this table (:mod:`fpfast.causal.pairs`). Train and test use disjoint patches (by
content); ``cross_content`` holds the real class and every gallery model on patches of the photos
in ``CROSS_PHOTOS`` (scikit-learn's two, kept out of every other split and of the generators'
training), so its content comes from a source that no training saw.

Determinism: per model ``torch.manual_seed`` + a numpy Generator, deterministic torch algorithms
(``warn_only``: CUDA has ops without a deterministic kernel), a fixed thread count, PNG written
without metadata. Same seed + same machine + same versions -> identical bytes.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from . import real as realmod
from . import train as tr
from .images import CONTENT_FILE, DERIVED, SPLITS, derive, write_images
from .presets import CROSS_PHOTOS, get_preset

MARKER = ".fpfast-zoo"
ATTRS = ("family", "upsampling", "normalization", "activation", "loss", "sampler")


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _versions() -> dict:
    import PIL

    import fpfast

    v = {"fpfast": fpfast.__version__, "torch": torch.__version__, "numpy": np.__version__,
         "pillow": PIL.__version__, "python": platform.python_version()}
    try:
        import diffusers

        v["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    return v


def _generate(m: dict, p: dict, seed: int, fit: torch.Tensor, gen_x: torch.Tensor, n: int, cache: dict):
    """Train model m (or reuse a trained one) and return (uint8 images [n,S,S,3], steps trained)."""
    w, bs = p["width"], p["batch"]
    if m["family"] == "autoencoder":
        model = tr.train_autoencoder(fit, seed, p["ae_steps"], m["upsampling"], m["normalization"],
                                     m["activation"], m["loss"], width=w, bs=bs)
        return tr.reconstruct(model, gen_x[:n]), p["ae_steps"]
    if m["family"] == "gan":
        g = tr.train_dcgan(fit, seed, p["gan_steps"], m["upsampling"], width=w, bs=bs)
        return tr.sample_dcgan(g, n, seed + 7919), p["gan_steps"]
    if m["family"] == "diffusion":
        key = ("diffusion", seed)
        if key not in cache:  # ddpm and ddim share one trained UNet: they differ only in the sampler
            cache[key] = tr.train_ddpm(fit, seed, p["diff_steps"], p["timesteps"], width=w, bs=bs)
        unet, sched = cache[key]
        steps = p["timesteps"] if m["sampler"] == "ddpm" else p["ddim_steps"]
        return tr.sample_diffusion(unet, sched, n, seed + 7919, m["sampler"], steps), p["diff_steps"]
    raise ValueError(f"unknown family {m['family']!r}")


def _write_class(out: Path, name: str, meta: dict, splits: dict[str, np.ndarray], counts: dict,
                 content: list, origins: dict[str, list] | None = None) -> None:
    """Write a class's splits and append its rows to ``content`` (``origins``: split -> the
    (content id, photo, top, left, flip) of each image; None: prior samples, no content)."""
    for split, imgs in splits.items():
        d = out / split / name
        write_images(imgs, d, split)
        (d / "model.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        counts.setdefault(split, {})[name] = len(imgs)
        ext = derive(imgs[0], split)[1] if len(imgs) else ".png"
        src = (origins or {}).get(split if split in ("train", "cross_content", "validation") else "test")
        for i in range(len(imgs)):
            cid, photo, top, left, flip = src[i] if src else (None, None, None, None, None)
            content.append(dict(split=split, model=name, label=meta.get("label"),
                                file=f"{split}/{name}/{i:05d}{ext}", content_id=cid, photo=photo,
                                top=top, left=left, flip=flip))


def _origins(prefix: str, origins: list, start: int = 0) -> list:
    return [(f"{prefix}{start + i:05d}", *o) for i, o in enumerate(origins)]


def _write_content(out: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    schema = pa.schema([("split", pa.string()), ("model", pa.string()), ("label", pa.string()),
                        ("file", pa.string()), ("content_id", pa.string()), ("photo", pa.string()),
                        ("top", pa.int32()), ("left", pa.int32()), ("flip", pa.bool_())])
    if (out / CONTENT_FILE).exists():  # not one of ours (remove_zoo removed ours): never overwrite it
        from ..io.writers import OutputError
        raise OutputError(f"{out / CONTENT_FILE} exists and this zoo did not write it; move it away and rebuild")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / CONTENT_FILE)


def prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that is a file, a non-empty folder that is not a zoo, or a finished zoo
    without ``overwrite``; else remove the earlier (or interrupted) zoo's own files (:func:`remove_zoo`)."""
    from ..io.writers import OutputError
    if out.exists() and not out.is_dir():
        raise OutputError(f"zoo output {out} exists and is not a directory")
    if not out.exists() or not any(out.iterdir()):
        return
    if not ((out / "zoo.json").exists() or (out / MARKER).exists()):  # neither built nor interrupted zoo
        raise OutputError(f"zoo output {out} exists, is not empty and is not a zoo; refusing to write there "
                          "(choose an empty or new directory)")
    if (out / "zoo.json").exists() and not overwrite:  # an interrupted build is simply replaced
        raise OutputError(f"zoo output {out} holds a zoo already; pass --overwrite to replace it "
                          "(only the zoo's own files are removed) or choose another directory")
    remove_zoo(out)


def remove_zoo(out: Path) -> None:
    """Delete what a zoo build wrote under ``out`` - zoo.json, the marker, and in every
    ``<split>/<model>/`` its model.json and images named ``NNNNN.png|.jpg`` - and the folders
    this empties. Anything else (a user's notes) stays, with the folders that hold it."""
    import re
    image = re.compile(r"^\d{5}\.(png|jpg)$")
    for split in SPLITS:
        sd = out / split
        if not sd.is_dir() or sd.is_symlink():
            continue
        for md in sd.iterdir():
            if md.is_dir() and not md.is_symlink():
                for f in md.iterdir():
                    if f.is_file() and (f.name == "model.json" or image.match(f.name)):
                        f.unlink()
                _rmdir_if_empty(md)
        _rmdir_if_empty(sd)
    # content.parquet only when this zoo's zoo.json names it: zoos built before it existed never wrote one
    try:
        ours = json.loads((out / "zoo.json").read_text()).get("content") == CONTENT_FILE
    except (OSError, ValueError):
        ours = False
    for f in ("zoo.json", MARKER) + ((CONTENT_FILE,) if ours else ()):
        if (out / f).is_file():
            (out / f).unlink()


def _rmdir_if_empty(d: Path) -> None:
    try:
        d.rmdir()
    except OSError:
        pass


def build_zoo(out, preset: str = "tiny", seed: int = 0, real_dir=None, device: str = "auto",
              progress: bool = True, replace_real: bool = False, threads: int | None = None,
              only: list[str] | None = None, overwrite: bool = False, stages=None) -> dict:
    """Build a zoo under ``out`` and return its summary (also ``out/zoo.json``). ``out`` must be
    new, empty, or (with ``overwrite``) an earlier zoo, whose own files are removed first.

    ``real_dir`` extends the bundled photos (``replace_real=True``: replaces them); ``device``:
    auto (CUDA when present), cpu, cuda; ``threads``: torch CPU threads during the build (default
    min(2, current)); ``only``: build just these models (plus ``real``) — each model depends only on
    its own seed and the shared real patches, so its images equal those of a full build.
    ``progress``: a bar over the models (:mod:`fpfast.progress`); ``stages``: a
    :class:`fpfast.progress.Stages` that gets the time of the photos and of each model family.
    """
    from ..progress import Progress, Stages
    t0 = time.perf_counter()
    p = get_preset(preset)
    if only is not None:
        unknown = sorted(set(only) - {m["name"] for m in p["models"]})
        if unknown:
            raise ValueError(f"models {unknown} are not in preset {preset!r}")
        p["models"] = [m for m in p["models"] if m["name"] in only]
    out = Path(out)
    prepare_out(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("a GM-zoo is being built here; fpfast may replace this folder\n")
    dev = _device(device)
    if dev.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads or min(2, old_threads))
    torch.use_deterministic_algorithms(True, warn_only=True)
    stages = stages if stages is not None else Stages()
    bar = Progress("zoo", len(p["models"]), unit="model", quiet=not progress)
    try:
        size, n_tr, n_te = p["size"], p["n_train"], p["n_test"]
        photos, cross_photos = realmod.split_photos(realmod.photos(real_dir, replace_real), CROSS_PHOTOS)
        n_cx = p["n_test"] // 2 if cross_photos else 0
        fit_np = realmod.random_patches(photos, p["n_fit_patches"], size, seed * 1000 + 1)
        gen_o, cross_o = [], []
        gen_np = realmod.random_patches(photos, n_tr + n_te, size, seed * 1000 + 2, gen_o)
        cross_np = (realmod.random_patches(cross_photos, n_cx, size, seed * 1000 + 3, cross_o) if n_cx
                    else np.zeros((0, size, size, 3), np.uint8))
        origins = {"train": _origins("g", gen_o[:n_tr]), "test": _origins("g", gen_o[n_tr:], n_tr),
                   "cross_content": _origins("x", cross_o)}
        to_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float().div(255.0).to(dev)
        fit, gen_x = to_t(fit_np), to_t(np.concatenate([gen_np, cross_np]))
        counts: dict = {}
        content: list = []
        models_meta, timings = [], {}
        real_meta = dict(name="real", family="real", upsampling=None, normalization=None, activation=None,
                         loss=None, sampler=None, seed=seed, training_steps=0, role="gallery", label="real",
                         source="bundled" if real_dir is None else str(real_dir), image_size=size,
                         cross_content_photos=[n for n, _ in cross_photos])
        _write_class(out, "real", real_meta, _with_derived(gen_np[:n_tr], gen_np[n_tr:], cross_np), counts,
                     content, origins)
        models_meta.append(real_meta)
        stages.add("photos", time.perf_counter() - t0)
        cache: dict = {}
        for m in p["models"]:
            bar.update(0, model=m["name"])  # the model being trained, in the status line
            t = time.perf_counter()
            mseed = 100 * seed + m["seed_index"]
            role = m["role"]
            n = n_tr + n_te + n_cx if role == "gallery" else min(n_te, n_tr) if role == "validation" else n_te
            src = gen_x if role in ("gallery", "validation") else gen_x[n_tr:]   # validation: training contents
            imgs, steps = _generate(m, p, mseed, fit, src, n, cache)
            meta = {k: m[k] for k in ATTRS}
            meta.update(name=m["name"], seed=mseed, training_steps=steps, role=role, label=m["label"],
                        image_size=size, width=p["width"])
            if m["family"] == "diffusion":
                meta.update(timesteps=p["timesteps"],
                            sampling_steps=p["timesteps"] if m["sampler"] == "ddpm" else p["ddim_steps"])
            if role == "gallery":
                splits = _with_derived(imgs[:n_tr], imgs[n_tr:n_tr + n_te], imgs[n_tr + n_te:])
            else:
                splits = {role: imgs}
            reconstructs = m["family"] == "autoencoder"  # prior samples have no real content
            own = {"gallery": origins, "validation": {"validation": origins["train"]}}.get(role, {"test": origins["test"]})
            _write_class(out, m["name"], meta, splits, counts, content, own if reconstructs else None)
            models_meta.append(meta)
            timings[m["name"]] = round(time.perf_counter() - t, 2)
            stages.add(m["family"], time.perf_counter() - t)
            bar.update(1)
        summary = dict(preset=preset, seed=seed, image_size=size, device=str(dev), threads=torch.get_num_threads(),
                       models=models_meta, splits=counts, versions=_versions(),
                       machine=f"{platform.machine()} {os.cpu_count()} cpus",
                       model_seconds=timings, build_seconds=round(time.perf_counter() - t0, 2),
                       content=CONTENT_FILE)
        _write_content(out, content)
        (out / "zoo.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        return summary
    finally:
        bar.close()
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _with_derived(train_imgs: np.ndarray, test_imgs: np.ndarray, cross_imgs: np.ndarray) -> dict[str, np.ndarray]:
    d = {"train": train_imgs, "test": test_imgs}
    d.update({s: test_imgs for s in DERIVED})
    if len(cross_imgs):
        d["cross_content"] = cross_imgs
    return d
