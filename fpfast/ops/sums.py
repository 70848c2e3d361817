"""The contract between the fused kernels and fpfast: per-image raw sums, finalised in one place.

Every fused backend (cpp, triton, cuda) reads each pixel once, computes the residual on the fly and
accumulates these sums per image into a float64 [B, n_sums(spec)] array (GPU kernels may keep
float32 partial sums per tile and reduce them in float64):

  [ 0: 3]  S1[c]  = sum r_c            [ 3: 6] S2[c] = sum r_c^2
  [ 6: 9]  S3[c]  = sum r_c^3          [ 9:12] S4[c] = sum r_c^4
  [12:15]  X      = sum r_0 r_1, sum r_0 r_2, sum r_1 r_2
  [15:15+P] E[p][a*p+b] = sum of e = (r_0^2+r_1^2+r_2^2)/3 over pixels with i%p==a, j%p==b,
            periods in spec order (P = sum p^2)
  [15+P:79+P] D[u*8+v] = sum over whole 8x8 blocks (grid at (0,0)) of DCT-II coefficient^2 of
            g = (r_0+r_1+r_2)/3, orthonormal basis

and, when the spec has the radial family, the gray residual g [B, H, W] float32 (the radial
spectrum needs a whole-image FFT, which is not fused: the library FFT runs on g, then the power,
binning and log are one pass in :func:`radial_features`).
:func:`finalize` turns the sums into the feature vector of :mod:`fpfast.reference.features`.
"""
from __future__ import annotations

import functools

import torch

from .. import contract as C
from ..reference.features import FEATURE_EPS, VAR_EPS, dct_matrix, radial_bin_index, radial_finish
from ..spec import FingerprintSpec


def n_sums(spec: FingerprintSpec) -> int:
    return C.n_sums(spec.periods)


@functools.lru_cache(maxsize=256)
def phase_counts(h: int, w: int, p: int, device=None) -> torch.Tensor:
    """Pixels per phase (a, b) of period p in an h x w image, flattened a*p+b (float64).

    Cached per (size, period, device): built once, so a GPU call makes no host-to-device copy.
    Callers must not modify the result."""
    ch = torch.tensor([len(range(a, h, p)) for a in range(p)], dtype=torch.float64, device=device)
    cw = torch.tensor([len(range(b, w, p)) for b in range(p)], dtype=torch.float64, device=device)
    return (ch[:, None] * cw[None, :]).flatten()


def sums_torch(r: torch.Tensor, spec: FingerprintSpec) -> torch.Tensor:
    """The raw sums of a residual batch in plain torch (float64): the oracle for kernel sums."""
    r = r.double()
    b, _, h, w = r.shape
    flat = r.flatten(2)
    s = [flat.sum(-1), (flat ** 2).sum(-1), (flat ** 3).sum(-1), (flat ** 4).sum(-1)]
    x = torch.stack([(flat[:, 0] * flat[:, 1]).sum(-1), (flat[:, 0] * flat[:, 2]).sum(-1),
                     (flat[:, 1] * flat[:, 2]).sum(-1)], 1)
    e = (r * r).mean(1)
    ph = []
    for p in spec.periods:
        idx = ((torch.arange(h, device=r.device) % p)[:, None] * p + (torch.arange(w, device=r.device) % p)[None, :]).flatten()
        ph.append(torch.zeros(b, p * p, dtype=r.dtype, device=r.device).index_add_(1, idx, e.flatten(1)))
    g = r.mean(1)
    hb, wb = h // 8, w // 8
    blocks = g[:, : hb * 8, : wb * 8].reshape(b, hb, 8, wb, 8).permute(0, 1, 3, 2, 4)
    d = dct_matrix(8, r.dtype, r.device)
    c = d @ blocks @ d.T
    dsum = (c * c).sum((1, 2)).flatten(1)
    return torch.cat(s + [x] + ph + [dsum], 1)


