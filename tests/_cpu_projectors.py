"""Keep projectors on the CPU in tests that compare them with a float32 CPU diffusers computation,
also where a GPU is present (their CUDA/fp16 path is measured by benchmarks/bench_projectors.py)."""
import importlib

import pytest
import torch


def _cpu(device=None):
    return torch.device("cpu") if device in (None, "auto") else torch.device(device)


@pytest.fixture(autouse=True)
def cpu_projectors(monkeypatch):
    for name in ("loading", "autoencoder", "diffusion", "manifold", "base"):
        mod = importlib.import_module(f"fpfast.projectors.{name}")
        if hasattr(mod, "default_device"):
            monkeypatch.setattr(mod, "default_device", _cpu)
