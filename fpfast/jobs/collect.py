"""Fingerprint (or just decode) sources into memory: what enroll, eval and train read."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..pipeline import RunSummary, run
from ..spec import FingerprintSpec, load_spec
from .mappers import image_sides, with_query_columns
from .options import StreamOptions, check_decode


class CollectWriter:
    """An in-memory writer for the pipeline: keeps every row, in input order."""

    shard_size = 1 << 62

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def is_done(self, shard: int) -> bool:
        return False

    def write_shard(self, shard: int, rows: list[dict], inputs: int | None = None) -> None:
        self.rows.extend(rows)

    def close(self) -> None:
        pass

    def split(self, column: str) -> tuple[list, list[str], list[dict]]:
        """(``column`` of the rows without error, their keys, the rows with an error)."""
        ok = [r for r in self.rows if not r.get("error")]
        return [r[column] for r in ok], [r["path"] for r in ok], [r for r in self.rows if r.get("error")]


@dataclass
class Fingerprints:
    vectors: np.ndarray          # [N, D] float32, rows that decoded
    keys: list[str]              # their input keys
    errors: list[dict]           # rows that failed: {"path", "error", ...}
    summary: RunSummary
    ok_in_order: list[bool] = field(default_factory=list)  # per input, in input order: a vector (True) or an error row
    sides: list[int] | None = None  # per vector, the image's shorter side before the crop (Gallery.attribute's sides)
    condition: np.ndarray | None = None  # a plain embedding's handcrafted vectors (Gallery.attribute's condition)
    jpeg: list[float] | None = None  # per vector, its JPEG flag (Gallery.attribute's jpeg)


def fingerprint_sources(sources, spec: FingerprintSpec | str | None, opts: StreamOptions,
                        embedder=None, gallery=None, **source_kw) -> Fingerprints:
    """Fingerprint every image of ``sources`` into memory (enrollment, eval): the spec's
    handcrafted vector, or ``embedder``'s embedding for a spec that names one; with ``gallery``,
    the JPEG flags read the pixels where the gallery needs them (:func:`.mappers.with_query_columns`)."""
    spec = load_spec(spec)
    w = CollectWriter()
    summary = run(sources, with_query_columns(spec, opts, embedder, gallery), writer=w, spec=spec, **source_kw,
                  **opts.stream_kw())
    vecs, keys, errors = w.split("vector")
    ok = [r for r in w.rows if not r.get("error")]
    cond = None
    if ok and "condition" in ok[0]:
        cond = np.stack([np.asarray(r["condition"], np.float32) for r in ok])
    vecs = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, spec.dim), np.float32)
    return Fingerprints(vecs, keys, errors, summary, [not r.get("error") for r in w.rows],
                        [int(r["side"]) for r in ok], cond, [float(r["jpeg"]) for r in ok])


def gallery_fingerprints(gallery, sources, opts: StreamOptions, file_types: bool = False,
                         **source_kw) -> Fingerprints:
    """:func:`fingerprint_sources` in the gallery's vector space (its embedding when it has one),
    decoded as its images were (:func:`fpfast.jobs.options.check_decode`); ``file_types``: the
    JPEG flags as the gallery's answers need them (queries to attribute), else by name alone."""
    check_decode(gallery, opts)
    return fingerprint_sources(sources, gallery.spec, opts, embedder=gallery.embedder(),
                               gallery=gallery if file_types else None, **source_kw)


def image_sources(sources, spec: FingerprintSpec, opts: StreamOptions, **source_kw):
    """(uint8 HxWx3 images as the pipeline hands them over (decoded, in the spec's geometry),
    keys, error rows) of ``sources``, in input order: what training reads."""
    return sized_image_sources(sources, spec, opts, **source_kw)[:3]


def sized_image_sources(sources, spec: FingerprintSpec, opts: StreamOptions, **source_kw):
    """:func:`image_sources` and, per image, its shorter side before the crop."""
    w = CollectWriter()

    def mapper(batch, keys, sides=None):
        return {"image": batch, "side": image_sides(batch, sides)}
    mapper.reads_sides = True
    run(sources, mapper, writer=w, spec=spec, **source_kw, **opts.stream_kw())
    return (*w.split("image"), [int(r["side"]) for r in w.rows if not r.get("error")])
