"""FAISS indexes for the gallery, with a torch fallback for exact search.

Metric: squared L2 on the normalised vectors (see :mod:`fpfast.gallery.normalize`) for every
index type. Types and their parameters (stored in ``gallery.json``):

* ``flat``  exact (``IndexFlatL2``); no parameters. The default.
* ``ivf``   ``IndexIVFFlat``: ``nlist`` (default 1024, clamped to N // 39 so every list gets
            training points), ``nprobe`` (default 32). Trained on the vectors present at build.
* ``hnsw``  ``IndexHNSWFlat``: ``M`` (32), ``ef_construction`` (200), ``ef_search`` (128).

GPU: when faiss has GPUs, flat and IVF indexes are moved to GPU 0 for search (with
:mod:`fpfast.search`'s one resource per device); HNSW has no GPU version in faiss and stays on
the CPU. faiss is imported on first use, so the exact torch path (:func:`fpfast.search.knn`)
works where faiss is not installed.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..search import faiss_gpus as num_gpus
from ..search import index_to_gpu

INDEX_TYPES = ("flat", "ivf", "hnsw")
DEFAULT_PARAMS = {
    "flat": {},
    "ivf": {"nlist": 1024, "nprobe": 32},
    "hnsw": {"M": 32, "ef_construction": 200, "ef_search": 128},
}


def faiss_module():
    """The faiss module, or None when it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def require_faiss(why: str):
    faiss = faiss_module()
    if faiss is None:
        raise RuntimeError(f"faiss is not installed; it is needed to {why} "
                           "(exact 'flat' search works without it through torch)")
    return faiss


def resolve_params(kind: str, params: dict | None) -> dict:
    """Defaults completed with ``params``; unknown parameter names refused."""
    if kind not in INDEX_TYPES:
        raise ValueError(f"unknown index type {kind!r}; expected one of {INDEX_TYPES}")
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS[kind]))
    if unknown:
        raise ValueError(f"unknown parameters {unknown} for index {kind!r}; "
                         f"known: {sorted(DEFAULT_PARAMS[kind])}")
    out = {**DEFAULT_PARAMS[kind], **params}
    for name, v in out.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"index parameter {name} must be a positive integer, got {v!r}")
    return out


def build(kind: str, params: dict, x: np.ndarray):
    """A CPU faiss index of ``kind`` holding ``x`` [N, d] float32 (ids 0..N-1)."""
    faiss = require_faiss(f"build an {kind!r} index")
    d = x.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatL2(d)
    elif kind == "ivf":
        nlist = max(1, min(params["nlist"], x.shape[0] // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist, faiss.METRIC_L2)
        index.cp.seed = 1234
        if x.shape[0] == 0:
            raise ConfigError("an 'ivf' index needs vectors to train on; enroll models first")
        index.train(x)
        index.nprobe = min(params["nprobe"], nlist)
    else:
        index = faiss.IndexHNSWFlat(d, params["M"], faiss.METRIC_L2)
        index.hnsw.efConstruction = params["ef_construction"]
        index.hnsw.efSearch = params["ef_search"]
    if x.shape[0]:
        index.add(x)
    return index


def kind_of(index) -> str:
    """Which of INDEX_TYPES a CPU index read back from disk is (or its class name)."""
    faiss = require_faiss("read an index")
    for kind, cls in (("flat", faiss.IndexFlatL2), ("ivf", faiss.IndexIVFFlat),
                      ("hnsw", faiss.IndexHNSWFlat)):
        if isinstance(index, cls):
            return kind
    return type(index).__name__


def apply_search_params(index, kind: str, params: dict) -> None:
    if kind == "ivf":
        index.nprobe = min(params["nprobe"], index.nlist)
    elif kind == "hnsw":
        index.hnsw.efSearch = params["ef_search"]


def to_gpu(index, kind: str):
    """The index moved to GPU 0 when faiss has one and the type has a GPU version; else as is."""
    if kind == "hnsw" or num_gpus() == 0:
        return index
    return index_to_gpu(index, 0)


def to_cpu(index):
    faiss = faiss_module()
    if faiss is not None and hasattr(faiss, "index_gpu_to_cpu") and num_gpus() > 0:
        try:
            return faiss.index_gpu_to_cpu(index)
        except Exception:  # already a CPU index
            return index
    return index


def write(index, path: str) -> None:
    require_faiss("write an index").write_index(to_cpu(index), path)


def read(path: str):
    return require_faiss("read the index file").read_index(path)
