"""cuda-specific cases of the fused op (GPU tests skip without a GPU): strips, shared memory, raw
module calls, vector-load widths, CUDA graph capture. Shared cases: test_backend_conformance.py.

Collected everywhere. `test_cuda_module_built` runs without a GPU; every other test is marked
`cuda` and skips unless fpfast._C_cuda is built and torch sees a GPU.
"""
from __future__ import annotations

import importlib
import math

import pytest
import torch

import fpfast
from fpfast.ops.features import fingerprint_features
from fpfast.ops.sums import n_sums, sums_torch
from fpfast.prepare import to_float
from fpfast.reference.features import features as reference_features
from fpfast.reference.residual import residual as reference_residual
from fpfast.spec import FingerprintSpec

CFG = fpfast.build_config()
HAVE_GPU = bool(CFG.get("cuda_module")) and torch.cuda.is_available()
gpu = pytest.mark.skipif(not HAVE_GPU, reason="needs fpfast._C_cuda and a CUDA GPU "
                         f"(cuda_module={CFG.get('cuda_module')}, torch.cuda.is_available()={torch.cuda.is_available()})")
pytestmark = pytest.mark.cuda

OPS = ("denoise", "median3", "npr", "highpass")
# periods that do not divide the 32-px tile, and p = 16, exercise the tile -> global phase map
SPEC = FingerprintSpec(geometry="none", periods=(2, 3, 5, 8, 16))


def make(b, h, w, dtype, layout="chw", seed=0, device="cpu"):
    """Random images (never all zeros) [B,3,H,W] as a view of the given layout, made on `device`
    (the view is taken there: .cuda() of a non-dense view would make it contiguous)."""
    g = torch.Generator().manual_seed(seed + 1000 * h + w)
    def rnd(*shape):
        if dtype == torch.uint8:
            return torch.randint(1, 256, shape, generator=g, dtype=torch.uint8).to(device)
        return (torch.rand(shape, generator=g) * 0.9 + 0.05).to(device)
    if layout == "chw":
        return rnd(b, 3, h, w)
    if layout == "hwc":
        return rnd(b, h, w, 3).permute(0, 3, 1, 2)
    if layout == "slice":  # strided rows, offset columns, non-zero storage offset
        return rnd(b, 3, 2 * h + 1, w + 5)[:, :, 1::2, 3:3 + w]
    raise ValueError(layout)


def cuda_sums(x, spec, op, **kw):
    from fpfast.ops import cuda as cuda_ops
    assert x.is_cuda
    return cuda_ops.feature_sums(x, spec, op, True, True, **kw)


def check_sums(sums, r, spec):
    """Kernel sums vs float64 torch sums of the kernel's own residual.

    Tolerance 1e-5 relative to the sum of |terms| (sums_torch of |r|): the kernel keeps float32
    partials over at most 8 tiles of 1024 px (sequential depth <= 32, then trees), error
    ~ 32 * 2^-24 ~ 2e-6 of the absolute sum; S1, S3 and the cross sums cancel, so their scale
    is the absolute sum, not the value.
    """
    want = sums_torch(r.double().cpu(), spec)
    scale = torch.maximum(sums_torch(r.double().abs().cpu(), spec).abs(), want.abs())
    err = (sums.cpu() - want).abs()
    assert torch.all(err <= 1e-5 * scale + 1e-12), f"max rel err {(err / (scale + 1e-30)).max():.3g}"


def check_residual(r, x, op):
    ref = reference_residual(to_float(x.cpu()), op, 1.0)
    if op in ("median3", "npr"):  # selections and one subtraction of identical floats: exact
        assert torch.equal(r.cpu(), ref)
    else:  # 5-tap / 4-neighbour float32 sums in another order: a few ulp of values <= 1
        torch.testing.assert_close(r.cpu(), ref, rtol=0, atol=1e-6)


def test_cuda_module_built():
    """Runs without a GPU: when nvcc built the extension, it imports (static cudart, no CUDA call)."""
    if not CFG.get("cuda"):
        pytest.skip("fpfast was built without CUDA (no nvcc or FPFAST_BUILD_CUDA=0)")
    mod = importlib.import_module("fpfast._C_cuda")
    assert CFG["cuda_module"]
    bc = mod.build_config()
    assert bc["cudart"] == "static" and bc["cudart_version"] >= 11000
    assert "900" in bc["archs"], bc["archs"]
    assert mod.n_partials(257, 131, 3) == 5 * 3  # ceil(131/32) strips wide, ceil(ceil(257/32)/3) high


