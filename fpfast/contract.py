"""The kernel contract in Python: the mirror of ``csrc/contract.h`` (tests/test_contract.py checks
that the two, and both compiled modules, agree).

Residual operator codes, the layout of the raw per-image sums every fused backend produces
(:mod:`fpfast.ops.sums` finalises them), and the denoiser's Gaussian taps. Nothing here imports
the rest of fpfast, so every layer (kernels, ops, spec, reference) may use it.
"""
from __future__ import annotations

import math

# Residual operator codes: RESIDUAL_OPS[code]. "none" (the input already is the residual) is
# accepted by the fused feature kernels only; RESIDUALS are the spec's operators.
RESIDUAL_OPS = ("denoise", "median3", "npr", "highpass", "none")
OP_CODES = {name: code for code, name in enumerate(RESIDUAL_OPS)}
RESIDUALS = RESIDUAL_OPS[:4]

# Raw sums layout (one float64 row per image):
OFF_S1, OFF_S2, OFF_S3, OFF_S4, OFF_X = 0, 3, 6, 9, 12  # sum r_c, r_c^2, r_c^3, r_c^4 (c = 0..2); cross sums
MOMENT_SUMS = 15                  # then the phase energies (sum p^2), then the DCT sums
DCT_BLOCK = 8
DCT_COEFS = DCT_BLOCK * DCT_BLOCK  # 64
MIN_PERIOD, MAX_PERIOD, MAX_PERIODS = 2, 16, 16

GAUSS_RADIUS = 2
GAUSS_TAPS = 2 * GAUSS_RADIUS + 1  # 5


def gaussian_taps(sigma: float, radius: int = GAUSS_RADIUS) -> list[float]:
    """The 1-D taps of the separable (2*radius+1)-tap Gaussian of ``sigma``, normalised to sum 1
    (float64; the C++ kernels round the same values to float)."""
    w = [math.exp(-(i * i) / (2.0 * sigma * sigma)) for i in range(-radius, radius + 1)]
    s = sum(w)
    return [v / s for v in w]


def phase_bins(periods) -> int:
    return sum(p * p for p in periods)


def n_sums(periods) -> int:
    """Raw sums per image for these phase periods."""
    return MOMENT_SUMS + phase_bins(periods) + DCT_COEFS


def phase_offsets(periods) -> list[int]:
    """Offset of each period's p^2 phase sums in the row."""
    offs, off = [], MOMENT_SUMS
    for p in periods:
        offs.append(off)
        off += p * p
    return offs


def dct_offset(periods) -> int:
    return MOMENT_SUMS + phase_bins(periods)
