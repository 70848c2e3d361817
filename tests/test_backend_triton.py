"""Triton backend of fingerprint_features vs the torch reference.

Runs on CUDA when there is a GPU, else on CPU through the Triton interpreter (fp32, ~1000x slower:
small shapes only). The interpreter is chosen when the kernel module is imported, so
TRITON_INTERPRET=1 is set here, before anything imports fpfast.ops.triton, unless a GPU is present
(CI sets it for the whole suite anyway). Skips come from fpfast.backends, never from try/except.
"""
import os

import pytest
import torch

from fpfast import backends

if backends.triton_installed() and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.ops.sums import n_sums, sums_torch  # noqa: E402
from fpfast.reference.residual import residual as ref_residual  # noqa: E402
from fpfast.spec import FingerprintSpec  # noqa: E402

DEVICE = "cpu" if backends.triton_interpret() else "cuda"
WHY = backends.why_unusable("triton", DEVICE) if DEVICE == "cpu" or torch.cuda.is_available() \
    else "no CUDA GPU and TRITON_INTERPRET is off"
pytestmark = [pytest.mark.triton, pytest.mark.skipif(WHY is not None, reason=str(WHY))]

OPS = ("denoise", "median3", "npr", "highpass")
PERIODS = (2, 3, 4, 5, 8, 16)  # powers of 2 and not, up to the spec's maximum


