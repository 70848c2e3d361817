"""The ``anonymize`` job: a mapper writing each batch's counterfactual images beside the report rows.

Images are decoded whole (the spec's geometry is applied to attribute them, and inside the
anonymizer's objective), so a counterfactual has its input's size; it is written as an 8-bit PNG
``images/<sha1 of the key>.png`` under the output directory (atomic: written aside, then
renamed), and the row (in ``report/``) names it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
import torch

from ..causal.anonymize import Anonymizer
from ..causal.quality import psnr, ssim
from ..prepare import apply_geometry
from .mappers import vector_mapper
from .options import StreamOptions, check_decode

IMAGES, REPORT = "images", "report"


def anonymize_schema():
    import pyarrow as pa
    return pa.schema([("path", pa.string()), ("error", pa.string()), ("note", pa.string()),
                      ("output", pa.string()), ("source_before", pa.string()), ("score_before", pa.float64()),
                      ("source_after", pa.string()), ("score_after", pa.float64()), ("target", pa.string()),
                      ("psnr", pa.float64()), ("ssim", pa.float64())])


def image_name(key: str) -> str:
    return f"{IMAGES}/{hashlib.sha1(key.encode('utf-8', 'surrogatepass')).hexdigest()[:20]}.png"


def whole_image_spec(spec):
    """The spec the stream decodes with: the gallery's, but images kept whole (geometry none)."""
    if spec.crops is not None:  # the counterfactual is optimised against one view of the image
        from ..errors import UsageError
        raise UsageError("anonymize does not support a multi-crop gallery yet (enroll it without --crops)")
    return dataclasses.replace(spec, geometry="none")


def anonymize_mapper(gallery, opts: StreamOptions, out_dir: str, anonymizer: Anonymizer):
    """``mapper(batch uint8 [B, H, W, 3], keys)`` -> the columns of :func:`anonymize_schema`;
    writes the counterfactuals under ``out_dir/images``."""
    from PIL import Image

    from ..io.writers import atomic_write
    check_decode(gallery, opts)
    fp = vector_mapper(gallery.spec, opts, gallery.embedder())
    names = list(gallery.models())

    def attribute(u8: torch.Tensor, keys):
        x = apply_geometry(u8.permute(0, 3, 1, 2), gallery.spec).permute(0, 2, 3, 1).contiguous()
        return gallery.attribute(fp(x, keys)["vector"], method="centroid", top=1)

    def mapper(batch: torch.Tensor, keys: list) -> dict:
        if batch.dtype != torch.uint8:
            raise ValueError(f"anonymize writes 8-bit PNGs; this input is {batch.dtype} (16-bit images are "
                             "not supported)")
        before = attribute(batch, keys)
        src = np.array([names.index(p) for p in before.predicted])
        x = batch.permute(0, 3, 1, 2).float() / 255.0
        cf = anonymizer(x, src)
        out = (cf * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().contiguous()
        after = attribute(out, keys)
        os.makedirs(os.path.join(out_dir, IMAGES), exist_ok=True)
        files = []
        for k, img in zip(keys, out.numpy()):
            rel = image_name(k)
            atomic_write(os.path.join(out_dir, rel), lambda tmp, a=img: Image.fromarray(a).save(
                tmp, format="PNG", compress_level=6))
            files.append(rel)
        ref = batch.cpu()
        return {"output": files, "source_before": [str(m) for m in before.model],
                "score_before": [float(s) for s in before.score],
                "source_after": [str(m) for m in after.model], "score_after": [float(s) for s in after.score],
                "target": [names[anonymizer.target]] * len(keys),
                "psnr": psnr(out, ref).tolist(), "ssim": ssim(out, ref).tolist()}

    return mapper
