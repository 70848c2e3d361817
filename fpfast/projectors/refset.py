"""A manifold reference set on disk: real images at one working size and their FAISS indexes.

Layout of the directory (no pickle anywhere)::

    manifest.json         format, size, count, identity hashes, one entry per index
    images.npy            uint8 [N, S, S, 3]: the reference images, exactly (RGB subtraction is exact)
    keys.json             the source name of every image, in order
    <space>.<mode>.faiss  faiss.write_index files

Index storage (the reference set may be far larger than memory in float32):
``rgb`` exact uses ``IndexScalarQuantizer(QT_8bit_direct)``: the 0..255 pixel values stored as
one byte each, lossless, a quarter of float32, and faster to scan than IndexFlatL2 here;
``freq``/``embed`` exact use ``QT_fp16`` (half of float32; distances are then re-ranked exactly).
``ivfpq`` (``IVF{nlist},PQ{m}x{nbits}``, a few dozen bytes an image) and ``hnsw``
(``IndexHNSWSQ``, 8-bit direct for rgb / fp16 otherwise) are the approximate modes. Every mode
re-ranks its candidates by exact float64 distances recomputed from ``images.npy``.
"""
from __future__ import annotations

import glob
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..hashing import sha256_file
from .identity import array_sha256, combine, module_sha256
from .loading import ProjectorError
from .spaces import SPACES, space_vectors

FORMAT = "fpfast-manifold"
FORMAT_VERSION = 1
MODES = ("exact", "ivfpq", "hnsw")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ProjectorError("the manifold projector's indexes need faiss (pip install faiss-cpu); "
                             "exact search also runs without it (engine='torch')") from None
    return faiss


# ---------------------------------------------------------------------------- reading images
def _expand(sources: Iterable[str]) -> list[Path]:
    out: list[Path] = []
    for s in sources:
        s = os.fspath(s)
        if s.startswith("@"):
            out += _expand([ln.strip() for ln in Path(s[1:]).read_text().splitlines() if ln.strip()])
        elif os.path.isdir(s):
            out += sorted(p for p in Path(s).rglob("*") if p.suffix.lower() in IMAGE_EXTS)
        elif any(c in s for c in "*?["):
            out += [Path(p) for p in sorted(glob.glob(s, recursive=True))]
        elif os.path.isfile(s):
            out.append(Path(s))
        else:
            raise ProjectorError(f"reference source {s!r} is not a file, a directory, a glob or an @list")
    return out


def read_images(sources: Iterable[str], size: int, geometry: str = "crop",
                quiet: bool = True) -> tuple[np.ndarray, list[str], list[str]]:
    """(uint8 [N,S,S,3], keys, skipped messages) from image files, folders, globs or @lists.

    Decoded as the stream decodes queries (:func:`fpfast.io.decode.decode_image`: EXIF rotation,
    CMYK, 16-bit, decompression bombs) and brought to S x S by :func:`fpfast.prepare.apply_geometry`
    (centre crop, or antialiased resize), so a reference image and the same image as a query match.
    """
    from ..io.decode import DecodeError, decode_image
    from ..prepare import apply_geometry, to_float
    from ..spec import FingerprintSpec

    if geometry not in ("crop", "resize"):
        raise ProjectorError(f"geometry must be crop or resize, got {geometry!r}")
    from ..progress import Progress
    spec = FingerprintSpec(size=size, geometry=geometry, min_size=size)
    imgs, keys, skipped = [], [], []
    paths = _expand(sources)
    with Progress("reference images", len(paths), quiet=quiet) as bar:
        for p in paths:
            bar.update(1)
            try:
                a, _ = decode_image(p.read_bytes(), spec)
            except (OSError, DecodeError) as e:  # one broken file must not stop the build
                skipped.append(f"{p}: {e}")
                continue
            x = apply_geometry(torch.from_numpy(np.require(a, requirements="W")).permute(2, 0, 1)[None], spec)
            if x.dtype != torch.uint8:
                x = (to_float(x) * 255.0).round().clamp(0, 255).to(torch.uint8)
            imgs.append(np.ascontiguousarray(x[0].permute(1, 2, 0).numpy()))
            keys.append(str(p))
    if not imgs:
        first = f" ({len(skipped)} skipped, first: {skipped[0]})" if skipped else ""
        raise ProjectorError(f"no usable reference image of at least {size}x{size} in the sources{first}; "
                             f"give larger images or a smaller working size (`fpfast manifold build --size`)")
    return np.stack(imgs), keys, skipped


