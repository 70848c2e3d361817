"""The decoupling objective: keep the generator, drop the content.

Added to the embedding's CosFace loss (which pulls images of a generator together):

* **content adversary** - linear CKA (HSIC normalised by the two self-HSICs, linear kernels)
  between the fingerprint z and a content code c(x) taken from the projection P(x) = x - r(x)
  (r: the network's input residual - the spec's cheap operator's, or its heavy projector's,
  the autoencoder / diffusion reconstruction's; P(x) the image the residual is measured against),
  average-pooled to ``grid`` x ``grid`` cells per channel. CKA is 0 when no linear map of c
  explains z, so minimising it removes what of the content a linear probe could read.
* **counterfactual pairs** (from the zoo's content ids) - same content / other generator: push
  the cosine below 0 (``relu(cos)``); same generator / other content: pull it to 1 (``1 - cos``).

Batches are ordered so that a content's images (the real patch and every autoencoder's
reconstruction of it) arrive together (:func:`fpfast.causal.pairs.grouped_order`).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..reference.residual import residual as reference_residual
from .pairs import grouped_order


def content_code(x: torch.Tensor, op: str = "denoise", sigma: float = 1.0, grid: int = 4,
                 r: torch.Tensor | None = None) -> torch.Tensor:
    """[B, 3 * grid^2] content code of float images [B, 3, H, W] in [0, 1]: the projection
    P(x) = x - r(x) average-pooled to ``grid`` x ``grid`` (``r``: the residual, when already
    computed - e.g. a heavy projector's -, else the cheap operator ``op``'s)."""
    if r is None:
        r = reference_residual(x.float(), op, float(sigma))
    return F.adaptive_avg_pool2d(x.float() - r.float(), grid).flatten(1)


def linear_cka(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Linear CKA of row-paired features a [N, p], b [N, q]: ||A'B||_F^2 / (||A'A||_F ||B'B||_F)
    with column-centred A, B; in [0, 1] (differentiable)."""
    a = a - a.mean(0, keepdim=True)
    b = b - b.mean(0, keepdim=True)
    num = (a.t() @ b).pow(2).sum()
    return num / ((a.t() @ a).norm() * (b.t() @ b).norm() + eps)


def pair_loss(z: torch.Tensor, labels: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Counterfactual pair terms on unit vectors z [B, D]: mean relu(cos) over same-content /
    other-label pairs + mean (1 - cos) over same-label / other-content pairs (content -1: none)."""
    cos = z @ z.t()
    has = content >= 0
    same_c = (content[:, None] == content[None, :]) & has[:, None] & has[None, :]
    same_y = labels[:, None] == labels[None, :]
    far = same_c & ~same_y
    near = same_y & ~same_c & has[:, None] & has[None, :]
    out = z.new_zeros(())
    if far.any():
        out = out + F.relu(cos[far]).mean()
    if near.any():
        out = out + (1 - cos[near]).mean()
    return out


class CausalObjective:
    """The extra loss for :func:`fpfast.embed.train.train_embedding` (``objective=``).

    ``labels`` [N] ints and ``content`` [N] ints (-1: no content id) of the training images, in
    the order given to ``train_embedding``; ``op``/``sigma``: the residual operator of P(x);
    ``hsic``/``pair``: the weights of the two terms; ``project_out`` > 0: after training, remove
    that many dimensions of content subspace from the embedding (:mod:`fpfast.causal.project`).
    """

    def __init__(self, labels, content, op: str = "denoise", sigma: float = 1.0, hsic: float = 1.0,
                 pair: float = 1.0, grid: int = 4, project_out: int = 0):
        self.labels = np.asarray(labels, np.int64)
        self.content = np.asarray(content, np.int64)
        if self.labels.shape != self.content.shape:
            raise ValueError(f"{len(self.labels)} labels but {len(self.content)} content ids")
        self.op, self.sigma, self.grid = op, float(sigma), int(grid)
        self.config = {"kind": "causal", "hsic": float(hsic), "pair": float(pair), "grid": self.grid,
                       "content_code": f"avgpool{self.grid}(x - r(x))",
                       "with_content": int((self.content >= 0).sum())}
        self.project_out = int(project_out)
        if self.project_out:  # recorded only when used: earlier embeddings keep their identity
            self.config["project_out"] = self.project_out

    def order(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return grouped_order(self.content, rng)

    def loss(self, z: torch.Tensor, x: torch.Tensor, ids, r: torch.Tensor | None = None) -> torch.Tensor:
        """The extra loss of a batch: fingerprints z, images x, their indices ``ids``, and the
        network's input residual r of x (P(x) = x - r; None: the cheap operator's, computed here)."""
        out = z.new_zeros(())
        if self.config["hsic"]:
            code = content_code(x, self.op, self.sigma, self.grid, r=r)
            out = out + self.config["hsic"] * linear_cka(z, code)
        if self.config["pair"]:
            y = torch.from_numpy(self.labels[ids]).to(z.device)
            c = torch.from_numpy(self.content[ids]).to(z.device)
            out = out + self.config["pair"] * pair_loss(z, y, c)
        return out
