"""Per-image fingerprints of every model, in every space the analysis covers.

Images are read through the pipeline (:func:`fpfast.jobs.collect.image_sources`: fpfast's sources
and decoder, unreadable files become error rows) once per model in the spec's geometry, then:

* ``spec``: the handcrafted fingerprint of the spec (:func:`fpfast.ops.features.fingerprint_features`);
* ``spectrum``: the log power spectrum of that spec's gray residual, per image (DC centred);
* ``gallery``: a gallery's vectors, its learned embedding when it has one (its own spec; read through
  :func:`fpfast.jobs.collect.gallery_fingerprints`), when a gallery is given;
* ``manifold-rgb`` / ``manifold-freq``: ManiFPT artifacts against a reference set, when one is
  given: x minus its RGB-nearest real image, and the FREQ artifact of the ``manifpt`` recipe
  (same neighbour, :func:`fpfast.projectors.spaces.freq_artifact`), flattened;
* ``encoder``: a user encoder's features, e(x) - e(RGB-nearest real image) with a reference set
  (ManiFPT's learned-space artifact with the RGB neighbour), else e(x).

Besides the vectors it keeps, per model, the mean power spectrum of the spec's gray residual.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from ..jobs.collect import gallery_fingerprints, image_sources
from ..jobs.options import StreamOptions, resolve_device
from ..ops.features import fingerprint_features
from ..spec import FingerprintSpec
from .design import Design


@dataclass
class Space:
    name: str
    about: str
    vectors: list = field(default_factory=list)   # per model: [n_m, D] arrays
    models: list = field(default_factory=list)    # per row: model name

    def add(self, model: str, v: np.ndarray) -> None:
        if len(v):
            self.vectors.append(np.asarray(v, np.float32).reshape(len(v), -1))
            self.models += [model] * len(v)

    @property
    def X(self) -> np.ndarray:
        return np.concatenate(self.vectors) if self.vectors else np.zeros((0, 0), np.float32)


@dataclass
class Collected:
    spaces: dict[str, Space]
    errors: list[dict]                 # {"model", "path", "error"} per unreadable or unusable image
    spectra: dict[str, np.ndarray]     # model -> log10 mean power spectrum of the gray residual, DC centred
    images: dict[str, int]             # model -> images used


def _groups(imgs: list[np.ndarray]):
    by: dict[tuple, list[int]] = {}
    for i, a in enumerate(imgs):
        by.setdefault(a.shape, []).append(i)
    return by


def _power(res: torch.Tensor) -> torch.Tensor:
    """|FFT2|^2 of the gray residual, DC centred: [B, H, W]."""
    return torch.fft.fftshift(torch.fft.fft2(res.float().mean(1)).abs().pow(2), dim=(-2, -1))


def _spectrum(res: torch.Tensor) -> np.ndarray:
    return torch.log10(_power(res).mean(0) + 1e-12).cpu().numpy()


def collect(design: Design, spec: FingerprintSpec, opts: StreamOptions, *, gallery=None, refset=None,
            encoder: torch.nn.Module | None = None, encoder_about: str = "user encoder", progress=None) -> Collected:
    """Fingerprints of every model of ``design`` (see the module docstring). ``progress(model)`` is
    called after each model."""
    device = resolve_device(opts.device)
    quiet = dataclasses.replace(opts, quiet=True)
    spaces = {"spec": Space("spec", f"handcrafted spec ({spec.residual} residual, {spec.dim} dims, "
                                    f"{spec.size}px)")}
    spaces["spectrum"] = Space("spectrum", f"per-image log10 power spectrum of the gray {spec.residual} residual")
    proj = None
    if gallery is not None:
        kind = "learned embedding" if gallery.spec.embedding is not None else "handcrafted vectors (its spec)"
        spaces["gallery"] = Space("gallery", f"{kind} of gallery {gallery.path}")
    if refset is not None:
        from ..projectors import ManifoldProjector
        proj = ManifoldProjector(refset, space="rgb", device=device)
        size = proj.ref.size
        spaces["manifold-rgb"] = Space("manifold-rgb", f"ManiFPT RGB artifact, {len(proj.ref)} real refs at {size}px")
        spaces["manifold-freq"] = Space("manifold-freq", "ManiFPT FREQ artifact (released recipe: RGB neighbour, "
                                                         "log|fftshift(fft2)|+1e-12)")
    if encoder is not None:
        encoder = encoder.to(device)
        spaces["encoder"] = Space("encoder", encoder_about + (" (artifact vs RGB neighbour)" if proj else " (features)"))
    errors, spectra, used = [], {}, {}
    for model, folder in design.folders.items():
        imgs, keys, errs = image_sources([folder], spec, quiet)
        errors += [{"model": model, "path": r["path"], "error": r["error"]} for r in errs]
        used[model] = 0
        best = None
        for shape, idx in _groups(imgs).items():
            x = torch.from_numpy(np.stack([imgs[i] for i in idx])).to(device)
            v, res = fingerprint_features(x, spec, backend=opts.backend, layout="hwc", return_residual=True)
            spaces["spec"].add(model, v.cpu().numpy())
            spaces["spectrum"].add(model, torch.log10(_power(res) + 1e-12).flatten(1).cpu().numpy())
            used[model] += len(idx)
            if best is None or len(idx) > best[0]:
                best = (len(idx), _spectrum(res))
            if proj is not None:
                if shape[:2] != (proj.ref.size, proj.ref.size):
                    errors += [{"model": model, "path": keys[i], "error": f"image is {shape[1]}x{shape[0]} after the "
                                f"spec's geometry; the reference set works at {proj.ref.size}px: not in the "
                                f"manifold spaces"} for i in idx]
                    continue
                _manifold(spaces, model, x, proj, encoder)
            elif encoder is not None:
                with torch.no_grad():
                    spaces["encoder"].add(model, encoder(x.permute(0, 3, 1, 2).float() / 255.0).cpu().numpy())
        if best is not None:
            spectra[model] = best[1]
        if gallery is not None:
            fp = gallery_fingerprints(gallery, [folder], quiet)
            spaces["gallery"].add(model, fp.vectors)
        if progress:
            progress(model)
    return Collected(spaces, _unique(errors), spectra, used)


def _manifold(spaces: dict, model: str, x_hwc: torch.Tensor, proj, encoder) -> None:
    from ..projectors.manifpt import released_artifacts
    for s in range(0, x_hwc.shape[0], 256):
        x = x_hwc[s:s + 256].permute(0, 3, 1, 2).float() / 255.0
        art = released_artifacts(proj, x, encoder)
        spaces["manifold-rgb"].add(model, art["rgb"].cpu().numpy())
        spaces["manifold-freq"].add(model, art["freq"].cpu().numpy())
        if encoder is not None:
            spaces["encoder"].add(model, art["encoder"].cpu().numpy())


def _unique(errors: list[dict]) -> list[dict]:
    seen, out = set(), []
    for e in errors:
        if (e["path"], e["error"]) not in seen:
            seen.add((e["path"], e["error"]))
            out.append(e)
    return out