def as_uint8_nhwc(a: Any, size: int) -> np.ndarray:
    """An array/tensor of reference images (uint8 [N,S,S,3] or [N,3,S,S]) as uint8 NHWC."""
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if a.dtype != np.uint8:
        raise ProjectorError(f"reference images must be uint8 (so the RGB subtraction is exact), got {a.dtype}")
    if a.ndim != 4 or 3 not in (a.shape[1], a.shape[3]):
        raise ProjectorError(f"reference images must be [N,S,S,3] or [N,3,S,S], got {a.shape}")
    if a.shape[3] != 3:
        a = a.transpose(0, 2, 3, 1)
    if a.shape[1:3] != (size, size):
        raise ProjectorError(f"reference images are {a.shape[2]}x{a.shape[1]}, the working size is {size}x{size}")
    return np.ascontiguousarray(a)


def images_to_float(a: np.ndarray, device: "torch.device | str" = "cpu", dtype=torch.float32) -> torch.Tensor:
    """uint8 NHWC -> float [N,3,S,S] in [0,1] (uint8 / 255, as fpfast.prepare does)."""
    a = a if isinstance(a, np.ndarray) and a.flags.writeable else np.array(a)  # mmap slices are read-only
    t = torch.from_numpy(np.ascontiguousarray(a)).to(device).permute(0, 3, 1, 2)
    return t.to(dtype) / 255.0


