"""Content leakage of a gallery's fingerprint on a split of a zoo (issue 15's measures)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..causal.leakage import content_probe, content_regression, fisher_ratio
from ..causal.objective import content_code
from ..causal.pairs import load_content
from ..errors import UsageError
from ..io.decode import read_image
from ..prepare import map_images
from .mappers import vector_mapper
from .options import StreamOptions


def leakage_report(gallery, zoo, split: str, opts: StreamOptions) -> dict:
    """Fingerprint every image of ``split`` listed in the zoo's content table and measure: the
    content-id probe (on images with a content id), the R^2 onto the content code of P(x), the
    Fisher discriminant ratio per generator, and the gallery's closed-set attribution accuracy
    (centroid and kNN) against the rows' labels (gallery models only)."""
    root = Path(zoo)
    rows = [r for r in load_content(root) if r["split"] == split]
    if not rows:
        raise UsageError(f"the zoo {zoo} has no images in split {split!r}")
    imgs = [read_image(root / r["file"]) for r in rows]
    fp = vector_mapper(gallery.spec, opts, gallery.embedder())
    z = map_images(imgs, lambda b: fp(b, [])["vector"].cpu().numpy())
    spec = gallery.spec.handcrafted()
    codes = map_images(imgs, lambda b: content_code(b.permute(0, 3, 1, 2).float() / 255.0, spec.residual,
                                                    spec.sigma).numpy())
    models = [r["model"] for r in rows]
    has = np.array([r["content_id"] is not None for r in rows])
    known = set(gallery.models())
    out = {"split": split, "n": len(rows), "n_with_content": int(has.sum()),
           "probe": content_probe(z[has], [r["content_id"] for r in rows if r["content_id"] is not None],
                                  [m for m, h in zip(models, has) if h]) if has.any() else None,
           "content_r2": content_regression(z[has], codes[has], np.array(models)[has]) if has.any() else None,
           "fdr": fisher_ratio(z, models)}
    ok = np.array([r["label"] in known for r in rows])
    truth = np.array([r["label"] for r in rows])[ok]
    for method in ("centroid", "knn"):
        if not ok.any():  # no image of an enrolled model in this split
            out[f"accuracy_{method}"] = None
            continue
        a = gallery.attribute(torch.from_numpy(z[ok]), method=method, top=1)
        out[f"accuracy_{method}"] = float(np.mean(np.array(a.predicted) == truth))
    return out