@gpu
@pytest.mark.parametrize("layout", ("chw", "hwc", "slice"))
@pytest.mark.parametrize("dtype", (torch.uint8, torch.float32), ids=("u8", "f32"))
def test_layouts_and_dtypes(dtype, layout):
    x = make(3, 33, 65, dtype, layout, device="cuda")
    assert x.is_contiguous() == (layout == "chw")
    for op in OPS:
        sums, _, r = cuda_sums(x, SPEC, op)
        check_residual(r, x, op)
        check_sums(sums, r, SPEC)


@gpu
@pytest.mark.parametrize("k", (1, 2, 3, 8))
def test_strip_heights_agree(k):
    """Blocks walking 1..8 tiles give the same sums (and the residual bit for bit)."""
    x = make(2, 257, 131, torch.uint8, "hwc", device="cuda")
    s1, _, r1 = cuda_sums(x, SPEC, "denoise", tiles_per_block=1)
    sk, _, rk = cuda_sums(x, SPEC, "denoise", tiles_per_block=k)
    assert torch.equal(r1, rk)
    check_sums(sk, rk, SPEC)
    torch.testing.assert_close(sk, s1, rtol=1e-5, atol=1e-9)  # float32 partials summed in another grouping


@gpu
def test_many_phase_bins_large_shared_memory():
    """sum p^2 = 1024 (the limit) needs > 48 KB of shared memory: the opt-in path."""
    spec = FingerprintSpec(geometry="none", periods=(16, 16, 16, 16))
    x = make(2, 70, 90, torch.uint8, "hwc", device="cuda")
    sums, _, r = cuda_sums(x, spec, "highpass")
    check_sums(sums, r, spec)


@gpu
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("hw", ((16, 16), (64, 64), (257, 131)), ids=lambda s: f"{s[0]}x{s[1]}")
def test_features_vs_reference(hw, op):
    """Whole vectors through fingerprint_features: vs the float64 reference, and vs backend=torch."""
    spec = FingerprintSpec(geometry="none", residual=op)
    x = make(2, *hw, torch.uint8, "hwc").permute(0, 2, 3, 1)  # [B,H,W,3] HWC view as given by a decoder
    out, r = fingerprint_features(x.cuda(), spec, backend="cuda", return_residual=True)
    assert out.shape == (2, spec.dim) and out.dtype == torch.float32 and out.is_cuda
    truth = reference_features(reference_residual(to_float(x.permute(0, 3, 1, 2)).double(), op, 1.0), spec)
    # float32 residual and float32 FFT (radial) vs float64: features are O(1) or logs of O(1e-3) means
    torch.testing.assert_close(out.cpu().double(), truth, rtol=1e-4, atol=1e-4)
    ref = fingerprint_features(x, spec, backend="torch")
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-3, atol=1e-3)  # the torch reference runs in float32
    check_residual(r, x.permute(0, 3, 1, 2), op)


@gpu
def test_every_output_element_written_and_deterministic():
    """Raw module call on NaN-poisoned partials / gray / residual buffers."""
    mod = importlib.import_module("fpfast._C_cuda")
    x = make(3, 47, 75, torch.uint8, "hwc", device="cuda")
    b, _, h, w = x.shape
    n, k = n_sums(SPEC), 2
    outs = []
    for _ in range(2):
        part = torch.full((b, mod.n_partials(h, w, k), n), math.nan, device="cuda")
        gray = torch.full((b, h, w), math.nan, device="cuda")
        res = torch.full((b, 3, h, w), math.nan, device="cuda")
        mod.feature_sums(x.device.index or 0, x.data_ptr(), True, b, h, w, *x.stride(), "median3", 1.0,
                         list(SPEC.periods), k, part.data_ptr(), part.shape[1], n, gray.data_ptr(),
                         res.data_ptr(), torch.cuda.current_stream().cuda_stream)
        torch.cuda.synchronize()
        for t in (part, gray, res):
            assert torch.isfinite(t).all()
        outs.append(part)
    assert torch.equal(outs[0], outs[1])  # no atomics: bitwise reproducible