def _images(b, h, w, dtype, seed=0, layout="hwc"):
    """Random images (never zeros): uint8 in [1, 255] or float32 in (0, 1), as a [B,3,H,W] view."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, 256, (b, h, w, 3), generator=g, dtype=torch.uint8)
    if dtype == torch.float32:
        x = x.float() / 255.0 + torch.rand(b, h, w, 3, generator=g) * 1e-3
    x = x.to(DEVICE)
    return x.permute(0, 3, 1, 2) if layout == "hwc" else x.permute(0, 3, 1, 2).contiguous()


def _feature_sums(*args):
    from fpfast.ops.triton.features import feature_sums  # imported after TRITON_INTERPRET is set
    return feature_sums(*args)


def _float(x):
    return x.float() / 255.0 if x.dtype == torch.uint8 else x


def _check_sums(got, r, spec):
    ref = sums_torch(r, spec)
    # fp32 per-tile partials (tree sums of <= 1024 terms) reduced in float64, and fp32 residuals that
    # may differ from torch's in the last bit: relative 1e-5 of the sum of |terms| covers both.
    scale = torch.maximum(ref.abs(), sums_torch(r.abs(), spec))
    # a sum whose exact value is 0 (npr's anchor phases) is judged against the image's total
    # energy: a GPU compiler may contract x*(1/255) - anchor into an FMA, leaving ~1e-9 residuals
    scale = torch.maximum(scale, 1e-6 * ref[:, 3:6].sum(1, keepdim=True))
    err = (got.cpu() - ref.cpu()).abs() / (scale.cpu() + 1e-12)
    assert err.max().item() < 1e-5, f"worst sum {err.argmax(1).tolist()}: {err.max().item():.2e}"


@pytest.mark.parametrize("op", OPS + ("none",))
@pytest.mark.parametrize("b,h,w", [(1, 16, 16), (2, 17, 23), (1, 24, 40), (1, 40, 33)])
def test_raw_sums_gray_residual(op, b, h, w):
    spec = FingerprintSpec(residual=op if op != "none" else "denoise", periods=PERIODS)
    dtype = torch.float32 if op == "none" else torch.uint8
    x = _images(b, h, w, dtype, seed=h * w)
    if op == "none":
        x = x - 0.5  # a residual: signed values
    sums, gray, res = _feature_sums(x, spec, op, True, True)
    assert sums.dtype == torch.float64 and sums.shape == (b, n_sums(spec))
    xf = _float(x)
    r = xf if op == "none" else ref_residual(xf, op, spec.sigma)
    # median3 / npr / highpass / none do the same fp32 operations as torch (exact); denoise sums
    # its 25 taps in another order: a few ulps of values in [0, 1].
    assert torch.allclose(res, r, rtol=0, atol=1e-6)
    assert torch.allclose(gray, r.mean(1), rtol=0, atol=1e-6)  # (r0+r1+r2)/3 vs torch's mean
    _check_sums(sums, r, spec)


@pytest.mark.parametrize("case", ["uint8_hwc", "uint8_chw", "float_hwc", "float_strided", "batch1"])
def test_features_match_torch(case):
    op = {"uint8_hwc": "denoise", "uint8_chw": "median3", "float_hwc": "npr", "float_strided": "highpass",
          "batch1": "denoise"}[case]
    spec = FingerprintSpec(size=40, residual=op)
    dtype = torch.uint8 if case.startswith("uint8") or case == "batch1" else torch.float32
    b = 1 if case == "batch1" else 3
    if case == "float_strided":  # a strided slice: every other row, columns 1, 3, 5, ...
        x = _images(b, 2 * 19, 2 * 23 + 1, dtype, layout="hwc")[:, :, ::2, 1::2]
    else:
        x = _images(b, 17, 31, dtype, layout="chw" if case == "uint8_chw" else "hwc")
    images = x.permute(0, 2, 3, 1) if case.endswith("hwc") else x  # HWC arrives as HWC tensors
    got, r_got = fingerprint_features(images, spec, backend="triton", return_residual=True)
    ref, r_ref = fingerprint_features(images, spec, backend="torch", return_residual=True)
    assert got.shape == ref.shape == (b, spec.dim) and got.dtype == torch.float32
    # features are logs, ratios and normalised moments of sums that agree to ~1e-6 relative;
    # skew/kurtosis/xcorr amplify that a little: 2e-4 absolute + 2e-4 relative.
    assert torch.allclose(got.cpu(), ref.cpu(), rtol=2e-4, atol=2e-4), (got - ref).abs().max()
    assert torch.allclose(r_got, r_ref, rtol=0, atol=1e-6)  # residual values, see above


def test_is_residual():
    spec = FingerprintSpec(size=32, periods=(2, 6))
    g = torch.Generator().manual_seed(3)
    r = (torch.randn(2, 3, 24, 29, generator=g) * 0.05).to(DEVICE)
    got = fingerprint_features(r, spec, backend="triton", is_residual=True)
    ref = fingerprint_features(r, spec, backend="torch", is_residual=True)
    assert torch.allclose(got.cpu(), ref.cpu(), rtol=2e-4, atol=2e-4)  # as in test_features_match_torch


def test_uint8_equals_float_of_it():
    """A uint8 batch and its float32 x/255 give the same sums: the kernel converts like torch."""
    spec = FingerprintSpec(periods=(2, 4))
    x = _images(1, 16, 24, torch.uint8)
    a = _feature_sums(x, spec, "highpass", False, False)[0]
    b = _feature_sums(x.float() / 255.0, spec, "highpass", False, False)[0]
    # identical fp32 inputs; on a GPU the compiler may fuse the uint8 scaling into an FMA, so the
    # two programs agree to float32 rounding rather than bit for bit
    # (measured on an H100: 2.6e-5 relative at most)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=0) if a.is_cuda else torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_no_gray_no_residual_and_empty_batch():
    spec = FingerprintSpec(families=("moments", "phase", "dct", "xcorr"))
    x = _images(1, 16, 16, torch.uint8)
    sums, gray, res = _feature_sums(x, spec, "denoise", False, False)
    assert gray is None and res is None and sums.shape == (1, n_sums(spec))
    empty = x[:0]
    sums, gray, res = _feature_sums(empty, spec, "denoise", True, True)
    assert sums.shape == (0, n_sums(spec)) and gray.shape == (0, 16, 16) and res.shape == (0, 3, 16, 16)
    out, r = fingerprint_features(empty.permute(0, 2, 3, 1), spec, backend="triton", return_residual=True)
    assert out.shape == (0, spec.dim) and r.shape == (0, 3, 16, 16)


def test_bad_input_messages():
    spec = FingerprintSpec()
    x = _images(1, 16, 16, torch.uint8)
    with pytest.raises(TypeError, match="must be float32, got uint8"):
        _feature_sums(x, spec, "none", False, False)
    with pytest.raises(ValueError, match="unknown residual operator 'blur'"):
        _feature_sums(x, spec, "blur", False, False)
    with pytest.raises(ValueError, match=r"expected x of shape \[B, 3, H, W\], got \(1, 16, 16, 3\)"):
        _feature_sums(x.permute(0, 2, 3, 1), spec, "denoise", False, False)
