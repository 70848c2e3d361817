"""Reading and writing a :class:`~fpfast.gallery.Gallery` directory (the format in :mod:`.store`).

``read`` checks format, spec, shapes, counts, finite values, that every file named stays inside the
directory, the learned embedding's identity and (with ``verify``) the sha256 of every file;
``write`` swaps a new directory in atomically. Both hold the gallery's lock (:mod:`fpfast.io.lock`):
shared to read, exclusive to write. The gallery's samples travel as a :class:`GalleryState`
(``Gallery.state()`` / ``Gallery.restore()``), never through its private attributes.

The sha256s in gallery.json detect corruption (a truncated or damaged file), not tampering: whoever
can write the directory can rewrite them too. :func:`digest` is one sha256 over every file of the
gallery; pin it and check it with ``Gallery.load(..., expect_digest=...)`` (``--expect-digest``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from ..spec import FingerprintSpec, SpecError
from . import index as fidx
from . import normalize as norm
from . import openspace, store
from .store import GalleryError


@dataclasses.dataclass
class GalleryState:
    """A gallery's samples and fitted parts, as saved and loaded."""
    names: list
    vectors: np.ndarray            # float32 [N, D]
    labels: np.ndarray             # int32 [N]
    keys: list
    normalizer: "norm.Normalizer | None" = None
    fitted_on: int = 0
    index: object = None           # faiss index over the normalised vectors
    hold_vectors: np.ndarray | None = None
    hold_labels: np.ndarray | None = None
    embedding: "tuple[bytes, bytes] | None" = None   # (embedding.json, .safetensors) bytes
    hold_keys: list | None = None  # source keys of the held-out samples ("" where none was given)
    hold_condition: np.ndarray | None = None  # a plain embedding's held-out handcrafted vectors (NaN: none)


