"""Feature families of a residual r [B,3,H,W], in pure torch.

Definitions (these are the spec; every backend computes exactly these):

* ``moments`` (12): per channel c, over all pixels: mean, population variance, skewness
  m3/var^1.5 and excess kurtosis m4/var^2 - 3 (scipy.stats ``bias=True``); skewness and kurtosis
  are 0 where var <= VAR_EPS (a flat residual).
* ``phase`` (sum p^2): e = mean over channels of r^2; for each period p and phase (a, b) the mean
  of e over pixels with i = a, j = b (mod p), divided by the mean of e over all pixels (0 when that
  is 0). Up-sampling grids light up the phases of their period.
* ``dct`` (64): g = mean over channels of r; orthonormal 8x8 DCT-II of every whole 8x8 block on
  the grid anchored at (0, 0) (a partial last row/column of blocks is ignored);
  log(mean over blocks of coefficient^2 + FEATURE_EPS), row-major (u, v).
* ``radial`` (n bins): P = |FFT2(g)|^2 / (H W); rho = sqrt(fy^2 + fx^2) with numpy's fftfreq
  frequencies (cycles/pixel); bin k = floor(2 n rho) for rho < 0.5 (corners beyond the inscribed
  circle dropped); log(mean P in bin + FEATURE_EPS). An empty bin (possible below 2n px a side)
  takes the mean of the nearest lower non-empty bin (bin 0 always holds DC).
* ``xcorr`` (3): Pearson correlation of the residual channels RG, RB, GB; 0 where a variance is 0.
"""
from __future__ import annotations

import math

import torch

from ..spec import FingerprintSpec

FEATURE_EPS = 1e-10
VAR_EPS = 1e-20


def moments(r: torch.Tensor) -> torch.Tensor:
    x = r.flatten(2)
    mu = x.mean(-1)
    d = x - mu[..., None]
    var = (d * d).mean(-1)
    m3 = (d ** 3).mean(-1)
    m4 = (d ** 4).mean(-1)
    ok = var > VAR_EPS
    safe = torch.where(ok, var, torch.ones_like(var))
    skew = torch.where(ok, m3 / safe ** 1.5, torch.zeros_like(var))
    kurt = torch.where(ok, m4 / (safe * safe) - 3.0, torch.zeros_like(var))
    return torch.stack([mu, var, skew, kurt], -1).flatten(1)  # [B, 12]: r(mean,var,skew,kurt), g.., b..


def phase_energy(r: torch.Tensor, periods) -> torch.Tensor:
    e = (r * r).mean(1)  # [B, H, W]
    b, h, w = e.shape
    total = e.mean((1, 2))
    outs = []
    for p in periods:
        ii = torch.arange(h, device=r.device) % p
        jj = torch.arange(w, device=r.device) % p
        idx = (ii[:, None] * p + jj[None, :]).flatten()
        sums = torch.zeros(b, p * p, dtype=e.dtype, device=e.device).index_add_(1, idx, e.flatten(1))
        cnt = torch.zeros(p * p, dtype=e.dtype, device=e.device).index_add_(0, idx, torch.ones_like(idx, dtype=e.dtype))
        outs.append(sums / cnt)
    ph = torch.cat(outs, 1)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total[:, None] > 0, ph / safe[:, None], torch.zeros_like(ph))


def dct_matrix(n: int = 8, dtype=torch.float64, device=None) -> torch.Tensor:
    """Orthonormal DCT-II matrix D (rows = frequencies): coefficients = D @ block @ D.T."""
    k = torch.arange(n, dtype=torch.float64)
    d = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(dtype=dtype, device=device)


def block_dct(g: torch.Tensor) -> torch.Tensor:
    b, h, w = g.shape
    hb, wb = h // 8, w // 8
    blocks = g[:, : hb * 8, : wb * 8].reshape(b, hb, 8, wb, 8).permute(0, 1, 3, 2, 4)
    d = dct_matrix(8, g.dtype, g.device)
    c = d @ blocks @ d.T  # [B, hb, wb, 8, 8]
    energy = (c * c).mean((1, 2))
    return torch.log(energy + FEATURE_EPS).flatten(1)


def radial_bin_index(h: int, w: int, nbins: int, device=None, half: bool = False) -> torch.Tensor:
    """Bin of every FFT frequency (-1 = outside the inscribed circle), shape [H, W] (or the rfft
    half-spectrum [H, W//2+1] when ``half``)."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64, device=device)
    fx = (torch.fft.rfftfreq if half else torch.fft.fftfreq)(w, dtype=torch.float64, device=device)
    rho = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    k = torch.floor(rho * 2 * nbins).long()
    return torch.where(rho < 0.5, k, torch.full_like(k, -1))


def radial_finish(sums: torch.Tensor, cnt: torch.Tensor) -> torch.Tensor:
    """Bin sums [B, n] and counts [n] -> log of bin means, empty bins filled from the nearest lower one."""
    nbins = cnt.shape[0]
    means = sums / cnt.clamp_min(1)
    src = torch.arange(nbins, device=sums.device)
    src = torch.cummax(torch.where(cnt > 0, src, torch.zeros_like(src)), 0).values
    return torch.log(means[:, src] + FEATURE_EPS)


def radial_from_power(power: torch.Tensor, nbins: int) -> torch.Tensor:
    """Bin a power spectrum [B, H, W] (already |F|^2/(HW)) into the radial feature [B, nbins]."""
    b, h, w = power.shape
    k = radial_bin_index(h, w, nbins, power.device).flatten()
    keep = k >= 0
    idx = k[keep]
    sums = torch.zeros(b, nbins, dtype=power.dtype, device=power.device).index_add_(1, idx, power.flatten(1)[:, keep])
    cnt = torch.zeros(nbins, dtype=power.dtype, device=power.device).index_add_(0, idx, torch.ones_like(idx, dtype=power.dtype))
    return radial_finish(sums, cnt)


def radial(g: torch.Tensor, nbins: int) -> torch.Tensor:
    h, w = g.shape[-2:]
    f = torch.fft.fft2(g)
    power = (f.real ** 2 + f.imag ** 2) / (h * w)
    return radial_from_power(power, nbins)


def xcorr(r: torch.Tensor) -> torch.Tensor:
    x = r.flatten(2)
    d = x - x.mean(-1, keepdim=True)
    cov = d @ d.transpose(1, 2) / x.shape[-1]  # [B, 3, 3]
    var = torch.diagonal(cov, dim1=1, dim2=2)
    outs = []
    for a, c in ((0, 1), (0, 2), (1, 2)):
        den = var[:, a] * var[:, c]
        ok = den > 0
        outs.append(torch.where(ok, cov[:, a, c] / torch.sqrt(torch.where(ok, den, torch.ones_like(den))), torch.zeros_like(den)))
    return torch.stack(outs, 1)


def features(r: torch.Tensor, spec: FingerprintSpec) -> torch.Tensor:
    """Feature vector [B, spec.dim] of a residual batch [B, 3, H, W] (dtype of r kept)."""
    parts = []
    g = None
    for fam in spec.families:
        if fam == "moments":
            parts.append(moments(r))
        elif fam == "phase":
            parts.append(phase_energy(r, spec.periods))
        elif fam in ("dct", "radial"):
            g = r.mean(1) if g is None else g
            parts.append(block_dct(g) if fam == "dct" else radial(g, spec.radial_bins))
        elif fam == "xcorr":
            parts.append(xcorr(r))
    return torch.cat(parts, 1)
