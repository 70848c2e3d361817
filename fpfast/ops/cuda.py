"""The ``cuda`` backend of the fused op: raw sums (fpfast.ops.sums) from fpfast._C_cuda.

torch allocates every buffer on the input's device; the extension gets raw pointers, element
strides and the current stream, and launches asynchronously on that stream. The kernel writes
float32 partial sums per strip of 32x32 tiles ([B, n_part, n_sums]); they are reduced in float64,
by torch here (feature_sums) or by the fused post kernel (fpfast.ops.triton.post) in
fingerprint_features; both in a fixed order, so results are reproducible run to run.
"""
from __future__ import annotations

import functools

import torch

from .. import backends
from ..spec import FingerprintSpec
from .sums import n_sums as spec_n_sums

TILE = 32
_TARGET_BLOCKS_PER_SM = 4  # the kernel's register budget (64/thread at 256 threads) allows 4


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def choose_tiles_per_block(b: int, h: int, w: int, device: torch.device) -> int:
    """Tiles per block (a vertical strip): few enough blocks for about one full wave, then balanced."""
    tiles_x, tiles_y = -(-w // TILE), -(-h // TILE)
    want = max(1, min(8, tiles_y, (b * tiles_x * tiles_y) // (_sm_count(device.index) * _TARGET_BLOCKS_PER_SM)))
    strips = -(-tiles_y // want)
    return -(-tiles_y // strips)


def feature_sums(x: torch.Tensor, spec: FingerprintSpec, op: str, want_gray: bool, want_residual: bool,
                 tiles_per_block: int | None = None):
    """(sums float64 [B, n_sums], gray float32 [B,H,W] or None, residual float32 [B,3,H,W] or None):
    :func:`feature_partials` reduced over the strips in float64."""
    part, gray, res = feature_partials(x, spec, op, want_gray, want_residual, tiles_per_block)
    return part.sum(1, dtype=torch.float64), gray, res


def feature_partials(x: torch.Tensor, spec: FingerprintSpec, op: str, want_gray: bool, want_residual: bool,
                     tiles_per_block: int | None = None):
    """(partials float32 [B, n_part, n_sums], gray float32 [B,H,W] or None, residual float32 [B,3,H,W] or None).

    ``x``: CUDA tensor [B, 3, H, W], uint8 or float32, any strides (an HWC batch as a permuted
    view is read in place). ``op``: spec residual name, or ``"none"`` when x is the residual.
    ``tiles_per_block``: strip height in tiles (default: chosen from the SM count; tests vary it).
    """
    if not isinstance(x, torch.Tensor) or x.device.type != "cuda":
        raise ValueError(f"the cuda backend takes a CUDA tensor, got {getattr(x, 'device', type(x).__name__)}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a [B, 3, H, W] tensor, got shape {tuple(x.shape)}")
    if x.dtype not in (torch.uint8, torch.float32):
        raise TypeError(f"expected uint8 or float32 input, got {x.dtype}")
    mod = backends.cuda_module()
    b, _, h, w = x.shape
    n = spec_n_sums(spec)
    dev = x.device if x.device.index is not None else torch.device("cuda", torch.cuda.current_device())
    with torch.cuda.device(dev):
        gray = torch.empty(b, h, w, dtype=torch.float32, device=dev) if want_gray else None
        res = torch.empty(b, 3, h, w, dtype=torch.float32, device=dev) if want_residual else None
        if b == 0:
            return torch.zeros(0, 1, n, dtype=torch.float32, device=dev), gray, res
        k = tiles_per_block or choose_tiles_per_block(b, h, w, dev)
        n_part = mod.n_partials(h, w, k)
        partials = torch.empty(b, n_part, n, dtype=torch.float32, device=dev)
        sb, sc, sh, sw = x.stride()
        mod.feature_sums(
            dev.index, x.data_ptr(), x.dtype == torch.uint8, b, h, w, sb, sc, sh, sw, op, float(spec.sigma),
            list(spec.periods), int(k), partials.data_ptr(), n_part, n,
            gray.data_ptr() if gray is not None else 0, res.data_ptr() if res is not None else 0,
            torch.cuda.current_stream(dev).cuda_stream)
    return partials, gray, res
