"""Which compute backends exist here, and the one rule that picks among them.

Backends: ``torch`` (the pure-torch reference, always there), ``cpp`` (fpfast._C, CPU tensors),
``triton`` (GPU tensors; CPU tensors only under TRITON_INTERPRET=1), ``cuda`` (fpfast._C_cuda,
GPU tensors). ``auto`` picks cuda, then triton for GPU tensors, cpp for CPU tensors, and falls back
to torch when nothing compiled is usable; naming a backend that is not usable raises
:class:`BackendUnavailable` with the reason. Nothing here initialises CUDA or compiles anything
at import; the compiled modules are imported on first use.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os

from .errors import ConfigError

BACKENDS = ("torch", "cpp", "triton", "cuda")


class BackendUnavailable(ConfigError, RuntimeError):
    """An explicitly requested backend cannot run here; the message says why."""


@functools.lru_cache(maxsize=None)
def _load(name: str):
    """(module, None) or (None, reason) for fpfast._C / fpfast._C_cuda."""
    try:
        return importlib.import_module(f"fpfast.{name}"), None
    except ImportError as e:
        return None, f"fpfast.{name} is not built ({e}); reinstall with `pip install -e .`"


def cpp_module():
    mod, why = _load("_C")
    if mod is None:
        raise BackendUnavailable(f"cpp backend: {why}")
    return mod


def cuda_module():
    mod, why = _load("_C_cuda")
    if mod is None:
        cfg = build_config()
        why = why if cfg.get("cuda") else "fpfast was built without CUDA (nvcc not found or FPFAST_BUILD_CUDA=0)"
        raise BackendUnavailable(f"cuda backend: {why}")
    return mod


@functools.lru_cache(maxsize=None)
def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def build_config() -> dict:
    """What was compiled in (from fpfast._C.build_config()) plus what is importable."""
    return dict(_build_config())


@functools.lru_cache(maxsize=None)
def _build_config() -> dict:
    """Computed once: the dispatch asks on every batch, and none of it changes in a process."""
    mod, why = _load("_C")
    cfg = dict(mod.build_config()) if mod is not None else {"cpp": False, "cpp_error": why, "cuda": False}
    cfg["cpp"] = mod is not None
    cuda_mod, _ = _load("_C_cuda") if cfg.get("cuda") else (None, None)
    cfg["cuda_module"] = cuda_mod is not None
    if cuda_mod is not None and hasattr(cuda_mod, "build_config"):
        cfg["cuda_build"] = dict(cuda_mod.build_config())
    cfg["triton"] = triton_installed()
    return cfg


def why_unusable(backend: str, device_type: str) -> str | None:
    """None when ``backend`` can run on tensors of ``device_type`` here, else the reason."""
    if backend == "torch":
        return None
    if backend == "cpp":
        if device_type != "cpu":
            return f"the cpp backend runs on CPU tensors, got a {device_type} tensor"
        return _load("_C")[1]
    if backend == "triton":
        if not triton_installed():
            return "Triton is not installed (pip install 'fpfast[triton]')"
        if device_type == "cpu" and not triton_interpret():
            return "Triton runs on GPU tensors (or on CPU under TRITON_INTERPRET=1)"
        return None
    if backend == "cuda":
        if device_type != "cuda":
            return f"the cuda backend runs on CUDA tensors, got a {device_type} tensor"
        if not build_config().get("cuda"):
            return "fpfast was built without CUDA (nvcc not found or FPFAST_BUILD_CUDA=0)"
        return _load("_C_cuda")[1]
    return f"unknown backend {backend!r}; expected one of {BACKENDS}"


def resolve(backend: str, device_type: str, implemented: tuple[str, ...] = BACKENDS) -> str:
    """The backend to run for tensors on ``device_type``; ``implemented`` lists the op's backends."""
    if backend == "auto":
        order = ("cuda", "triton", "torch") if device_type == "cuda" else ("cpp", "torch")
        for b in order:
            if b in implemented and why_unusable(b, device_type) is None:
                return b
        return "torch"
    if backend not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {backend!r}; expected auto or one of {BACKENDS}")
    if backend not in implemented:
        raise BackendUnavailable(f"this op has no {backend} backend (it has {', '.join(implemented)})")
    why = why_unusable(backend, device_type)
    if why is not None:
        raise BackendUnavailable(f"{backend} backend unavailable: {why}")
    return backend


def available(device_type: str) -> dict[str, str]:
    """{backend: 'yes' or the reason it is not usable} for tensors on ``device_type``."""
    return {b: (why_unusable(b, device_type) or "yes") for b in BACKENDS}
