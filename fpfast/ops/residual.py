"""The residual op: r = x - P(x) for the cheap projectors, on every backend."""
from __future__ import annotations

import torch

from .. import backends
from ..prepare import as_chw, to_float
from ..reference import residual as reference

IMPLEMENTED = ("torch", "cpp")


def residual(images: torch.Tensor, op: str = "denoise", sigma: float = 1.0, backend: str = "auto",
             layout: str = "auto") -> torch.Tensor:
    """Residual float32 [B,3,H,W] of uint8/float images (HWC or CHW, any strides)."""
    x = as_chw(images, layout)
    chosen = backends.resolve(backend, x.device.type, IMPLEMENTED)
    if chosen == "cpp":
        if x.dtype not in (torch.uint8, torch.float32):
            x = to_float(x).float()
        return torch.from_numpy(backends.cpp_module().residual(x.detach().numpy(), op, float(sigma)))
    return reference(to_float(x), op, sigma)
