"""Residual operators of the reference vs independent implementations (scipy.ndimage, numpy).

Oracle precision: both sides in float64, so agreement is to rounding (atol 1e-12).
"""
import numpy as np
import pytest
import torch
from scipy import ndimage

from fpfast.reference.residual import gaussian_taps, residual

SIZES = [(16, 16), (17, 23), (31, 20), (64, 48)]


def _rand(b, h, w, seed):
    return torch.from_numpy(np.random.default_rng(seed).random((b, 3, h, w)))  # float64, never all-zero


def _planes(x):
    return x.numpy().reshape(-1, x.shape[-2], x.shape[-1])


def _scipy_residual(x, op):
    out = []
    for p in _planes(x):
        if op == "denoise":
            k = np.array(gaussian_taps(1.0))
            y = ndimage.correlate1d(ndimage.correlate1d(p, k, axis=1, mode="mirror"), k, axis=0, mode="mirror")
        elif op == "median3":
            y = ndimage.median_filter(p, size=3, mode="mirror")
        elif op == "highpass":
            k = np.array([[0, 0.25, 0], [0.25, 0, 0.25], [0, 0.25, 0]])
            y = ndimage.correlate(p, k, mode="mirror")
        else:  # npr in numpy: each pixel minus the top-left pixel of its 2x2 cell
            ii, jj = np.indices(p.shape)
            y = p[(ii // 2) * 2, (jj // 2) * 2]
        out.append(p - y)
    return np.stack(out).reshape(x.shape)


@pytest.mark.parametrize("op", ["denoise", "median3", "npr", "highpass"])
@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("b", [1, 2])
def test_residual_vs_scipy(op, hw, b):
    x = _rand(b, *hw, seed=hash((op, hw, b)) % 2**32)
    got = residual(x, op).numpy()
    np.testing.assert_allclose(got, _scipy_residual(x, op), atol=1e-12, rtol=0)


def test_gaussian_taps_match_scipy_kernel():
    # scipy's gaussian_filter1d with truncate=2/sigma uses the same normalised 5 taps
    k = np.array(gaussian_taps(1.0))
    imp = np.zeros(9)
    imp[4] = 1.0
    np.testing.assert_allclose(ndimage.gaussian_filter1d(imp, 1.0, truncate=2.0, mode="constant")[2:7], k[::-1], atol=1e-15)
    assert abs(k.sum() - 1) < 1e-15


@pytest.mark.parametrize("op", ["denoise", "median3", "npr", "highpass"])
def test_constant_image_has_zero_residual(op):
    x = torch.full((1, 3, 21, 19), 0.37, dtype=torch.float64)
    # float64 taps summing to 1 within 1e-16: the residual of a constant is zero to rounding
    assert residual(x, op).abs().max().item() < 1e-14
