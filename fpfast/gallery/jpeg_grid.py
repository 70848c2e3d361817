"""Was an image JPEG-compressed before it was saved the way it is? The JPEG block grid, read from
the pixels (a PNG re-saved from a JPEG keeps it; issue 14's routing and calibration by file type).

A JPEG encoder quantises the 8x8 block DCT of the luma; decoded and re-saved losslessly, the image's
luma blocks *on that grid* still have most AC coefficients at exactly zero (up to the rounding of
the decoded pixels), while blocks straddling the grid do not. So for each of the 64 grid phases
(the image may have been cropped after compression) the score takes the fraction of AC
coefficients of magnitude below :data:`ZERO` over the blocks of that phase, and returns the largest
fraction minus the median over the phases: near 0 for an image never compressed (no phase stands
out), large for a compressed one. :data:`THRESHOLD` was chosen on the zoos' training images (about the
98th percentile of never-compressed 64-px images; clean against JPEG 70-95, whole and cropped at
random offsets: ``benchmarks/bench_jpeg_grid.py``, ``benchmarks/results/jpeg_grid.json``). The
stream reads the image as fingerprinted (the spec's centre crop, whose offset in the file is not
known here: hence the search over phases).

:func:`grid_score` runs on the batch's device (torch, float32: the DCT of every 8x8 block at every
offset as two small matrix products); the tests compare it with a scipy computation. A window of
at most :data:`WINDOW` px of the image's centre is read. On a CPU it costs about half the
universal embedding's time per image (several times the handcrafted fingerprint's), so the stream
reads it only where a gallery's answer depends on it (:func:`refine_flags`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

ZERO = 0.6       # |DCT coefficient| below this counts as quantised to zero (pixel rounding: sigma ~0.29)
THRESHOLD = 0.1  # grid_score above this: the image carries a JPEG grid
WINDOW = 39      # at most this many px per side are read (4 blocks per side at every phase: 64-px
#                  images 7x cheaper than the whole crop, JPEG 90 detected 95 % against 99 %)
MIN_SIDE = 32    # below this (3 blocks per side at every phase) nothing is said (NaN): too few blocks
LUMA = (0.299, 0.587, 0.114)  # JPEG's RGB -> Y


def dct_matrix(n: int = 8, dtype=torch.float64, device=None) -> torch.Tensor:
    """The orthonormal DCT-II matrix (JPEG's 8x8 transform up to its fixed scaling)."""
    k = torch.arange(n, dtype=dtype, device=device)
    c = math.sqrt(2.0 / n) * torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))
    c[0] /= math.sqrt(2.0)
    return c


def grid_score(images: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """float64 [B] (on the host) of uint8 [B, H, W, 3] ``images`` (any device): max minus median
    over the 64 grid phases of the share of near-zero AC coefficients of the luma's 8x8 DCT
    blocks; NaN for images smaller than :data:`MIN_SIDE` or not uint8 (a float batch was resized:
    no grid survives). The DCT of the block at every offset is two small matrix products over
    sliding windows; ``chunk`` images at a time bound the memory (default: 16 on a CPU, where the
    blocks' coefficients of 16 images stay in cache, 256 on a GPU)."""
    b, h0, w0 = int(images.shape[0]), int(images.shape[1]), int(images.shape[2])
    if images.dtype != torch.uint8 or min(h0, w0) < MIN_SIDE or b == 0:
        return torch.full((b,), float("nan"), dtype=torch.float64)
    hw, ww = min(h0, WINDOW), min(w0, WINDOW)
    nh, nw = (hw - 7) // 8, (ww - 7) // 8                     # blocks per phase and side
    t, l = (h0 - (nh * 8 + 7)) // 2, (w0 - (nw * 8 + 7)) // 2
    c = dct_matrix(dtype=torch.float32, device=images.device)
    chunk = chunk or (16 if images.device.type == "cpu" else 256)
    counts = []
    for s in range(0, b, chunk):
        x = images[s:s + chunk, t:t + nh * 8 + 7, l:l + nw * 8 + 7].to(torch.float32)
        y = x[..., 0] * LUMA[0] + x[..., 1] * LUMA[1] + x[..., 2] * LUMA[2]   # [b, 8nh+7, 8nw+7]
        f = y.unfold(1, 8, 1) @ c.T                            # [b, 8nh, 8nw+7, u]: columns' DCT
        f = f.unfold(2, 8, 1) @ c.T                            # [b, 8nh, 8nw, u, v]: every block's DCT
        z = (f.abs() < ZERO).flatten(3).sum(3, dtype=torch.int32) - (f[..., 0, 0].abs() < ZERO).int()
        counts.append(z.view(-1, nh, 8, nw, 8).sum((1, 3)).reshape(-1, 64))  # AC zeros per phase
    sh = (torch.cat(counts).double() / (63 * nh * nw)).sort(1).values
    return (sh[:, -1] - (sh[:, 31] + sh[:, 32]) / 2).cpu()


def refine_flags(flags, images: torch.Tensor, matters=None) -> list[float]:
    """The per-image JPEG flags of :func:`fpfast.gallery.views.jpeg_file` (1 / 0 / NaN by file
    name), with a lossless-named file (0) whose pixels carry a JPEG grid set to 1. ``matters``:
    a function of the lossless-named rows' indices giving a bool per row (or None: none), where
    the flag can change an answer (:meth:`fpfast.gallery.Gallery.file_type_matters`); only those
    rows are read."""
    flags = [float(f) for f in flags]
    idx = np.array([i for i, f in enumerate(flags) if f == 0.0], np.int64)
    if len(idx) and matters is not None:
        m = matters(idx)
        idx = idx[np.asarray(m, bool)] if m is not None else idx[:0]
    if len(idx):
        scores = grid_score(images.index_select(0, torch.as_tensor(idx, device=images.device))).numpy()
        for i, sc in zip(idx.tolist(), scores):
            if np.isfinite(sc) and sc > THRESHOLD:
                flags[i] = 1.0
    return flags
