"""Source anonymization: a counterfactual image without its source model's fingerprint.

For an image x attributed to model s, and a target t (``real`` by default, or a named model):

1. **residual removal** (``strength`` a >= 0): x0 = x - a * r(x), r the fingerprint's residual
   operator - the trace every residual fingerprint reads lives in r(x);
2. **bounded optimisation** (``steps`` > 0, ``eps`` in 1/255 units): signed-gradient steps from x0
   on the gallery's learned (causal) fingerprint f of the view attribution takes (the gallery's
   geometry: its centre crop or resize of x'; pixels outside a crop are left as x0 has them; an
   embedding fed a heavy projector's residual x - P(x) is differentiated with P(x) held fixed),
   lowering d(f(x'), mu_t) - d(f(x'), mu_s)
   (mu: the gallery's centroids, d: squared L2 in its normalised space), x' kept within
   ``eps`` of x0 (L-infinity) and in [0, 1].

x' is rounded to 8 bits. Images already attributed to the target are returned unchanged.
Deterministic (no random start).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from ..embed.model import FLIP_DIMS
from ..errors import UsageError
from ..prepare import apply_geometry
from ..reference.residual import residual as reference_residual

DEFAULTS = {"strength": 0.0, "eps": 3.0, "steps": 10}


class Anonymizer:
    """Counterfactuals against ``gallery`` (which must hold a learned embedding when ``steps`` > 0)."""

    def __init__(self, gallery, target: str = "real", strength: float = DEFAULTS["strength"],
                 eps: float = DEFAULTS["eps"], steps: int = DEFAULTS["steps"], device="cpu"):
        names = list(gallery.models())
        if target not in names:
            raise UsageError(f"--target {target!r} is not a model of the gallery; it has {sorted(names)}")
        emb = gallery.embedder()
        if steps and emb is None:
            raise UsageError("anonymize optimises against a learned fingerprint: train one first "
                             "(fpfast train GALLERY --from-folders ROOT --causal), or use --steps 0")
        if steps and (emb.arch["handcrafted_dim"] or emb.appended_dim or emb.reference_dim):
            raise UsageError("anonymize cannot differentiate an embedding that concatenates handcrafted "
                             "features; train it without --handcrafted (and not on a universal+handcrafted "
                             "gallery)")
        self.gallery, self.names, self.target = gallery, names, names.index(target)
        self.strength, self.eps, self.steps = float(strength), float(eps) / 255.0, int(steps)
        self.dev = torch.device(device)
        spec = gallery.spec.handcrafted()
        self.op, self.sigma = spec.residual, spec.sigma
        self.net = self.proj = None
        self.flips = emb.flips if emb is not None else 1
        if emb is not None:
            self.proj = emb.projector(self.dev)
            self.net = copy.deepcopy(emb.net).to(self.dev).eval()
            for p in self.net.parameters():
                p.requires_grad_(False)
        self.centroids = torch.from_numpy(gallery.centroids()).to(self.dev)

    def config(self) -> dict:
        return {"target": self.names[self.target], "strength": self.strength, "eps": self.eps * 255,
                "steps": self.steps}

    def _dist(self, x: torch.Tensor) -> torch.Tensor:
        """Squared distances [B, models] of whole images x to the centroids, through the view
        attribution takes (the gallery's geometry: centre crop or resize, differentiable)."""
        z, view = None, apply_geometry(x, self.gallery.spec)
        for dims in FLIP_DIMS[:self.flips]:   # an embedding averaged over mirror images: as it embeds
            v = torch.flip(view, dims) if dims else view
            if self.proj is not None:  # x - P(x) with P(x) held constant (its gradient is not followed)
                r = v - (v.detach() - self.proj.residual(v.detach()).to(v.device))
            else:
                r = self.net.residual(v)
            zf = self.net.embed_residual(r)
            z = zf if z is None else z + zf
        z = self.gallery.transform(F.normalize(z, dim=1) if self.flips > 1 else z)
        return (z[:, None, :] - self.centroids[None]).pow(2).sum(-1)

    def __call__(self, x: torch.Tensor, source: np.ndarray) -> torch.Tensor:
        """Counterfactuals (float [B, 3, H, W] on 8-bit levels) of float images x in [0, 1] whose
        attributed model indices are ``source``."""
        x = x.float().to(self.dev)
        move = torch.from_numpy(np.asarray(source) != self.target).to(self.dev)
        x0 = x
        if self.strength:
            x0 = (x - self.strength * reference_residual(x, self.op, self.sigma)).clamp(0, 1)
        xa = x0.clone()
        if self.steps and move.any():
            src = torch.as_tensor(np.asarray(source), device=self.dev)
            rows = torch.arange(len(x), device=self.dev)
            alpha = self.eps / 4
            for _ in range(self.steps):
                xa.requires_grad_(True)
                d = self._dist(xa)
                obj = (d[rows, self.target] - d[rows, src]).sum()
                (g,) = torch.autograd.grad(obj, xa)
                with torch.no_grad():
                    xa = xa - alpha * g.sign()
                    xa = (x0 + (xa - x0).clamp(-self.eps, self.eps)).clamp(0, 1)
        out = torch.where(move[:, None, None, None], xa.detach(), x)
        return (out * 255).round() / 255
