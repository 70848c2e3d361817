"""Image quality of a counterfactual against its original: PSNR and SSIM, batched torch, float64.

SSIM: Wang et al. (2004) with an 11 x 11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
population covariances, over the window positions that lie inside the image, averaged over
channels (scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 255.0) -> torch.Tensor:
    """[B] PSNR in dB of two image batches of one shape (inf where identical)."""
    d = (a.double() - b.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(peak * peak / d)


def _gauss(sigma: float = 1.5, size: int = 11) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-t * t / (2 * sigma * sigma))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(a: torch.Tensor, b: torch.Tensor, peak: float = 255.0) -> torch.Tensor:
    """[B] mean SSIM of image batches [B, H, W, C] (any layout with channels last), H, W >= 11."""
    x = a.double().permute(0, 3, 1, 2)
    y = b.double().permute(0, 3, 1, 2)
    c = x.shape[1]
    w = _gauss().to(x.device)[None, None].repeat(c, 1, 1, 1)
    f = lambda t: F.conv2d(t, w, groups=c)  # noqa: E731  ('valid': windows inside the image)
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)
