"""The Projector interface, the registry behind ``spec.projector``, and fingerprinting through one.

A projector P keeps an image's content but not the generator's trace; its residual x - P(x) is
the artifact whose features make the fingerprint. Every projector takes float [B,3,H,W] in [0,1]
at the spec's working size and returns float32 on the device it runs on.
"""
from __future__ import annotations

import abc
from typing import Any, Callable

import torch

from ..ops.features import fingerprint_features
from ..prepare import prepare
from ..spec import FingerprintSpec, SpecError, load_spec
from .loading import ProjectorError

_REGISTRY: dict[str, type["Projector"]] = {}


def register(kind: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls
    return deco


class Projector(abc.ABC):
    """project(x) -> P(x); residual(x) = x - P(x); identity() and to_spec_dict() for the spec."""

    kind: str = "?"
    batch_size: int = 16

    @abc.abstractmethod
    def project(self, x: torch.Tensor) -> torch.Tensor:
        """P(x), float32 [B,3,H,W], for x float [B,3,H,W] in [0,1]."""

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """x - P(x), float32 [B,3,H,W], computed in batches of ``batch_size``."""
        x = self.check_input(x)
        if x.shape[0] == 0:
            return torch.zeros_like(x, dtype=torch.float32)
        outs = []
        for i in range(0, x.shape[0], self.batch_size):
            xb = x[i:i + self.batch_size]
            p = self.project(xb)
            outs.append(xb.float().to(p.device) - p.float())
        return torch.cat(outs)

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """The JSON-able parameters that change the numbers."""

    @abc.abstractmethod
    def sha256(self) -> str:
        """sha256 of the model (config + weights) or of the reference set."""

    def source(self) -> Any:
        """Where to load the model from again (a path, a hub id); not part of the identity."""
        return None

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": self.params(), "sha256": self.sha256()}

    def to_spec_dict(self) -> dict[str, Any]:
        """The value of ``FingerprintSpec.projector`` for this projector."""
        return {"kind": self.kind, "params": self.params(), "identity": self.sha256(),
                "source": self.source()}

    def spec(self, base: "FingerprintSpec | str | None" = None) -> FingerprintSpec:
        """``base`` (default spec) with this projector recorded in it."""
        return load_spec(base).replace(projector=self.to_spec_dict())

    @classmethod
    @abc.abstractmethod
    def from_spec_dict(cls, desc: dict[str, Any], **kwargs: Any) -> "Projector":
        """Rebuild from a ``to_spec_dict()`` value (loading the model from ``desc['source']``)."""

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
            raise ProjectorError(f"a projector takes float images [B,3,H,W], got "
                                 f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if not x.is_floating_point():
            raise ProjectorError(f"a projector takes float images in [0,1], got {x.dtype}")
        return x


def projector_kinds() -> tuple[str, ...]:
    _import_all()
    return tuple(sorted(_REGISTRY))


def _import_all() -> None:
    from . import autoencoder, diffusion, manifold  # noqa: F401  (they register themselves)


def projector_class(kind: str) -> type[Projector]:
    """The projector class registered under ``kind`` (:func:`register`)."""
    _import_all()
    cls = _REGISTRY.get(kind)
    if cls is None:
        raise ProjectorError(f"unknown projector kind {kind!r}; expected one of {sorted(_REGISTRY)}")
    return cls


def load_projector(desc: dict[str, Any], **kwargs: Any) -> Projector:
    """The projector a spec's ``projector`` field describes, loaded from its ``source``.

    Keyword arguments go to the projector (``device``, ``allow_pickle``, ``encoder``, ``source``
    to load from another place). The loaded model must hash to ``desc['identity']``.
    """
    if not isinstance(desc, dict) or "kind" not in desc:
        raise ProjectorError(f"a projector description is a dict with a 'kind', got {desc!r}")
    proj = projector_class(desc["kind"]).from_spec_dict(desc, **kwargs)
    want = desc.get("identity")
    if want is not None and proj.sha256() != want:
        raise ProjectorError(
            f"{desc['kind']} projector loaded from {proj.source()!r} has identity {proj.sha256()[:16]}..., "
            f"the spec records {want[:16]}...: a different model or reference set")
    return proj


def fingerprint_with_projector(images: torch.Tensor, spec: "FingerprintSpec | str | dict | None",
                               backend: str = "auto", projector: Projector | None = None,
                               layout: str = "auto", return_residual: bool = False, **load_kwargs: Any):
    """prepare -> projector residual -> ``fingerprint_features(..., is_residual=True)``.

    ``projector``: an already loaded projector (its identity must match the spec's); else it is
    loaded from ``spec.projector`` with ``load_kwargs``.
    """
    spec = load_spec(spec)
    if projector is None:
        if spec.projector is None:
            raise SpecError("the spec has no projector; use fpfast.ops.features.fingerprint_features")
        projector = load_projector(spec.projector, **load_kwargs)
    mine = projector.to_spec_dict()
    if spec.projector is None:
        raise SpecError(f"the spec has no projector but a {projector.kind} projector was given; "
                        f"use projector.spec(base) to record it")
    spec.require_same(spec.replace(projector=mine), what="projector")
    x = prepare(images, spec, layout)
    r = projector.residual(x)
    return fingerprint_features(r, spec, backend=backend, is_residual=True, return_residual=return_residual)
