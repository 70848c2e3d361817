"""The fused-kernel contract: raw sums -> finalize gives the reference features (float64 oracle)."""
import pytest
import torch

from fpfast.ops.sums import finalize, radial_features, sums_torch
from fpfast.reference import features, residual
from fpfast.reference.features import radial
from fpfast.spec import FingerprintSpec


@pytest.mark.parametrize("hw", [(16, 16), (16, 17), (37, 41), (64, 64)])
@pytest.mark.parametrize("spec", [FingerprintSpec(), FingerprintSpec(periods=(3, 5), radial_bins=7,
                                                                     families=("radial", "xcorr", "dct", "phase", "moments"))])
def test_finalize_of_sums_equals_reference_features(hw, spec):
    torch.manual_seed(0)
    r = residual(torch.rand(3, 3, *hw, dtype=torch.float64), "denoise")
    got = finalize(sums_torch(r, spec), *hw, spec, radial_features(r.mean(1).float(), spec.radial_bins))
    # finalize works from raw power sums (float64) and emits float32; the radial part runs a
    # float32 rfft: 1e-5 absolute on log-energies and on O(1) moments
    torch.testing.assert_close(got, features(r, spec).float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hw", [(16, 16), (17, 23), (32, 33)])
def test_half_spectrum_binning_equals_full_fft(hw):
    g = torch.randn(2, *hw, dtype=torch.float64)
    torch.testing.assert_close(radial_features(g, 16).double(), radial(g, 16), rtol=0, atol=2e-5)


def test_finalize_needs_radial_when_spec_has_it():
    spec = FingerprintSpec()
    with pytest.raises(ValueError, match="radial"):
        finalize(torch.zeros(1, 15 + 84 + 64, dtype=torch.float64), 32, 32, spec)
