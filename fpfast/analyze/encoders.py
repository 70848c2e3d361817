"""A user's image encoder, loaded from a local safetensors file (never a pickle, never a download).

Architectures: ``resnet50`` (torchvision's, classification head removed: 2048-d pooled
features; needs torchvision) and ``tiny`` (:class:`TinyEncoder`, a 3-layer CNN for tests and
smoke runs; with random weights it is labelled as such in reports).
"""
from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import UsageError

ARCHS = ("resnet50", "tiny")


class TinyEncoder(nn.Module):
    """3 conv layers (3 -> 8 -> 16 -> 32, stride 2) + global average pool: a 32-d feature."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                                 nn.Conv2d(16, 32, 3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _build(arch: str) -> nn.Module:
    if arch == "tiny":
        return TinyEncoder()
    try:
        import torchvision
    except ImportError:
        raise UsageError("--encoder-arch resnet50 needs torchvision (pip install torchvision)") from None
    m = torchvision.models.resnet50(weights=None)
    m.fc = nn.Identity()
    return m


def load_encoder(path: "str | os.PathLike", arch: str) -> nn.Module:
    """The encoder ``arch`` with the weights of the safetensors file ``path``, in eval mode.

    A resnet50 checkpoint may keep its ``fc.*`` head; it is dropped. Any other missing or extra
    tensor is an error that names it."""
    if arch not in ARCHS:
        raise UsageError(f"unknown encoder architecture {arch!r}; expected one of {ARCHS}")
    path = os.fspath(path)
    if not path.endswith(".safetensors"):
        raise UsageError(f"--encoder {path}: expected a .safetensors file (pickle checkpoints are refused: "
                         f"loading one can run arbitrary code)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--encoder {path}: no such file")
    from safetensors.torch import load_file
    try:
        sd = load_file(path)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own types
        raise UsageError(f"--encoder {path}: not a readable safetensors file ({e})") from None
    model = _build(arch)
    if arch == "resnet50":
        sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    missing, extra = model.load_state_dict(sd, strict=False)
    if missing or extra:
        raise UsageError(f"--encoder {path} does not fit --encoder-arch {arch}: missing {list(missing)[:5]}, "
                         f"unexpected {list(extra)[:5]}")
    return model.eval().requires_grad_(False)
