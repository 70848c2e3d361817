"""Residual operators r = x - P(x) in pure torch (reflect borders = scipy ``mode='mirror'``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..contract import gaussian_taps  # noqa: F401  (re-exported: the reference's denoiser)


def _pad(x: torch.Tensor, r: int) -> torch.Tensor:
    return F.pad(x, (r, r, r, r), mode="reflect")


def denoise(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """x - G*x, G the separable 5x5 Gaussian of ``sigma`` (taps normalised to sum 1)."""
    b, c, h, w = x.shape
    k = torch.tensor(gaussian_taps(sigma), dtype=x.dtype, device=x.device)
    y = _pad(x.reshape(b * c, 1, h, w), 2)
    y = F.conv2d(y, k.view(1, 1, 1, 5))
    y = F.conv2d(y, k.view(1, 1, 5, 1))
    return x - y.view(b, c, h, w)


def median3(x: torch.Tensor) -> torch.Tensor:
    """x - the median of the 3x3 neighbourhood."""
    b, c, h, w = x.shape
    y = _pad(x.reshape(b * c, 1, h, w), 1)
    patches = F.unfold(y, 3)  # [bc, 9, h*w]
    med = patches.median(dim=1).values
    return x - med.view(b, c, h, w)


def npr(x: torch.Tensor) -> torch.Tensor:
    """x - up(down(x)) with nearest sampling by 2; odd sizes keep their last row/column's own anchor."""
    h, w = x.shape[-2:]
    up = x[..., ::2, ::2].repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    return x - up[..., :h, :w]


def highpass(x: torch.Tensor) -> torch.Tensor:
    """x - mean of the 4-neighbours (the 4-neighbour Laplacian / 4)."""
    y = _pad(x, 1)
    nb = y[..., :-2, 1:-1] + y[..., 2:, 1:-1] + y[..., 1:-1, :-2] + y[..., 1:-1, 2:]
    return x - 0.25 * nb


def residual(x: torch.Tensor, op: str = "denoise", sigma: float = 1.0) -> torch.Tensor:
    """Residual of a float [B,3,H,W] batch under operator ``op`` (see FingerprintSpec)."""
    if op == "denoise":
        return denoise(x, sigma)
    if op == "median3":
        return median3(x)
    if op == "npr":
        return npr(x)
    if op == "highpass":
        return highpass(x)
    raise ValueError(f"unknown residual operator {op!r}")
