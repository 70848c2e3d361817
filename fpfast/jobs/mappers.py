"""The pipeline mappers: ``mapper(images, keys) -> {column: values}`` (see :mod:`fpfast.pipeline`).

Vectors stay where the batch is: a CUDA batch is fingerprinted, embedded and searched on its GPU,
and only the writer stage copies the columns to the host, once per batch.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..gallery.jpeg_grid import refine_flags
from ..gallery.views import jpeg_file
from ..pipeline import Mapper
from ..spec import FingerprintSpec, load_spec
from .options import StreamOptions, check_backend, check_decode
from .schema import attribution_columns


def _on(batch: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """The batch on ``dev``: a CPU batch goes to a GPU from pinned memory; one already there stays."""
    if batch.device.type == "cpu" and dev.type != "cpu":
        return batch.pin_memory().to(dev, non_blocking=True)
    return batch.to(dev)


def fingerprint_mapper(spec: FingerprintSpec | str | None = None, backend: str = "auto",
                       column: str = "vector", device: str = "cpu") -> Mapper:
    """A mapper computing :func:`fpfast.ops.features.fingerprint_features` per batch (or the spec's
    heavy projector's fingerprint): ``{column: float32 tensor [B, D] on device}``."""
    from ..ops.features import fingerprint_features
    spec = load_spec(spec)
    dev = torch.device(device)
    projector = None
    if spec.projector is not None:  # a heavy projector (manifold / autoencoder / diffusion): load it once
        from ..projectors import fingerprint_with_projector, load_projector
        projector = load_projector(spec.projector, device=dev)

    def mapper(batch: torch.Tensor, keys: list) -> dict:
        batch = _on(batch, dev)
        with torch.inference_mode():
            if projector is not None:
                v = fingerprint_with_projector(batch, spec, backend=backend, projector=projector, layout="hwc")
            else:
                v = fingerprint_features(batch, spec, backend=backend, layout="hwc")
        return {column: v}

    return mapper


def embedding_mapper(embedder, backend: str = "auto", column: str = "vector", device: str = "cpu",
                     precision: str = "auto", compile: bool = False, spec: FingerprintSpec | None = None) -> Mapper:
    """A mapper computing a learned embedding per batch: ``{column: float32 tensor [B, D] on device}``;
    with a multi-crop ``spec``, the mean of each image's crops' embeddings (unit-normalised)."""
    from ..embed.model import resolve_precision
    dev = torch.device(device)
    resolve_precision(precision, dev)  # a bad choice fails before the stream starts

    def mapper(batch: torch.Tensor, keys: list) -> dict:
        return {column: embed_images(embedder, _on(batch, dev), spec, device=dev, backend=backend,
                                     precision=precision, compile=compile)}
    return mapper


def embed_images(embedder, batch: torch.Tensor, spec: FingerprintSpec | None = None, **kw) -> torch.Tensor:
    """``embedder``'s vectors of images [B, H, W, 3] under ``spec``'s geometry (a no-op on the
    pipeline's decoded batches, which are in it already; in-memory images of any size get it
    here): a multi-crop spec's crops are cut, embedded and aggregated
    (:func:`fpfast.prepare.aggregate_crops`). ``spec=None``: the images as given."""
    if spec is None:
        return embedder.embed_tensor(batch, layout="hwc", **kw)
    from ..prepare import aggregate_crops, apply_geometry, as_chw
    tiles = apply_geometry(as_chw(batch, "hwc"), spec)
    return aggregate_crops(embedder.embed_tensor(tiles, layout="chw", **kw), spec)


def vector_mapper(spec: FingerprintSpec, opts: StreamOptions, embedder=None, column: str = "vector") -> Mapper:
    """The mapper producing ``spec``'s vectors: handcrafted, or ``embedder``'s when the spec names
    a learned embedding (whose identity must then be ``embedder``'s)."""
    device = check_backend(opts)
    if spec.embedding is None:
        if embedder is not None:
            raise ConfigError("an embedder was given for a handcrafted spec")
        return fingerprint_mapper(spec, opts.backend, column=column, device=device)
    if embedder is None:
        raise ConfigError("this spec's vectors are a learned embedding: pass the gallery's embedder "
                          "(Gallery.embedder())")
    if embedder.identity != spec.embedding["identity"]:
        raise ConfigError(f"embedder {embedder.identity[:16]}... is not the spec's embedding "
                          f"{spec.embedding['identity'][:16]}...")
    return embedding_mapper(embedder, opts.backend, column=column, device=device, precision=opts.precision,
                            compile=opts.compile, spec=spec)


def condition_mapper(spec: FingerprintSpec, opts: StreamOptions) -> Mapper | None:
    """The mapper of the vectors a gallery of ``spec`` detects query conditions on, when they are
    not its own (a plain learned embedding: :func:`fpfast.gallery.conditions.detector_spec`), else None."""
    from ..gallery.conditions import detector_spec
    cspec = detector_spec(spec)
    return None if cspec is None else fingerprint_mapper(cspec, opts.backend, device=check_backend(opts))


def host_vectors(mapper: Mapper):
    """``mapper`` as a function of a uint8 batch alone, giving its ``vector`` column on the host."""
    def vectorize(batch):
        return mapper(batch, [None] * len(batch))["vector"].detach().cpu().numpy()
    return vectorize


def with_query_columns(spec: FingerprintSpec, opts: StreamOptions, embedder=None, gallery=None) -> Mapper:
    """:func:`vector_mapper` plus what ``Gallery.attribute`` reads beside the vectors: ``side``
    (each image's shorter side before the crop, as the decoder gives it in ``sides``; where it
    does not, as fingerprinted: a batch holds images of one shape), ``jpeg``
    (whether its file is a JPEG, by its key: :func:`fpfast.gallery.views.jpeg_file`) and, for a
    plain learned embedding, ``condition`` (:func:`condition_mapper`'s vectors). The batch goes
    to the device once for both. With ``gallery``, a lossless-named file's pixels are read for a
    JPEG grid where the gallery says its flag matters
    (:meth:`~fpfast.gallery.Gallery.file_type_matters`); without, ``jpeg`` is by name alone."""
    fp, cm = vector_mapper(spec, opts, embedder), condition_mapper(spec, opts)
    dev = torch.device(check_backend(opts))

    def mapper(batch: torch.Tensor, keys: list, sides: list | None = None) -> dict:
        batch = _on(batch, dev)
        out = {**fp(batch, keys), "side": image_sides(batch, sides), "jpeg": [jpeg_file(k) for k in keys]}
        if cm is not None:
            out["condition"] = cm(batch, keys)["vector"]
        if gallery is not None:
            out["jpeg"] = jpeg_flags(gallery, out["jpeg"], batch, out["vector"], out["side"], out.get("condition"))
        return out
    mapper.reads_sides = True
    return mapper


def image_sides(batch: torch.Tensor, sides: list | None) -> list[int]:
    """Each image's shorter side before the crop, as the decoder gave it in ``sides`` (the
    pipeline's :class:`~fpfast.pipeline.Batch`), or as the batch shows it where it did not."""
    shown = int(min(batch.shape[1:3]))
    return [int(s) or shown for s in sides] if sides else [shown] * len(batch)


def jpeg_flags(gallery, flags, images: torch.Tensor, vectors, sides, condition=None) -> list[float]:
    """Per query, its JPEG flag (``flags``: by file name, :func:`fpfast.gallery.views.jpeg_file`)
    with a lossless-named file's pixels (``images``) read for a JPEG grid where ``gallery``'s
    answer depends on it (:meth:`~fpfast.gallery.Gallery.file_type_matters`,
    :func:`fpfast.gallery.jpeg_grid.refine_flags`); ``vectors``, ``sides``, ``condition``: the
    queries' as :meth:`~fpfast.gallery.Gallery.attribute` takes them."""
    def matters(idx):
        t = torch.as_tensor(idx, device=vectors.device) if torch.is_tensor(vectors) else idx
        return gallery.file_type_matters(vectors[t], np.asarray(sides)[idx],
                                         None if condition is None else condition[t])
    return refine_flags(flags, images, matters)


def attribute_mapper(gallery, opts: StreamOptions, method: str = "knn", k: int | None = None, top: int = 3) -> Mapper:
    """A mapper: fingerprint a batch and attribute the vectors (a tensor, searched on its device)
    with ``gallery``; the columns of :func:`fpfast.jobs.schema.attribute_schema`."""
    check_decode(gallery, opts)
    fp = with_query_columns(gallery.spec, opts, gallery.embedder(), gallery)

    def mapper(batch: torch.Tensor, keys: list, sides: list | None = None) -> dict:
        c = fp(batch, keys, sides)
        return attribution_columns(gallery.attribute(c["vector"], method=method, k=k, top=top, sides=c["side"],
                                                     condition=c.get("condition"), jpeg=c["jpeg"]), top)
    mapper.reads_sides = True
    return mapper