@gpu
def test_bad_arguments_say_what_was_received():
    mod = importlib.import_module("fpfast._C_cuda")
    x = make(1, 32, 32, torch.uint8, device="cuda")
    part = torch.empty(1, 1, n_sums(SPEC), device="cuda")
    args = (0, x.data_ptr(), True, 1, 32, 32, *x.stride())
    with pytest.raises(ValueError, match="expected 1 for 32x32"):
        mod.feature_sums(*args, "denoise", 1.0, list(SPEC.periods), 1, part.data_ptr(), 2, n_sums(SPEC))
    with pytest.raises(ValueError, match="got uint8"):
        mod.feature_sums(*args, "none", 1.0, list(SPEC.periods), 1, part.data_ptr(), 1, n_sums(SPEC))
    with pytest.raises(ValueError, match="unknown residual operator 'blur'"):
        mod.feature_sums(*args, "blur", 1.0, list(SPEC.periods), 1, part.data_ptr(), 1, n_sums(SPEC))
    with pytest.raises(ValueError, match="n_sums 7"):
        mod.feature_sums(*args, "denoise", 1.0, list(SPEC.periods), 1, part.data_ptr(), 1, 7)


@gpu
@pytest.mark.parametrize("w", (64, 65, 66, 67, 70, 80, 96, 100))
@pytest.mark.parametrize("offset", (0, 1, 5), ids=("aligned", "off1", "off5"))
def test_uint8_hwc_widths_and_offsets(w, offset):
    """uint8 HWC rows of every alignment: widths whose 3*W bytes are and are not multiples of 16,
    and storage offsets that misalign every row (the paths of any vectorised load)."""
    spec = FingerprintSpec(geometry="none", periods=(2, 3, 8))
    g = torch.Generator().manual_seed(w * 7 + offset)
    flat = torch.randint(1, 256, (2 * 40 * w * 3 + offset,), generator=g, dtype=torch.uint8).cuda()
    x = flat[offset:].view(2, 40, w, 3).permute(0, 3, 1, 2)  # [B,3,H,W] view of HWC bytes
    sums, gray, r = cuda_sums(x, spec, "denoise")
    check_residual(r, x, "denoise")
    check_sums(sums, r, spec)
    aligned = cuda_sums(x.contiguous(), spec, "denoise")
    assert torch.equal(aligned[0], sums) and torch.equal(aligned[2], r)  # same values, same arithmetic


@gpu
@pytest.mark.parametrize("backend", ("cuda", "triton"))
def test_graph_replay_equals_eager(backend):
    """fingerprint_features(graph=True): captured once per shape, replayed; the same vectors as the
    eager op for new data in the same shape (a replay that reused stale input would fail)."""
    from fpfast.ops.graph import clear_cache, fused_op
    if fpfast.backends.why_unusable(backend, "cuda") is not None:
        pytest.skip(fpfast.backends.why_unusable(backend, "cuda"))
    spec = FingerprintSpec(geometry="none")
    clear_cache()
    for seed in range(3):
        x = make(4, 64, 48, torch.uint8, "hwc", seed=seed, device="cuda").permute(0, 2, 3, 1)  # [B,H,W,3]
        eager = fingerprint_features(x, spec, backend=backend)
        graphed = fingerprint_features(x, spec, backend=backend, graph=True)
        torch.testing.assert_close(graphed, eager, rtol=0, atol=0)  # the same kernels on the same bytes
    op = fused_op(x, spec, backend=backend)
    assert op.captured, op.error
    op.input.copy_(x)
    torch.testing.assert_close(op(op.input), eager, rtol=0, atol=0)  # batch already in the static input
    out, r = fingerprint_features(x, spec, backend=backend, graph=True, return_residual=True)
    torch.testing.assert_close(out, eager, rtol=0, atol=0)
    assert r.shape == (4, 3, 64, 48)
    with pytest.raises(ValueError, match="takes"):
        op(x[:2])
    clear_cache()


def test_graph_needs_a_cuda_tensor():
    with pytest.raises(ValueError, match="needs a CUDA tensor"):
        fingerprint_features(torch.zeros(1, 32, 32, 3, dtype=torch.uint8), graph=True)
