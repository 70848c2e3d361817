"""Tiny generators of the zoo, built so that one design choice varies at a time.

* :class:`AutoEncoder`: a fixed encoder and a decoder whose two x2 up-sampling stages are one of
  ``tconv`` (ConvTranspose2d k4 s2; ``tconv_k3``: kernel 3), ``nearest`` / ``bilinear`` /
  ``bicubic`` (interpolate + 3x3 conv; ``bilinear_aligned``: bilinear with corner pixels aligned)
  or ``pixelshuffle`` (3x3 conv to 4C + PixelShuffle(2); ``pixelshuffle_k1``: a 1x1 conv); normalisation (none / batch /
  group), activation (relu / silu / lrelu) and loss (l2 / l1, in :mod:`.train`) are the other knobs.
* :class:`DCGANGenerator` / :class:`DCGANDiscriminator`: DCGAN (Radford et al. 2016) at 1/8 scale,
  with the generator's up-sampling also switchable.
* :func:`tiny_unet`: a diffusers ``UNet2DModel`` with two resolution levels and no attention.

Every constructor takes the image size (32 or 64) and is deterministic under ``torch.manual_seed``.
"""
from __future__ import annotations

import torch
from torch import nn

UPSAMPLINGS = ("tconv", "tconv_k3", "nearest", "bilinear", "bicubic", "bilinear_aligned", "pixelshuffle",
               "pixelshuffle_k1")
NORMS = ("none", "batch", "group")
ACTIVATIONS = ("relu", "silu", "lrelu")


def norm_layer(kind: str, ch: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "group":
        return nn.GroupNorm(min(8, ch), ch)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalization {kind!r}; expected one of {NORMS}")


def act_layer(kind: str) -> nn.Module:
    if kind == "relu":
        return nn.ReLU()
    if kind == "silu":
        return nn.SiLU()
    if kind == "lrelu":
        return nn.LeakyReLU(0.2)
    raise ValueError(f"unknown activation {kind!r}; expected one of {ACTIVATIONS}")


def up_block(kind: str, cin: int, cout: int) -> nn.Module:
    """One x2 up-sampling stage cin -> cout channels (no norm/activation)."""
    if kind == "tconv":
        return nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)
    if kind == "tconv_k3":
        return nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
    if kind in ("nearest", "bilinear", "bicubic", "bilinear_aligned"):
        mode, align = kind.split("_")[0], None if kind == "nearest" else kind.endswith("_aligned")
        return nn.Sequential(nn.Upsample(scale_factor=2, mode=mode, align_corners=align),
                             nn.Conv2d(cin, cout, 3, padding=1))
    if kind in ("pixelshuffle", "pixelshuffle_k1"):
        k = 1 if kind.endswith("_k1") else 3
        return nn.Sequential(nn.Conv2d(cin, cout * 4, k, padding=k // 2), nn.PixelShuffle(2))
    raise ValueError(f"unknown upsampling {kind!r}; expected one of {UPSAMPLINGS}")


class AutoEncoder(nn.Module):
    """x in [0,1] [B,3,S,S] -> latent [B,zc,S/4,S/4] -> reconstruction in [0,1]."""

    def __init__(self, size: int = 32, width: int = 32, zc: int = 8, upsampling: str = "tconv",
                 norm: str = "none", act: str = "relu"):
        super().__init__()
        c = width
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1), act_layer(act),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), norm_layer(norm, 2 * c), act_layer(act),
            nn.Conv2d(2 * c, 2 * c, 4, stride=2, padding=1), norm_layer(norm, 2 * c), act_layer(act),
            nn.Conv2d(2 * c, zc, 1))
        self.decoder = nn.Sequential(
            nn.Conv2d(zc, 2 * c, 3, padding=1), norm_layer(norm, 2 * c), act_layer(act),
            up_block(upsampling, 2 * c, c), norm_layer(norm, c), act_layer(act),
            up_block(upsampling, c, c), norm_layer(norm, c), act_layer(act),
            nn.Conv2d(c, 3, 3, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class DCGANGenerator(nn.Module):
    """z [B,zdim] -> image in [-1,1] [B,3,S,S]; 4x4 seed map then log2(S/4) x2 stages."""

    def __init__(self, size: int = 32, zdim: int = 64, width: int = 32, upsampling: str = "tconv"):
        super().__init__()
        n_up = {32: 3, 64: 4}[size]
        ch = [width * 2 ** (n_up - 1 - i) for i in range(n_up)] + [width]
        layers: list[nn.Module] = [nn.ConvTranspose2d(zdim, ch[0], 4, 1, 0), nn.BatchNorm2d(ch[0]), nn.ReLU()]
        for i in range(n_up - 1):
            layers += [up_block(upsampling, ch[i], ch[i + 1]), nn.BatchNorm2d(ch[i + 1]), nn.ReLU()]
        layers += [up_block(upsampling, ch[n_up - 1], 3), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.zdim = zdim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    def __init__(self, size: int = 32, width: int = 32):
        super().__init__()
        n_down = {32: 3, 64: 4}[size]
        layers: list[nn.Module] = []
        cin = 3
        for i in range(n_down):
            cout = width * 2 ** i
            layers += [nn.Conv2d(cin, cout, 4, 2, 1)]
            if i > 0:
                layers += [nn.BatchNorm2d(cout)]
            layers += [nn.LeakyReLU(0.2)]
            cin = cout
        layers += [nn.Conv2d(cin, 1, 4, 1, 0), nn.Flatten()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(1)


def tiny_unet(size: int = 32, width: int = 32):
    """A two-level diffusers UNet2DModel without attention (fast on a CPU)."""
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=size, in_channels=3, out_channels=3,
                       block_out_channels=(width, 2 * width), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=8, add_attention=False)
