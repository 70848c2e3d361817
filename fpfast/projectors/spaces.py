"""The spaces a manifold projector searches in, as vectors and as images.

* ``rgb``: the pixels, in 0..255 units (so a uint8 reference image is an exact integer vector
  and the index can store it in one byte a value, ``QT_8bit_direct``), [3*S*S].
* ``freq``: fpfast's FREQ search space (not ManiFPT's released transform, see below):
  log(1 + |FFT2(x)|) per channel (orthonormal FFT of x in [0,1],
  ``fftshift``-ed so DC is at the centre), [3*S*S]; as an image it has the input's shape.
* ``embed``: ``encoder(x)`` flattened, for a torch module given by the user.

Two FREQ recipes, kept apart on purpose:

* ``search`` (fpfast's per-space search, :func:`freq_image`): the neighbour is searched in the
  ``freq`` space above (orthonormal FFT, ``log1p``) and the artifact is taken there
  (``ManifoldProjector(space="freq", subtract="space")``). Not what ManiFPT released.
* ``manifpt`` (the released code, cocoaaa/gm-fpts ``compute_proj_fps.py``: ``xform_freq_rgb``
  applied to the neighbour found in RGB): the neighbour is the **RGB** nearest real image, and
  the artifact is :func:`manifpt_freq_image` (x) - :func:`manifpt_freq_image` (neighbour), with
  ``log(|fftshift(fft2(x))| + 1e-12)`` per channel on the unnormalised FFT of x in [0, 1]
  (:func:`freq_artifact`).
"""
from __future__ import annotations

import torch

SPACES = ("rgb", "freq", "embed")


def freq_image(x: torch.Tensor) -> torch.Tensor:
    """log(1 + |fftshift(fft2(x, norm='ortho'))|), same shape and real dtype as x."""
    f = torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1))
    return torch.log1p(f.abs())


def manifpt_freq_image(x: torch.Tensor) -> torch.Tensor:
    """ManiFPT's released FREQ transform: log(|fftshift(fft2(x))| + 1e-12) per channel, unnormalised FFT."""
    f = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1))
    return torch.log(f.abs() + 1e-12)


FREQ_RECIPES = ("manifpt", "search")


def freq_artifact(x: torch.Tensor, neighbour: torch.Tensor, recipe: str = "manifpt") -> torch.Tensor:
    """The FREQ artifact of x (float [B,3,S,S] in [0,1]) against its nearest real image ``neighbour``
    (same shape): ``manifpt`` uses ManiFPT's transform (neighbour from the RGB search), ``search``
    fpfast's :func:`freq_image` (neighbour from the FREQ search)."""
    if recipe not in FREQ_RECIPES:
        raise ValueError(f"unknown FREQ recipe {recipe!r}; expected one of {FREQ_RECIPES}")
    t = manifpt_freq_image if recipe == "manifpt" else freq_image
    return t(x) - t(neighbour)


def space_image(x: torch.Tensor, space: str) -> torch.Tensor:
    """x (float [B,3,S,S] in [0,1]) in the image form of ``space`` (rgb: x itself)."""
    if space == "rgb":
        return x
    if space == "freq":
        return freq_image(x)
    raise ValueError(f"space {space!r} has no image form")


@torch.no_grad()
def space_vectors(x: torch.Tensor, space: str, encoder: torch.nn.Module | None = None) -> torch.Tensor:
    """[B, D] vectors of x (float [B,3,S,S] in [0,1]) in ``space``, in x's float dtype."""
    if space == "rgb":
        return (x * 255.0).flatten(1)
    if space == "freq":
        return freq_image(x).flatten(1)
    if space == "embed":
        if encoder is None:
            raise ValueError("the embed space needs an encoder (a torch module images -> [B, D])")
        p = next(iter(encoder.parameters()), None)
        dev = p.device if p is not None else x.device
        dt = p.dtype if p is not None and p.is_floating_point() else x.dtype
        return encoder(x.to(dev, dt)).flatten(1).to(x.device, x.dtype)
    raise ValueError(f"unknown space {space!r}; expected one of {SPACES}")
