"""The cpp fused feature op (fpfast._C.feature_sums) against the pure-torch reference."""
from __future__ import annotations

import pytest
import torch

import fpfast
from fpfast.ops import cpp
from fpfast.ops.features import fingerprint_features
from fpfast.ops.sums import n_sums, sums_torch
from fpfast.reference.residual import residual as reference_residual
from fpfast.spec import RESIDUALS, FingerprintSpec

pytestmark = pytest.mark.skipif("feature_sums" not in fpfast.build_config().get("cpu_kernels", []),
                                reason="fpfast._C was built without the feature_sums kernel")

SIZES = [(16, 16), (17, 23), (33, 65), (64, 64)]


def _images(b, h, w, dtype, seed=0):
    """Random images, never all zeros: uint8 in [0, 255] or float32 in [0, 1)."""
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=g)
    return torch.rand(b, 3, h, w, generator=g)


def _as_float(x):
    return x.float() / 255.0 if x.dtype == torch.uint8 else x


def _assert_sums_close(got, r, spec):
    """Kernel sums vs the float64 oracle on the same float32 residual.

    Per pixel the kernel works in float32 and sums up to 256 columns in float32 before adding to
    float64, so each sum carries a relative error of about 256 * 2^-24 (1.5e-5) at worst of the
    sum of the *absolute* terms (S1 and S3 cancel to near 0, so |sum| is no scale for them):
    tolerance 2e-5 * max(|oracle|, oracle on |r|) + 1e-12.
    """
    want = sums_torch(r, spec)
    scale = torch.maximum(want.abs(), sums_torch(r.abs(), spec).abs())
    assert got.dtype == torch.float64 and got.shape == want.shape
    err = (got - want).abs()
    assert (err <= 2e-5 * scale + 1e-12).all(), f"worst relative error {(err / (scale + 1e-30)).max().item():.3g}"


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


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32], ids=["u8", "f32"])
@pytest.mark.parametrize("hw", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
@pytest.mark.parametrize("op", RESIDUALS)
def test_sums_gray_residual_match_oracle(op, hw, dtype):
    spec = FingerprintSpec(residual=op, geometry="none")
    x = _images(2, *hw, dtype)
    sums, gray, res = cpp.feature_sums(x, spec, op, True, True)
    r = reference_residual(_as_float(x), op, spec.sigma)
    # residual: float32 per pixel, the denoiser sums its taps in another order than conv2d: 1e-6 on [-1, 1]
    torch.testing.assert_close(res, r, rtol=0, atol=1e-6)
    torch.testing.assert_close(gray, r.mean(1), rtol=0, atol=1e-6)  # same reason
    _assert_sums_close(sums, r, spec)


@pytest.mark.parametrize("hw", SIZES + [(80, 72), (100, 41)], ids=lambda hw: f"{hw[0]}x{hw[1]}")
@pytest.mark.parametrize("op", RESIDUALS)
def test_features_match_torch_backend(op, hw):
    # 80 and 100 rows span several 32-row bands (partial last band, DCT rows on both sides)
    spec = FingerprintSpec(residual=op, geometry="none")
    x = _images(3, *hw, torch.uint8, seed=1)
    _assert_features_close(fingerprint_features(x, spec, backend="cpp"),
                           fingerprint_features(x, spec, backend="torch"), spec)


@pytest.mark.parametrize("periods", [(3, 6, 5), (16,), (2, 8, 4, 2)], ids=str)
def test_other_periods_and_no_radial(periods):
    # 3 is folded from 6, 2 and 4 from 8 (duplicates included); no radial family: no gray wanted
    spec = FingerprintSpec(periods=periods, families=("phase", "dct", "xcorr", "moments"), geometry="none")
    x = _images(2, 37, 45, torch.float32, seed=2)
    sums, gray, res = cpp.feature_sums(x, spec, spec.residual, False, False)
    assert gray is None and res is None and sums.shape == (2, n_sums(spec))
    _assert_sums_close(sums, reference_residual(x, spec.residual, spec.sigma), spec)
    _assert_features_close(fingerprint_features(x, spec, backend="cpp"),
                           fingerprint_features(x, spec, backend="torch"), spec)


def test_batch_one_equals_row_of_batch():
    # every image is reduced on its own, in a fixed band order: bit-identical whatever the batch
    spec = FingerprintSpec(geometry="none")
    x = _images(4, 70, 50, torch.uint8, seed=3)
    whole = cpp.feature_sums(x, spec, "denoise", True, False)
    one = cpp.feature_sums(x[2:3], spec, "denoise", True, False)
    assert torch.equal(one[0][0], whole[0][2]) and torch.equal(one[1][0], whole[1][2])
    again = cpp.feature_sums(x, spec, "denoise", True, False)
    assert torch.equal(again[0], whole[0])


def test_empty_batch():
    spec = FingerprintSpec()
    x = torch.zeros(0, 64, 64, 3, dtype=torch.uint8)
    out = fingerprint_features(x, spec, backend="cpp")
    assert out.shape == (0, spec.dim)
    out, r = fingerprint_features(x, spec, backend="cpp", return_residual=True)
    assert out.shape == (0, spec.dim) and r.shape == (0, 3, 64, 64)
    sums, gray, res = cpp.feature_sums(x.permute(0, 3, 1, 2), spec, "denoise", True, True)
    assert sums.shape == (0, n_sums(spec)) and gray.shape == (0, 64, 64) and res.shape == (0, 3, 64, 64)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32], ids=["u8", "f32"])
