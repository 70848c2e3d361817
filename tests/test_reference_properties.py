"""Properties the fingerprint must have, whatever the oracle."""
import numpy as np
import pytest
import torch

from fpfast.reference import fingerprint, residual
from fpfast.reference.features import phase_energy
from fpfast.spec import FingerprintSpec


def test_period4_pattern_lights_period4_phases_not_period8_odd_phases():
    # a residual with energy only on the (0, 0) phase of a period-4 grid
    r = torch.zeros(1, 3, 32, 32, dtype=torch.float64)
    r[..., ::4, ::4] = 1.0
    ph = phase_energy(r, (2, 4, 8))[0]
    p4 = ph[4:20].reshape(4, 4)
    p8 = ph[20:84].reshape(8, 8)
    assert p4[0, 0] == pytest.approx(16.0)  # all the energy on 1/16 of the pixels
    assert p4.sum() - p4[0, 0] == 0
    odd8 = p8[1::2, :].sum() + p8[:, 1::2].sum()
    assert odd8 == 0  # multiples of 4 are even: period 8's odd phases stay dark
    # phases (0,0), (0,4), (4,0), (4,4) of period 8 each hold a quarter of the energy on 1/64 of the pixels
    assert p8[4, 4] == pytest.approx(16.0) and p8[0, 0] == pytest.approx(16.0) and p8.sum() == pytest.approx(64.0)


def test_period4_upsampling_grid_survives_the_residual():
    # nearest x4 up-sampling of noise leaves a period-4 trace in the NPR/highpass residual
    rng = np.random.default_rng(0)
    small = torch.from_numpy(rng.random((1, 3, 8, 8)))
    x = small.repeat_interleave(4, -2).repeat_interleave(4, -1)
    for op in ("highpass", "denoise"):
        ph = phase_energy(residual(x, op), (4, 8))[0][:16].reshape(4, 4)
        flat = torch.ones(4, 4, dtype=ph.dtype)
        assert (ph - flat).abs().max() > 0.3, op  # far from the uniform 1.0 of phase-free noise


def test_layout_and_dtype_invariance():
    spec = FingerprintSpec(size=32)
    rng = np.random.default_rng(1)
    u8_hwc = torch.from_numpy(rng.integers(0, 256, (2, 40, 36, 3), dtype=np.uint8))
    f_chw = u8_hwc.permute(0, 3, 1, 2).float() / 255.0
    a = fingerprint(u8_hwc, spec)
    b = fingerprint(f_chw, spec)
    c = fingerprint(f_chw.contiguous(), spec, layout="chw")
    # the same float32 pixels in the same memory order: identical numbers
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # contiguous copy: float32 reductions run in another order; values differ by rounding only
    # (log-energies to 1e-5 absolute, small correlations to 1e-4 relative)
    torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-5)


def test_constant_image_fingerprint_is_finite_and_flat():
    v = fingerprint(torch.full((1, 3, 24, 24), 0.5), FingerprintSpec(size=24))
    assert torch.isfinite(v).all()


def test_geometry_crop_and_min_size():
    spec = FingerprintSpec(size=32)
    x = torch.rand(1, 3, 50, 60)
    torch.testing.assert_close(fingerprint(x, spec), fingerprint(x[..., 9:41, 14:46], spec))
    with pytest.raises(ValueError, match="minimum of 16"):
        fingerprint(torch.rand(1, 3, 15, 40), spec)


def test_empty_batch():
    spec = FingerprintSpec()
    assert fingerprint(torch.zeros(0, 3, 32, 32), spec).shape == (0, spec.dim)


def test_resize_geometry_same_for_uint8_and_float():
    from fpfast.ops.features import fingerprint_features

    spec = FingerprintSpec(size=32, geometry="resize")
    u8 = torch.randint(0, 256, (1, 48, 40, 3), dtype=torch.uint8)
    a = fingerprint_features(u8, spec, backend="torch")
    b = fingerprint_features(u8.float() / 255, spec, backend="torch")
    # same resampled [0, 1] pixels (uint8 scaled before resampling): float32 rounding only
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
