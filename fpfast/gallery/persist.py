"""Reading and writing a :class:`~fpfast.gallery.Gallery` directory (the format in :mod:`.store`).

``read`` checks format, spec, shapes, counts, the learned embedding's identity and (with
``verify``) the sha256 of every file; ``write`` swaps a new directory in atomically.
"""
from __future__ import annotations

import numpy as np

from ..spec import FingerprintSpec, SpecError
from . import index as fidx
from . import normalize as norm
from . import store
from .store import GalleryError


def read(cls, path: str, spec: FingerprintSpec | None, verify: bool):
    """The gallery at ``path`` as an instance of ``cls`` (see :meth:`Gallery.load`)."""
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
    if meta.get("dim") != d:
        raise GalleryError(f"gallery.json says dim {meta.get('dim')!r} but its spec gives vectors of "
                           f"dimension {d}: the file was edited or is damaged")
    if gspec.embedding is not None:
        _load_embedding(g, meta, verify)
    g._names = [m["name"] for m in meta["models"]]
    g._vectors = store.load_array(path, "vectors.npy", meta, verify, np.float32, (n, d))
    g._labels = store.load_array(path, "labels.npy", meta, verify, np.int32, (n,))
    if n and (g._labels.min() < 0 or g._labels.max() >= len(g._names)):
        raise GalleryError(f"labels.npy holds labels outside [0, {len(g._names)})")
    counts = np.bincount(g._labels, minlength=len(g._names))
    want = [m["count"] for m in meta["models"]]
    if counts.tolist() != want:
        raise GalleryError(f"labels.npy counts {counts.tolist()} differ from gallery.json's "
                           f"model counts {want}")
    keys = store.load_json(path, "keys.json", meta, verify)
    if not isinstance(keys, list) or len(keys) != n or not all(isinstance(k, str) for k in keys):
        raise GalleryError(f"keys.json must be a list of {n} strings")
    g._keys = keys
    if nm.get("fitted") and g.normalize != "none":
        arrays = {}
        for name, fname in (nm.get("arrays") or {}).items():
            shape = {"mean": (d,), "scale": (d,), "projection": (d, None)}.get(name)
            if shape is None:
                raise GalleryError(f"gallery.json names an unknown normaliser array {name!r}")
            arrays[name] = store.load_array(path, fname, meta, verify, np.float32, shape)
        if "mean" not in arrays or "scale" not in arrays:
            raise GalleryError("gallery.json: fitted normaliser lacks its mean/scale arrays")
        g._normalizer = norm.Normalizer(g.normalize, arrays["mean"], arrays["scale"],
                                        arrays.get("projection"), dict(g.normalize_params))
        g._fitted_on = int(nm.get("fitted_on", n))
    ifile = ix.get("file")
    if ifile:
        p = store.check_file(path, ifile, meta, verify)
        if fidx.faiss_module() is not None:
            g._index = _read_index(g, p, ifile, n)
        elif g.index_type != "flat":
            raise GalleryError(f"this gallery has an {g.index_type!r} index and faiss is not "
                               "installed here; only 'flat' galleries search without faiss")
    nh = int((meta.get("holdout") or {}).get("count", 0))
    if nh:
        g._hold_vectors = store.load_array(path, "holdout_vectors.npy", meta, verify, np.float32, (nh, d))
        g._hold_labels = store.load_array(path, "holdout_labels.npy", meta, verify, np.int32, (nh,))
        if g._hold_labels.min() < 0 or g._hold_labels.max() >= len(g._names):
            raise GalleryError(f"holdout_labels.npy holds labels outside [0, {len(g._names)})")
    g.calibration = meta["calibration"]
    g.created = meta.get("created", {})
    return g


def _read_index(g, p: str, fname: str, n: int):
    try:
        index = fidx.read(p)
    except RuntimeError as e:
        raise GalleryError(f"{fname} is not a readable FAISS index: "
                           f"{str(e).strip().splitlines()[-1]}") from None
    kind = fidx.kind_of(index)
    if kind != g.index_type:
        raise GalleryError(f"{fname} holds a {kind} index but gallery.json says {g.index_type!r}")
    out_dim = g._normalizer.out_dim(g.spec.dim)
    if index.ntotal != n or index.d != out_dim:
        raise GalleryError(f"{fname} holds {index.ntotal} vectors of dimension {index.d}, "
                           f"expected {n} of dimension {out_dim}")
    fidx.apply_search_params(index, kind, g.index_params)
    return fidx.to_gpu(index, kind)


def _load_embedding(g, meta: dict, verify: bool) -> None:
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
    g._embedding = (cfg, wts)


def write(g) -> None:
    """Write ``g`` to its directory atomically (a new directory swapped in)."""
    nz = g._normalizer
    ready = nz is not None and len(g) > 0 and fidx.faiss_module() is not None
    if ready and g._index is None:
        g._build_index()
    arrays = {"vectors.npy": g._vectors, "labels.npy": g._labels}
    if len(g._hold_labels):
        arrays["holdout_vectors.npy"] = g._hold_vectors
        arrays["holdout_labels.npy"] = g._hold_labels
    names = {}
    if nz is not None and g.normalize != "none":
        for name, arr in nz.arrays().items():
            names[name] = f"normalizer_{name}.npy"
            arrays[names[name]] = arr
    counts = np.bincount(g._labels, minlength=len(g._names)).tolist()
    ifile = "index.faiss" if (ready and g._index is not None) else None
    meta = {
        "format": store.FORMAT_NAME,
        "format_version": store.FORMAT_VERSION,
        "spec": g.spec.to_dict(),
        "spec_id": g.spec.id,
        "dim": g.spec.dim,
        "count": len(g),
        "models": [{"name": m, "count": c} for m, c in zip(g._names, counts)],
        "normalize": {"method": g.normalize, "params": g.normalize_params,
                      "fitted": nz is not None, "fitted_on": g._fitted_on,
                      "out_dim": nz.out_dim(g.spec.dim) if nz is not None else None,
                      "arrays": names},
        "index": {"type": g.index_type, "metric": "l2", "params": g.index_params,
                  "file": ifile},
        "calibration": g.calibration,
        "holdout": {"count": int(len(g._hold_labels))},
        "created": g.created,
        "updated": store.now(),
    }
    blobs = None
    if g.spec.embedding is not None:
        if g._embedding is None:
            raise GalleryError("this gallery's spec names a learned embedding but holds no weights")
        blobs = {"embedding.json": g._embedding[0], "embedding.safetensors": g._embedding[1]}
        meta["embedding"] = {**g.spec.embedding, "config": "embedding.json",
                             "weights": "embedding.safetensors"}
    index = g._index
    store.save_dir(g.path, meta, arrays, {"keys.json": g._keys},
                   (lambda p: fidx.write(index, p)) if ifile else None, ifile, blobs)
