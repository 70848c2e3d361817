"""Real patches, offline: the colour photographs bundled in the scikit-image and scikit-learn wheels.

Random crops (uniform positions) and horizontal flips at the working size, drawn with a numpy
Generator of a fixed seed, so the same seed gives the same patches on every machine. A folder given
as ``real_dir`` extends the bundled photos (``replace=True``: replaces them).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import UsageError

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "retina",
                  "immunohistochemistry", "hubble_deep_field")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.stack([a] * 3, -1)
    a = a[..., :3]
    if a.dtype != np.uint8:
        a = np.clip(a.astype(np.float64) * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(a)


def bundled_photos() -> list[tuple[str, np.ndarray]]:
    """(name, uint8 HxWx3) of every bundled colour photo that loads without the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out: list[tuple[str, np.ndarray]] = []
    import skimage.data as skd

    for name in SKIMAGE_PHOTOS:
        try:
            img = getattr(skd, name)()
        except Exception:  # a photo that would need a download is skipped, never fetched
            continue
        if name == "stereo_motorcycle":
            out += [("motorcycle_left", _rgb(img[0])), ("motorcycle_right", _rgb(img[1]))]
        else:
            out.append((name, _rgb(img)))
    try:
        from sklearn.datasets import load_sample_images

        s = load_sample_images()
        for fname, img in zip(s.filenames, s.images):
            out.append((Path(fname).stem, _rgb(img)))
    except Exception:
        pass
    return out


def folder_photos(real_dir: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    from ..io.decode import DecodeError, read_image

    out = []
    for p in sorted(Path(real_dir).rglob("*")):
        if p.suffix.lower() in IMAGE_EXTS and p.is_file():
            try:
                out.append((str(p.relative_to(real_dir)), read_image(p)))
            except (OSError, DecodeError):  # an unreadable photo is skipped
                continue
    if not out:
        raise FileNotFoundError(f"no readable images under {real_dir}")
    return out


def photos(real_dir=None, replace: bool = False) -> list[tuple[str, np.ndarray]]:
    if real_dir is None:
        return bundled_photos()
    extra = folder_photos(real_dir)
    return extra if replace else bundled_photos() + extra


def split_photos(photos_: list[tuple[str, np.ndarray]], held_out) -> tuple[list, list]:
    """(photos kept for training, photos named in ``held_out``): the zoo's ``cross_content`` split
    draws its content from the second list only, so no training image shares a photo with it."""
    held = set(held_out)
    return [p for p in photos_ if p[0] not in held], [p for p in photos_ if p[0] in held]


def random_patches(photos_: list[tuple[str, np.ndarray]], n: int, size: int, seed: int,
                   origins: list | None = None) -> np.ndarray:
    """n uint8 patches [n, size, size, 3]: a photo drawn uniformly (by area, the 1411^2 retina would
    fill a third of the patches with flat red; photos smaller than ``size`` are skipped), a uniform
    crop position, a horizontal flip with p = 1/2. ``origins``: a list that receives one
    (photo, top, left, flipped) tuple per patch (the zoo's content metadata)."""
    usable = [(name, a) for name, a in photos_ if a.shape[0] >= size and a.shape[1] >= size]
    if not usable:
        raise UsageError(f"no photo is at least {size}x{size}")
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(usable), size=n)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for k, i in enumerate(which):
        name, a = usable[i]
        t = int(rng.integers(0, a.shape[0] - size + 1))
        l = int(rng.integers(0, a.shape[1] - size + 1))
        p = a[t:t + size, l:l + size]
        flip = rng.random() < 0.5
        out[k] = p[:, ::-1] if flip else p
        if origins is not None:
            origins.append((name, t, l, bool(flip)))
    return out
