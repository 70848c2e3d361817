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


# ---------------------------------------------------------------------------- exact search, pruned
class PcaBound:
    """Lower bounds on squared L2 distances, for exact search that skips most of the base.

    With an orthonormal basis U [D, m] and a centre mu (a sample's mean), every vector v splits into
    coordinates c = U^T (v - mu) and a residual of norm r = |(v - mu) - U c|. For any two vectors,
    |q - y|^2 = |c_q - c_y|^2 + |res_q - res_y|^2 >= |c_q - c_y|^2 + (r_q - r_y)^2 (the residuals
    are orthogonal to U, and the reverse triangle inequality bounds their difference). U is the
    top-m principal directions of a sample, orthonormalised in float64 (any orthonormal U gives a
    valid bound; PCA makes it tight). Everything is float64 so rounding stays far below the slack
    :func:`bounded_knn` allows.
    """

    def __init__(self, mean: torch.Tensor, basis: torch.Tensor, coords: torch.Tensor, resid: torch.Tensor):
        self.mean, self.basis, self.coords, self.resid = mean, basis, coords, resid
        self.coord_sq = (coords * coords).sum(1)

    @classmethod
    @torch.no_grad()
    def fit(cls, vectors, n: int, dims: int = 64, sample: int = 1024, chunk: int = 1024,
            seed: int = 0) -> "PcaBound":
        """``vectors(indices: LongTensor) -> float64 [len, D]`` gives base rows; n rows in all."""
        idx = torch.arange(n)
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:min(n, sample)].sort().values
        a = vectors(pick)
        mean = a.mean(0)  # the sample's mean: any centre gives a valid bound, so one pass over the base
        a = (a - mean).float()
        m = max(1, min(dims, a.shape[0], a.shape[1]))
        _, _, v = torch.svd_lowrank(a, q=min(m + 8, min(a.shape)), niter=2)
        basis = torch.linalg.qr(v[:, :m].double()).Q.to(mean.device)
        coords, resid = [], []
        for c in idx.split(chunk):
            x = vectors(c) - mean
            cc = x @ basis
            coords.append(cc)
            resid.append((x - cc @ basis.T).norm(dim=1))
        return cls(mean, basis, torch.cat(coords), torch.cat(resid))

    def lower_bounds(self, q: torch.Tensor) -> torch.Tensor:
        """float64 [B, N] lower bounds of |q_b - base_n|^2 for float64 queries [B, D]."""
        x = q.double() - self.mean
        c = x @ self.basis
        r = (x - c @ self.basis.T).norm(dim=1)
        d = (c * c).sum(1, keepdim=True) - 2.0 * (c @ self.coords.T) + self.coord_sq[None, :]
        return d.clamp_min_(0.0) + (r[:, None] - self.resid[None, :]) ** 2


def bounded_knn(lower: torch.Tensor, exact, k: int, first: int = 16, cap: int = 512, slots: int = 4096):
    """Exact k nearest from lower bounds: evaluate the ``first`` best-bounded rows exactly, then every
    row whose bound does not exceed the k-th exact distance found (a row with a larger bound cannot
    be among the k nearest). ``exact(rows, cand)`` -> (sorted float64 distances, ids) [len(rows),
    c] for candidate ids [len(rows), c] (-1 = none, distance inf). Second-round queries are
    evaluated together, at most ``slots`` candidates per call (memory: slots x dimension).

    Returns (distances, ids) [B, w], w = min(N, max(k, first)), nearest first - the top k exact,
    the rest the nearest of the rows evaluated - and a bool [B] of the queries that needed more
    than ``cap`` evaluations: their rows are not filled (ids -1, distances inf), search them otherwise.
    """
    b, n = lower.shape
    width = min(n, max(k, first))
    over = torch.zeros(b, dtype=torch.bool, device=lower.device)
    if b == 0 or n == 0:
        return (torch.full((b, width), float("inf"), dtype=torch.float64, device=lower.device),
                torch.full((b, width), -1, dtype=torch.int64, device=lower.device), over)
    rows = torch.arange(b, device=lower.device)
    dist, ids = exact(rows, lower.topk(width, dim=1, largest=False).indices)
    kth = dist[:, k - 1]
    # the slack covers float64 rounding of the bound (relative ~1e-13 here)
    count = (lower <= (kth + 1e-9 * (kth.abs() + 1.0))[:, None]).sum(1)
    over = count > cap
    dist[over], ids[over] = float("inf"), -1
    todo = rows[(count > width) & ~over]
    todo = todo[torch.argsort(count[todo])]
    start = 0
    while start < len(todo):
        # the count[r] smallest bounds of a row are exactly the rows its threshold admits
        stop = start + 1
        while stop < len(todo) and (stop + 1 - start) * int(count[todo[stop]]) <= slots:
            stop += 1
        grp = todo[start:stop]
        c = int(count[grp[-1]])
        cand = lower[grp].topk(c, dim=1, largest=False).indices
        cand[torch.arange(c, device=lower.device)[None, :] >= count[grp][:, None]] = -1
        d, j = exact(grp, cand)
        dist[grp], ids[grp] = d[:, :width], j[:, :width]
        start = stop
    return dist, ids, over
