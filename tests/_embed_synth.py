"""Synthetic classes for the learned-embedding tests.

Smooth random noise up-sampled x2 by different rules, 24 px: separable only through their
up-sampling traces, which is what the embedding must learn. m0: nearest; m1: bilinear; m2:
nearest + a period-2 checkerboard; m3 (a model enrolled later): nearest + period-2 row stripes.
"""
import numpy as np
import torch
import torch.nn.functional as F

from fpfast.spec import FingerprintSpec

SIZE = 24
SPEC = FingerprintSpec(size=SIZE)
TINY = {"widths": [8, 16], "blocks": [1, 1], "dim": 16}
FAST = dict(epochs=12, batch_size=24, lr=5e-3, p_jpeg=0.0, p_rescale=0.0)


def make(n_per: int, seed: int, classes=(0, 1, 2)) -> tuple[list[np.ndarray], list[str]]:
    g = torch.Generator().manual_seed(seed)
    imgs, labels = [], []
    for cls in classes:
        low = torch.rand(n_per, 3, SIZE // 2, SIZE // 2, generator=g) * 0.6 + 0.2
        if cls == 1:
            x = F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=False)
        else:
            x = F.interpolate(low, scale_factor=2, mode="nearest")
        if cls == 2:
            x = x + 0.04 * torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(SIZE // 2, SIZE // 2)
        if cls == 3:
            x = x + 0.04 * torch.tensor([[1.0], [-1.0]]).repeat(SIZE // 2, SIZE)
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        imgs += list(x)
        labels += [f"m{cls}"] * n_per
    return imgs, labels


def save_folders(root, imgs, labels) -> None:
    """``root/<label>/NNN.png`` for every image."""
    from PIL import Image
    for i, (img, lab) in enumerate(zip(imgs, labels)):
        (root / lab).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / lab / f"{i:03d}.png")
