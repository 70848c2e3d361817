"""fingerprint_features for one fixed batch shape, captured once in a CUDA graph.

The fused op is a handful of launches per batch (kernel, rfft2, post kernel, allocations); at
small batches their launch cost, not the GPU, sets the time. :class:`FusedOp` warms the op up on a
side stream (compiles Triton kernels, plans the FFT, fills every per-size cache: nothing may be
copied to the device during capture), captures it into a ``torch.cuda.CUDAGraph`` with a static
input buffer, and then runs a batch as one copy into that buffer plus one graph replay. A producer
that writes its batches straight into :attr:`FusedOp.input` saves the copy too.

Opt-in (``fingerprint_features(..., graph=True)`` or a FusedOp held by the caller): a graph is
only valid for the exact shape, dtype, spec, backend and device, it holds its memory pool while
cached, and a capture can fail (an op that syncs with the host, another thread capturing); then
the op runs eagerly and :attr:`FusedOp.error` says why.
"""
from __future__ import annotations

import collections
import threading

import torch

from ..spec import FingerprintSpec, load_spec

MAX_CACHED = 8  # graphs kept by fused_op (least recently used dropped first)


class FusedOp:
    """``fingerprint_features`` of batches shaped like ``shape`` / ``dtype`` on ``device``, as a
    CUDA graph. ``op(x)`` returns what ``fingerprint_features(x, spec, ...)`` returns (a new tensor
    each call, never the graph's static output)."""

    def __init__(self, shape, dtype: torch.dtype, spec: FingerprintSpec | str | None = None,
                 backend: str = "auto", device: torch.device | str = "cuda", layout: str = "auto",
                 return_residual: bool = False, is_residual: bool = False, post: str = "auto",
                 warmup: int = 2):
        from .features import fingerprint_features
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"a CUDA graph needs a CUDA device, got {self.device}")
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.shape, self.dtype, self.spec = tuple(shape), dtype, load_spec(spec)
        kw = dict(backend=backend, layout=layout, return_residual=return_residual,
                  is_residual=is_residual, post=post)
        self._eager = lambda x: fingerprint_features(x, self.spec, **kw)
        self.input = torch.zeros(self.shape, dtype=dtype, device=self.device)  # static input buffer
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output = None
        self.error: str | None = None
        with torch.cuda.device(self.device):
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # warm-up off the default stream, as CUDA graph capture requires
                for _ in range(max(1, warmup)):
                    self._eager(self.input)
            torch.cuda.current_stream(self.device).wait_stream(side)
            torch.cuda.synchronize(self.device)
            g = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(g, capture_error_mode="thread_local"):
                    self.output = self._eager(self.input)
                self.graph = g
            except Exception as e:  # noqa: BLE001 - any capture failure: run eagerly, say why
                self.graph, self.output = None, None
                self.error = f"{type(e).__name__}: {e}"
                torch.cuda.synchronize(self.device)

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, x: torch.Tensor):
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != self.shape or x.dtype != self.dtype \
                or x.device != self.device:
            got = (tuple(x.shape), x.dtype, x.device) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"this FusedOp takes {self.shape} {self.dtype} on {self.device}, got {got}")
        if self.graph is None:
            return self._eager(x)
        with torch.cuda.device(self.device):
            if x.data_ptr() != self.input.data_ptr() or x.stride() != self.input.stride():
                self.input.copy_(x)
            self.graph.replay()
            if isinstance(self.output, tuple):
                return tuple(t.clone() for t in self.output)
            return self.output.clone()


_CACHE: "collections.OrderedDict[tuple, FusedOp]" = collections.OrderedDict()
_LOCK = threading.Lock()


def fused_op(x: torch.Tensor, spec: FingerprintSpec | str | None = None, **kw) -> FusedOp:
    """The cached FusedOp for batches like ``x`` (key: shape, dtype, spec, device and the options)."""
    if not isinstance(x, torch.Tensor) or x.device.type != "cuda":
        raise ValueError(f"graph=True needs a CUDA tensor, got {getattr(x, 'device', type(x).__name__)}")
    spec = load_spec(spec)
    dev = x.device if x.device.index is not None else torch.device("cuda", torch.cuda.current_device())
    key = (tuple(x.shape), x.dtype, spec.id, dev, tuple(sorted(kw.items())))
    with _LOCK:
        op = _CACHE.get(key)
        if op is not None:
            _CACHE.move_to_end(key)
            return op
    op = FusedOp(x.shape, x.dtype, spec, device=dev, **kw)
    with _LOCK:
        _CACHE[key] = op
        while len(_CACHE) > MAX_CACHED:
            _CACHE.popitem(last=False)
    return op


def clear_cache() -> None:
    """Drop every cached graph (and the memory pools they hold)."""
    with _LOCK:
        _CACHE.clear()
