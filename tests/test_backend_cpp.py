"""cpp-specific cases of the fused feature op (fpfast._C.feature_sums): bands, threads, the residual
kernel, argument checks. The cases every backend shares are in test_backend_conformance.py."""
from __future__ import annotations

import pytest
import torch

import fpfast
from fpfast.ops import cpp
from fpfast.ops.features import fingerprint_features
from fpfast.reference.residual import residual as reference_residual
from fpfast.spec import RESIDUALS, FingerprintSpec

pytestmark = pytest.mark.skipif("feature_sums" not in fpfast.build_config().get("cpu_kernels", []),
                                reason="fpfast._C was built without the feature_sums kernel")

def _images(b, h, w, dtype, seed=0):
    """Random images, never all zeros: uint8 in [0, 255] or float32 in [0, 1)."""
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=g)
    return torch.rand(b, 3, h, w, generator=g)


def _assert_features_close(got, want, spec):
    """Finalised vectors (float32) of the cpp and torch backends, family by family.

    moments: mean atol 1e-6 (a mean of a residual is ~0; the reference sums in float32);
             var rtol 1e-4; skew, kurt atol 1e-4 (ratios of float32 central moments, O(1)).
    phase:   rtol 1e-4, atol 1e-6 (ratios near 1 of float32 means).
    dct, radial: atol 1e-4 (logs: an absolute error is the relative error of the energy).
    xcorr:   atol 1e-5 (correlations in [-1, 1] from float32 covariances).
    """
    assert got.shape == want.shape and got.dtype == torch.float32
    sl = spec.slices
    if "moments" in sl:
        g, w = got[:, sl["moments"]].view(-1, 3, 4), want[:, sl["moments"]].view(-1, 3, 4)
        torch.testing.assert_close(g[..., 0], w[..., 0], rtol=0, atol=1e-6)
        torch.testing.assert_close(g[..., 1], w[..., 1], rtol=1e-4, atol=1e-9)
        torch.testing.assert_close(g[..., 2:], w[..., 2:], rtol=0, atol=1e-4)
    for fam, rtol, atol in (("phase", 1e-4, 1e-6), ("dct", 0, 1e-4), ("radial", 0, 1e-4), ("xcorr", 0, 1e-5)):
        if fam in sl:
            torch.testing.assert_close(got[:, sl[fam]], want[:, sl[fam]], rtol=rtol, atol=atol, msg=fam)


@pytest.mark.parametrize("hw", [(80, 72), (100, 41)], ids=lambda hw: f"{hw[0]}x{hw[1]}")
@pytest.mark.parametrize("op", RESIDUALS)
def test_features_across_bands_match_torch_backend(op, hw):
    # 80 and 100 rows span several 32-row bands (partial last band, DCT rows on both sides)
    spec = FingerprintSpec(residual=op, geometry="none")
    x = _images(3, *hw, torch.uint8, seed=1)
    _assert_features_close(fingerprint_features(x, spec, backend="cpp"),
                           fingerprint_features(x, spec, backend="torch"), spec)


@pytest.mark.parametrize("op", RESIDUALS)
def test_residual_kernel_still_matches(op):
    # _C.residual shares the row helpers with feature_sums
    x = _images(2, 19, 26, torch.uint8, seed=8).permute(0, 2, 3, 1)
    got = fpfast.ops.residual(x, op, backend="cpp")
    torch.testing.assert_close(got, reference_residual(x.permute(0, 3, 1, 2).float() / 255.0, op),
                               rtol=0, atol=1e-6)  # float32 per pixel, see above


def test_error_messages_say_what_was_received():
    C = fpfast.backends.cpp_module()
    with pytest.raises(ValueError, match="expected 3 channels, got 4"):
        C.feature_sums(torch.rand(1, 4, 16, 16).numpy(), "denoise", 1.0, [2])
    with pytest.raises(ValueError, match="uint8 or float32, got dtype float64"):
        C.feature_sums(torch.rand(1, 3, 16, 16, dtype=torch.float64).numpy(), "denoise", 1.0, [2])
    with pytest.raises(ValueError, match="at least 16x16, got 15x16"):
        C.feature_sums(torch.rand(1, 3, 16, 15).numpy(), "denoise", 1.0, [2])
    with pytest.raises(ValueError, match="op 'none' takes a float32 residual, got dtype uint8"):
        C.feature_sums(torch.zeros(1, 3, 16, 16, dtype=torch.uint8).numpy(), "none", 1.0, [2])
    with pytest.raises(ValueError, match=r"periods must lie in \[2, 16\], got 17"):
        C.feature_sums(torch.rand(1, 3, 16, 16).numpy(), "denoise", 1.0, [2, 17])
    with pytest.raises(ValueError, match="unknown residual operator 'blur'"):
        C.feature_sums(torch.rand(1, 3, 16, 16).numpy(), "blur", 1.0, [2])


def test_same_bits_for_any_thread_count(tmp_path):
    # fixed row bands reduced in band order: the thread count must not change a single bit
    import os
    import subprocess
    import sys

    script = (
        "import sys, torch\n"
        "from fpfast.ops import cpp\n"
        "from fpfast.spec import FingerprintSpec\n"
        "x = torch.randint(0, 256, (3, 3, 150, 70), dtype=torch.uint8, generator=torch.Generator().manual_seed(9))\n"
        "s, g, _ = cpp.feature_sums(x, FingerprintSpec(), 'denoise', True, False)\n"
        "torch.save((s, g), sys.argv[1])\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outs = []
    for threads in (1, 2, 3):
        path = tmp_path / f"t{threads}.pt"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": root}
        subprocess.run([sys.executable, "-c", script, str(path)], env=env, check=True, cwd=root)
        outs.append(torch.load(path))
    for s, g in outs[1:]:
        assert torch.equal(s, outs[0][0]) and torch.equal(g, outs[0][1])
