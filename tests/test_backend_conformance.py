"""One conformance suite for the fused backends of fingerprint_features (cpp, triton, cuda).

Every case runs on each backend present here: cpp when fpfast._C has the kernel; triton on CUDA
when there is a GPU, else on CPU under TRITON_INTERPRET=1 (~1000x slower: small shapes only);
cuda when fpfast._C_cuda is built and torch sees a GPU. Skips come from fpfast.backends /
build_config() and torch.cuda.is_available(), never from try/except. Backend-specific cases live
in test_backend_cpp.py, test_backend_triton.py and test_backend_cuda.py.
"""
from __future__ import annotations

import importlib
import os

import pytest
import torch

import fpfast
from fpfast import backends

if backends.triton_installed() and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports fpfast.ops.triton

from fpfast.contract import OFF_S2  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.ops.sums import n_sums, sums_torch  # noqa: E402
from fpfast.reference.residual import residual as reference_residual  # noqa: E402
from fpfast.spec import RESIDUALS, FingerprintSpec  # noqa: E402

HAVE_GPU = torch.cuda.is_available()
DEVICE = {"cpp": "cpu", "triton": "cuda" if HAVE_GPU else "cpu", "cuda": "cuda"}
MODULE = {"cpp": "fpfast.ops.cpp", "triton": "fpfast.ops.triton.features", "cuda": "fpfast.ops.cuda"}


def _why_not(backend):
    if backend == "cpp" and "feature_sums" not in fpfast.build_config().get("cpu_kernels", []):
        return "fpfast._C was built without the feature_sums kernel"
    if backend == "cuda" and not (fpfast.build_config().get("cuda_module") and HAVE_GPU):
        return f"needs fpfast._C_cuda and a CUDA GPU (cuda_module={fpfast.build_config().get('cuda_module')}, " \
               f"cuda available={HAVE_GPU})"
    return backends.why_unusable(backend, DEVICE[backend])


BACKENDS = [pytest.param(b, marks=[pytest.mark.skipif(_why_not(b) is not None, reason=str(_why_not(b)))]
                         + ([getattr(pytest.mark, b)] if b != "cpp" else []))  # the registered triton / cuda marks
            for b in ("cpp", "triton", "cuda")]
GPU_POST = [p for p in BACKENDS if p.values[0] != "cpp"]  # backends with the fused post kernel


def feature_sums(backend, x, spec, op, want_gray=True, want_residual=True):
    return importlib.import_module(MODULE[backend]).feature_sums(x, spec, op, want_gray, want_residual)


def images(backend, b, h, w, dtype, seed=0, layout="hwc"):
    """Random images (never all zeros) as a [B,3,H,W] view: uint8 in [1, 255] or float32 in (0, 1)."""
    g = torch.Generator().manual_seed(seed + 1000 * h + w)
    x = torch.randint(1, 256, (b, h, w, 3), generator=g, dtype=torch.uint8)
    if dtype == torch.float32:
        x = x.float() / 255.0 + torch.rand(b, h, w, 3, generator=g) * 1e-3
    x = x.to(DEVICE[backend]).permute(0, 3, 1, 2)
    return x if layout == "hwc" else x.contiguous()


def as_float(x):
    return x.float() / 255.0 if x.dtype == torch.uint8 else x


def check_sums(got, r, spec):
    """Kernel sums vs the float64 oracle on the float32 residual. Each backend sums float32 terms in
    float32 groups (cpp: <= 256 columns; cuda: <= 8 tiles of 1024 px; triton: one tile of 1024 px)
    before float64: relative 2e-5 of the sum of |terms| covers all (S1, S3 and cross sums cancel, so
    the value is no scale for them). A sum whose exact value is 0 (npr's anchor phases) is judged
    against 1e-6 of the image's energy: a GPU compiler may contract x/255 - anchor into an FMA."""
    r = r.double().cpu()
    want = sums_torch(r, spec)
    scale = torch.maximum(want.abs(), sums_torch(r.abs(), spec).abs())
    scale = torch.maximum(scale, 1e-6 * want[:, OFF_S2:OFF_S2 + 3].sum(1, keepdim=True))
    assert got.dtype == torch.float64 and got.shape == want.shape
    err = (got.cpu() - want).abs()
    assert (err <= 2e-5 * scale + 1e-12).all(), f"worst relative error {(err / (scale + 1e-30)).max().item():.3g}"