def digest(path: str) -> str:
    """One sha256 over gallery.json and every file it lists (names and bytes), hashed now."""
    from ..hashing import sha256_file
    meta = store.read_meta(path)
    h = hashlib.sha256()
    for fname in sorted(set(meta["files"]) | {store.META}):
        p = store.check_file(path, fname, meta, False) if fname != store.META else os.path.join(path, fname)
        h.update(f"{fname}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


def read(cls, path: str, spec: FingerprintSpec | None, verify: bool, expect_digest: str | None = None,
         with_digest: bool = False):
    """The gallery at ``path`` as an instance of ``cls`` (see :meth:`Gallery.load`)."""
    from ..io.lock import lock_path, shared
    with shared(lock_path(path)):
        got = digest(path) if expect_digest is not None or with_digest else None
        if expect_digest is not None and got != expect_digest.strip().lower():
            raise GalleryError(f"gallery {path} has digest {got}, not the expected {expect_digest}: "
                               "it changed since the digest was taken; refusing it")
        g = _read(cls, path, spec, verify or got is not None)
    g.loaded_digest = got
    return g


def _read(cls, path: str, spec: FingerprintSpec | None, verify: bool):
    meta = store.read_meta(path)
    try:
        gspec = FingerprintSpec.from_dict(meta["spec"])
    except (SpecError, TypeError) as e:
        raise GalleryError(f"gallery.json holds an invalid fingerprint spec: {e}") from None
    if meta.get("spec_id") != gspec.id:
        raise GalleryError(f"gallery.json spec_id {meta.get('spec_id')!r} does not match its "
                           f"spec (id {gspec.id}): the spec was edited")
    if spec is not None:
        spec.require_same(gspec, "gallery")
    nm, ix = meta["normalize"], meta["index"]
    try:
        g = cls(path, gspec, normalize=nm.get("method"), normalize_params=nm.get("params"),
                index=ix.get("type"), index_params=ix.get("params"))
    except ValueError as e:
        raise GalleryError(f"gallery.json: {e}") from None
    n, d = meta["count"], gspec.dim
    g.openset_blocks, g.openset_scales = _openset(meta, d)
    g.openset_space = meta.get("openset_space") or "vectors"   # absent before 2026-12-07: the raw vector
    if g.openset_space not in openspace.SPACES:
        raise GalleryError(f"gallery.json: openset_space must be one of {openspace.SPACES}, got {g.openset_space!r}")
    if meta.get("dim") != d:
        raise GalleryError(f"gallery.json says dim {meta.get('dim')!r} but its spec gives vectors of "
                           f"dimension {d}: the file was edited or is damaged")
    st = _read_samples(path, meta, verify, "", meta["models"], n, d)
    if gspec.embedding is not None:
        st.embedding = _load_embedding(g, meta, verify)
    st.normalizer, st.fitted_on = _read_normalizer(g, nm, meta, verify, "", n)
    ifile = ix.get("file")
    if ifile:
        p = store.check_file(path, ifile, meta, verify)
        if fidx.faiss_module() is not None:
            st.index = _read_index(g, st, p, ifile, n)
        elif g.index_type != "flat":
            raise GalleryError(f"this gallery has an {g.index_type!r} index and faiss is not "
                               "installed here; only 'flat' galleries search without faiss")
    nh = int((meta.get("holdout") or {}).get("count", 0))
    if nh:
        st.hold_vectors = store.load_array(path, "holdout_vectors.npy", meta, verify, np.float32, (nh, d))
        st.hold_labels = store.load_array(path, "holdout_labels.npy", meta, verify, np.int32, (nh,))
        if st.hold_labels.min() < 0 or st.hold_labels.max() >= len(st.names):
            raise GalleryError(f"holdout_labels.npy holds labels outside [0, {len(st.names)})")
        if "holdout_keys.json" in meta["files"]:  # galleries before fpfast 0.x lack it
            hk = store.load_json(path, "holdout_keys.json", meta, verify)
            if not isinstance(hk, list) or len(hk) != nh or not all(isinstance(k, str) for k in hk):
                raise GalleryError(f"holdout_keys.json must be a list of {nh} strings")
            st.hold_keys = hk
        if "holdout_condition.npy" in meta["files"]:  # plain learned embeddings since the condition detector
            from .conditions import detector_spec
            cspec = detector_spec(gspec)
            if cspec is None:
                raise GalleryError("holdout_condition.npy belongs to a plain learned embedding's gallery")
            st.hold_condition = store.load_array(path, "holdout_condition.npy", meta, verify, np.float32,
                                                 (nh, cspec.dim), finite=False)
    g.restore(st)
    _read_views(g, meta, verify)
    g.calibration = meta["calibration"]
    g.created = meta.get("created", {})
    g.decode = meta.get("decode", "cpu")  # galleries from before --decode were decoded on the CPU
    for field in ("min_side", "copy_side"):  # galleries from before the condition detector / large views: unknown
        ms = meta.get(field)
        if ms is not None and (not isinstance(ms, int) or isinstance(ms, bool) or ms < 1):
            raise GalleryError(f"gallery.json: {field} must be a positive integer or null, got {ms!r}")
        setattr(g, field, ms)
    try:
        g.augment = store.check_augment(meta.get("augment", 0))  # galleries from before --augment have none
    except (TypeError, ValueError) as e:
        raise GalleryError(f"gallery.json: {e}") from None
    return g


def _read_views(g, meta: dict, verify: bool) -> None:
    """The views (:mod:`.views`) of a gallery's meta into ``g`` (galleries before views have none)."""
    from . import views
    rec = meta.get("views") or {}
    try:
        g.view_names = views.check_views(rec.get("names", ()))
    except (TypeError, ValueError) as e:
        raise GalleryError(f"gallery.json: {e}") from None
    g.router = rec.get("router")
    try:
        for name, vr in (rec.get("galleries") or {}).items():
            _read_view(g, name, vr, meta, verify)
    except (KeyError, TypeError, ValueError) as e:
        raise GalleryError(f"gallery.json: a malformed view record ({type(e).__name__}: {e})") from None


def _read_view(g, name: str, vr: dict, meta: dict, verify: bool) -> None:
    """One view's record ``vr`` of gallery.json and its files into ``g.view(name)``."""
    if name not in g.view_names:
        raise GalleryError(f"gallery.json holds view {name!r}, not among its views {list(g.view_names)}")
    v = g.view(name)
    n, prefix = int(vr["count"]), f"view_{name}_"
    st = _read_samples(g.path, meta, verify, prefix, vr["models"], n, g.spec.dim)
    if set(st.names) - set(g.models()):
        raise GalleryError(f"gallery.json: view {name!r} holds models the gallery does not: "
                           f"{sorted(set(st.names) - set(g.models()))}")
    st.normalizer, st.fitted_on = _read_normalizer(g, vr.get("normalize") or {}, meta, verify, prefix, n)
    st.embedding = g._embedding
    v.restore(st)
    v.calibration = vr.get("calibration") or {}


def _read_samples(path: str, meta: dict, verify: bool, prefix: str, models: list, n: int, d: int) -> GalleryState:
    """The samples ``PREFIXvectors.npy`` / ``labels.npy`` / ``keys.json`` of ``models`` (gallery.json's
    records: name and count), checked against those counts."""
    names = [m["name"] for m in models]
    st = GalleryState(names, store.load_array(path, f"{prefix}vectors.npy", meta, verify, np.float32, (n, d)),
                      store.load_array(path, f"{prefix}labels.npy", meta, verify, np.int32, (n,)), [])
    if n and (st.labels.min() < 0 or st.labels.max() >= len(names)):
        raise GalleryError(f"{prefix}labels.npy holds labels outside [0, {len(names)})")
    counts = np.bincount(st.labels, minlength=len(names))
    want = [m["count"] for m in models]
    if counts.tolist() != want:
        raise GalleryError(f"{prefix}labels.npy counts {counts.tolist()} differ from gallery.json's "
                           f"model counts {want}")
    keys = store.load_json(path, f"{prefix}keys.json", meta, verify)
    if not isinstance(keys, list) or len(keys) != n or not all(isinstance(k, str) for k in keys):
        raise GalleryError(f"{prefix}keys.json must be a list of {n} strings")
    st.keys = keys
    return st


def _read_normalizer(g, nm: dict, meta: dict, verify: bool, prefix: str, n: int):
    """(normaliser, vectors it was fitted on) from a normalise record ``nm`` of gallery.json (the
    gallery's, or a view's: ``prefix`` names whose)."""
    d = g.spec.dim
    if nm.get("fitted") and g.normalize != "none":
        arrays = {}
        for name, fname in (nm.get("arrays") or {}).items():
            shape = {"mean": (d,), "scale": (d,), "projection": (d, None)}.get(name)
            if shape is None:
                raise GalleryError(f"gallery.json names an unknown {prefix}normaliser array {name!r}")
            arrays[name] = store.load_array(g.path, fname, meta, verify, np.float32, shape)
        if "mean" not in arrays or "scale" not in arrays:
            raise GalleryError(f"gallery.json: fitted {prefix}normaliser lacks its mean/scale arrays")
        return (norm.Normalizer(g.normalize, arrays["mean"], arrays["scale"], arrays.get("projection"),
                                dict(g.normalize_params)), int(nm.get("fitted_on", n)))
    return (norm.Normalizer("none") if g.normalize == "none" else None), 0


def _normalizer_files(g, nz, prefix: str, arrays: dict) -> dict:
    """{array name: file name} of a fitted normaliser ``nz`` (``PREFIXnormalizer_NAME.npy``), its
    arrays added to ``arrays``."""
    names = {}
    if nz is not None and g.normalize != "none":
        for name, arr in nz.arrays().items():
            names[name] = f"{prefix}normalizer_{name}.npy"
            arrays[names[name]] = arr
    return names


def _write_views(g, arrays: dict, jsons: dict) -> dict | None:
    """The views' part of gallery.json; their arrays and keys go into ``arrays`` / ``jsons``."""
    if not g.view_names:
        return None
    out = {"names": list(g.view_names), "router": g.router, "galleries": {}}
    for name, v in g.views.items():
        if not len(v):
            continue
        prefix = f"view_{name}_"
        arrays[f"{prefix}vectors.npy"], arrays[f"{prefix}labels.npy"] = v._vectors, v._labels
        jsons[f"{prefix}keys.json"] = v.keys
        files = _normalizer_files(g, v._normalizer, prefix, arrays)
        out["galleries"][name] = {
            "count": len(v), "models": [{"name": m, "count": c} for m, c in v.models().items()],
            "normalize": {"fitted": v._normalizer is not None, "fitted_on": v._fitted_on, "arrays": files},
            "calibration": v.calibration}
    return out


def _read_index(g, st: GalleryState, p: str, fname: str, n: int):
    try:
        index = fidx.read(p)
    except RuntimeError as e:
        raise GalleryError(f"{fname} is not a readable FAISS index: "
                           f"{str(e).strip().splitlines()[-1]}") from None
    kind = fidx.kind_of(index)
    if kind != g.index_type:
        raise GalleryError(f"{fname} holds a {kind} index but gallery.json says {g.index_type!r}")
    out_dim = st.normalizer.out_dim(g.spec.dim)
    if index.ntotal != n or index.d != out_dim:
        raise GalleryError(f"{fname} holds {index.ntotal} vectors of dimension {index.d}, "
                           f"expected {n} of dimension {out_dim}")
    fidx.apply_search_params(index, kind, g.index_params)
    return fidx.to_gpu(index, kind)


def _load_embedding(g, meta: dict, verify: bool) -> tuple[bytes, bytes]:
    from ..embed import identity_of
    rec = meta.get("embedding")
    if not isinstance(rec, dict) or not isinstance(rec.get("config"), str) \
            or not isinstance(rec.get("weights"), str):
        raise GalleryError("the spec names a learned embedding but gallery.json has no valid "
                           "'embedding' record (config/weights files)")
    cfg = store.load_bytes(g.path, rec["config"], meta, False)
    wts = store.load_bytes(g.path, rec["weights"], meta, False)
    got, want = identity_of(cfg, wts), g.spec.embedding["identity"]
    if got != want:  # checked even with verify=False: these bytes run as a network
        raise GalleryError(f"embedding hash mismatch: sha256 of {rec['config']} + {rec['weights']} is "
                           f"{got[:16]}..., the spec's embedding identity is {want[:16]}...: the "
                           "embedding weights or config were altered or replaced; refusing this gallery")
    return cfg, wts


def write(g) -> None:
    """Write ``g`` to its directory atomically (a new directory swapped in), under its lock
    (the caller may hold it already: enroll holds it from load to save)."""
    from ..io.lock import exclusive, lock_path
    st = g.state()
    nz = st.normalizer
    arrays = {"vectors.npy": st.vectors, "labels.npy": st.labels}
    if len(st.hold_labels):
        arrays["holdout_vectors.npy"] = st.hold_vectors
        arrays["holdout_labels.npy"] = st.hold_labels
        if st.hold_condition is not None:
            arrays["holdout_condition.npy"] = st.hold_condition
    names = _normalizer_files(g, nz, "", arrays)
    counts = np.bincount(st.labels, minlength=len(st.names)).tolist()
    ifile = "index.faiss" if st.index is not None else None
    meta = {
        "format": store.FORMAT_NAME,
        "format_version": store.FORMAT_VERSION,
        "spec": g.spec.to_dict(),
        "spec_id": g.spec.id,
        "dim": g.spec.dim,
        "count": len(g),
        "models": [{"name": m, "count": c} for m, c in zip(st.names, counts)],
        "normalize": {"method": g.normalize, "params": g.normalize_params,
                      "fitted": nz is not None, "fitted_on": st.fitted_on,
                      "out_dim": nz.out_dim(g.spec.dim) if nz is not None else None,
                      "arrays": names},
        "index": {"type": g.index_type, "metric": "l2", "params": g.index_params,
                  "file": ifile},
        "calibration": g.calibration,
        "holdout": {"count": int(len(st.hold_labels))},
        "created": g.created,
        "decode": g.decode,
        "augment": g.augment,
        "min_side": g.min_side,
        "copy_side": g.copy_side,
        "openset_blocks": None if g.openset_blocks is None else [list(b) for b in g.openset_blocks],
        "openset_scales": g.openset_scales,
        "openset_space": g.openset_space,
        "updated": store.now(),
    }
    blobs = None
    if g.spec.embedding is not None:
        if st.embedding is None:
            raise GalleryError("this gallery's spec names a learned embedding but holds no weights")
        blobs = {"embedding.json": st.embedding[0], "embedding.safetensors": st.embedding[1]}
        meta["embedding"] = {**g.spec.embedding, "config": "embedding.json",
                             "weights": "embedding.safetensors"}
    index = st.index
    jsons = {"keys.json": st.keys}
    if len(st.hold_labels):
        jsons["holdout_keys.json"] = st.hold_keys
    vmeta = _write_views(g, arrays, jsons)
    if vmeta is not None:
        meta["views"] = vmeta
    with exclusive(lock_path(g.path), f"gallery {g.path}"):
        store.save_dir(g.path, meta, arrays, jsons,
                       (lambda p: fidx.write(index, p)) if ifile else None, ifile, blobs)


def _openset(meta: dict, d: int) -> tuple[list | None, dict]:
    """(open-set blocks, their scales) of gallery.json: ``openset_blocks`` (since the sixteenth
    session), or the leading ``openset_dims`` raw dimensions (galleries of 2026-12-06 before it),
    or none."""
    blocks, osd = meta.get("openset_blocks"), meta.get("openset_dims")
    if blocks is None and osd is not None:
        if not isinstance(osd, int) or isinstance(osd, bool) or not 0 < osd <= d:
            raise GalleryError(f"gallery.json: openset_dims must be an integer in [1, {d}] or null, got {osd!r}")
        blocks = [[0, osd, False]]
    scales = meta.get("openset_scales") or {}
    try:
        blocks = None if blocks is None else openspace.check_blocks(blocks, d)
        if not isinstance(scales, dict):
            raise ValueError(f"openset_scales must be an object, got {scales!r}")
        for rec in scales.values():
            openspace.scales_for(rec, [m["name"] for m in meta["models"]], len(blocks or ()))
    except (ValueError, KeyError, TypeError) as e:
        raise GalleryError(f"gallery.json: {e}") from None
    return blocks, scales
