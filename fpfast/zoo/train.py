"""Brief training and sampling of the zoo's generators (CPU minutes; CUDA when given a CUDA device).

Every function takes the real training patches as float [N,3,S,S] in [0,1] on the device and a
seed; mini-batches are drawn with a numpy Generator of that seed, weights are initialised after
``torch.manual_seed(seed)``. Outputs are uint8 [N,S,S,3] numpy arrays.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .models import AutoEncoder, DCGANDiscriminator, DCGANGenerator, tiny_unet


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float [B,3,S,S] in [0,1] -> uint8 [B,S,S,3] (round half up after clamping)."""
    return (x.clamp(0, 1) * 255.0 + 0.5).floor().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _batches(rng: np.random.Generator, n: int, bs: int, steps: int):
    for _ in range(steps):
        yield torch.from_numpy(rng.choice(n, size=min(bs, n), replace=False))


# ----------------------------------------------------------------------------- autoencoders
def train_autoencoder(data: torch.Tensor, seed: int, steps: int, upsampling: str, norm: str = "none",
                      act: str = "relu", loss: str = "l2", width: int = 32, bs: int = 32,
                      lr: float = 2e-3) -> AutoEncoder:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = AutoEncoder(data.shape[-1], width=width, upsampling=upsampling, norm=norm, act=act).to(data.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    lossf = F.mse_loss if loss == "l2" else F.l1_loss
    model.train()
    for idx in _batches(rng, data.shape[0], bs, steps):
        x = data[idx.to(data.device)]
        opt.zero_grad(set_to_none=True)
        lossf(model(x), x).backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def reconstruct(model: AutoEncoder, x: torch.Tensor, bs: int = 256) -> np.ndarray:
    return np.concatenate([to_uint8(model(x[i:i + bs])) for i in range(0, x.shape[0], bs)])


# ----------------------------------------------------------------------------- DCGAN
def train_dcgan(data: torch.Tensor, seed: int, steps: int, upsampling: str = "tconv", width: int = 32,
                zdim: int = 64, bs: int = 32, lr: float = 2e-4) -> DCGANGenerator:
    """Non-saturating GAN loss, Adam(lr, beta1=0.5), one D and one G step per iteration."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    size, dev = data.shape[-1], data.device
    g = DCGANGenerator(size, zdim, width, upsampling).to(dev)
    d = DCGANDiscriminator(size, width).to(dev)
    og = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.5, 0.999))
    od = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.5, 0.999))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for idx in _batches(rng, data.shape[0], bs, steps):
        real = data[idx.to(dev)] * 2 - 1
        z = torch.randn(real.shape[0], zdim, generator=gen).to(dev)
        fake = g(z)
        od.zero_grad(set_to_none=True)
        (F.softplus(-d(real)).mean() + F.softplus(d(fake.detach())).mean()).backward()
        od.step()
        og.zero_grad(set_to_none=True)
        F.softplus(-d(fake)).mean().backward()
        og.step()
    return g.eval()


@torch.no_grad()
def sample_dcgan(g: DCGANGenerator, n: int, seed: int, bs: int = 256) -> np.ndarray:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    dev = next(g.parameters()).device
    z = torch.randn(n, g.zdim, generator=gen).to(dev)
    return np.concatenate([to_uint8((g(z[i:i + bs]) + 1) / 2) for i in range(0, n, bs)])


# ----------------------------------------------------------------------------- DDPM (diffusers)
def train_ddpm(data: torch.Tensor, seed: int, steps: int, timesteps: int, width: int = 32, bs: int = 32,
               lr: float = 1e-3):
    """epsilon-prediction MSE (Ho et al. 2020); cosine beta schedule (Nichol & Dhariwal 2021), which
    reaches pure noise at any ``timesteps`` (a linear 1e-4..0.02 schedule does not below ~300 steps)."""
    from diffusers import DDPMScheduler

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = data.device
    unet = tiny_unet(data.shape[-1], width).to(dev)
    sched = DDPMScheduler(num_train_timesteps=timesteps, beta_schedule="squaredcos_cap_v2")
    opt = torch.optim.Adam(unet.parameters(), lr=lr)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    unet.train()
    for idx in _batches(rng, data.shape[0], bs, steps):
        x0 = data[idx.to(dev)] * 2 - 1
        noise = torch.randn(x0.shape, generator=gen).to(dev)
        t = torch.randint(0, timesteps, (x0.shape[0],), generator=gen).to(dev)
        xt = sched.add_noise(x0, noise, t)
        opt.zero_grad(set_to_none=True)
        F.mse_loss(unet(xt, t).sample, noise).backward()
        opt.step()
    return unet.eval(), sched


@torch.no_grad()
def sample_diffusion(unet, train_sched, n: int, seed: int, sampler: str, steps: int, bs: int = 128) -> np.ndarray:
    """Sample with ``ddpm`` (ancestral, every training step) or ``ddim`` (eta=0, ``steps`` steps)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    cls = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}[sampler]
    sched = cls.from_config(train_sched.config)
    sched.set_timesteps(steps)
    dev = next(unet.parameters()).device
    size = unet.config.sample_size
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    for i in range(0, n, bs):
        m = min(bs, n - i)
        x = torch.randn(m, 3, size, size, generator=gen).to(dev)
        for t in sched.timesteps:
            eps = unet(x, t).sample
            if sampler == "ddpm":  # a CPU generator: diffusers draws on CPU and moves the noise
                x = sched.step(eps, t, x, generator=gen).prev_sample
            else:
                x = sched.step(eps, t, x, eta=0.0).prev_sample
        out.append(to_uint8((x + 1) / 2))
    return np.concatenate(out)
