"""Backend choice for fingerprint_features: auto, explicit, unavailable, unknown."""
from __future__ import annotations

import pytest
import torch

import fpfast
from fpfast import backends
from fpfast.ops import features as features_op
from fpfast.ops.features import fingerprint_features

HAS_CPP = "feature_sums" in fpfast.build_config().get("cpu_kernels", [])


def _x():
    return torch.randint(1, 256, (1, 3, 16, 16), dtype=torch.uint8)


@pytest.mark.skipif(not HAS_CPP, reason="fpfast._C was built without the feature_sums kernel")
def test_auto_picks_cpp_for_cpu_tensors(monkeypatch):
    assert backends.resolve("auto", "cpu", features_op.IMPLEMENTED) == "cpp"
    called = []
    from fpfast.ops import cpp
    real = cpp.feature_sums
    monkeypatch.setattr(cpp, "feature_sums", lambda *a: called.append(1) or real(*a))
    fingerprint_features(_x(), backend="auto")
    assert called == [1]


def test_auto_falls_back_to_torch_when_cpp_is_unusable(monkeypatch):
    monkeypatch.setattr(backends, "why_unusable", lambda b, d: None if b == "torch" else "not here")
    assert backends.resolve("auto", "cpu", features_op.IMPLEMENTED) == "torch"
    assert fingerprint_features(_x(), backend="auto").shape == (1, fpfast.FingerprintSpec().dim)


def test_cuda_on_a_cpu_tensor_raises_with_the_reason():
    with pytest.raises(fpfast.BackendUnavailable, match="cuda"):
        fingerprint_features(_x(), backend="cuda")
    # whichever check trips first, the message names the backend and why it cannot run
    reason = backends.why_unusable("cuda", "cpu")
    assert "CUDA tensors, got a cpu tensor" in reason


def test_triton_without_interpreter_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(fpfast.BackendUnavailable, match="(?i)triton"):
        fingerprint_features(_x(), backend="triton")


def test_unknown_backend_raises():
    with pytest.raises(fpfast.BackendUnavailable, match="unknown backend 'opencl'"):
        fingerprint_features(_x(), backend="opencl")
