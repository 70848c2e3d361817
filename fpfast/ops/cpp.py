"""The cpp backend of the fused feature op: fpfast._C.feature_sums over zero-copy numpy views."""
from __future__ import annotations

import torch

from .. import backends
from ..spec import FingerprintSpec


def _view(x: torch.Tensor):
    """A numpy view of a CPU tensor sharing its memory, whatever its strides (torch strides are
    non-negative element strides, which numpy expresses as they are; nothing is copied)."""
    return x.detach().resolve_conj().resolve_neg().numpy()


def feature_sums(x: torch.Tensor, spec: FingerprintSpec, op: str, want_gray: bool, want_residual: bool):
    """Raw sums float64 [B, n_sums(spec)], gray float32 [B,H,W] (or None) and residual float32
    [B,3,H,W] (or None) of a uint8/float32 [B,3,H,W] CPU batch; ``op='none'``: x is the residual."""
    if x.dtype not in (torch.uint8, torch.float32):
        raise TypeError(f"the cpp kernel takes uint8 or float32 images, got {x.dtype}")
    sums, gray, res = backends.cpp_module().feature_sums(
        _view(x), op, float(spec.sigma), list(spec.periods), bool(want_gray), bool(want_residual))
    return (torch.from_numpy(sums), None if gray is None else torch.from_numpy(gray),
            None if res is None else torch.from_numpy(res))
