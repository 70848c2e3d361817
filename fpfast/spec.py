"""FingerprintSpec: the contract between enrollment and query.

A spec fixes everything that changes the numbers of a fingerprint vector: how an image is
turned into a float tensor (colour, value range, geometry), the residual operator, and the
feature families with their sizes, in order. It is stored in every gallery and every extract
output; two specs that would give different numbers never compare equal, and a spec of an
unknown version is refused with a message that names both versions.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from .contract import DCT_COEFS, MAX_PERIOD, MIN_PERIOD, RESIDUALS, phase_bins  # named and bounded by the kernel contract
from .errors import ConfigError

SPEC_VERSION = 1
GEOMETRIES = ("crop", "resize", "none")
FAMILIES = ("moments", "phase", "dct", "radial", "xcorr")


class SpecError(ConfigError):
    """A spec is malformed, of another version, or does not match the one expected."""


PROJECTOR_KEYS = ("kind", "params", "identity", "source")
EMBEDDING_KEYS = ("kind", "identity", "dim", "appended")  # appended (optional): the dims after the network's own
# (the handcrafted fingerprint; then a reference network's vector, Embedder.with_reference)
CROP_LAYOUTS = ("grid", "random")
CROP_AGGREGATES = ("mean",)
MAX_CROPS = 64


def _check_record(r: Any, what: str, keys: tuple[str, ...], kind_example: str, identity_of: str) -> dict | None:
    """Common checks of a projector / embedding description: a JSON object of ``keys`` with a
    non-empty 'kind' and a 64-hex 'identity'."""
    if r is None:
        return None
    if not isinstance(r, dict):
        raise SpecError(f"{what} must be a JSON object or null, got {type(r).__name__}")
    extra = sorted(set(r) - set(keys))
    if extra:
        raise SpecError(f"unknown {what} fields {extra}; expected {list(keys)}")
    if not isinstance(r.get("kind"), str) or not r["kind"]:
        raise SpecError(f"{what} needs a 'kind' (e.g. {kind_example})")
    ident = r.get("identity")
    if not isinstance(ident, str) or len(ident) != 64:
        raise SpecError(f"{what} needs an 'identity' (sha256 hex of {identity_of}), got {ident!r}")
    return r


def _canonical_projector(p: Any) -> "dict[str, Any] | None":
    """A deep, JSON-normalised copy of a projector description (or None), checked for shape."""
    if _check_record(p, "projector", PROJECTOR_KEYS, "'manifold', 'autoencoder', 'diffusion'", "its model") is None:
        return None
    if not isinstance(p.get("params", {}), dict):
        raise SpecError("projector 'params' must be a JSON object")
    try:
        return json.loads(json.dumps({"params": {}, **p}, sort_keys=True))
    except (TypeError, ValueError) as e:
        raise SpecError(f"projector description is not JSON-serialisable: {e}") from None


def _canonical_embedding(e: Any) -> "dict[str, Any] | None":
    """A JSON-normalised copy of a learned-embedding description (or None), checked for shape."""
    if _check_record(e, "embedding", EMBEDDING_KEYS, "'rescnn'", "config + weights") is None:
        return None
    dim = e.get("dim")
    if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= 65536:
        raise SpecError(f"embedding needs a 'dim' (int in [1, 65536]), got {dim!r}")
    out = {"kind": e["kind"], "identity": e["identity"], "dim": dim}
    if "appended" in e:  # absent from a plain embedding's record, so its spec id is unchanged
        app = e["appended"]
        if not isinstance(app, int) or isinstance(app, bool) or not 1 <= app < dim:
            raise SpecError(f"embedding 'appended' must be an int in [1, dim), got {app!r}")
        out["appended"] = app
    return out


def _canonical_crops(c: Any) -> "dict[str, Any] | None":
    """A checked, complete copy of a multi-crop description (or None)."""
    if c is None:
        return None
    if not isinstance(c, dict):
        raise SpecError(f"crops must be a JSON object or null, got {type(c).__name__}")
    extra = sorted(set(c) - {"n", "layout", "seed", "aggregate"})
    if extra:
        raise SpecError(f"unknown crops fields {extra}; expected ['n', 'layout', 'seed', 'aggregate']")
    n = c.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or not 2 <= n <= MAX_CROPS:
        raise SpecError(f"crops needs 'n' (int in [2, {MAX_CROPS}]; one crop is the plain spec), got {n!r}")
    d = {"n": n, "layout": c.get("layout", "grid"), "seed": c.get("seed", 0), "aggregate": c.get("aggregate", "mean")}
    if d["layout"] not in CROP_LAYOUTS:
        raise SpecError(f"unknown crops layout {d['layout']!r}; expected one of {CROP_LAYOUTS}")
    if d["aggregate"] not in CROP_AGGREGATES:
        raise SpecError(f"unknown crops aggregate {d['aggregate']!r}; expected one of {CROP_AGGREGATES}")
    if not isinstance(d["seed"], int) or isinstance(d["seed"], bool) or d["seed"] < 0:
        raise SpecError(f"crops 'seed' must be a non-negative int, got {d['seed']!r}")
    if d["layout"] == "grid":
        d["seed"] = 0  # a grid draws nothing: its seed cannot make two specs differ
    return d


def parse_crops(text: str) -> "dict[str, Any] | None":
    """``N``, ``N:grid``, ``N:random`` or ``N:random:SEED`` (the ``--crops`` option) -> a crops
    description; ``1`` -> None (the single centre crop)."""
    parts = str(text).split(":")
    try:
        n = int(parts[0])
        seed = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        raise SpecError(f"--crops expects N, N:grid, N:random or N:random:SEED, got {text!r}") from None
    if len(parts) > 3 or n < 1:
        raise SpecError(f"--crops expects N >= 1, N:grid, N:random or N:random:SEED, got {text!r}")
    if n == 1:
        return None
    return _canonical_crops({"n": n, "layout": parts[1] if len(parts) > 1 else "grid", "seed": seed})


@dataclasses.dataclass(frozen=True, eq=False)
class FingerprintSpec:
    """What a fingerprint vector means.

    Input handling (applied by the decoder and by :func:`fpfast.prepare`):
      * colour: gray -> replicated to RGB; RGBA/LA -> alpha dropped; palette -> RGB; CMYK -> RGB
        (Pillow's conversion); 16-bit -> float without 8-bit rounding.
      * value range: float32 in [0, 1] (uint8 / 255, uint16 / 65535).
      * geometry: ``crop`` = centre crop to at most ``size`` x ``size`` (a smaller image is used
        whole: every feature is normalised by the image size); ``resize`` = antialiased bilinear
        resize to ``size`` x ``size`` (destroys up-sampling traces, offered for comparison);
        ``none`` = the image as given. Images smaller than ``min_size`` on a side are refused.

    Residual (reflect borders everywhere, i.e. scipy ``mode='mirror'``):
      * ``denoise``: x - G * x, G the separable 5x5 Gaussian of ``sigma`` normalised to sum 1.
      * ``median3``: x - median of the 3x3 neighbourhood.
      * ``npr``: x - up(down(x)), nearest down/up-sampling by 2: r[i, j] = x[i, j] - x[2(i//2), 2(j//2)].
      * ``highpass``: x - mean of the 4-neighbours (the 4-neighbour Laplacian divided by 4).

    Feature families, in this order (see :mod:`fpfast.reference.features`):
      ``moments`` 12, ``phase`` sum(p*p), ``dct`` 64, ``radial`` ``radial_bins``, ``xcorr`` 3.

    Projector (optional, :mod:`fpfast.projectors`): ``None`` for the cheap residual operators
    above, else ``{"kind", "params", "identity", "source"}``: the heavy projector whose residual
    x - P(x) replaces ``residual``, its parameters, the sha256 of its model (config + weights, or
    the reference set) and where to load it from. ``source`` is a locator (a path, a hub id), not
    part of the identity: ``==``, ``hash``, ``id`` and ``diff`` ignore it, so the same model at
    two paths gives the same spec. A spec without a projector serialises exactly as before.

    Crops (optional, geometry ``crop`` only): ``None`` = one centre crop (the default), else
    ``{"n", "layout", "seed", "aggregate"}``: the image is fingerprinted on ``n`` crops of
    ``size`` x ``size`` (``grid``: evenly spaced over the whole image, corners included;
    ``random``: offsets drawn from ``seed`` and the image size, the same for every image of that
    size) and the ``n`` vectors are aggregated (``mean``; unit-normalised again for an embedding).
    Decoding then keeps the whole image (:func:`fpfast.prepare.crop_box`) and the crops are taken
    by :func:`fpfast.prepare.apply_geometry`. Part of the id: a multi-crop gallery refuses
    single-crop queries and the other way round. A spec without crops serialises as before.

    Embedding (optional, :mod:`fpfast.embed`): ``None`` for handcrafted vectors, else
    ``{"kind", "identity", "dim"}``: the vectors are the ``dim``-dimensional output of a learned
    network (sha256 ``identity`` of its config + weights) applied to the images as handled above
    (and, when the network uses them, to the handcrafted features of :meth:`handcrafted`).
    ``dim`` is then the embedding's size; :meth:`handcrafted` gives the spec without it. Two
    galleries/queries of different embeddings (or one with and one without) never compare equal.
    """

    size: int = 64
    geometry: str = "crop"
    min_size: int = 16
    residual: str = "denoise"
    sigma: float = 1.0
    periods: tuple[int, ...] = (2, 4, 8)
    radial_bins: int = 16
    families: tuple[str, ...] = FAMILIES
    dtype: str = "float32"
    version: int = SPEC_VERSION
    projector: "dict[str, Any] | None" = None
    embedding: "dict[str, Any] | None" = None
    crops: "dict[str, Any] | None" = None

    def __post_init__(self) -> None:
        # JSON gives lists; keep the dataclass hashable and comparable.
        object.__setattr__(self, "periods", tuple(int(p) for p in self.periods))
        object.__setattr__(self, "families", tuple(str(f) for f in self.families))
        object.__setattr__(self, "projector", _canonical_projector(self.projector))
        object.__setattr__(self, "embedding", _canonical_embedding(self.embedding))
        object.__setattr__(self, "crops", _canonical_crops(self.crops))
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        if self.version != SPEC_VERSION:
            raise SpecError(
                f"fingerprint spec version {self.version} is not supported: this fpfast reads "
                f"version {SPEC_VERSION}; re-extract with a matching fpfast")
        if self.residual not in RESIDUALS:
            raise SpecError(f"unknown residual {self.residual!r}; expected one of {RESIDUALS}")
        if self.geometry not in GEOMETRIES:
            raise SpecError(f"unknown geometry {self.geometry!r}; expected one of {GEOMETRIES}")
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families or len(set(self.families)) != len(self.families):
            raise SpecError(f"families must be distinct names from {FAMILIES}, got {self.families}")
        if self.min_size < 16:
            raise SpecError(f"min_size must be >= 16, got {self.min_size}")
        if self.size < self.min_size:
            raise SpecError(f"size {self.size} is below min_size {self.min_size}")
        if not self.periods or any(p < MIN_PERIOD or p > MAX_PERIOD for p in self.periods):
            raise SpecError(f"periods must lie in [{MIN_PERIOD}, {MAX_PERIOD}], got {self.periods}")
        if not 1 <= self.radial_bins <= 256:
            raise SpecError(f"radial_bins must lie in [1, 256], got {self.radial_bins}")
        if not self.sigma > 0:
            raise SpecError(f"sigma must be > 0, got {self.sigma}")
        if self.dtype != "float32":
            raise SpecError(f"only dtype float32 is defined, got {self.dtype!r}")
        if self.crops is not None and self.geometry != "crop":
            raise SpecError(f"crops need the 'crop' geometry, got {self.geometry!r}")
        if self.crops is not None and self.projector is not None:
            raise SpecError("crops with a heavy projector are not supported: use one or the other")

    # ------------------------------------------------------------------ layout
    def family_size(self, family: str) -> int:
        return {
            "moments": 12,
            "phase": phase_bins(self.periods),
            "dct": DCT_COEFS,
            "radial": self.radial_bins,
            "xcorr": 3,
        }[family]

    @property
    def slices(self) -> dict[str, slice]:
        """Which dimensions of the vector hold which family."""
        out, start = {}, 0
        for f in self.families:
            n = self.family_size(f)
            out[f] = slice(start, start + n)
            start += n
        return out

    @property
    def handcrafted_dim(self) -> int:
        """Size of the handcrafted vector (the families'), with or without an embedding."""
        return sum(self.family_size(f) for f in self.families)

    @property
    def dim(self) -> int:
        """Size of the vectors this spec describes: the embedding's when it has one."""
        if self.embedding is not None:
            return int(self.embedding["dim"])
        return self.handcrafted_dim

    def handcrafted(self) -> "FingerprintSpec":
        """This spec without its embedding: what the handcrafted ops compute."""
        return self if self.embedding is None else dataclasses.replace(self, embedding=None)

    @property
    def n_crops(self) -> int:
        return 1 if self.crops is None else int(self.crops["n"])

    def single_crop(self) -> "FingerprintSpec":
        """This spec without its crops: what is computed on each crop before aggregation."""
        return self if self.crops is None else dataclasses.replace(self, crops=None)

    def feature_names(self) -> list[str]:
        if self.embedding is not None:
            return [f"embed.{i}" for i in range(self.dim)]
        names: list[str] = []
        for f in self.families:
            if f == "moments":
                names += [f"moments.{c}.{m}" for c in "rgb" for m in ("mean", "var", "skew", "kurt")]
            elif f == "phase":
                names += [f"phase.p{p}.{a}_{b}" for p in self.periods for a in range(p) for b in range(p)]
            elif f == "dct":
                names += [f"dct.{u}_{v}" for u in range(8) for v in range(8)]
            elif f == "radial":
                names += [f"radial.{k}" for k in range(self.radial_bins)]
            else:
                names += ["xcorr.rg", "xcorr.rb", "xcorr.gb"]
        return names

    # ------------------------------------------------------------------ identity
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["periods"] = list(self.periods)
        d["families"] = list(self.families)
        if self.projector is None:
            del d["projector"]  # a spec without a projector keeps its version-1 JSON and id
        else:
            d["projector"] = json.loads(json.dumps(self.projector))
        if self.embedding is None:
            del d["embedding"]  # likewise for a spec without a learned embedding
        else:
            d["embedding"] = dict(self.embedding)
        if self.crops is None:
            del d["crops"]  # and for a single-crop spec
        else:
            d["crops"] = dict(self.crops)
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent)

    def identity_dict(self) -> dict[str, Any]:
        """``to_dict`` without the projector's ``source`` locator: what changes the numbers."""
        d = self.to_dict()
        if "projector" in d:
            d["projector"].pop("source", None)
        return d

    @property
    def id(self) -> str:
        """Short stable hash of everything that changes the numbers."""
        text = json.dumps(self.identity_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FingerprintSpec):
            return NotImplemented
        return self.identity_dict() == other.identity_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.identity_dict(), sort_keys=True))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FingerprintSpec":
        if not isinstance(d, dict):
            raise SpecError(f"a spec must be a JSON object, got {type(d).__name__}")
        if "version" not in d:
            raise SpecError("spec has no 'version' field")
        if d["version"] != SPEC_VERSION:
            raise SpecError(
                f"fingerprint spec version {d['version']} is not supported: this fpfast reads "
                f"version {SPEC_VERSION}")
        names = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(d) - names)
        if extra:
            raise SpecError(f"unknown spec fields {extra}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "FingerprintSpec":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"spec is not valid JSON: {e}") from None
        return cls.from_dict(d)

    def diff(self, other: "FingerprintSpec") -> list[str]:
        """Human-readable differences, e.g. ``["residual: 'npr' != 'denoise'"]``."""
        a, b = self.identity_dict(), other.identity_dict()
        out = []
        for k in sorted(set(a) | set(b)):
            if a.get(k) == b.get(k):
                continue
            if k == "projector" and a.get(k) and b.get(k):
                pa, pb = a[k], b[k]
                for sub in ("kind", "params", "identity"):
                    if pa.get(sub) != pb.get(sub):
                        out.append(f"projector.{sub}: {pa.get(sub)!r} != {pb.get(sub)!r}")
            elif k == "embedding" and a.get(k) and b.get(k):
                for sub in ("kind", "identity", "dim"):
                    if a[k].get(sub) != b[k].get(sub):
                        out.append(f"embedding.{sub}: {a[k].get(sub)!r} != {b[k].get(sub)!r}")
            else:
                out.append(f"{k}: {a.get(k)!r} != {b.get(k)!r}")
        return out

    def require_same(self, other: "FingerprintSpec", what: str = "gallery") -> None:
        d = self.diff(other)
        if d:
            raise SpecError(f"fingerprint spec differs from the {what}'s: " + "; ".join(d))

    def replace(self, **changes: Any) -> "FingerprintSpec":
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, FingerprintSpec] = {
    "default": FingerprintSpec(),
    "handcrafted": FingerprintSpec(),  # the same: the name `fpfast enroll --spec` offers for its speed mode
    "npr": FingerprintSpec(residual="npr"),
    "highpass": FingerprintSpec(residual="highpass"),
    "median": FingerprintSpec(residual="median3"),
    "photo256": FingerprintSpec(size=256),
}


def load_spec(value: "str | FingerprintSpec | dict | None") -> FingerprintSpec:
    """A spec from a preset name, a JSON file path, a JSON string, a dict, or None (default)."""
    if value is None:
        return PRESETS["default"]
    if isinstance(value, FingerprintSpec):
        return value
    if isinstance(value, dict):
        return FingerprintSpec.from_dict(value)
    if value in PRESETS:
        return PRESETS[value]
    text = value
    if not value.lstrip().startswith("{"):
        try:
            with open(value, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as e:
            raise SpecError(
                f"spec {value!r} is neither a preset ({', '.join(PRESETS)}) nor a readable JSON file: {e}"
            ) from None
    return FingerprintSpec.from_json(text)
