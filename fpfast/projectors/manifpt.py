"""ManiFPT's artifacts as its released code computes them (cocoaaa/gm-fpts): one nearest real
image found in RGB, then the artifact in RGB, in FREQ (:func:`.spaces.freq_artifact`, recipe
``manifpt``) and, given an encoder, in its feature space: e(x) - e(neighbour).

fpfast's per-space search (neighbour searched in FREQ or in the encoder's space) stays available
as ``ManifoldProjector(space=..., subtract="space")``.
"""
from __future__ import annotations

import torch

from .spaces import freq_artifact


@torch.no_grad()
def released_artifacts(proj, x: torch.Tensor, encoder: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """{'rgb', 'freq'[, 'encoder']} artifacts of x (float [B,3,S,S] in [0,1]) against the RGB-nearest
    image of ``proj``'s reference set (``proj``: a ``ManifoldProjector`` with space 'rgb', k = 1)."""
    if proj.space != "rgb" or proj.k != 1:
        raise ValueError("ManiFPT's released recipe uses the single RGB-nearest real image: "
                         "ManifoldProjector(reference, space='rgb', k=1)")
    art = proj.artifacts(x)
    x = x.to(art["rgb"].device).float()
    nb = proj.neighbours(art["index"], x.device)[:, 0]
    out = {"rgb": art["rgb"], "freq": freq_artifact(x, nb, "manifpt")}
    if encoder is not None:
        p = next(iter(encoder.parameters()), None)
        dev = p.device if p is not None else x.device
        out["encoder"] = (encoder(x.to(dev)) - encoder(nb.to(dev))).flatten(1).to(x.device)
    return out
