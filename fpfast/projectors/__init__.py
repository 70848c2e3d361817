"""Heavy projectors: residual = x - P(x) with P a nearest real image (``manifold``), an
autoencoder reconstruction (``autoencoder``) or a DDIM inversion + reconstruction (``diffusion``).

Importing this package imports neither faiss nor diffusers; they load with the projector.
"""
from .base import (Projector, fingerprint_with_projector, load_projector, projector_class, projector_kinds,
                   register)
from .loading import ProjectorError

__all__ = ["Projector", "ProjectorError", "load_projector", "fingerprint_with_projector",
           "projector_class", "projector_kinds", "register", "ManifoldProjector", "build_manifold", "AutoencoderProjector",
           "reconstruction_distances", "DiffusionProjector"]


def __getattr__(name):  # lazy: faiss / diffusers load on first use
    if name in ("ManifoldProjector", "build_manifold", "ReferenceSet"):
        from . import manifold
        return getattr(manifold, name)
    if name in ("AutoencoderProjector", "reconstruction_distances"):
        from . import autoencoder
        return getattr(autoencoder, name)
    if name == "DiffusionProjector":
        from . import diffusion
        return diffusion.DiffusionProjector
    raise AttributeError(name)
