"""Mapper recipes: a job's mapper as a picklable call that builds it in another process (a Ray
actor, :mod:`fpfast.engines.ray_engine`), loading its gallery, spec and embedding there, once.

``recipe()`` returns the same mapper the local engine builds in the CLI's process.
"""
from __future__ import annotations

import functools
from typing import Callable

from ..pipeline import Mapper
from ..spec import FingerprintSpec
from .mappers import attribute_mapper, vector_mapper
from .options import StreamOptions


def attribute_recipe(gallery: str, opts: StreamOptions, method: str = "knn", k: int | None = None, top: int = 3,
                     expect_digest: str | None = None) -> Callable[[], Mapper]:
    """Builds :func:`fpfast.jobs.mappers.attribute_mapper` with the gallery at ``gallery``."""
    return functools.partial(_attribute, gallery, opts, method, k, top, expect_digest)


def vector_recipe(spec: FingerprintSpec, opts: StreamOptions, gallery: str | None = None,
                  expect_digest: str | None = None) -> Callable[[], Mapper]:
    """Builds :func:`fpfast.jobs.mappers.vector_mapper` for ``spec`` (with ``gallery``'s learned
    embedding when a gallery is given)."""
    return functools.partial(_vector, spec, opts, gallery, expect_digest)


def _attribute(gallery, opts, method, k, top, expect_digest) -> Mapper:
    from ..gallery import Gallery
    return attribute_mapper(Gallery.load(gallery, expect_digest=expect_digest), opts, method=method, k=k, top=top)


def _vector(spec, opts, gallery, expect_digest) -> Mapper:
    embedder = None
    if gallery is not None:
        from ..gallery import Gallery
        embedder = Gallery.load(gallery, expect_digest=expect_digest).embedder()
    return vector_mapper(spec, opts, embedder)
