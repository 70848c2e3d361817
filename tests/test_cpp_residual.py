"""fpfast._C: build_config answers, and the C++ residual equals the reference."""
import numpy as np
import pytest
import torch

import fpfast
from fpfast.ops import residual

CFG = fpfast.build_config()
needs_cpp = pytest.mark.skipif(not CFG["cpp"], reason="fpfast._C not built")


def test_build_config_answers():
    assert CFG["triton"] in (True, False)
    if CFG["cpp"]:
        assert CFG["version"] == fpfast.__version__
        assert CFG["omp_max_threads"] >= 1 and "residual" in CFG["cpu_kernels"]


@needs_cpp
@pytest.mark.parametrize("op", ["denoise", "median3", "npr", "highpass"])
@pytest.mark.parametrize("shape", [(1, 16, 16), (2, 17, 23), (3, 33, 65)])
@pytest.mark.parametrize("kind", ["u8_hwc", "f32_chw", "f32_strided"])
def test_cpp_residual_equals_reference(op, shape, kind):
    b, h, w = shape
    rng = np.random.default_rng(hash((op, shape, kind)) % 2**32)
    u8 = torch.from_numpy(rng.integers(0, 256, (b, h, w, 3), dtype=np.uint8))
    if kind == "u8_hwc":
        x = u8
    elif kind == "f32_chw":
        x = u8.permute(0, 3, 1, 2).float() / 255
    else:  # every other column of a wider float image: non-unit strides
        x = torch.from_numpy(rng.random((b, 3, h, 2 * w), dtype=np.float32))[..., ::2]
    got = residual(x, op, backend="cpp")
    want = residual(x, op, backend="torch")
    # float32 on both sides, different association of the 5-tap sums: a few ulps of values <= 1
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@needs_cpp
def test_cpp_residual_rejects_bad_shapes():
    C = fpfast.backends.cpp_module()
    with pytest.raises(ValueError, match="expected 3 channels, got 4"):
        C.residual(np.zeros((1, 4, 16, 16), np.float32), "npr")
    with pytest.raises(ValueError, match="unknown residual"):
        C.residual(np.zeros((1, 3, 16, 16), np.float32), "blur")
    with pytest.raises(ValueError, match="at least 16x16"):
        C.residual(np.zeros((1, 3, 8, 16), np.float32), "npr")
