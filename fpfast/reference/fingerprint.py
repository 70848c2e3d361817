"""The reference fingerprint: prepare -> residual -> features."""
from __future__ import annotations

import torch

from ..prepare import prepare
from ..spec import FingerprintSpec, load_spec
from .features import features
from .residual import residual


def fingerprint(images: torch.Tensor, spec: FingerprintSpec | str | None = None, layout: str = "auto") -> torch.Tensor:
    """Reference fingerprint [B, D] (float32; float64 when given float64 images)."""
    spec = load_spec(spec)
    x = prepare(images, spec, layout)
    if x.shape[0] == 0:
        return torch.zeros(0, spec.dim, dtype=x.dtype, device=x.device)
    r = residual(x, spec.residual, spec.sigma)
    return features(r, spec)
