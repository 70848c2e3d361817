"""fingerprint_features: residual + every feature family in one op, on every backend.

The fused backends compute the raw per-image sums of :mod:`fpfast.ops.sums` in one pass over the
pixels (residual kept in cache, never written unless asked for). The radial spectrum needs the
library FFT of the gray residual the kernel writes out. After the kernel, two ways to the vector:

* ``post="fused"`` (the default for CUDA tensors; under the Triton interpreter on request): the
  library ``rfft2``, then one Triton launch (:mod:`fpfast.ops.triton.post`) that reduces the partial sums, bins the power
  spectrum and finalises every family;
* ``post="torch"`` (CPU tensors, and the reference for the fused one):
  :func:`fpfast.ops.sums.finalize` and :func:`fpfast.ops.sums.radial_features`, ~40 small torch ops.

``graph=True`` runs the whole op for a fixed batch shape as a CUDA graph (:mod:`fpfast.ops.graph`).
"""
from __future__ import annotations

import importlib

import torch

from .. import backends
from ..prepare import aggregate_crops, apply_geometry, as_chw, to_float
from ..reference import features as reference_features
from ..reference import residual as reference_residual
from ..spec import FingerprintSpec, load_spec
from .sums import finalize, radial_features

# backend -> module holding feature_sums(x, spec, op, want_gray, want_residual) -> (sums, gray, residual)
_MODULES = {"cpp": "fpfast.ops.cpp", "triton": "fpfast.ops.triton.features", "cuda": "fpfast.ops.cuda"}
POSTS = ("auto", "fused", "torch")
# a backend joins IMPLEMENTED once its module provides feature_sums
IMPLEMENTED = ("torch", "cpp", "triton", "cuda")


def _kernel_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 and float32 pass through untouched (any strides); other dtypes become float32."""
    return x if x.dtype in (torch.uint8, torch.float32) else to_float(x).float()


def _post_for(chosen: str, device_type: str, post: str) -> str:
    """'fused' or 'torch': the way from kernel sums to vectors (see the module docstring)."""
    fused_ok = chosen == "triton" or (chosen == "cuda" and backends.why_unusable("triton", "cuda") is None
                                      and not backends.triton_interpret())
    if post == "fused" and not fused_ok:
        raise backends.BackendUnavailable(
            f"post='fused' needs a GPU backend and Triton (backend {chosen}, {device_type} tensors)")
    if post == "auto":  # on CPU tensors (triton under its interpreter) the torch stage is the faster one
        return "fused" if fused_ok and device_type == "cuda" else "torch"
    return post


def fingerprint_features(images: torch.Tensor, spec: FingerprintSpec | str | None = None,
                         backend: str = "auto", layout: str = "auto", return_residual: bool = False,
                         is_residual: bool = False, post: str = "auto", graph: bool = False):
    """Fingerprint vectors [B, spec.dim] float32 of a batch, on the backend chosen.

    ``images``: uint8 or float [B,H,W,3] or [B,3,H,W] (any strides, H, W >= spec.min_size), or
    with ``is_residual=True`` an already computed residual (float, e.g. from a heavy projector),
    whose features are taken as they are. ``return_residual=True`` also returns the float32
    residual [B,3,h,w] (after the spec's geometry; [B * n, 3, h, w] for a spec of ``n`` crops,
    whose vectors are the mean of its crops'). ``backend``: auto, torch, cpp, triton, cuda.
    ``post``: auto, fused or torch (see the module docstring; auto = fused for CUDA tensors).
    ``graph=True`` (CUDA tensors only; off by default): replay a CUDA graph captured for this batch
    shape, dtype, spec, backend and device (:func:`fpfast.ops.graph.fused_op`; the first call per
    shape warms up and captures, falling back to eager when capture fails). The result is the same
    as without it; it saves the launch cost of the ~5 launches per batch. A numpy array is taken
    as a CPU tensor.
    """
    images = torch.as_tensor(images)  # numpy in, as the README shows
    if post not in POSTS:
        raise ValueError(f"post must be one of {POSTS}, got {post!r}")
    spec = load_spec(spec)
    if spec.projector is not None and not is_residual:
        raise ValueError(f"this spec's residual comes from a heavy {spec.projector.get('kind')} projector: compute "
                         "the fingerprint with fpfast.projectors.fingerprint_with_projector, or pass that "
                         "projector's residual with is_residual=True")
    if spec.crops is not None:  # a multi-crop spec: each image's crops as a batch, then their mean
        if is_residual:
            raise ValueError("a multi-crop spec takes images (its crops are cut here), not a residual")
        tiles = apply_geometry(as_chw(images, layout), spec)
        res = fingerprint_features(tiles, spec.single_crop(), backend=backend, layout="chw",
                                   return_residual=return_residual, post=post, graph=graph)
        return (aggregate_crops(res[0], spec), res[1]) if return_residual else aggregate_crops(res, spec)
    if graph:
        from .graph import fused_op
        op = fused_op(images, spec, backend=backend, layout=layout, return_residual=return_residual,
                      is_residual=is_residual, post=post)
        return op(images)
    if spec.embedding is not None:
        raise ValueError("this spec's vectors are a learned embedding (fpfast.embed), not handcrafted "
                         "features: compute them with the gallery's embedder, or pass spec.handcrafted()")
    x = apply_geometry(as_chw(images, layout), spec)
    b, _, h, w = x.shape
    if is_residual and x.dtype == torch.uint8:
        raise TypeError("a residual input must be float, got uint8")
    chosen = backends.resolve(backend, x.device.type, IMPLEMENTED)
    if b == 0:
        out = torch.zeros(0, spec.dim, device=x.device)
        return (out, torch.zeros(0, 3, h, w, device=x.device)) if return_residual else out
    if chosen == "torch":
        xf = to_float(x)
        r = xf if is_residual else reference_residual(xf, spec.residual, spec.sigma)
        out = reference_features(r, spec).float()
        return (out, r.float()) if return_residual else out
    mod = importlib.import_module(_MODULES[chosen])
    op = "none" if is_residual else spec.residual
    want_gray = "radial" in spec.families
    if chosen != "cpp" and _post_for(chosen, x.device.type, post) == "fused":
        from .triton.post import finalize_partials
        part, gray, r = mod.feature_partials(_kernel_input(x), spec, op, want_gray, return_residual)
        out = finalize_partials(part, gray, h, w, spec)
        return (out, r) if return_residual else out
    if post == "fused":
        _post_for(chosen, x.device.type, post)  # raises: the cpp backend has no fused post stage
    sums, gray, r = mod.feature_sums(_kernel_input(x), spec, op, want_gray, return_residual)
    rad = radial_features(gray, spec.radial_bins) if gray is not None else None
    out = finalize(sums.to(x.device), h, w, spec, rad)
    return (out, r) if return_residual else out


def fingerprint(images: torch.Tensor, spec: FingerprintSpec | str | None = None, backend: str = "auto",
                layout: str = "auto") -> torch.Tensor:
    """The fingerprint of a batch of images under ``spec`` on the fastest usable backend."""
    return fingerprint_features(images, spec, backend=backend, layout=layout)
