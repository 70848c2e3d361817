"""The pictures of an analysis (PNG, Agg; pyplot untouched). Every function returns (width, height)."""
from __future__ import annotations

import math

import numpy as np

DPI = 100
PANEL = 4.0  # inches per map panel / spectrum tile is PANEL / 2


def _save(fig, path: str) -> tuple[int, int]:
    fig.savefig(path, dpi=DPI)
    w, h = fig.get_size_inches() * DPI
    return int(round(w)), int(round(h))


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return math.ceil(n / cols), cols


def scatter_maps(path: str, Z: np.ndarray, colourings: dict[str, np.ndarray], title: str) -> tuple[int, int]:
    """One panel per attribute: the 2-D points ``Z`` [N,2] coloured by the attribute's values
    (rows without a value grey)."""
    from matplotlib.figure import Figure
    rows, cols = _grid(len(colourings))
    fig = Figure(figsize=(cols * PANEL + 1.5, rows * PANEL + 0.6))
    cmap = __import__("matplotlib").colormaps["tab10"]
    for k, (attr, vals) in enumerate(colourings.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        vals = np.asarray(vals, dtype=object)
        none = np.array([v is None for v in vals])
        if none.any():
            ax.scatter(Z[none, 0], Z[none, 1], s=4, c="lightgrey", label="n/a", linewidths=0)
        for j, v in enumerate(sorted({str(v) for v in vals[~none]})):
            m = np.array([str(x) == v for x in vals]) & ~none
            ax.scatter(Z[m, 0], Z[m, 1], s=4, color=cmap(j % 10), label=v, linewidths=0)
        ax.set_title(attr, fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, markerscale=2.5, loc="best", framealpha=0.7)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return _save(fig, path)


def spectra_grid(path: str, spectra: dict[str, np.ndarray], title: str) -> tuple[int, int]:
    """The mean log-power spectrum of each model's residual (DC centred), one tile per model, on a
    shared colour scale."""
    from matplotlib.figure import Figure
    n = len(spectra)
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    tile = PANEL / 2
    fig = Figure(figsize=(cols * tile + 1.8, rows * (tile + 0.35) + 0.6))
    lo = min(float(np.percentile(s, 1)) for s in spectra.values())
    hi = max(float(s.max()) for s in spectra.values())
    im = None
    axes = []
    for k, (model, s) in enumerate(spectra.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        im = ax.imshow(s, cmap="magma", vmin=lo, vmax=hi)
        ax.set_title(model, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        axes.append(ax)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    if im is not None:
        fig.colorbar(im, ax=axes, fraction=0.02, pad=0.02, label="log10 power")
    return _save(fig, path)


def distance_heatmap(path: str, D: np.ndarray, names: list[str], title: str) -> tuple[int, int]:
    """Model x model distance matrix with the values written in the cells."""
    from matplotlib.figure import Figure
    n = len(names)
    size = min(3.5 + 0.5 * n, 30)
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(D, cmap="viridis")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    fs = max(5, 10 - n // 8)
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=fs)
    ax.set_yticklabels(names, fontsize=fs)
    if n <= 25:
        hi = float(D.max()) if D.size else 0.0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{D[i, j]:.1f}", ha="center", va="center", fontsize=6,
                        color="white" if D[i, j] < 0.5 * hi else "black")
    ax.set_title(title, fontsize=11)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="distance")
    fig.tight_layout()
    return _save(fig, path)
