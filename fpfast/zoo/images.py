"""Writing zoo images deterministically and deriving the degraded test splits, plus reading a zoo back.

PNG: Pillow, no metadata, zlib level 6 (same bytes for the same pixels on one Pillow/zlib build).
Derived splits (from each class's ``test`` images):
  ``test_jpeg90`` / ``test_jpeg75``: JPEG files (.jpg, 4:2:0, Pillow's libjpeg) of quality 90 / 75;
  ``test_resize``: 0.5x down-scale (Pillow antialiased bilinear), PNG;
  ``test_crop``: centre crop to 3/4 of the side (offset = side/8), PNG.
``cross_content``: PNG images whose content comes from photos no other split uses (see
:mod:`fpfast.zoo.build`). ``validation``: PNG images of designs kept out of the gallery and of the
test splits, made from the training contents (:data:`fpfast.zoo.presets.VALIDATION`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..io.decode import read_image

DERIVED = ("test_jpeg90", "test_jpeg75", "test_resize", "test_crop")
CONTENT_FILE = "content.parquet"  # the zoo's content table (fpfast.zoo.build)
SPLITS = ("train", "test") + DERIVED + ("unseen_seed", "open_set", "cross_content", "validation")


def derive(img: np.ndarray, split: str) -> tuple[Image.Image, str, dict]:
    """(PIL image, file extension, save kwargs) of one derived variant of a uint8 HxWx3 image."""
    im = Image.fromarray(img)
    if split in ("test_jpeg90", "test_jpeg75"):
        return im, ".jpg", dict(format="JPEG", quality=int(split[-2:]), subsampling=2, optimize=False)
    if split == "test_resize":
        h, w = img.shape[:2]
        return im.resize((w // 2, h // 2), Image.BILINEAR), ".png", dict(format="PNG", compress_level=6)
    if split == "test_crop":
        h, w = img.shape[:2]
        t, l = h // 8, w // 8
        return im.crop((l, t, l + w - 2 * l, t + h - 2 * t)), ".png", dict(format="PNG", compress_level=6)
    if split in ("train", "test", "unseen_seed", "open_set", "cross_content", "validation"):
        return im, ".png", dict(format="PNG", compress_level=6)
    raise ValueError(f"unknown split {split!r}")


def write_images(images: np.ndarray, folder: Path, split: str) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        im, ext, kw = derive(img, split)
        im.save(folder / f"{i:05d}{ext}", **kw)
    return len(images)


def load_zoo_split(root, split: str) -> tuple[list[np.ndarray], list[str], list[str]]:
    """(images uint8 HxWx3, expected gallery labels, source model names) of one split of a built zoo.

    The expected label is ``model.json['label']``: the class itself for gallery models, the
    gallery class of the same architecture for ``unseen_seed`` (and for a ``validation`` model that is
    another seed of it), None (-> "unknown") for ``open_set`` and the other ``validation`` models.
    """
    root = Path(root)
    imgs, labels, sources = [], [], []
    for d in sorted(p for p in (root / split).iterdir() if p.is_dir()):
        meta = json.loads((d / "model.json").read_text())
        label = meta.get("label") or "unknown"
        for f in sorted(d.iterdir()):
            if f.suffix in (".png", ".jpg"):
                imgs.append(read_image(f))
                labels.append(label)
                sources.append(d.name)
    return imgs, labels, sources
