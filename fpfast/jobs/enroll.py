"""Enroll models into a gallery: folders, hold-out split, add, and finish (refit, recalibrate, save)."""
from __future__ import annotations

import os

import numpy as np

from ..errors import UsageError
from ..gallery import Gallery, GalleryError, openspace
from ..spec import FingerprintSpec, load_spec
from .collect import Fingerprints


def model_folders(root: str) -> dict[str, str]:
    """{model name: folder} for every sub-folder of ``root`` (sorted)."""
    if not os.path.isdir(root):
        raise UsageError(f"--from-folders {root}: not a directory")
    subs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not subs:
        raise UsageError(f"--from-folders {root}: no sub-folders (one per model expected)")
    return {d: os.path.join(root, d) for d in subs}


def open_or_create(path: str, spec: FingerprintSpec | None, normalize: str, index: str) -> Gallery:
    """Load the gallery at ``path`` (checking ``spec`` if one was asked for) or create it."""
    if os.path.exists(os.path.join(path, "gallery.json")):
        return Gallery.load(path, spec)
    if os.path.exists(path) and os.listdir(path):
        raise GalleryError(f"{path} exists, is not empty and holds no gallery.json: refusing to write there")
    return Gallery.create(path, load_spec(spec), normalize=normalize, index=index)


def split_holdout(n: int, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(enroll ids, held-out ids): ``frac`` of n held out for calibration, none when n < 10."""
    idx = np.random.default_rng(seed).permutation(n)
    k = int(round(n * frac)) if n >= 10 else 0
    return np.sort(idx[k:]), np.sort(idx[:k])


def enroll(gallery: Gallery, model: str, fp: Fingerprints, holdout: float = 0.2, seed: int = 0) -> dict:
    """Add a model's fingerprints; ``holdout`` of them are kept apart for open-set calibration.
    Returns counts, ``keys`` (those of the samples enrolled now) and ``held_keys`` (held out now)."""
    if len(fp.keys) == 0:
        first = f" (first: {fp.errors[0]['path']}: {fp.errors[0]['error']})" if fp.errors else ""
        raise UsageError(f"model {model!r}: none of its {len(fp.errors)} input(s) could be read{first}; "
                         f"fix or remove them, or leave the model out")
    keep, hold = split_holdout(len(fp.keys), holdout, seed)
    gallery.note_sides(fp.sides)
    added = gallery.add(model, fp.vectors[keep], [fp.keys[i] for i in keep], skip_known=True)
    new_keys = gallery.keys[-added:] if added else []
    held = gallery.add_holdout(model, fp.vectors[hold], [fp.keys[i] for i in hold], skip_known=True,
                               condition=None if fp.condition is None else fp.condition[hold]) \
        if len(hold) and model in gallery.models() else 0
    return {"model": model, "enrolled": added, "held_out": held, "errors": len(fp.errors),
            "skipped": len(fp.keys) - added - held, "keys": new_keys,
            "held_keys": gallery.hold_keys[-held:] if held else []}


def use_discriminant_openset(gallery: Gallery) -> bool:
    """For a new LDA-normalised gallery: read `unknown` also from each model's own Gaussian in its
    first discriminant axes (:func:`.openspace.discriminant_blocks`, joined to the searched space's
    tests). Returns whether it was set (not for other normalisations: their axes discriminate nothing)."""
    if gallery.normalize != "lda":
        return False
    gallery.openset_blocks, gallery.openset_space = openspace.discriminant_blocks(gallery.spec.dim), "normalized"
    return True


def finish_enrollment(gallery: Gallery, normalize: str | None, frr: float) -> dict:
    """Refit the normaliser on everything enrolled, recalibrate on every held-out sample, save."""
    gallery.fit(normalize)
    cal = gallery.recalibrate(frr)
    gallery.save()
    return cal
