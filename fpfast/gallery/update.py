"""Updating a gallery on disk safely, and the rules of enrollment.

:func:`updating` holds the gallery's exclusive lock (:mod:`fpfast.io.lock`) from load to save, so
that two enrollments into one gallery run one after the other and neither loses the other's models;
nothing is written until the caller saves (the save swaps the new version in atomically), so a
failed enrollment leaves the gallery as it was - and a gallery that this call would have created is
not created at all.
"""
from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Iterator

from ..errors import UsageError
from ..io.lock import LOCK_NAME, exclusive, lock_path
from ..spec import FingerprintSpec, load_spec
from . import store
from .store import GalleryError

if TYPE_CHECKING:
    from .gallery import Gallery

MIN_IMAGES_PER_MODEL = 10  # below this, no image is held out: the model gets no open-set calibration


@contextlib.contextmanager
def updating(path: str, spec: FingerprintSpec | None = None, normalize: str = "standardize",
             index: str = "flat") -> Iterator["Gallery"]:
    """The gallery at ``path`` (loaded, ``spec`` checked when given; or a new empty one in memory),
    locked for the block. Save inside the block; an exception leaves the directory as it was."""
    from .gallery import Gallery
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise GalleryError(f"{path} exists and is not a directory")
    left = store.interrupted_save(path)
    if left:   # not a new gallery: its versions wait beside it
        raise GalleryError(left)
    made = not os.path.exists(path)
    try:
        with exclusive(lock_path(path), f"gallery {path}"):
            if os.path.exists(os.path.join(path, store.META)):
                yield Gallery.load(path, spec)
            elif not store.is_empty_dir(path):
                raise GalleryError(f"{path} exists, is not empty and holds no {store.META}: refusing to "
                                   "write there")
            else:
                yield Gallery.new(path, load_spec(spec), normalize=normalize, index=index)
    finally:
        if made and not os.path.exists(os.path.join(path, store.META)):
            _remove_lock_dir(path)


def _remove_lock_dir(path: str) -> None:
    """Remove a directory this process made for a gallery that was never saved (its lock only)."""
    with contextlib.suppress(OSError):
        if set(os.listdir(path)) <= {LOCK_NAME}:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(path, LOCK_NAME))
            os.rmdir(path)


def check_model_name(model) -> str:
    """A model name, or UsageError: a non-empty single-line name without path separators."""
    from .attribution import UNKNOWN
    if (not isinstance(model, str) or not model.strip() or model == UNKNOWN or model in (".", "..")
            or any(c in model for c in "/\\") or any(ord(c) < 32 for c in model)):
        raise UsageError(f"model name must be a non-empty single-line string other than {UNKNOWN!r}, "
                         f"'.', '..', without '/' or '\\\\', got {model!r}")
    return model


def enroll_warnings(model: str, readable: int, skipped: int) -> list[str]:
    """What a user should hear about one model's enrollment."""
    out = []
    if 0 < readable < MIN_IMAGES_PER_MODEL:
        out.append(f"warning: model {model!r} has {readable} readable image(s); with fewer than "
                   f"{MIN_IMAGES_PER_MODEL} none is held out, so it gets no open-set calibration of its own "
                   "(and a learned embedding attributes it poorly)")
    if skipped:
        out.append(f"model {model!r}: {skipped} image(s) skipped, already enrolled (same key)")
    return out
