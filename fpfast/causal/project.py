"""Post-hoc decoupling: project the content subspace out of a trained fingerprint (nuisance
attribute projection, as speaker verification removes channel variability).

From the training images' fingerprints z, with the per-generator mean removed, the mean over
each content's images (the real patch and every autoencoder's reconstruction of it) is the
content's own direction, common to its generators. The top ``rank`` right singular vectors U of
those content means span the content subspace; z -> (I - U U^T) z removes it. Folded into the
embedding's last linear layer (W -> (I - UU^T) W, b -> (I - UU^T) b), so the gallery stores
an ordinary embedding (safetensors + identity) whose outputs, unit-normalised as ever, have no
component in that subspace.
"""
from __future__ import annotations

import numpy as np
import torch


def content_subspace(z, content, labels, rank: int) -> torch.Tensor:
    """[D, k] orthonormal basis (k <= ``rank``) of the content subspace of fingerprints z [N, D];
    ``content``: ids (< 0: none), ``labels``: generator ids. Only contents seen by >= 2
    generators count."""
    z = torch.as_tensor(np.asarray(z), dtype=torch.float64)
    content, labels = np.asarray(content, np.int64), np.asarray(labels, np.int64)
    zc = z.clone()
    for g in np.unique(labels):
        m = torch.from_numpy(labels == g)
        zc[m] -= zc[m].mean(0)
    means = []
    for c in np.unique(content[content >= 0]):
        rows = content == c
        if len(np.unique(labels[rows])) >= 2:
            means.append(zc[torch.from_numpy(rows)].mean(0))
    if not means or rank <= 0:
        return torch.zeros(z.shape[1], 0, dtype=torch.float64)
    _, s, vt = torch.linalg.svd(torch.stack(means), full_matrices=False)
    k = int(min(rank, int((s > s[0] * 1e-9).sum())))
    return vt[:k].t().contiguous()


def fold_projection(linear: torch.nn.Linear, basis: torch.Tensor) -> None:
    """Make ``linear``'s outputs orthogonal to the columns of ``basis`` [out, k] (in place)."""
    with torch.no_grad():
        u = basis.to(linear.weight.device, torch.float64)
        p = torch.eye(u.shape[0], dtype=torch.float64, device=u.device) - u @ u.t()
        linear.weight.copy_((p @ linear.weight.double()).to(linear.weight.dtype))
        if linear.bias is not None:
            linear.bias.copy_((p @ linear.bias.double()).to(linear.bias.dtype))