# ---------------------------------------------------------------------------- indexes
def make_index(d: int, n: int, space: str, mode: str, storage: str = "auto", nlist: int | None = None,
               pq_m: int | None = None, hnsw_m: int = 32):
    """(untrained faiss index, description dict)."""
    faiss = _faiss()
    if mode == "exact":
        if storage == "auto":
            storage = "uint8" if space == "rgb" else "fp16"
        if storage == "float32":
            return faiss.IndexFlatL2(d), {"storage": "float32", "factory": "Flat"}
        if storage == "uint8":
            if space != "rgb":
                raise ProjectorError("uint8 storage is lossless only for the rgb space")
            return (faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit_direct, faiss.METRIC_L2),
                    {"storage": "uint8", "factory": "SQ8_direct"})
        if storage == "fp16":
            return (faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2),
                    {"storage": "fp16", "factory": "SQfp16"})
        raise ProjectorError(f"storage must be auto, uint8, fp16 or float32, got {storage!r}")
    if mode == "ivfpq":
        nlist = nlist or max(1, min(4096, int(4 * math.sqrt(n)), n // 39))
        m = pq_m or next(c for c in (64, 48, 32, 24, 16, 12, 8, 6, 4, 3, 2, 1) if d % c == 0)
        nbits = max(1, min(8, int(math.log2(max(2, n // 39)))))
        factory = f"IVF{nlist},PQ{m}x{nbits}"
        return faiss.index_factory(d, factory, faiss.METRIC_L2), {"storage": f"pq{m}x{nbits}", "factory": factory}
    if mode == "hnsw":
        qt = faiss.ScalarQuantizer.QT_8bit_direct if space == "rgb" else faiss.ScalarQuantizer.QT_fp16
        name = "SQ8_direct" if space == "rgb" else "SQfp16"
        return faiss.IndexHNSWSQ(d, qt, hnsw_m), {"storage": name, "factory": f"HNSW{hnsw_m},{name}"}
    raise ProjectorError(f"mode must be one of {MODES}, got {mode!r}")


def _vectors_in_chunks(images: np.ndarray, space: str, encoder, chunk: int = 256):
    for i in range(0, len(images), chunk):
        x = images_to_float(images[i:i + chunk])
        yield space_vectors(x, space, encoder).float().numpy()


# ---------------------------------------------------------------------------- the set
class ReferenceSet:
    """A loaded reference-set directory: images (memory-mapped), manifest and faiss indexes."""

    def __init__(self, directory: "str | os.PathLike"):
        self.dir = Path(directory)
        mpath = self.dir / "manifest.json"
        if not mpath.is_file():
            raise ProjectorError(f"{self.dir} is not a manifold reference set (no manifest.json); "
                                 f"build one with `fpfast manifold build`")
        m = json.loads(mpath.read_text())
        if m.get("format") != FORMAT:
            raise ProjectorError(f"{mpath} is not a {FORMAT} manifest")
        if m.get("format_version") != FORMAT_VERSION:
            raise ProjectorError(f"reference set format version {m.get('format_version')} is not supported "
                                 f"(this fpfast reads {FORMAT_VERSION})")
        self.manifest = m
        self.size = int(m["size"])
        self.images = np.load(self.dir / m["images"], mmap_mode="r", allow_pickle=False)
        if self.images.shape != (m["count"], self.size, self.size, 3) or self.images.dtype != np.uint8:
            raise ProjectorError(f"{self.dir / m['images']} is {self.images.dtype}{self.images.shape}, the "
                                 f"manifest says uint8[{m['count']},{self.size},{self.size},3]")
        self._indexes: dict[str, Any] = {}

    def __len__(self) -> int:
        return int(self.manifest["count"])

    @property
    def images_sha256(self) -> str:
        return self.manifest["images_sha256"]

    def entry(self, space: str, mode: str) -> dict:
        name = f"{space}.{mode}"
        e = self.manifest["indexes"].get(name)
        if e is None:
            raise ProjectorError(f"reference set {self.dir} has no {mode} index for the {space} space (it has "
                                 f"{sorted(self.manifest['indexes'])}); rebuild with --space {space} --mode {mode}")
        return e

    def index(self, space: str, mode: str):
        key = f"{space}.{mode}"
        if key not in self._indexes:
            self._indexes[key] = _faiss().read_index(str(self.dir / self.entry(space, mode)["file"]))
        return self._indexes[key]

    def identity(self, space: str, mode: str) -> str:
        """sha256 of what the search in (space, mode) depends on: images, size, and for the
        approximate modes the trained index file; for embed also the encoder."""
        e = self.entry(space, mode)
        parts = [FORMAT, self.size, self.images_sha256, space, mode]
        if mode != "exact":
            parts.append(e["sha256"])
        if space == "embed":
            parts.append(self.manifest.get("encoder_sha256"))
        return combine(parts)


def build_manifold(sources_or_array: Any, out_dir: "str | os.PathLike", size: int,
                   spaces: Iterable[str] = ("rgb",), modes: Iterable[str] = ("exact",), storage: str = "auto",
                   geometry: str = "crop", encoder: torch.nn.Module | None = None, nlist: int | None = None,
                   pq_m: int | None = None, hnsw_m: int = 32, seed: int = 0, overwrite: bool = False,
                   quiet: bool = True, stages=None) -> ReferenceSet:
    """Build a reference-set directory from an array (uint8 [N,S,S,3] / [N,3,S,S]) or image sources.
    ``quiet=False``: a progress bar over the images read; ``stages`` (a
    :class:`fpfast.progress.Stages`) gets the read time and each index's build time."""
    from ..progress import Stages
    stages = stages if stages is not None else Stages()
    out = Path(out_dir)
    if (out / "manifest.json").exists() and not overwrite:
        raise ProjectorError(f"{out} already holds a reference set; pass overwrite=True (--overwrite)")
    spaces, modes = tuple(spaces), tuple(modes)
    for s in spaces:
        if s not in SPACES:
            raise ProjectorError(f"unknown space {s!r}; expected one of {SPACES}")
    if "embed" in spaces and encoder is None:
        raise ProjectorError("the embed space needs an encoder module")
    if isinstance(sources_or_array, (np.ndarray, torch.Tensor)):
        images = as_uint8_nhwc(sources_or_array, size)
        keys, skipped = [f"#{i}" for i in range(len(images))], []
    else:
        srcs = [sources_or_array] if isinstance(sources_or_array, (str, os.PathLike)) else list(sources_or_array)
        with stages("read"):
            images, keys, skipped = read_images(srcs, size, geometry, quiet)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "images.npy", images, allow_pickle=False)
    (out / "keys.json").write_text(json.dumps(keys))
    manifest: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "size": int(size), "count": int(len(images)),
        "images": "images.npy", "layout": "uint8 [N,S,S,3]", "keys": "keys.json", "geometry": geometry,
        "images_sha256": array_sha256(images), "skipped": skipped[:1000], "n_skipped": len(skipped),
        "indexes": {},
    }
    if encoder is not None:
        manifest["encoder_sha256"] = module_sha256(encoder)
    faiss = _faiss()
    for space in spaces:
        d = None
        for mode in modes:
            with stages(f"index {space}.{mode}"):
                vec_iter = _vectors_in_chunks(images, space, encoder)
                first = next(vec_iter)
                d = first.shape[1]
                index, desc = make_index(d, len(images), space, mode, storage, nlist, pq_m, hnsw_m)
                if not index.is_trained:
                    train = np.concatenate([first] + list(_vectors_in_chunks(images[len(first):], space, encoder)))
                    _train_seeded(index, train, seed)
                    index.add(train)
                    del train
                else:
                    index.add(first)
                    for v in vec_iter:
                        index.add(v)
                fname = f"{space}.{mode}.faiss"
                faiss.write_index(index, str(out / fname))
                manifest["indexes"][f"{space}.{mode}"] = {
                    "space": space, "mode": mode, "file": fname, "dim": int(d), **desc,
                    "sha256": sha256_file(out / fname)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return ReferenceSet(out)


def _train_seeded(index, train: np.ndarray, seed: int) -> None:
    """Train with fixed k-means seeds so a rebuild gives the same index."""
    faiss = _faiss()
    ivf = faiss.try_extract_index_ivf(index) if hasattr(faiss, "try_extract_index_ivf") else None
    if ivf is not None:
        ivf.cp.seed = seed
        ivf.cp.min_points_per_centroid = 1  # small sets: train anyway, without a warning per sub-space
        pq = getattr(faiss.downcast_index(ivf), "pq", None)
        if pq is not None:
            pq.cp.seed = seed
            pq.cp.min_points_per_centroid = 1
    index.train(train)
