"""ManiFPT, Song et al., CVPR 2024, "ManiFPT: defining and analyzing fingerprints of generative models".

Artifacts as the released code computes them (:mod:`fpfast.projectors.manifpt`): x minus its
RGB-nearest real image of a reference set, in RGB, in FREQ (``log|fftshift(fft2)| + 1e-12``
difference) or in a user encoder's feature space. The attributor is the paper's: a classifier
trained on the artifacts — here a small CNN (3 conv blocks, 32-64-128 channels, global average
pool, linear; Adam, cross-entropy) for the image-shaped RGB / FREQ artifacts, and the shared
linear head for the encoder's vector artifacts. Deliberate difference: an image of another size
than the reference set's is centre-cropped (larger) or bilinearly up-scaled (smaller) to it.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import LinearHead, fit_size, load_images

SPACES = ("rgb", "freq", "encoder")


def _cnn(n_classes: int) -> nn.Module:
    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))
    return nn.Sequential(block(3, 32), block(32, 64), block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(128, n_classes))


class ManiFPT2024:
    """``refset``: a reference-set directory or ``ReferenceSet``; ``space``: rgb, freq or encoder
    (then ``encoder``: a torch module, and ``encoder_label`` names it in reports)."""

    def __init__(self, refset, space: str = "rgb", encoder: torch.nn.Module | None = None,
                 encoder_label: str = "encoder", epochs: int = 12, batch_size: int = 64, seed: int = 0):
        from ..projectors import ManifoldProjector
        if space not in SPACES:
            raise ValueError(f"unknown ManiFPT space {space!r}; expected one of {SPACES}")
        if space == "encoder" and encoder is None:
            raise ValueError("the encoder space needs an encoder")
        self.proj = ManifoldProjector(refset, space="rgb")
        self.space, self.encoder = space, encoder
        self.epochs, self.batch_size, self.seed = epochs, batch_size, seed
        what = {"rgb": "RGB", "freq": "FREQ", "encoder": encoder_label}[space]
        self.name = f"ManiFPT {what} (RGB-nearest of {len(self.proj.ref)} reals, " + \
                    ("linear head)" if space == "encoder" else "small CNN)")

    def artifacts(self, images) -> np.ndarray:
        from ..projectors.manifpt import released_artifacts
        s = self.proj.ref.size
        imgs = [fit_size(np.asarray(a, np.float64), s) for a in load_images(images)]
        out = []
        for i in range(0, len(imgs), 256):
            x = torch.from_numpy(np.stack(imgs[i:i + 256])).permute(0, 3, 1, 2).float() / 255.0
            out.append(released_artifacts(self.proj, x, self.encoder)[self.space].cpu().numpy())
        return np.concatenate(out)

    def fit(self, images, labels) -> "ManiFPT2024":
        A = self.artifacts(images)
        labels = np.asarray(labels)
        if self.space == "encoder":
            self.head = LinearHead("logistic", max_iter=2000).fit(A, labels)
            self.classes_ = self.head.classes_
            return self
        self.classes_, y = np.unique(labels, return_inverse=True)
        self.mu, self.sd = A.mean((0, 2, 3), keepdims=True), A.std((0, 2, 3), keepdims=True) + 1e-8
        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        self.net = _cnn(len(self.classes_))
        opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        X, Y = torch.from_numpy((A - self.mu) / self.sd).float(), torch.from_numpy(y)
        self.net.train()
        for _ in range(self.epochs):
            perm = torch.randperm(len(X), generator=g)
            for i in range(0, len(X), self.batch_size):
                j = perm[i:i + self.batch_size]
                opt.zero_grad()
                nn.functional.cross_entropy(self.net(X[j]), Y[j]).backward()
                opt.step()
        self.net.eval()
        return self

    @torch.no_grad()
    def predict_score(self, images) -> tuple[np.ndarray, np.ndarray]:
        A = self.artifacts(images)
        if self.space == "encoder":
            return self.head.predict_score(A)
        X = torch.from_numpy((A - self.mu) / self.sd).float()
        p = torch.cat([self.net(X[i:i + 512]).softmax(1) for i in range(0, len(X), 512)]).numpy()
        return self.classes_[p.argmax(1)], p.max(1)

    def predict(self, images) -> np.ndarray:
        return self.predict_score(images)[0]