def test_non_contiguous_inputs_read_in_place(dtype):
    spec = FingerprintSpec(geometry="none")
    big = _images(4, 3 * 40, 2 * 57, dtype, seed=4).permute(0, 2, 3, 1).contiguous()  # HWC storage
    views = {
        "hwc": big.permute(0, 3, 1, 2),                         # channels last, as images arrive
        "sliced": big.permute(0, 3, 1, 2)[::2, :, 1::3, ::2],   # batch, row and column strides
        "chw-sliced": big.permute(0, 3, 1, 2).contiguous()[1:3, :, 5:40, 3:60],
    }
    for name, v in views.items():
        assert not v.is_contiguous()
        got = cpp.feature_sums(v, spec, "denoise", True, True)
        ref = cpp.feature_sums(v.contiguous(), spec, "denoise", True, True)
        for a, b in zip(got, ref):  # same values in another layout: bit-identical
            assert torch.equal(a, b), name
        _assert_features_close(fingerprint_features(v, spec, backend="cpp"),
                               fingerprint_features(v, spec, backend="torch"), spec)


def test_hwc_batch_through_fingerprint_features():
    spec = FingerprintSpec(size=48)  # crop 48x48 out of 61x53: an offset, strided view
    x = _images(2, 61, 53, torch.uint8, seed=5).permute(0, 2, 3, 1)
    _assert_features_close(fingerprint_features(x, spec, backend="cpp"),
                           fingerprint_features(x, spec, backend="torch"), spec)


def test_is_residual():
    spec = FingerprintSpec(geometry="none")
    r = _images(2, 33, 47, torch.float32, seed=6) - 0.5  # a residual is signed
    got = fingerprint_features(r, spec, backend="cpp", is_residual=True)
    _assert_features_close(got, fingerprint_features(r, spec, backend="torch", is_residual=True), spec)
    sums, _, res = cpp.feature_sums(r, spec, "none", False, True)
    assert torch.equal(res, r)  # op none passes the residual through untouched
    _assert_sums_close(sums, r, spec)


@pytest.mark.parametrize("op", RESIDUALS)
def test_return_residual(op):
    spec = FingerprintSpec(residual=op, size=40)
    x = _images(2, 45, 41, torch.uint8, seed=7).permute(0, 2, 3, 1)
    out, r = fingerprint_features(x, spec, backend="cpp", return_residual=True)
    want_out, want_r = fingerprint_features(x, spec, backend="torch", return_residual=True)
    assert r.shape == (2, 3, 40, 40) and r.dtype == torch.float32
    torch.testing.assert_close(r, want_r, rtol=0, atol=1e-6)  # float32 per pixel, see above
    _assert_features_close(out, want_out, spec)


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