def check_features(backend, got, want, spec):
    """Vectors of a fused backend vs backend=torch (float32 reference), family by family:
    moments: mean atol 1e-6 (a residual's mean is ~0); var rtol 1e-4; skew, kurt atol 2e-4 (ratios of
    float32 central moments, O(1)); phase rtol 1e-4, atol 1e-6 (ratios near 1); dct, radial atol 2e-4
    (logs: absolute = relative error of the energy); xcorr atol 2e-5 (float32 covariances in [-1, 1]).
    The GPU backends use the library FFT in float32 (another order than the CPU's) and the GPU
    compilers contract to FMAs: x10 on skew/kurt/dct/radial/xcorr there (measured on an H100: within
    1e-3 before this suite)."""
    assert got.shape == want.shape and got.dtype == torch.float32 and got.device == want.device
    got, want = got.cpu(), want.cpu()
    k = 10.0 if DEVICE[backend] == "cuda" else 1.0
    sl = spec.slices
    if "moments" in sl:
        g, w = got[:, sl["moments"]].view(-1, 3, 4), want[:, sl["moments"]].view(-1, 3, 4)
        torch.testing.assert_close(g[..., 0], w[..., 0], rtol=0, atol=1e-6 * k, msg="mean")
        torch.testing.assert_close(g[..., 1], w[..., 1], rtol=1e-4 * k, atol=1e-9, msg="var")
        torch.testing.assert_close(g[..., 2:], w[..., 2:], rtol=0, atol=2e-4 * k, msg="skew/kurt")
    for fam, rtol, atol in (("phase", 1e-4, 1e-6), ("dct", 0, 2e-4), ("radial", 0, 2e-4), ("xcorr", 0, 2e-5)):
        if fam in sl:
            torch.testing.assert_close(got[:, sl[fam]], want[:, sl[fam]], rtol=rtol * k, atol=atol * k, msg=fam)


