"""How much of an image's content a fingerprint carries, and how tightly it groups by generator.

* :func:`content_probe` - a linear probe (ridge least squares onto one-hot content ids, with a
  bias) predicting the content id of images of one generator from the other generators' images
  of the same contents (leave one generator out). Chance is 1 / (number of content ids).
* :func:`content_regression` - R^2 of a ridge regression from the fingerprint onto the content
  code (:func:`fpfast.causal.objective.content_code`), leave one generator out, pooled.
* :func:`fisher_ratio` - Fisher discriminant ratio per generator, ||mu_k - mu||^2 over the mean
  squared distance of class k's vectors to mu_k, and overall tr(S_B) / tr(S_W).

All in float64 torch on the vectors' device; numpy or torch in, plain floats out.
"""
from __future__ import annotations

import numpy as np
import torch

RIDGE = 1e-3        # the probe's ridge (one-hot targets)
RIDGE_CODE = 1.0    # the content-code regression's (a small one extrapolates wildly across generators)


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).double()


def _ridge(x: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """W [(p + 1), q] minimising ||[x, 1] W - y||^2 + lam ||W||^2 (normal equations)."""
    xa = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1)
    g = xa.t() @ xa + lam * torch.eye(xa.shape[1], dtype=x.dtype, device=x.device)
    return torch.linalg.solve(g, xa.t() @ y)


def _apply(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x @ w[:-1] + w[-1]


def _codes(values) -> np.ndarray:
    return np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)[1]


def content_probe(z, content, groups, lam: float = RIDGE) -> dict:
    """Leave-one-group-out linear content-id probe. ``content``: ids (None: excluded), ``groups``:
    the generator of each row. Only ids present in >= 2 groups count. Returns accuracy, chance,
    n_contents, n (test predictions)."""
    z = _t(z)
    content = np.asarray(content, dtype=object)
    groups = _codes(groups)
    ok = np.array([c is not None for c in content])
    cid = np.full(len(content), -1)
    cid[ok] = _codes(content[ok])
    n_groups = np.zeros(cid.max() + 1 if ok.any() else 0, int)
    for c in np.unique(cid[ok]):
        n_groups[c] = len(np.unique(groups[cid == c]))
    keep = ok & (n_groups[np.maximum(cid, 0)] >= 2) if ok.any() else ok
    ids = np.unique(cid[keep])
    remap = {c: j for j, c in enumerate(ids)}
    correct = total = 0
    for g in np.unique(groups[keep]):
        tr = keep & (groups != g)
        te = keep & (groups == g)
        seen = np.isin(cid, np.unique(cid[tr]))
        te &= seen
        if not te.any():
            continue
        y = torch.zeros(int(tr.sum()), len(ids), dtype=torch.float64, device=z.device)
        y[torch.arange(int(tr.sum())), torch.as_tensor([remap[c] for c in cid[tr]])] = 1.0
        w = _ridge(z[torch.from_numpy(tr)], y, lam)
        pred = _apply(z[torch.from_numpy(te)], w).argmax(1).cpu().numpy()
        correct += int((pred == np.array([remap[c] for c in cid[te]])).sum())
        total += int(te.sum())
    return {"accuracy": correct / total if total else float("nan"),
            "chance": 1.0 / len(ids) if len(ids) else float("nan"), "n_contents": len(ids), "n": total}


def content_regression(z, code, groups, lam: float = RIDGE_CODE) -> float:
    """Pooled leave-one-group-out R^2 of ridge regression from z [N, D] onto code [N, q]."""
    z, code = _t(z), _t(code).to(_t(z).device)
    groups = _codes(groups)
    pred = torch.empty_like(code)
    for g in np.unique(groups):
        tr, te = torch.from_numpy(groups != g), torch.from_numpy(groups == g)
        if not tr.any():
            return float("nan")
        pred[te] = _apply(z[te], _ridge(z[tr], code[tr], lam))
    sse = (code - pred).pow(2).sum()
    sst = (code - code.mean(0)).pow(2).sum()
    return float(1 - sse / sst)


def fisher_ratio(z, labels) -> dict:
    """{"per_class": {label: FDR_k}, "overall": tr(S_B) / tr(S_W)} of vectors z [N, D]."""
    z = _t(z)
    labels = np.asarray(labels, dtype=object).astype(str)
    names, y = np.unique(labels, return_inverse=True)
    y_t = torch.from_numpy(y).to(z.device)
    mu = z.mean(0)
    cnt = torch.bincount(y_t, minlength=len(names)).double()
    means = torch.zeros(len(names), z.shape[1], dtype=z.dtype, device=z.device).index_add_(0, y_t, z) / cnt[:, None]
    within = torch.zeros(len(names), dtype=z.dtype, device=z.device).index_add_(
        0, y_t, (z - means[y_t]).pow(2).sum(1))
    between = (means - mu).pow(2).sum(1)
    per = between / (within / cnt).clamp_min(1e-300)
    return {"per_class": {str(n): float(v) for n, v in zip(names, per)},
            "overall": float((cnt * between).sum() / within.sum().clamp_min(1e-300))}
