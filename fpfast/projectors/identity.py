"""Model identity: sha256 over what changes a projector's numbers (config and weights, or data).

A diffusers model hashes as its config (JSON, sorted keys, without the ``_``-prefixed bookkeeping
keys such as ``_name_or_path`` and ``_diffusers_version``) followed by its state_dict tensors in
sorted name order, each as name, dtype, shape and the raw bytes (float32 on CPU). Hashing the
tensors rather than files makes the identity independent of the path, of how the weights were
serialised, and of the device/dtype the model runs in afterwards.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

import numpy as np
import torch


def clean_config(config: Any) -> dict:
    return {k: v for k, v in dict(config).items() if not str(k).startswith("_")}


def update_json(h: "hashlib._Hash", obj: Any) -> None:
    h.update(json.dumps(obj, sort_keys=True, default=str).encode())
    h.update(b"\0")


def update_tensor(h: "hashlib._Hash", name: str, t: torch.Tensor) -> None:
    t = t.detach().to("cpu").contiguous()
    h.update(f"{name}|{str(t.dtype)}|{tuple(t.shape)}".encode())
    if t.numel():
        h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes())


def module_sha256(module: torch.nn.Module, config: Any = None) -> str:
    """sha256 of (config, state_dict) of a torch / diffusers module."""
    h = hashlib.sha256()
    cfg = config if config is not None else getattr(module, "config", None)
    update_json(h, clean_config(cfg) if cfg is not None else {"class": type(module).__name__})
    sd = module.state_dict()
    for name in sorted(sd):
        update_tensor(h, name, sd[name])
    return h.hexdigest()


def array_sha256(a: np.ndarray) -> str:
    h = hashlib.sha256()
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}|{a.shape}".encode())
    step = max(1, (64 << 20) // max(1, a[0].nbytes if a.ndim and len(a) else 1))
    for i in range(0, len(a) if a.ndim else 1, step):
        h.update(np.ascontiguousarray(a[i:i + step] if a.ndim else a).tobytes())
    return h.hexdigest()


def combine(parts: Iterable[Any]) -> str:
    """sha256 of a sequence of JSON-able parts (strings, dicts, hex digests)."""
    h = hashlib.sha256()
    for p in parts:
        update_json(h, p)
    return h.hexdigest()
