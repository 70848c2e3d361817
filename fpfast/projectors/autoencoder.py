"""AEROBLADE-style projector: P(x) = decode(encode(x)) with a latent-diffusion autoencoder.

x in [0,1] is mapped to [-1,1], encoded, the latent distribution's *mean* decoded (deterministic),
mapped back to [0,1] and clamped to it (as diffusers' image post-processing does). Several
autoencoders: the residual is taken against the one that reconstructs each image best
(``select='best'``, the AEROBLADE rule) or always the first (``select='first'``);
:func:`reconstruction_distances` gives the per-image distance to every autoencoder [B, n_ae] and
the argmin, an attribution signal of its own (an image made by a latent-diffusion model is
reconstructed best by that model's autoencoder). Distance: mean squared error over pixels
(AEROBLADE uses LPIPS, whose weights would need a download).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from .base import Projector, register
from .identity import combine, module_sha256
from .loading import ProjectorError, cast as _cast, default_device, default_dtype, load_diffusers


def _autoencoder_cls():
    from diffusers import AutoencoderKL
    return AutoencoderKL


@register("autoencoder")
class AutoencoderProjector(Projector):
    """``sources``: one or several AutoencoderKL (directories, hub ids or modules)."""

    def __init__(self, sources: Any, select: str = "best", batch_size: int = 8, device=None, dtype=None,
                 allow_pickle: bool = False):
        cls = _autoencoder_cls()
        srcs = list(sources) if isinstance(sources, (list, tuple)) else [sources]
        if not srcs:
            raise ProjectorError("the autoencoder projector needs at least one autoencoder")
        if select not in ("best", "first"):
            raise ProjectorError(f"select must be best or first, got {select!r}")
        self.device = default_device(device)
        self.dtype = default_dtype(self.device, dtype)
        self.models, self.locators, self.hashes = [], [], []
        for s in srcs:
            m, loc = load_diffusers(s, cls, subfolders=("vae",), allow_pickle=allow_pickle)
            self.hashes.append(module_sha256(m))  # before any cast: the identity is of the weights as stored
            self.models.append(_cast(m.to(self.device), self.dtype))
            self.locators.append(loc)
        self.select, self.batch_size = select, int(batch_size)

    def params(self) -> dict[str, Any]:
        return {"select": self.select, "n_models": len(self.models), "distance": "mse", "latent": "mean"}

    def sha256(self) -> str:
        return combine(["autoencoder", *self.hashes])

    def source(self) -> list[str]:
        return list(self.locators)

    @classmethod
    def from_spec_dict(cls, desc: dict[str, Any], source: Any = None, device=None, dtype=None,
                       allow_pickle: bool = False, **_: Any) -> "AutoencoderProjector":
        src = source or desc.get("source")
        if not src:
            raise ProjectorError("the spec's autoencoder projector has no source; pass source=[MODEL_DIR, ...]")
        src = [s.split("::")[0] if isinstance(s, str) else s for s in (src if isinstance(src, list) else [src])]
        p = desc.get("params", {})
        return cls(src, select=p.get("select", "best"), device=device, dtype=dtype, allow_pickle=allow_pickle)

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        x = super().check_input(x)
        for m, loc in zip(self.models, self.locators):
            f = 2 ** (len(m.config.block_out_channels) - 1)
            if x.shape[-1] % f or x.shape[-2] % f:
                raise ProjectorError(f"autoencoder {loc} down-samples by {f}: image sides must be multiples of "
                                     f"{f}, got {x.shape[-1]}x{x.shape[-2]}")
        return x

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, i: int = 0) -> torch.Tensor:
        """decode(mean of encode(x)) of autoencoder ``i``, float32 [B,3,H,W] in [0,1]."""
        m = self.models[i]
        z = m.encode((x.to(self.device, self.dtype) * 2 - 1)).latent_dist.mean
        y = m.decode(z).sample
        return ((y.float() + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def reconstructions(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstructions [n_ae,B,3,H,W], distances [B,n_ae]) for one batch."""
        xf = x.to(self.device).float()
        recs = torch.stack([self.reconstruct(x, i) for i in range(len(self.models))])
        dist = (recs - xf[None]).pow(2).flatten(2).mean(-1).T
        return recs, dist

    def project(self, x: torch.Tensor) -> torch.Tensor:
        recs, dist = self.reconstructions(x)
        if self.select == "first" or len(self.models) == 1:
            return recs[0]
        best = dist.argmin(1)
        return recs[best, torch.arange(x.shape[0], device=recs.device)]

    @torch.no_grad()
    def distances(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-image reconstruction distance [B, n_ae] float32, argmin [B] int64), batched."""
        x = self.check_input(x)
        ds = [self.reconstructions(x[i:i + self.batch_size])[1] for i in range(0, x.shape[0], self.batch_size)]
        d = torch.cat(ds) if ds else torch.zeros(0, len(self.models), device=self.device)
        return d, d.argmin(1)


def reconstruction_distances(x: torch.Tensor, autoencoders: "Sequence[Any] | AutoencoderProjector", **kwargs: Any):
    """Which autoencoder reconstructs each image best: (distances [B, n_ae], argmin [B])."""
    proj = autoencoders if isinstance(autoencoders, AutoencoderProjector) else AutoencoderProjector(
        list(autoencoders), **kwargs)
    return proj.distances(x)