def finalize(sums: torch.Tensor, h: int, w: int, spec: FingerprintSpec,
             radial: torch.Tensor | None = None) -> torch.Tensor:
    """Feature vectors [B, spec.dim] float32 from raw sums [B, n_sums] (+ radial [B, bins])."""
    s = sums.double()
    n = float(h * w)
    s1, s2, s3, s4, xs = (s[:, o:o + 3] for o in (C.OFF_S1, C.OFF_S2, C.OFF_S3, C.OFF_S4, C.OFF_X))
    mu = s1 / n
    m2 = s2 / n - mu ** 2
    m3 = s3 / n - 3 * mu * s2 / n + 2 * mu ** 3
    m4 = s4 / n - 4 * mu * s3 / n + 6 * mu ** 2 * s2 / n - 3 * mu ** 4
    var = m2.clamp_min(0)
    ok = var > VAR_EPS
    safe = torch.where(ok, var, torch.ones_like(var))
    skew = torch.where(ok, m3 / safe ** 1.5, torch.zeros_like(var))
    kurt = torch.where(ok, m4 / (safe * safe) - 3.0, torch.zeros_like(var))
    parts: dict[str, torch.Tensor] = {"moments": torch.stack([mu, var, skew, kurt], -1).flatten(1)}

    off = C.MOMENT_SUMS
    total = (s2.sum(1) / 3.0) / n  # mean of e
    phases = []
    for p in spec.periods:
        cnt = phase_counts(h, w, p, s.device)
        phases.append(s[:, off:off + p * p] / cnt)
        off += p * p
    ph = torch.cat(phases, 1)
    tsafe = torch.where(total > 0, total, torch.ones_like(total))
    parts["phase"] = torch.where(total[:, None] > 0, ph / tsafe[:, None], torch.zeros_like(ph))

    nblocks = float((h // C.DCT_BLOCK) * (w // C.DCT_BLOCK))
    parts["dct"] = torch.log(s[:, off:off + C.DCT_COEFS] / nblocks + FEATURE_EPS)

    cov = xs / n - torch.stack([mu[:, 0] * mu[:, 1], mu[:, 0] * mu[:, 2], mu[:, 1] * mu[:, 2]], 1)
    den = torch.stack([var[:, 0] * var[:, 1], var[:, 0] * var[:, 2], var[:, 1] * var[:, 2]], 1)
    dok = den > VAR_EPS * VAR_EPS
    parts["xcorr"] = torch.where(dok, cov / torch.sqrt(torch.where(dok, den, torch.ones_like(den))),
                                 torch.zeros_like(den)).clamp(-1.0, 1.0)
    if "radial" in spec.families:
        if radial is None:
            raise ValueError("the spec has the radial family but no radial features were given")
        parts["radial"] = radial.double()
    return torch.cat([parts[f] for f in spec.families], 1).float()


def radial_features(g: torch.Tensor, nbins: int) -> torch.Tensor:
    """Radial spectrum [B, nbins] of gray residuals g [B, H, W]: library FFT, then power/bin/log.

    Not fused into the per-tile kernels: the FFT needs the whole image. The real FFT halves the
    work; each half-spectrum column other than 0 and Nyquist stands for two frequencies (+-fx),
    so it is counted twice, which gives exactly the bins of the full FFT.
    """
    b, h, w = g.shape
    f = torch.fft.rfft2(g.float())
    power = (f.real ** 2 + f.imag ** 2) / (h * w)
    keep, idx, wts, cnt = half_spectrum_bins(h, w, nbins, g.device)
    sums = torch.zeros(b, nbins, device=g.device).index_add_(1, idx, power.flatten(1)[:, keep] * wts)
    return radial_finish(sums, cnt)


@functools.lru_cache(maxsize=64)
def half_spectrum_bins(h: int, w: int, nbins: int, device):
    """(kept positions, their bins, their weights, weight per bin) of the rfft2 half-spectrum."""
    k = radial_bin_index(h, w, nbins, device, half=True).flatten()
    colw = torch.full((w // 2 + 1,), 2.0, device=device)
    colw[0] = 1.0
    if w % 2 == 0:
        colw[-1] = 1.0
    wts = colw.expand(h, -1).flatten()
    keep = torch.nonzero(k >= 0).flatten()
    idx, wk = k[keep], wts[keep]
    cnt = torch.zeros(nbins, device=device).index_add_(0, idx, wk)
    return keep, idx, wk, cnt
