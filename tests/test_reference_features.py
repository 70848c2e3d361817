"""Feature families of the reference vs numpy / scipy oracles in float64.

Tolerances: both sides float64 but different summation orders; 1e-9 relative for sums of a few
thousand terms, 1e-9 absolute on logs (|log| <= 30).
"""
import numpy as np
import pytest
import torch
from scipy import fft as sfft
from scipy import stats

import importlib

F = importlib.import_module("fpfast.reference.features")
from fpfast.spec import FingerprintSpec

SIZES = [(16, 16), (17, 23), (40, 33), (64, 64)]


def _res(b, h, w, seed):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.standard_normal((b, 3, h, w)) * 0.05 + 0.01)


@pytest.mark.parametrize("hw", SIZES)
def test_moments_vs_scipy_stats(hw):
    r = _res(2, *hw, seed=1)
    got = F.moments(r).numpy().reshape(2, 3, 4)
    flat = r.numpy().reshape(2, 3, -1)
    np.testing.assert_allclose(got[..., 0], flat.mean(-1), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(got[..., 1], flat.var(-1), rtol=1e-9)
    np.testing.assert_allclose(got[..., 2], stats.skew(flat, axis=-1, bias=True), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(got[..., 3], stats.kurtosis(flat, axis=-1, fisher=True, bias=True), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("hw", SIZES)
def test_phase_energy_vs_numpy(hw):
    r = _res(2, *hw, seed=2)
    periods = (2, 4, 8)
    got = F.phase_energy(r, periods).numpy()
    e = (r.numpy() ** 2).mean(1)
    want = []
    for p in periods:
        for a in range(p):
            for b in range(p):
                want.append(e[:, a::p, b::p].mean((1, 2)) / e.mean((1, 2)))
    np.testing.assert_allclose(got, np.stack(want, 1), rtol=1e-10)


@pytest.mark.parametrize("hw", SIZES)
def test_block_dct_vs_scipy_dctn(hw):
    r = _res(2, *hw, seed=3)
    g = r.mean(1)
    got = F.block_dct(g).numpy()
    gn = g.numpy()
    h, w = hw
    acc = np.zeros((2, 8, 8))
    n = 0
    for i in range(0, h - 7, 8):
        for j in range(0, w - 7, 8):
            acc += sfft.dctn(gn[:, i:i + 8, j:j + 8], type=2, norm="ortho", axes=(1, 2)) ** 2
            n += 1
    np.testing.assert_allclose(got, np.log(acc / n + F.FEATURE_EPS).reshape(2, 64), atol=1e-9)


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("nbins", [8, 16])
def test_radial_vs_numpy_fft(hw, nbins):
    r = _res(2, *hw, seed=4)
    g = r.mean(1).numpy()
    h, w = hw
    power = np.abs(np.fft.fft2(g)) ** 2 / (h * w)
    rho = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    want = np.zeros((2, nbins))
    last = None
    for k in range(nbins):
        m = (rho >= k / (2 * nbins)) & (rho < (k + 1) / (2 * nbins))
        m &= rho < 0.5
        if m.any():
            last = power[:, m].mean(1)
        want[:, k] = np.log(last + F.FEATURE_EPS)  # empty bin: nearest lower non-empty bin
    np.testing.assert_allclose(F.radial(torch.from_numpy(g), nbins).numpy(), want, atol=1e-9)


def test_radial_bins_nonempty_from_2n_pixels():
    for n in (32, 33, 50):
        k = F.radial_bin_index(n, n, 16)
        assert set(k[k >= 0].unique().tolist()) == set(range(16))


@pytest.mark.parametrize("hw", SIZES)
def test_xcorr_vs_numpy_corrcoef(hw):
    r = _res(2, *hw, seed=5)
    r[:, 1] += 0.5 * r[:, 0]
    got = F.xcorr(r).numpy()
    for b in range(2):
        c = np.corrcoef(r[b].numpy().reshape(3, -1))
        np.testing.assert_allclose(got[b], [c[0, 1], c[0, 2], c[1, 2]], atol=1e-12)


def test_features_layout_matches_spec_slices():
    spec = FingerprintSpec(periods=(2, 3), radial_bins=8, families=("xcorr", "phase", "moments"))
    r = _res(1, 24, 24, seed=6)
    v = F.features(r, spec)
    assert v.shape == (1, spec.dim) == (1, 3 + 4 + 9 + 12)
    np.testing.assert_allclose(v[:, spec.slices["xcorr"]].numpy(), F.xcorr(r).numpy())
    np.testing.assert_allclose(v[:, spec.slices["moments"]].numpy(), F.moments(r).numpy())
    assert len(spec.feature_names()) == spec.dim
