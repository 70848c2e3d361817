"""feature_sums on the Triton backend: one fused pass residual -> raw sums (fpfast.ops.sums)."""
from __future__ import annotations

import functools

import torch

from ... import backends
from ... import contract as C
from ...reference.features import dct_matrix
from ...spec import FingerprintSpec
from ..sums import n_sums as _n_sums
from . import kernels


# Launch configuration, one place to tune (or to wrap in triton.autotune later): tiles are powers
# of 2 and multiples of 8 (whole DCT blocks); 32 x 32 = 1024 pixels over 4 warps.
TILE_H = 32
TILE_W = 32
NUM_WARPS = 4


def _check_mode() -> None:
    interpreted = type(kernels.fused_sums_kernel).__name__ == "InterpretedFunction"
    if interpreted != backends.triton_interpret():
        raise RuntimeError(
            "fpfast.ops.triton.kernels was imported with TRITON_INTERPRET="
            f"{int(interpreted)} but it is now {int(backends.triton_interpret())}; set TRITON_INTERPRET "
            "before the first use of the triton backend")


@functools.lru_cache(maxsize=64)
def _constants(periods: tuple, device: torch.device):
    """Periods, their offsets in the sums (int32) and the DCT matrix on ``device``, made once:
    no host-to-device copy (and no sync) per call."""
    offs = C.phase_offsets(periods)
    return (torch.tensor(periods, dtype=torch.int32, device=device),
            torch.tensor(offs, dtype=torch.int32, device=device),
            dct_matrix(8, torch.float32, device).contiguous())


def feature_sums(x: torch.Tensor, spec: FingerprintSpec, op: str, want_gray: bool, want_residual: bool):
    """(sums float64 [B, n_sums], gray float32 [B,H,W] | None, residual float32 [B,3,H,W] | None):
    :func:`feature_partials` reduced over the tiles in float64."""
    part, gray, res = feature_partials(x, spec, op, want_gray, want_residual)
    return part.double().sum(1), gray, res


def feature_partials(x: torch.Tensor, spec: FingerprintSpec, op: str, want_gray: bool, want_residual: bool):
    """(partials float32 [B, n_tiles, n_sums], gray float32 [B,H,W] | None, residual float32 [B,3,H,W] | None).

    ``x``: [B, 3, H, W] uint8 or float32, any strides (an HWC batch as its permuted view is read
    in place); ``op``: denoise, median3, npr, highpass, or none (x already is the residual).
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected x of shape [B, 3, H, W], got {tuple(x.shape)}")
    if x.dtype not in (torch.uint8, torch.float32):
        raise TypeError(f"expected uint8 or float32 input, got {x.dtype}")
    if op not in C.OP_CODES:
        raise ValueError(f"unknown residual operator {op!r}; expected one of {C.RESIDUAL_OPS}")
    if op == "none" and x.dtype == torch.uint8:
        raise TypeError("a residual input must be float32, got uint8")
    b, _, h, w = x.shape
    if min(h, w) < 3:
        raise ValueError(f"expected images of at least 3 px a side (reflect borders), got {h}x{w}")
    dev = x.device
    ns = _n_sums(spec)
    gray = torch.empty(b, h, w, dtype=torch.float32, device=dev) if want_gray else None
    res = torch.empty(b, 3, h, w, dtype=torch.float32, device=dev) if want_residual else None
    if b == 0:
        return torch.zeros(0, 1, ns, dtype=torch.float32, device=dev), gray, res
    _check_mode()

    n_th, n_tw = -(-h // TILE_H), -(-w // TILE_W)
    n_tiles = n_th * n_tw
    part = torch.empty(b, n_tiles, ns, dtype=torch.float32, device=dev)
    periods, poffs, dmat = _constants(spec.periods, dev)
    taps = C.gaussian_taps(spec.sigma)
    dummy = part  # never written when the matching WANT_* flag is off
    kernels.fused_sums_kernel[(n_tiles, b)](
        x, *x.stride(), part,
        gray if gray is not None else dummy, res if res is not None else dummy,
        dmat, periods, poffs, len(spec.periods),
        h, w, n_tw, n_tiles, ns, C.dct_offset(spec.periods),
        *taps,
        OP=C.OP_CODES[op], IS_U8=x.dtype == torch.uint8, WANT_G=want_gray, WANT_R=want_residual,
        TILE_H=TILE_H, TILE_W=TILE_W, num_warps=NUM_WARPS,
    )
    return part, gray, res
