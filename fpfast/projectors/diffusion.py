"""DIRE / causal-fingerprint projector: DDIM inversion of x to a timestep, DDIM reconstruction back.

P(x) = DDIM_reconstruct(DDIM_invert(x)), deterministic (eta = 0), batched, all in memory, the UNet
in fp16 on CUDA (the DDIM state stays float32). With ``steps`` n and ``t_end`` T' the grid is
t_k = k * (T' // n), k = 0..n-1 (T' = the scheduler's num_train_timesteps gives DIRE's schedule:
n = 20 -> 0, 50, ..., 950, the same as diffusers' DDIM "leading" spacing):

* inversion, k = 0..n-1: out = unet(x, t_k); a_from = alpha_bar[t_{k-1}] (1 for k = 0), a_to =
  alpha_bar[t_k]; x0 = (x - sqrt(1-a_from) eps) / sqrt(a_from); x = sqrt(a_to) x0 + sqrt(1-a_to) eps
  (diffusers' DDIMInverseScheduler.step);
* reconstruction, k = n-1..0: out = unet(x, t_k); a_t = alpha_bar[t_k], a_prev = alpha_bar[t_{k-1}]
  (1 for k = 0); x = sqrt(a_prev) x0 + sqrt(1-a_prev) eps (DDIMScheduler.step, no clipping).

``epsilon``, ``v_prediction`` and ``sample`` prediction types. Pixel UNets (``UNet2DModel``,
3 channels) work on 2x-1; latent UNets (more channels) need a ``vae`` (AutoencoderKL): its latent
mean times ``scaling_factor`` is inverted and the result decoded. A ``UNet2DConditionModel`` runs
with the empty-prompt embedding ``empty_embedding`` ([1, L, D] tensor or a .safetensors file holding
one tensor); the text encoder that makes it is not run here (transformers is not a dependency).
P(x) is mapped back to [0,1] and clamped.

Default ``steps=4`` (8 UNet evaluations, 5x fewer than DIRE's 20 + 20); ``steps=20`` with the
default ``t_end`` is DIRE's recipe. That 4 steps attribute as well as 20 is not yet measured
(it needs the GM-zoo); see benchmarks/results/projectors.md.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from .base import Projector, register
from .identity import clean_config, combine, module_sha256
from .loading import ProjectorError, cast as _cast, default_device, default_dtype, load_diffusers, resolve_local


def _load_embedding(e: Any) -> torch.Tensor:
    if isinstance(e, torch.Tensor):
        t = e
    else:
        from safetensors.torch import load_file
        d = load_file(os.fspath(e))
        if len(d) != 1:
            raise ProjectorError(f"{e} must hold exactly one tensor (the empty-prompt embedding), has {list(d)}")
        t = next(iter(d.values()))
    t = t.detach().float().cpu()
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3 or t.shape[0] != 1:
        raise ProjectorError(f"the empty-prompt embedding must be [1, L, D], got {tuple(t.shape)}")
    return t


@register("diffusion")
class DiffusionProjector(Projector):
    """``unet``: UNet2DModel / UNet2DConditionModel (directory, pipeline directory, hub id, module)."""

    def __init__(self, unet: Any, steps: int = 4, t_end: int | None = None, scheduler: Any = None,
                 vae: Any = None, empty_embedding: Any = None, batch_size: int = 8, device=None, dtype=None,
                 allow_pickle: bool = False, strict_size: bool = True):
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel, UNet2DModel

        self.device = default_device(device)
        self.dtype = default_dtype(self.device, dtype)
        model, self.locator = load_diffusers(unet, (UNet2DModel, UNet2DConditionModel), subfolders=("unet",),
                                             allow_pickle=allow_pickle)
        self.conditional = isinstance(model, UNet2DConditionModel)
        root = None
        if isinstance(unet, (str, os.PathLike)):
            loc = resolve_local(os.fspath(unet), ("unet",))
            root = loc[0] if loc is not None and loc[1] else None
        # scheduler: given, else the pipeline's, else diffusers' default DDPM betas (linear, 1000)
        if scheduler is None and root is not None and (root / "scheduler").is_dir():
            scheduler = DDIMScheduler.from_pretrained(str(root), subfolder="scheduler")
        if scheduler is None:
            scheduler = DDIMScheduler()
        elif isinstance(scheduler, (str, os.PathLike)):
            scheduler = DDIMScheduler.from_pretrained(os.fspath(scheduler))
        elif not hasattr(scheduler, "alphas_cumprod"):
            raise ProjectorError(f"scheduler must be a diffusers scheduler or its directory, got {type(scheduler).__name__}")
        self.sched_config = clean_config(scheduler.config)
        self.alphas = scheduler.alphas_cumprod.to(torch.float64)
        self.prediction = scheduler.config.get("prediction_type", "epsilon")
        n_train = len(self.alphas)
        self.t_end = int(t_end or n_train)
        self.steps = int(steps)
        if not 1 <= self.steps <= self.t_end <= n_train:
            raise ProjectorError(f"need 1 <= steps ({steps}) <= t_end ({self.t_end}) <= {n_train} train timesteps")
        # latent UNet -> autoencoder
        self.vae, self.vae_hash, self.vae_locator = None, None, None
        if model.config.in_channels != 3:
            if vae is None and root is not None and (root / "vae").is_dir():
                vae = str(root)
            if vae is None:
                raise ProjectorError(f"the UNet at {self.locator} works on {model.config.in_channels}-channel "
                                     f"latents: pass vae=AUTOENCODER_DIR")
            v, self.vae_locator = load_diffusers(vae, AutoencoderKL, subfolders=("vae",), allow_pickle=allow_pickle)
            if v.config.latent_channels != model.config.in_channels:
                raise ProjectorError(f"the autoencoder has {v.config.latent_channels} latent channels, the UNet "
                                     f"takes {model.config.in_channels}")
            self.vae_hash = module_sha256(v)
            self.vae = _cast(v.to(self.device), self.dtype)
        # conditional UNet -> empty-prompt embedding
        self.embedding, self.emb_hash = None, None
        if self.conditional:
            if empty_embedding is None:
                raise ProjectorError("a UNet2DConditionModel runs with the empty-prompt embedding: pass "
                                     "empty_embedding (a [1, L, D] tensor or a .safetensors file holding it)")
            self.embedding = _load_embedding(empty_embedding)
            if self.embedding.shape[-1] != model.config.cross_attention_dim:
                raise ProjectorError(f"the embedding has width {self.embedding.shape[-1]}, the UNet's "
                                     f"cross_attention_dim is {model.config.cross_attention_dim}")
            self.emb_hash = combine([self.embedding.numpy().tobytes().hex()])
        self.unet_hash = module_sha256(model)
        self.unet = _cast(model.to(self.device), self.dtype)
        self.batch_size, self.strict_size = int(batch_size), bool(strict_size)

    # ------------------------------------------------------------------ identity
    def params(self) -> dict[str, Any]:
        return {"steps": self.steps, "t_end": self.t_end, "eta": 0.0, "latent": self.vae is not None,
                "conditional": self.conditional}

    def sha256(self) -> str:
        return combine(["diffusion", self.unet_hash, self.sched_config, self.vae_hash, self.emb_hash])

    def source(self) -> dict[str, Any]:
        return {"unet": self.locator, "vae": self.vae_locator}

    @classmethod
    def from_spec_dict(cls, desc: dict[str, Any], source: Any = None, device=None, dtype=None,
                       allow_pickle: bool = False, empty_embedding=None, scheduler=None, **_: Any):
        src = source or desc.get("source") or {}
        src = src if isinstance(src, dict) else {"unet": src}
        if not src.get("unet"):
            raise ProjectorError("the spec's diffusion projector has no source; pass source=UNET_DIR")
        strip = lambda s: s.split("::")[0] if isinstance(s, str) else s  # noqa: E731
        p = desc.get("params", {})
        return cls(strip(src["unet"]), steps=p.get("steps", 4), t_end=p.get("t_end"), vae=strip(src.get("vae")),
                   scheduler=scheduler, empty_embedding=empty_embedding, device=device, dtype=dtype,
                   allow_pickle=allow_pickle)

    # ------------------------------------------------------------------ compute
    def timesteps(self) -> list[int]:
        ratio = self.t_end // self.steps
        return [k * ratio for k in range(self.steps)]

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        x = super().check_input(x)
        cfg = self.unet.config
        f = 2 ** (len(cfg.block_out_channels) - 1)
        vf = 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 1
        h, w = x.shape[-2:]
        want = cfg.sample_size * vf if isinstance(cfg.sample_size, int) else None
        if self.strict_size and want is not None and (h, w) != (want, want):
            raise ProjectorError(f"the UNet at {self.locator} was trained at {want}x{want} px, these images are "
                                 f"{w}x{h}: use a spec of size {want} (or strict_size=False)")
        if h % (f * vf) or w % (f * vf):
            raise ProjectorError(f"image sides must be multiples of {f * vf} for this model, got {w}x{h}")
        return x

    def _unet(self, x: torch.Tensor, t: int) -> torch.Tensor:
        tt = torch.full((x.shape[0],), t, device=self.device, dtype=torch.long)
        kw = {}
        if self.conditional:
            kw["encoder_hidden_states"] = self.embedding.to(self.device, self.dtype).expand(x.shape[0], -1, -1)
        return self.unet(x.to(self.dtype), tt, **kw).sample.float()

    def _split(self, out: torch.Tensor, x: torch.Tensor, a: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, eps) from the model output at a sample of alpha_bar ``a``."""
        sa, sb = a ** 0.5, (1 - a) ** 0.5
        if self.prediction == "epsilon":
            return (x - sb * out) / sa, out
        if self.prediction == "v_prediction":
            return sa * x - sb * out, sa * out + sb * x
        if self.prediction == "sample":
            return out, (x - sa * out) / sb
        raise ProjectorError(f"unsupported prediction_type {self.prediction!r}")

    @torch.no_grad()
    def invert(self, z: torch.Tensor) -> torch.Tensor:
        ts = self.timesteps()
        for k, t in enumerate(ts):
            a_from = 1.0 if k == 0 else float(self.alphas[ts[k - 1]])
            a_to = float(self.alphas[t])
            x0, eps = self._split(self._unet(z, t), z, a_from)
            z = a_to ** 0.5 * x0 + (1 - a_to) ** 0.5 * eps
        return z

    @torch.no_grad()
    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        ts = self.timesteps()
        for k in range(len(ts) - 1, -1, -1):
            a_t = float(self.alphas[ts[k]])
            a_prev = 1.0 if k == 0 else float(self.alphas[ts[k - 1]])
            x0, eps = self._split(self._unet(z, ts[k]), z, a_t)
            z = a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps
        return z

    @torch.no_grad()
    def project(self, x: torch.Tensor) -> torch.Tensor:
        z = x.to(self.device).float() * 2 - 1
        if self.vae is not None:
            sf = self.vae.config.scaling_factor
            z = self.vae.encode(z.to(self.dtype)).latent_dist.mean.float() * sf
        z = self.reconstruct(self.invert(z))
        if self.vae is not None:
            z = self.vae.decode((z / self.vae.config.scaling_factor).to(self.dtype)).sample.float()
        return ((z + 1) / 2).clamp(0, 1)
