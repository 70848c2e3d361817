"""Search, written once for the gallery and the ManiFPT reference set.

* :func:`knn` - exact k-nearest-neighbour search in torch, matrix product + top-k, chunked, on
  the queries' device. Used when the queries live on a GPU and the installed faiss has no GPU
  (the lent GPU machines have no faiss at all), where faiss is missing, and as an oracle in tests.
* :func:`gpu_resources` / :func:`faiss_search` - faiss GPU resources, one per device, used on
  torch's current CUDA stream (faiss.contrib.torch_utils' pattern), so that a CUDA query tensor
  is searched by a faiss GPU index without leaving the device.

:func:`knn`'s answers match faiss ``IndexFlatL2`` / ``IndexFlatIP``: squared L2 distances (or inner products), nearest first; indices may differ
only where distances are equal (ties) or equal to float32 rounding.

Distances are computed as ``|q|^2 - 2 q.x + |x|^2`` (clamped at 0), as faiss does for batched
queries. Memory is bounded by chunking over queries and over the base: one chunk holds
``query_chunk x base_chunk`` floats plus the running top-k. Float32 matmul must run in full
precision: under TF32 (``torch.backends.cuda.matmul.allow_tf32`` or
``torch.set_float32_matmul_precision('high')``) distances lose ~3 decimal digits, so
:func:`knn` switches TF32 off for the duration of the call.

This module imports faiss only on first use of the faiss helpers, so :func:`knn` runs and is
benchmarked where faiss is not installed.
"""
from __future__ import annotations

import contextlib

import torch

METRICS = ("l2", "ip")


@contextlib.contextmanager
def full_fp32():
    """Full-precision float32 matmul and cuDNN convolutions for the duration (TF32, cuDNN's default
    for convolutions on recent GPUs, would change the answers)."""
    old, old_conv = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)
        torch.backends.cudnn.allow_tf32 = old_conv


def _check(queries: torch.Tensor, base: torch.Tensor, k: int, metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if queries.ndim != 2 or base.ndim != 2:
        raise ValueError(f"expected 2-D queries and base, got shapes {tuple(queries.shape)} "
                         f"and {tuple(base.shape)}")
    if queries.shape[1] != base.shape[1]:
        raise ValueError(f"queries have dimension {queries.shape[1]}, base has {base.shape[1]}")
    if queries.device != base.device:
        raise ValueError(f"queries on {queries.device}, base on {base.device}: put both on one device")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def knn(queries: torch.Tensor, base: torch.Tensor, k: int, metric: str = "l2", *,
        base_sq_norms: torch.Tensor | None = None, query_chunk: int = 4096,
        base_chunk: int = 262144) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest rows of ``base`` [N, D] for each row of ``queries`` [Q, D].

    Returns ``(distances [Q, k] float32, indices [Q, k] int64)`` on the queries' device, nearest
    first (smallest squared L2, or largest inner product for ``metric='ip'``). ``k`` larger than N
    is clamped to N. ``base_sq_norms`` [N] may be passed to avoid recomputing |x|^2 per call.
    """
    _check(queries, base, k, metric)
    queries = queries.float()
    base = base.float()
    n, q = base.shape[0], queries.shape[0]
    k = min(k, n)
    dev = queries.device
    if q == 0 or n == 0:
        return (torch.empty(q, k, dtype=torch.float32, device=dev),
                torch.empty(q, k, dtype=torch.int64, device=dev))
    largest = metric == "ip"
    if metric == "l2" and base_sq_norms is None:
        base_sq_norms = torch.cat([c.float().pow(2).sum(1) for c in base.split(base_chunk)])
    out_d = torch.empty(q, k, dtype=torch.float32, device=dev)
    out_i = torch.empty(q, k, dtype=torch.int64, device=dev)
    with full_fp32():
        for qs in range(0, q, query_chunk):
            qb = queries[qs:qs + query_chunk]
            q_sq = (qb * qb).sum(1, keepdim=True) if metric == "l2" else None
            best_d = best_i = None
            for bs in range(0, n, base_chunk):
                xb = base[bs:bs + base_chunk].float()
                s = qb @ xb.T                                      # [q, b]
                if metric == "l2":
                    s = (q_sq - 2.0 * s + base_sq_norms[bs:bs + base_chunk][None, :]).clamp_min_(0.0)
                kk = min(k, xb.shape[0])
                d, i = torch.topk(s, kk, dim=1, largest=largest, sorted=True)
                i = i + bs
                if best_d is None:
                    best_d, best_i = d, i
                else:
                    cat_d = torch.cat([best_d, d], 1)
                    cat_i = torch.cat([best_i, i], 1)
                    best_d, sel = torch.topk(cat_d, min(k, cat_d.shape[1]), dim=1,
                                             largest=largest, sorted=True)
                    best_i = torch.gather(cat_i, 1, sel)
            out_d[qs:qs + qb.shape[0]] = best_d
            out_i[qs:qs + qb.shape[0]] = best_i
    return out_d, out_i


# ---------------------------------------------------------------------------- faiss on GPUs
_GPU_RES: dict = {}   # CUDA device index -> faiss.StandardGpuResources


def faiss_gpus() -> int:
    """GPUs the installed faiss can use (0 without faiss or with a CPU-only faiss)."""
    try:
        import faiss
    except ImportError:
        return 0
    return int(faiss.get_num_gpus()) if hasattr(faiss, "StandardGpuResources") else 0


def gpu_resources(device: int = 0):
    """The one ``faiss.StandardGpuResources`` of CUDA device ``device`` (created on first use)."""
    if device not in _GPU_RES:
        import faiss
        _GPU_RES[device] = faiss.StandardGpuResources()
    return _GPU_RES[device]


def index_to_gpu(index, device: int = 0):
    """A CPU faiss index copied to GPU ``device`` with that device's resources."""
    import faiss
    return faiss.index_cpu_to_gpu(gpu_resources(device), device, index)


def faiss_search(index, queries, k: int, device: int | None = None):
    """(distances, ids) of ``index.search``: a numpy or CPU query goes in as numpy; a CUDA tensor
    goes in as is, searched by the GPU ``index`` (built with :func:`index_to_gpu` on ``device``)
    on torch's current stream, and the answers stay torch tensors on that device."""
    if isinstance(queries, torch.Tensor) and queries.is_cuda:
        import faiss.contrib.torch_utils  # noqa: F401  (faiss indexes accept torch tensors)
        from faiss.contrib.torch_utils import using_stream
        dev = queries.device.index if device is None else device
        with torch.cuda.device(dev), using_stream(gpu_resources(dev)):
            return index.search(queries.float().contiguous(), k)
    import numpy as np
    if isinstance(queries, torch.Tensor):
        queries = queries.detach().cpu().numpy()
    d, i = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return d, i.astype(np.int64, copy=False)
