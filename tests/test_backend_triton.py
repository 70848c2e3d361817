"""Triton-specific cases: argument checks and the fused post kernel (fpfast.ops.triton.post).

The cases every backend shares are in test_backend_conformance.py.

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

from fpfast.ops.sums import finalize, radial_features, sums_torch  # noqa: E402
from fpfast.spec import FingerprintSpec  # noqa: E402

DEVICE = "cpu" if backends.triton_interpret() else "cuda"
WHY = backends.why_unusable("triton", DEVICE) if DEVICE == "cpu" or torch.cuda.is_available() \
    else "no CUDA GPU and TRITON_INTERPRET is off"
pytestmark = [pytest.mark.triton, pytest.mark.skipif(WHY is not None, reason=str(WHY))]


def _images(b, h, w, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, 256, (b, h, w, 3), generator=g, dtype=torch.uint8).to(DEVICE).permute(0, 3, 1, 2)
    return x if dtype == torch.uint8 else x.float() / 255.0


def _feature_sums(*args):
    from fpfast.ops.triton.features import feature_sums  # imported after TRITON_INTERPRET is set
    return feature_sums(*args)


def _post_case(b, h, w, spec, seed=0):
    """Sums of a real residual split into 3 uneven float32 partial rows, its gray image, and the
    torch post stage's vectors from the float64 sums of the same rows."""
    g = torch.Generator().manual_seed(seed)
    r = (torch.randn(b, 3, h, w, generator=g) * 0.05).to(DEVICE)
    s = sums_torch(r, spec)
    part = torch.stack([s * 0.5, s * 0.3, s * 0.2], 1).float()
    gray = r.mean(1).float()
    rad = radial_features(gray, spec.radial_bins) if "radial" in spec.families else None
    return part, gray, finalize(part.double().sum(1), h, w, spec, rad)


@pytest.mark.parametrize("b,h,w,bins,periods,families", [
    (2, 17, 23, 16, (2, 4, 8), None),               # odd shape, the default families
    (1, 16, 16, 40, (3,), ("radial", "moments")),   # batch 1; more bins than radii: empty bins filled
    (3, 33, 48, 1, (16, 2), ("xcorr", "phase", "dct")),  # one bin; no radial: no gray read
])
def test_post_kernel_matches_torch_post(b, h, w, bins, periods, families):
    from fpfast.ops.triton.post import finalize_partials
    kw = {"families": families} if families else {}
    spec = FingerprintSpec(periods=periods, radial_bins=bins, **kw)
    part, gray, want = _post_case(b, h, w, spec, seed=h * w)
    got = finalize_partials(part, gray if "radial" in spec.families else None, h, w, spec)
    # float64 sums reduced in another order, logs in float32, radial segments summed in another
    # order than index_add_: float32 rounding of O(1) features and logs
    torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-6)


def test_post_kernel_empty_batch_and_bad_input():
    from fpfast.ops.triton.post import finalize_partials
    spec = FingerprintSpec()
    part, gray, _ = _post_case(1, 16, 16, spec)
    out = finalize_partials(part[:0], gray[:0], 16, 16, spec)
    assert out.shape == (0, spec.dim)
    with pytest.raises(ValueError, match="no gray residual"):
        finalize_partials(part, None, 16, 16, spec)
    with pytest.raises(ValueError, match="sums per row"):
        finalize_partials(part[..., :-1], gray, 16, 16, spec)


def test_bad_input_messages():
    spec = FingerprintSpec()
    x = _images(1, 16, 16, torch.uint8)
    with pytest.raises(TypeError, match="must be float32, got uint8"):
        _feature_sums(x, spec, "none", False, False)
    with pytest.raises(ValueError, match="unknown residual operator 'blur'"):
        _feature_sums(x, spec, "blur", False, False)
    with pytest.raises(ValueError, match=r"expected x of shape \[B, 3, H, W\], got \(1, 16, 16, 3\)"):
        _feature_sums(x.permute(0, 2, 3, 1), spec, "denoise", False, False)
