"""Model gallery: enroll fingerprints of known models, search them, attribute queries.

    from fpfast.gallery import Gallery
    g = Gallery.create("my_gallery", spec)          # empty gallery directory
    g.add("sdxl", vectors_sdxl)                     # [B, spec.dim] numpy or torch
    g.add("midjourney", vectors_mj)
    g.fit("standardize")                            # or "lda", "whiten", "none"
    g.calibrate(held_out, held_out_models, frr=0.05)
    g.save()
    a = Gallery.load("my_gallery", spec).attribute(queries, method="knn", k=10)
    a.model, a.score                                # names ("unknown" above threshold), confidence

Modules: ``store`` (directory format), ``index`` (FAISS), :mod:`fpfast.search` (exact matmul+top-k, faiss GPU resources),
``normalize``, ``attribution``, ``evaluate``; :class:`Gallery` in ``gallery``.
"""
from .attribution import UNKNOWN, Attribution
from .evaluate import auroc, confusion_matrix, evaluate, plot_confusion, report, write_confusion_csv
from .gallery import Gallery, SearchResult
from .store import FORMAT_NAME, FORMAT_VERSION, GalleryError
from ..search import knn as torch_knn

__all__ = [
    "Gallery", "SearchResult", "Attribution", "GalleryError", "UNKNOWN", "FORMAT_NAME",
    "FORMAT_VERSION", "evaluate", "report", "confusion_matrix", "auroc", "write_confusion_csv",
    "plot_confusion", "torch_knn",
]