def check_residual(r, want):
    # float32 per pixel; the denoiser sums its taps in another order than conv2d: 1e-6 on [-1, 1]
    torch.testing.assert_close(r.cpu(), want.cpu(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("hw", [(17, 23), (40, 33)], ids=lambda s: f"{s[0]}x{s[1]}")  # one tile; 2 x 2 partial tiles
@pytest.mark.parametrize("op", RESIDUALS + ("none",))
@pytest.mark.parametrize("backend", BACKENDS)
def test_sums_gray_residual(backend, op, hw):
    spec = FingerprintSpec(residual="denoise" if op == "none" else op, periods=(2, 3, 5, 8, 16), geometry="none")
    x = images(backend, 1 if hw[0] > 32 else 2, *hw, torch.float32 if op == "none" else torch.uint8)
    if op == "none":
        x = x - 0.5  # a residual: signed
    sums, gray, res = feature_sums(backend, x, spec, op)
    r = as_float(x) if op == "none" else reference_residual(as_float(x), op, spec.sigma)
    check_residual(res, r)
    torch.testing.assert_close(gray.cpu(), r.mean(1).cpu(), rtol=0, atol=1e-6)  # (r0+r1+r2)/3 vs torch's mean
    check_sums(sums, r, spec)


@pytest.mark.parametrize("case", ["uint8_hwc", "float_hwc", "float_strided", "multi_tile"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_features_match_torch(backend, case):
    op = {"uint8_hwc": "denoise", "float_hwc": "npr", "float_strided": "highpass", "multi_tile": "median3"}[case]
    spec = FingerprintSpec(size=40, residual=op, geometry="none" if case == "multi_tile" else "crop")
    dtype = torch.float32 if case.startswith("float") else torch.uint8
    b = 1 if case == "multi_tile" else 3
    if case == "float_strided":  # every other row, columns 1, 3, 5, ...
        x = images(backend, b, 2 * 19, 2 * 23 + 1, dtype)[:, :, ::2, 1::2]
    elif case == "multi_tile":  # several 32-px tiles / bands, partial last ones, DCT rows on both sides
        x = images(backend, 1, 70, 36, dtype)
    else:
        x = images(backend, b, 17, 31, dtype)
    batch = x.permute(0, 2, 3, 1) if case.endswith("hwc") or case == "multi_tile" else x  # HWC as HWC tensors
    got, r_got = fingerprint_features(batch, spec, backend=backend, return_residual=True)
    ref, r_ref = fingerprint_features(batch, spec, backend="torch", return_residual=True)
    assert got.shape == (b, spec.dim)
    check_features(backend, got, ref, spec)
    check_residual(r_got, r_ref)


@pytest.mark.parametrize("periods", [(16,), (2, 8, 4, 3, 2)], ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
def test_other_periods_and_no_radial(backend, periods):
    # cpp folds 2 and 4 from 8 (duplicates included); no radial family: no gray wanted
    spec = FingerprintSpec(periods=periods, families=("phase", "dct", "xcorr", "moments"), geometry="none")
    x = images(backend, 2, 20, 27, torch.float32, seed=2)
    sums, gray, res = feature_sums(backend, x, spec, spec.residual, False, False)
    assert gray is None and res is None and sums.shape == (2, n_sums(spec))
    check_sums(sums, reference_residual(x, spec.residual, spec.sigma), spec)
    check_features(backend, fingerprint_features(x, spec, backend=backend),
                   fingerprint_features(x, spec, backend="torch"), spec)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_one_equals_row_of_batch(backend):
    # every image is reduced on its own in a fixed order: a row does not depend on its batch
    spec = FingerprintSpec(geometry="none", residual="npr")
    x = images(backend, 2, 24, 20, torch.uint8, seed=3)
    whole = fingerprint_features(x, spec, backend=backend)
    one = fingerprint_features(x[1:2], spec, backend=backend)
    if DEVICE[backend] == "cpu":
        assert torch.equal(one[0], whole[1])
        assert torch.equal(fingerprint_features(x, spec, backend=backend), whole)  # run to run
    else:  # the library FFT may plan a batch of 1 differently from a batch of 2: float32 rounding
        torch.testing.assert_close(one[0], whole[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(backend):
    spec = FingerprintSpec()
    x = torch.zeros(0, 64, 64, 3, dtype=torch.uint8, device=DEVICE[backend])
    out = fingerprint_features(x, spec, backend=backend)
    assert out.shape == (0, spec.dim) and out.device == x.device
    out, r = fingerprint_features(x, spec, backend=backend, return_residual=True)
    assert out.shape == (0, spec.dim) and r.shape == (0, 3, 64, 64)
    sums, gray, res = feature_sums(backend, x.permute(0, 3, 1, 2), spec, "denoise")
    assert sums.shape == (0, n_sums(spec)) and sums.dtype == torch.float64
    assert gray.shape == (0, 64, 64) and res.shape == (0, 3, 64, 64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs_read_in_place(backend):
    spec = FingerprintSpec(geometry="none", residual="highpass")  # the cheapest op under the interpreter
    big = images(backend, 3, 51, 36, torch.uint8, seed=4).contiguous().permute(0, 2, 3, 1).contiguous()
    views = {
        "u8 hwc": big.permute(0, 3, 1, 2)[:1],                     # channels last, as images arrive
        "u8 sliced": big.permute(0, 3, 1, 2)[::2, :, 1::3, ::2],   # batch, row and column strides: 17 x 18
        "f32 chw-sliced": (big.permute(0, 3, 1, 2).float() / 255).contiguous()[1:2, :, 5:25, 3:27],
    }
    for name, v in views.items():
        assert not v.is_contiguous()
        got = feature_sums(backend, v, spec, "highpass")
        ref = feature_sums(backend, v.contiguous(), spec, "highpass")
        for a, b in zip(got, ref):  # the same values in another layout: the same arithmetic
            if DEVICE[backend] == "cpu":
                assert torch.equal(a, b), name
            else:  # Triton specialises stride-1 code, whose FMA contraction may differ: float32 rounding
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
    v = views["u8 sliced"]
    check_features(backend, fingerprint_features(v, spec, backend=backend),
                   fingerprint_features(v, spec, backend="torch"), spec)


@pytest.mark.parametrize("backend", BACKENDS)
def test_is_residual(backend):
    spec = FingerprintSpec(geometry="none", periods=(2, 6))
    g = torch.Generator().manual_seed(6)
    r = (torch.randn(2, 3, 24, 19, generator=g) * 0.05).to(DEVICE[backend])  # a residual is signed
    got, back = fingerprint_features(r, spec, backend=backend, is_residual=True, return_residual=True)
    assert torch.equal(back, r)  # op none passes the residual through untouched
    check_features(backend, got, fingerprint_features(r, spec, backend="torch", is_residual=True), spec)


@pytest.mark.parametrize("op", ("denoise", "median3"))  # the ops with a halo; all four: test_sums_gray_residual
@pytest.mark.parametrize("backend", BACKENDS)
def test_return_residual_after_geometry(backend, op):
    spec = FingerprintSpec(residual=op, size=24)  # crop 24x24 out of 29x25: an offset, strided view
    x = images(backend, 2, 29, 25, torch.uint8, seed=7).permute(0, 2, 3, 1)
    out, r = fingerprint_features(x, spec, backend=backend, return_residual=True)
    want_out, want_r = fingerprint_features(x, spec, backend="torch", return_residual=True)
    assert r.shape == (2, 3, 24, 24) and r.dtype == torch.float32
    check_residual(r, want_r)
    check_features(backend, out, want_out, spec)


@pytest.mark.parametrize("backend", BACKENDS)
def test_uint8_equals_float_of_it(backend):
    """A uint8 batch and its float32 x/255 give the same sums: the kernels convert like torch."""
    spec = FingerprintSpec(periods=(2, 4))
    x = images(backend, 1, 16, 24, torch.uint8)
    a = feature_sums(backend, x, spec, "highpass", False, False)[0]
    b = feature_sums(backend, x.float() / 255.0, spec, "highpass", False, False)[0]
    if DEVICE[backend] == "cpu":
        assert torch.equal(a, b)
    else:  # a GPU compiler may fuse the uint8 scaling into an FMA (measured on an H100: 2.6e-5 relative)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=0)


@pytest.mark.parametrize("backend", GPU_POST)
def test_fused_post_equals_torch_post(backend):  # more spec variants: test_backend_triton.py
    """The one-launch post stage (fpfast.ops.triton.post) vs finalize + radial_features on the same
    kernel output: the sums are reduced in another order (float64), the logs taken in float32 and
    the radial bins summed per segment instead of by index_add_: 1e-5 relative, 2e-6 absolute."""
    from fpfast.ops.sums import finalize, radial_features
    from fpfast.ops.triton.post import finalize_partials
    spec = FingerprintSpec(geometry="none", periods=(2, 3, 8), radial_bins=11)
    x = images(backend, 2, 37, 22, torch.uint8, seed=8)
    part, gray, _ = importlib.import_module(MODULE[backend]).feature_partials(
        x, spec, spec.residual, "radial" in spec.families, False)
    fused = finalize_partials(part, gray, 37, 22, spec)
    rad = radial_features(gray, spec.radial_bins) if gray is not None else None
    ref = finalize(part.sum(1, dtype=torch.float64), 37, 22, spec, rad)
    assert fused.shape == (2, spec.dim) and fused.dtype == torch.float32 and fused.device == x.device
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=2e-6)


def test_post_option_is_checked():
    x = torch.randint(0, 256, (1, 16, 16, 3), dtype=torch.uint8)
    with pytest.raises(ValueError, match="post must be one of"):
        fingerprint_features(x, backend="torch", post="eager")
    if _why_not("cpp") is None:
        with pytest.raises(backends.BackendUnavailable, match="post='fused' needs a GPU backend"):
            fingerprint_features(x, backend="cpp", post="fused")
