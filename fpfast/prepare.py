"""Turning a batch of pixels into the float32 [B, 3, H, W] tensor every op works on."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .spec import FingerprintSpec


def as_chw(images: torch.Tensor, layout: str = "auto") -> torch.Tensor:
    """A [B,3,H,W] view (no copy, dtype kept) of images given as [B,H,W,3] or [B,3,H,W] (or one image).

    ``layout='auto'`` reads CHW when dim 1 has 3 entries, HWC when the last dim has 3 (images are
    at least 16 px a side, so the two cannot be confused).
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(images).__name__}")
    x = images.unsqueeze(0) if images.dim() == 3 else images
    if x.dim() != 4:
        raise ValueError(f"expected images of shape [B,H,W,3] or [B,3,H,W], got {tuple(images.shape)}")
    if layout == "auto":
        layout = "chw" if x.shape[1] == 3 else "hwc" if x.shape[-1] == 3 else "?"
    if layout == "hwc":
        x = x.permute(0, 3, 1, 2)
    elif layout != "chw":
        raise ValueError(f"expected 3 colour channels in dim 1 (CHW) or dim 3 (HWC), got shape {tuple(images.shape)}")
    if x.shape[1] != 3:
        raise ValueError(f"expected 3 channels, got {x.shape[1]}")
    return x


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 -> /255, uint16 -> /65535, float16/bfloat16 -> float32; float32/float64 kept (taken as [0, 1])."""
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if x.dtype == torch.uint16:
        return x.to(torch.int32).float() / 65535.0
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    if x.dtype in (torch.float32, torch.float64):
        return x
    raise TypeError(f"unsupported image dtype {x.dtype}; expected uint8, uint16 or float")


def as_float_chw(images: torch.Tensor, layout: str = "auto") -> torch.Tensor:
    """uint8/uint16/float images in either layout -> float [B,3,H,W] in [0,1]."""
    return to_float(as_chw(images, layout))


def check_size(h: int, w: int, spec: FingerprintSpec) -> None:
    if min(h, w) < spec.min_size:
        raise ValueError(f"image is {w}x{h}, below the minimum of {spec.min_size} px a side")


def crop_box(h: int, w: int, spec: FingerprintSpec) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the region the decoders keep of an h x w image: the spec's
    centre crop, or the whole image (other geometries, and a multi-crop spec, whose crops
    :func:`apply_geometry` takes)."""
    if spec.geometry != "crop" or spec.crops is not None:
        return 0, 0, h, w
    return centre_box(h, w, spec.size)


def centre_box(h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the centre ``size`` x ``size`` region of an h x w image (the
    whole of a shorter side)."""
    ch, cw = min(h, size), min(w, size)
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def _spread(span: int, k: int) -> list[int]:
    """``k`` offsets evenly spaced over [0, span] (both ends included when k > 1)."""
    return [round(span * i / (k - 1)) if k > 1 else span // 2 for i in range(k)]


def crop_boxes(h: int, w: int, spec: FingerprintSpec) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) of each of a multi-crop spec's ``n`` crops of an h x w image
    (one box, the centre crop, for a single-crop spec). ``grid``: an r x c grid (r = floor(sqrt(n)),
    c = ceil(n / r)) evenly spaced over the image, corners included, ``n`` of its cells taken
    evenly in raster order; ``random``: offsets drawn from (seed, h, w)."""
    if spec.crops is None:
        return [crop_box(h, w, spec)]
    n, ch, cw = spec.n_crops, min(h, spec.size), min(w, spec.size)
    if spec.crops["layout"] == "random":
        import numpy as np
        rng = np.random.default_rng([int(spec.crops["seed"]), int(h), int(w)])
        return [(int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw) for _ in range(n)]
    r = max(1, int(n ** 0.5))
    c = -(-n // r)
    tops, lefts = _spread(h - ch, r), _spread(w - cw, c)
    cells = [(t, l) for t in tops for l in lefts]
    pick = [round(i * (len(cells) - 1) / (n - 1)) for i in range(n)]
    return [(cells[i][0], cells[i][1], ch, cw) for i in pick]


def aggregate_crops(v: torch.Tensor, spec: FingerprintSpec) -> torch.Tensor:
    """Vectors [B * n, D] of a multi-crop spec's crops (image-major) -> [B, D]: their mean, whose
    network part is unit-normalised again when the spec's vectors are an embedding (not the
    handcrafted vector an embedding may append). A single-crop spec: ``v``."""
    if spec.crops is None:
        return v
    m = v.reshape(-1, spec.n_crops, v.shape[-1]).mean(1)
    if spec.embedding is None:
        return m
    net = m.shape[1] - int(spec.embedding.get("appended", 0))
    return torch.cat([F.normalize(m[:, :net], dim=1), m[:, net:]], 1)


def apply_geometry(x: torch.Tensor, spec: FingerprintSpec) -> torch.Tensor:
    """Apply the spec's geometry to a [B,3,H,W] float/uint8 batch. A multi-crop spec gives its
    ``n`` crops of every image, image-major: [B * n, 3, h, w] (:func:`aggregate_crops` undoes it)."""
    h, w = x.shape[-2], x.shape[-1]
    check_size(h, w, spec)
    if spec.geometry == "crop" and spec.crops is not None:
        boxes = crop_boxes(h, w, spec)
        tiles = torch.stack([x[..., t:t + ch, l:l + cw] for t, l, ch, cw in boxes], 1)
        return tiles.reshape(-1, *tiles.shape[2:])
    if spec.geometry == "crop":
        t, l, ch, cw = crop_box(h, w, spec)
        return x[..., t:t + ch, l:l + cw]
    if spec.geometry == "resize":
        if (h, w) == (spec.size, spec.size):
            return x
        # resample values in [0, 1] (uint8/uint16 scaled first), never raw 0..255 codes
        y = to_float(x)
        return F.interpolate(y, size=(spec.size, spec.size), mode="bilinear", antialias=True, align_corners=False)
    return x


def prepare(images: torch.Tensor, spec: FingerprintSpec, layout: str = "auto") -> torch.Tensor:
    """Pixels -> the float [B,3,h,w] batch the spec fingerprints."""
    return apply_geometry(as_float_chw(images, layout), spec)


def shape_batches(images, batch_size: int = 256):
    """Images of mixed shapes (numpy [H, W, 3] each) as stacked batches of one shape:
    ``(original indices, tensor [B, H, W, 3])``, at most ``batch_size`` per batch."""
    import numpy as np
    by_shape: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        by_shape.setdefault((im.shape, im.dtype.str), []).append(i)
    for ids in by_shape.values():
        for s in range(0, len(ids), batch_size):
            part = ids[s:s + batch_size]
            yield part, torch.from_numpy(np.stack([images[i] for i in part]))


def map_images(images, fn, batch_size: int = 256):
    """``fn`` (a [B, H, W, 3] tensor -> [B, D] numpy array) over images of mixed shapes, the rows
    returned in the images' order."""
    import numpy as np
    out = None
    for ids, batch in shape_batches(images, batch_size):
        v = np.asarray(fn(batch), np.float32)
        out = np.empty((len(images), v.shape[1]), np.float32) if out is None else out
        out[ids] = v
    return out
