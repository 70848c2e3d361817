"""The :class:`Gallery`: enrolled fingerprints of known models, searchable and attributable.

Vectors come in as numpy arrays or torch tensors [B, D] (D = ``spec.dim``); which backend
computed them does not matter. Search runs on the normalised vectors with squared L2 distance:

* queries as CUDA tensors are searched on their GPU: by the faiss GPU index when faiss has GPUs
  (on torch's stream, :func:`fpfast.search.faiss_search`), else, for a ``flat`` gallery, by torch
  matmul + top-k (:func:`fpfast.search.knn`); only an HNSW gallery copies them to the host;
* CPU queries (numpy or CPU tensors) by faiss-cpu, or by :func:`fpfast.search.knn` where faiss is
  not installed.

Only the [Q, k] answers come back to the host, for the attribution rules.

The normaliser is fitted on demand (:meth:`Gallery.fit`), or automatically before the first
search of a gallery that was never fitted. Adding samples afterwards transforms them with the
fitted normaliser and adds them to the index without rebuilding it; call :meth:`fit` to refit
on everything (that rebuilds the index and clears the calibration, whose distances it changes).
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Sequence

import numpy as np

from ..search import faiss_search, full_fp32
from ..search import knn as torch_knn
from ..spec import FingerprintSpec, load_spec
from . import attribution as attr
from . import conditions as cond
from . import index as fidx
from . import normalize as norm
from . import openspace
from . import crossfit, persist, store, views
from .store import GalleryError
from .update import check_model_name

KNN_K = 10  # the largest default vote (Gallery.vote_k)


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _to_numpy(x) -> np.ndarray:
    if _is_torch(x):
        x = x.detach().to("cpu").float().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


@dataclasses.dataclass
class SearchResult:
    """k nearest enrolled samples per query, nearest first.

    ``ids`` [Q, k] int64 (rows of the gallery's vectors; -1 where an approximate index found
    fewer than k), ``distances`` [Q, k] float32 (squared L2 in the normalised space),
    ``labels`` [Q, k] int32 (index into ``model_names``; -1 with id -1).
    """
    ids: np.ndarray
    distances: np.ndarray
    labels: np.ndarray
    model_names: list[str]
    sample_keys: list[str]

    @property
    def models(self) -> np.ndarray:
        """Model name of each neighbour, [Q, k] (``""`` where there is none)."""
        names = np.array(list(self.model_names) + [""], dtype=object)
        return names[np.where(self.labels >= 0, self.labels, len(self.model_names))]

    @property
    def keys(self) -> list[list[str | None]]:
        """Source key of each neighbour (None where there is none)."""
        return [[self.sample_keys[i] if i >= 0 else None for i in row] for row in self.ids.tolist()]

    def nearest_models(self) -> list[list[tuple[str, float]]]:
        """Per query, the distinct models among the neighbours with their nearest distance."""
        out = []
        for lab_row, d_row in zip(self.labels.tolist(), self.distances.tolist()):
            seen: dict[str, float] = {}
            for lab, d in zip(lab_row, d_row):
                if lab >= 0 and self.model_names[lab] not in seen:
                    seen[self.model_names[lab]] = float(d)
            out.append(list(seen.items()))
        return out

    def __len__(self) -> int:
        return self.ids.shape[0]


def _second_smallest(d: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Per row of ``d`` [Q, M], the smallest entry outside column ``model`` [Q] (inf when M = 1)."""
    d = np.array(d, np.float64, copy=True)
    d[np.arange(len(d)), np.asarray(model)] = np.inf
    return d.min(1) if d.shape[1] else np.full(len(d), np.inf)


def _min_by_label(q, base, sq, lab, m: int, block: int = 32768, q_block: int = 1024):
    """[Q, m] torch: the smallest squared L2 distance of each query to the ``base`` rows of each
    label (``sq``: their squared norms; inf for a label with none), exact, in blocks."""
    import torch
    out = torch.full((q.shape[0], m), float("inf"), device=q.device)
    with full_fp32():  # as the search: TF32 would change the distances
        for a in range(0, q.shape[0], q_block):
            qa = q[a:a + q_block]
            qsq = (qa * qa).sum(1, keepdim=True)
            for s in range(0, base.shape[0], block):
                d = (qsq - 2 * qa @ base[s:s + block].T + sq[s:s + block][None]).clamp_min_(0)
                out[a:a + q_block].scatter_reduce_(1, lab[s:s + block].expand(qa.shape[0], -1), d, reduce="amin")
    return out


def _whitened_sq(q, means, maps, budget: int = 1 << 22):
    """[Q, G] torch: |(q - means[g]) maps[g]|^2 for each query and each of the G (mean [d], map
    [d, d]) pairs: the squared Mahalanobis distances of :func:`.openspace.gaussians`; in chunks of
    about ``budget`` elements of (query, model, dimension)."""
    import torch
    n, (g, d) = q.shape[0], means.shape
    out = torch.empty((n, g), device=q.device)
    gb = max(1, min(g, budget // d))
    qb = max(1, budget // (gb * d))
    with full_fp32():
        for s in range(0, g, gb):
            for a in range(0, n, qb):
                diff = q[a:a + qb, None, :] - means[None, s:s + gb]                # [B, G', d]
                out[a:a + qb, s:s + gb] = torch.einsum("bgd,gde->bge", diff, maps[s:s + gb]).pow(2).sum(-1)
    return out


def _take(x, idx: np.ndarray):
    """Rows ``idx`` of a numpy array or a torch tensor (indexed on its device)."""
    if _is_torch(x):
        import torch
        return x[torch.as_tensor(idx, device=x.device)]
    return _to_numpy(x)[idx]


def _merged(parts: list, n: int, method: str) -> attr.Attribution:
    """One :class:`~.attribution.Attribution` of ``n`` queries from ``(indices, answers)`` parts."""
    lists = {f: [None] * n for f in ("model", "predicted", "top", "condition")}
    arrays = {f: np.full(n, np.nan) for f in ("score", "distance", "threshold", "ratio", "ratio_threshold")}
    choice = None
    for idx, a in parts:
        for f, out in lists.items():
            got = getattr(a, f)
            if got is not None:
                for i, j in enumerate(idx.tolist()):
                    out[j] = got[i]
        for f, out in arrays.items():
            out[idx] = getattr(a, f)
        if a.choice is not None:
            choice = np.full(n, np.nan) if choice is None else choice
            choice[idx] = a.choice
    if choice is not None:   # parts without one: their open-set score is the searched space's
        choice = np.where(np.isnan(choice), attr.open_set_margin(arrays["distance"], arrays["threshold"],
                                                                 arrays["ratio"], arrays["ratio_threshold"]), choice)
    return attr.Attribution(lists["model"], lists["predicted"], arrays["score"], arrays["distance"],
                            arrays["threshold"], lists["top"], method, arrays["ratio"], arrays["ratio_threshold"],
                            lists["condition"], choice)


class Gallery:
    """A directory of enrolled fingerprints; see :mod:`fpfast.gallery.store` for the layout."""

    def __init__(self, path: str, spec: FingerprintSpec, *, normalize: str = "standardize",
                 normalize_params: dict | None = None, index: str = "flat",
                 index_params: dict | None = None):
        if normalize not in norm.METHODS:
            raise ValueError(f"unknown normalisation {normalize!r}; expected one of {norm.METHODS}")
        self.path = os.path.abspath(path)
        self.spec = spec
        self.normalize = normalize
        self.normalize_params = dict(normalize_params or {})
        self.index_type = index
        self.index_params = fidx.resolve_params(index, index_params)
        self._names: list[str] = []
        self._vectors = np.empty((0, spec.dim), np.float32)
        self._labels = np.empty(0, np.int32)
        self._keys: list[str] = []
        self._normalizer: norm.Normalizer | None = norm.Normalizer("none") if normalize == "none" else None
        self._fitted_on = 0
        self._index = None            # faiss index over the normalised vectors, or None
        self._z: np.ndarray | None = None   # normalised vectors (cache)
        self._dev_cache: dict = {}    # torch device -> (z tensor, squared norms)
        self._centroids: np.ndarray | None = None
        self.calibration: dict = {}
        self.loaded_digest: str | None = None   # set by load(with_digest=True / expect_digest)
        self.created: dict = {}
        self.decode = "cpu"           # where its JPEGs were decoded (--decode): queries must match
        self.augment = 0              # augmented copies enrolled per sample (fpfast.jobs.augment)
        # shortest side of the images enrolled or held out, before the crop (None: unknown; galleries
        # enrolled before 2026-12-06 recorded it as fingerprinted: at most the crop)
        self.min_side: int | None = None
        self.copy_side: int | None = None  # ... of the regions its views and copies were made of (note_copy_sides)
        # held-out samples of enrolled models (never searched): what calibration is fitted on
        self._hold_vectors = np.empty((0, spec.dim), np.float32)
        self._hold_labels = np.empty(0, np.int32)
        self._hold_keys: list[str] = []   # "" for held-out samples added without a key
        # a plain learned embedding's held-out samples' handcrafted vectors (the condition detector's
        # input, conditions.detector_spec; NaN rows where none was given), else None
        cspec = cond.detector_spec(spec)
        self._hold_cond = None if cspec is None else np.empty((0, cspec.dim), np.float32)
        self._embedding: tuple[bytes, bytes] | None = None   # (embedding.json, .safetensors) bytes
        self._embedder = None
        self.view_names: tuple[str, ...] = ()   # views kept (.views: a setting fixed at creation)
        self.views: dict[str, "Gallery"] = {}   # view name -> the gallery of the enrolled images so processed
        self.router: dict | None = None        # Router.to_dict(), fitted by recalibrate
        # open-set statistics (distance, ratio; their calibration) of the queries that look clean read
        # from blocks of the raw vector (.openspace: e.g. a fine-tuned network's unit vectors, the
        # handcrafted fingerprint, a reference network's), while attribution reads the whole normalised
        # vector; None: from the normalised vectors searched. Not in views: processed queries keep the
        # searched space's. openset_scales: per method, the blocks' per-model scales (several blocks)
        self.openset_blocks: list[tuple[int, int, bool]] | None = None
        self.openset_scales: dict[str, dict] = {}
        # where the blocks lie and how their statistics meet the searched space's (.openspace): "vectors"
        # (the raw vector; they replace the searched space's for clean-looking queries) or "normalized"
        # (the normalised vectors searched, e.g. an LDA's first discriminant axes, which follow each
        # refit; their ratio joins the searched space's distance and ratio as a third test)
        self.openset_space: str = "vectors"
        self._os_cache: tuple | None = None   # (vectors, normaliser, (device, method, blocks, space), bases)
        self._count_cache: tuple | None = None   # (labels array, its largest model's sample count)

    # ================================================================== learned embedding
    def embedder(self):
        """The :class:`fpfast.embed.Embedder` whose vectors this gallery holds, or None for a
        handcrafted gallery. Queries must be embedded with it (``spec.embedding`` says so)."""
        if self.spec.embedding is None:
            return None
        if self._embedder is None:
            if self._embedding is None:
                raise GalleryError("this gallery's spec names a learned embedding but holds no weights")
            from ..embed import Embedder, EmbedError
            try:
                self._embedder = Embedder.from_bytes(*self._embedding)
            except EmbedError as e:
                raise GalleryError(f"embedding of gallery {self.path}: {e}") from None
        return self._embedder

    def with_embedding(self, embedder) -> "Gallery":
        """A new, empty gallery at the same path whose vectors are ``embedder``'s: the spec gains
        ``embedding`` = {kind, identity, dim} (so its id, ``dim`` and every comparison change),
        normalisation/index settings and creation info are kept, no sample is carried over (the
        old vectors are another space). Enroll the models' embeddings, then :meth:`save` (which
        replaces the directory atomically). ``embedder=None`` gives back a handcrafted gallery."""
        spec = self.spec.handcrafted()
        if embedder is not None:
            spec = spec.replace(embedding=embedder.spec_record())
        g = Gallery(self.path, spec, normalize=self.normalize, normalize_params=self.normalize_params,
                    index=self.index_type, index_params=self.index_params)
        g.created = dict(self.created)
        g.decode = self.decode
        g.augment = self.augment
        g.min_side, g.copy_side = self.min_side, self.copy_side
        g.view_names = self.view_names
        if embedder is not None:
            g._embedding = embedder.to_bytes()
            g._embedder = embedder
        return g

    # ================================================================== create / load / save
    @classmethod
    def create(cls, path: str, spec: FingerprintSpec | None = None, *,
               normalize: str = "standardize", normalize_params: dict | None = None,
               index: str = "flat", index_params: dict | None = None,
               overwrite: bool = False) -> "Gallery":
        """A new empty gallery, written to ``path`` at once (refused if one exists there)."""
        spec = spec or FingerprintSpec()
        if os.path.exists(path) and not store.is_empty_dir(path) and not overwrite:
            raise GalleryError(f"{path} already exists and is not empty; pass overwrite=True "
                               "to replace it")
        g = cls.new(path, spec, normalize=normalize, normalize_params=normalize_params,
                    index=index, index_params=index_params)
        g.save()
        return g

    @classmethod
    def new(cls, path: str, spec: FingerprintSpec, **settings) -> "Gallery":
        """A new empty gallery in memory (nothing written until :meth:`save`)."""
        g = cls(path, spec, **settings)
        import fpfast
        faiss = fidx.faiss_module()
        g.created = {"fpfast_version": fpfast.__version__, "date": store.now(),
                     "numpy_version": np.__version__,
                     "faiss_version": getattr(faiss, "__version__", None) if faiss else None}
        return g

    @classmethod
    def load(cls, path: str, spec: FingerprintSpec | None = None, *, verify: bool = True,
             expect_digest: str | None = None, with_digest: bool = False) -> "Gallery":
        """Read a gallery, checking format, spec (against ``spec`` when given), shapes, counts
        and (with ``verify``) the sha256 of every file; ``expect_digest``: refuse it unless its
        :meth:`digest` is this one. With ``expect_digest`` or ``with_digest`` the digest of what
        was read (taken under the same lock) is kept in ``loaded_digest``: what an output records
        so that resuming it with a changed gallery is refused. Raises :class:`GalleryError`, or
        :class:`~fpfast.spec.SpecError` for a spec mismatch."""
        return persist.read(cls, path, spec, verify, expect_digest, with_digest)

    @staticmethod
    def digest(path: str) -> str:
        """One sha256 over every file of the gallery at ``path`` (pin it; see :meth:`load`)."""
        return persist.digest(path)

    def state(self) -> persist.GalleryState:
        """The samples and fitted parts a save writes (the index is built first when it can be)."""
        if self._normalizer is not None and len(self) and self._index is None \
                and fidx.faiss_module() is not None:
            self._build_index()
        return persist.GalleryState(self._names, self._vectors, self._labels, self._keys, self._normalizer,
                                    self._fitted_on, self._index, self._hold_vectors, self._hold_labels,
                                    self._embedding, self._hold_keys, self._hold_cond)

    def restore(self, st: persist.GalleryState) -> None:
        """Take the samples and fitted parts a load read (checked by :mod:`.persist`)."""
        self._names, self._vectors, self._labels, self._keys = list(st.names), st.vectors, st.labels, list(st.keys)
        self._normalizer, self._fitted_on, self._index = st.normalizer, st.fitted_on, st.index
        if st.hold_labels is not None:
            self._hold_vectors, self._hold_labels = st.hold_vectors, st.hold_labels
            self._hold_keys = list(st.hold_keys) if st.hold_keys is not None else [""] * len(st.hold_labels)
            if self._hold_cond is not None:  # galleries from before the detector have none: NaN rows
                self._hold_cond = st.hold_condition if st.hold_condition is not None else \
                    np.full((len(st.hold_labels), self._hold_cond.shape[1]), np.nan, np.float32)
        self._embedding = st.embedding
        self._z, self._centroids, self._embedder = None, None, None
        self._dev_cache.clear()

    def save(self) -> None:
        """Write the gallery to its directory atomically (a new directory swapped in)."""
        persist.write(self)

    # ================================================================== enrollment
    def __len__(self) -> int:
        return int(self._vectors.shape[0])

    def models(self) -> dict[str, int]:
        """Enrolled model names with their sample counts, in enrollment order."""
        counts = np.bincount(self._labels, minlength=len(self._names))
        return {m: int(c) for m, c in zip(self._names, counts)}

    @property
    def keys(self) -> list[str]:
        """The enrolled samples' keys, in enrollment order."""
        return list(self._keys)

    def _check_vectors(self, vectors, what: str) -> np.ndarray:
        x = _to_numpy(vectors)
        if x.ndim == 1 and x.shape[0] == self.spec.dim:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.spec.dim:
            raise ValueError(f"{what} must have shape [B, {self.spec.dim}] (the spec's dimension), "
                             f"got {list(x.shape)}")
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x).all(1)).sum())
            raise ValueError(f"{what}: {bad} vectors hold NaN or inf")
        return x

    def add(self, model: str, vectors, keys: Sequence[str] | None = None, *,
            spec: FingerprintSpec | None = None, skip_known: bool = False) -> int:
        """Enroll ``vectors`` [B, D] as samples of ``model`` (new, or more samples of an existing
        one). The index is extended, not rebuilt. ``spec``, when given, must equal the gallery's.
        ``skip_known``: leave out samples whose key is enrolled (or held out) already. Returns
        how many were added."""
        if spec is not None:
            spec.require_same(self.spec, "gallery")
        check_model_name(model)
        x = self._check_vectors(vectors, f"vectors of {model!r}")
        if x.shape[0] == 0:
            raise ValueError(f"no vectors given for {model!r}")
        if keys is None:
            start = self.models().get(model, 0)
            keys = [f"{model}#{start + i}" for i in range(x.shape[0])]
        keys = [str(k) for k in keys]
        if len(keys) != x.shape[0]:
            raise ValueError(f"{len(keys)} keys for {x.shape[0]} vectors of {model!r}")
        if skip_known:
            sel = self._new_rows(keys)
            x, keys = x[sel], [keys[i] for i in sel]
            if not keys:
                return 0
        if model not in self._names:
            self._names.append(model)
        label = self._names.index(model)
        self._vectors = np.concatenate([self._vectors, x])
        self._labels = np.concatenate([self._labels, np.full(x.shape[0], label, np.int32)])
        self._keys.extend(keys)
        self._centroids = None
        self._dev_cache.clear()
        if self._normalizer is not None and (self._z is not None or self._index is not None):
            z = self._normalizer.transform(x)
            if self._z is not None:
                self._z = np.concatenate([self._z, z])
            if self._index is not None:
                self._index.add(z)
        return len(keys)

    def _new_rows(self, keys: list[str]) -> list[int]:
        """Indices of ``keys`` neither enrolled nor held out yet."""
        known = set(self._keys) | set(self._hold_keys)
        return [i for i, k in enumerate(keys) if k not in known]

    def view(self, name: str) -> "Gallery":
        """The gallery of view ``name`` (:mod:`.views`), created empty on first use: same spec and
        normalisation, a flat index, never saved on its own (its parent saves it)."""
        if name not in self.view_names:
            raise KeyError(f"this gallery keeps no view {name!r} (its views: {list(self.view_names) or 'none'})")
        if name not in self.views:
            v = Gallery(self.path, self.spec, normalize=self.normalize, normalize_params=self.normalize_params)
            v._embedding = self._embedding
            self.views[name] = v
        return self.views[name]

    def add_view(self, name: str, model: str, vectors, keys: Sequence[str]) -> int:
        """Enroll view ``name``'s vectors of ``model``'s images (keyed as the images are); samples
        whose key the view holds already are left out. Returns how many were added."""
        if model not in self._names:
            raise KeyError(f"model {model!r} is not enrolled; enroll its images before their views")
        return self.view(name).add(model, vectors, keys, skip_known=True)

    def remove(self, model: str) -> int:
        """Remove a model and its samples; returns how many samples went. Sample ids shift.
        A flat CPU index drops the rows in place; other indexes are rebuilt on next use. The
        normaliser and the global calibration threshold are kept (refit/recalibrate to forget
        the removed model entirely); its per-model threshold goes."""
        if model not in self._names:
            raise KeyError(f"model {model!r} is not enrolled; enrolled: {self._names}")
        j = self._names.index(model)
        keep = self._labels != j
        gone = int((~keep).sum())
        if self._index is not None and self.index_type == "flat" and fidx.num_gpus() == 0:
            faiss = fidx.faiss_module()
            self._index.remove_ids(faiss.IDSelectorBatch(np.flatnonzero(~keep).astype(np.int64)))
        else:
            self._index = None
        self._vectors = self._vectors[keep]
        labels = self._labels[keep]
        self._labels = np.where(labels > j, labels - 1, labels).astype(np.int32)
        self._keys = [k for k, kp in zip(self._keys, keep.tolist()) if kp]
        if self._z is not None:
            self._z = self._z[keep]
        hk = self._hold_labels != j
        self._hold_keys = [k for k, kp in zip(self._hold_keys, hk.tolist()) if kp]
        self._hold_vectors = self._hold_vectors[hk]
        if self._hold_cond is not None:
            self._hold_cond = self._hold_cond[hk]
        self._hold_labels = np.where(self._hold_labels[hk] > j, self._hold_labels[hk] - 1,
                                     self._hold_labels[hk]).astype(np.int32)
        del self._names[j]
        self._centroids = None
        self._dev_cache.clear()
        for v in self.views.values():
            if model in v._names:
                v.remove(model)
        for top in self.calibration.values():
            os_rec = top.get("openset") or {}
            for rec in (top, top.get("clean") or {}, os_rec, os_rec.get("clean") or {}):
                for part in (rec, rec.get("ratio") or {}):
                    part.get("per_model", {}).pop(model, None)
        return gone

    # ================================================================== normalise / index
    def fit(self, normalize: str | None = None, **params) -> None:
        """(Re)fit the normaliser on every enrolled vector (optionally switching method or
        params, e.g. ``fit("lda", n_components=8)``) and rebuild the index. Clears the
        calibration: its thresholds were distances in the old space."""
        method = normalize or self.normalize
        if method not in norm.METHODS:
            raise ValueError(f"unknown normalisation {method!r}; expected one of {norm.METHODS}")
        new_params = params if (normalize and normalize != self.normalize) or params else self.normalize_params
        nz = norm.fit(method, self._vectors, self._labels, **new_params)
        self.normalize, self.normalize_params = method, dict(new_params)
        self._normalizer = nz
        self._fitted_on = len(self)
        self._z = None
        self._index = None
        self._centroids = None
        self._dev_cache.clear()
        self.calibration = {}
        self.router = None
        for v in self.views.values():
            if len(v):
                v.fit(method, **new_params)

    def _ensure_ready(self) -> None:
        if len(self) == 0:
            raise GalleryError("the gallery is empty: enroll models first")
        if self._normalizer is None:
            self.fit()
        if self._z is None:
            self._z = self._normalizer.transform(self._vectors)
        if self._index is None and fidx.faiss_module() is not None:
            self._build_index()

    def _build_index(self) -> None:
        if self._z is None:
            self._z = self._normalizer.transform(self._vectors)
        index = fidx.build(self.index_type, self.index_params, self._z)
        self._index = fidx.to_gpu(index, self.index_type)

    def transform(self, vectors):
        """Normalised vectors (numpy in, numpy out; torch in, torch out on the same device)."""
        self._ensure_ready()
        if _is_torch(vectors):
            return self._normalizer.transform(vectors)
        return self._normalizer.transform(_to_numpy(vectors))

    def _device_base(self, device):
        key = str(device)
        if key not in self._dev_cache:
            import torch
            z = torch.as_tensor(self._z, device=device)
            self._dev_cache = {key: (z, (z * z).sum(1))}
        return self._dev_cache[key]

    def _search_z(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances, ids) of the k nearest normalised gallery vectors, searched on the queries'
        device (see the module docstring); the [Q, k] answers are returned as numpy."""
        cuda_q = _is_torch(queries) and queries.is_cuda
        if cuda_q and self._index is not None and fidx.num_gpus() > 0 and self.index_type != "hnsw":
            d, i = faiss_search(self._index, self._normalizer.transform(queries.float()), k, device=0)
            return d.cpu().numpy(), i.cpu().numpy()
        if self.index_type == "flat" and (cuda_q or self._index is None):
            import torch
            q = queries if _is_torch(queries) else torch.from_numpy(_to_numpy(queries))
            z, sq = self._device_base(q.device)
            d, i = torch_knn(self._normalizer.transform(q.float()), z, k, base_sq_norms=sq)
            return d.cpu().numpy(), i.cpu().numpy()
        if self._index is None:
            raise GalleryError(f"an {self.index_type!r} gallery needs faiss, which is not installed")
        return faiss_search(self._index, self._normalizer.transform(_to_numpy(queries)), k)

    # ================================================================== search / attribution
    def search(self, queries, k: int = 10) -> SearchResult:
        """The ``k`` nearest enrolled samples of each query [Q, D] (numpy or torch)."""
        self._ensure_ready()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = queries if _is_torch(queries) else _to_numpy(queries)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.spec.dim:
            raise ValueError(f"queries must have shape [Q, {self.spec.dim}], got {list(q.shape)}")
        d, ids = self._search_z(q, min(k, len(self)))
        labels = np.where(ids >= 0, self._labels[np.maximum(ids, 0)], -1).astype(np.int32)
        return SearchResult(ids, d, labels, list(self._names), self._keys)

    def centroids(self) -> np.ndarray:
        """Per-model means of the normalised vectors, [M, d] float32."""
        self._ensure_ready()
        if self._centroids is None:
            m = len(self._names)
            sums = np.zeros((m, self._z.shape[1]), np.float64)
            np.add.at(sums, self._labels, self._z)
            cnt = np.bincount(self._labels, minlength=m)[:, None]
            self._centroids = (sums / np.maximum(cnt, 1)).astype(np.float32)
        return self._centroids

    def _centroid_dists(self, queries) -> np.ndarray:
        import torch
        z = self._normalizer.transform(queries if _is_torch(queries) else _to_numpy(queries))
        z = z.detach().float() if _is_torch(z) else torch.from_numpy(z)
        c = torch.from_numpy(self.centroids()).to(z.device)   # searched where the queries are
        d, i = torch_knn(z, c, c.shape[0])
        out = np.empty(tuple(d.shape), np.float64)
        np.put_along_axis(out, i.cpu().numpy(), d.cpu().numpy().astype(np.float64), axis=1)
        return out

    def vote_k(self) -> int:
        """The kNN vote's default size: a tenth of the smallest model's sample count, in [1, 10].
        Ten votes over a gallery of eight samples per model take in other models' samples
        (chosen on training images: ``benchmarks/results/accuracy.md``, "The vote's k"), and a
        model enrolled with few images beside models of many is outvoted by their denser samples
        (a 10-image newcomer named 1 % of the time at k = 10, 85 % at 1: "Eighteenth session")."""
        counts = self.models().values()
        return int(min(KNN_K, max(1, min(counts) // 10))) if counts else KNN_K

    def attribute(self, queries, method: str = "knn", k: int | None = None,
                  weighting: str = "uniform", top: int = 5, *,
                  spec: FingerprintSpec | str | None = None, sides=None, condition=None,
                  jpeg=None) -> attr.Attribution:
        """Which enrolled model made each query, how sure, or ``"unknown"``.

        ``spec``: the spec the queries were computed with; another than the gallery's is refused
        (:class:`~fpfast.spec.SpecError` naming the difference) - vectors of another spec of the
        same dimension would otherwise all come out ``unknown``, silently.

        ``method``: ``knn`` (vote of the ``k`` nearest samples, default :meth:`vote_k`;
        ``weighting`` uniform or distance) or ``centroid``. Open-set thresholds come from
        :meth:`calibrate` for the same method; without calibration nothing is answered ``unknown``. ``top``: how many
        ``(model, distance)`` pairs to list per query. ``sides`` (each query image's shorter side
        before the crop) and ``condition`` (a plain learned embedding's handcrafted vectors of
        the queries): for a gallery calibrated per condition (:meth:`query_condition`); with
        ``jpeg`` (per query 1 / 0 / NaN: its file is a JPEG - or a PNG carrying a JPEG grid,
        :mod:`.jpeg_grid` -, is of a lossless format, unknown) they route queries to the
        gallery's views (:meth:`route`), and a full-size query of a lossless file meets the clean
        thresholds. A query sent to a scale view keeps the gallery's own answer where that one's
        open-set score is lower by more than :data:`.views.KEEP_MARGIN`.
        """
        if spec is not None:
            load_spec(spec).require_same(self.spec, "gallery")
        route = self.route(queries, sides, condition, jpeg)
        if route is None or not (route != "").any():
            return self._attribute_here(queries, method, k, weighting, top, sides, condition, jpeg)
        queries = queries if _is_torch(queries) else _to_numpy(queries)
        if queries.ndim == 1:  # one query
            queries = queries[None]

        def here(idx):
            return self._attribute_here(_take(queries, idx), method, k, weighting, top,
                                        None if sides is None else np.asarray(sides).reshape(-1)[idx],
                                        None if condition is None else _take(condition, idx),
                                        None if jpeg is None else np.asarray(jpeg, np.float64).reshape(-1)[idx])
        # routed to a scale view (by its size or its look): also answered here, and this answer
        # kept where it is nearer its model by a margin (views.KEEP_MARGIN of open-set score)
        looked = np.isin(route, [v for v in self.views if views.VIEWS[v][0] != "jpeg"])
        tried = np.flatnonzero(looked)
        also = here(tried) if len(tried) else None
        parts = []  # each routed query is searched in its view alone, the others here
        for name in sorted(set(route.tolist())):
            idx = np.flatnonzero(route == name)
            if not name:
                parts.append((idx, here(idx)))
                continue
            a = self.views[name].attribute(_take(queries, idx), method, k, weighting, top)
            a.condition = [name] * len(idx)
            if also is not None and looked[idx].any():
                pos = np.searchsorted(tried, idx).clip(max=len(tried) - 1)
                keep_here = looked[idx] & (also.choice_score[pos] + views.KEEP_MARGIN < a.choice_score)
                parts.append((idx[keep_here], also.take(pos[keep_here])))
                idx, a = idx[~keep_here], a.take(~keep_here)
            parts.append((idx, a))
        return _merged(parts, len(route), method)

    def _attribute_here(self, queries, method, k, weighting, top, sides, condition, jpeg=None) -> attr.Attribution:
        """:meth:`attribute` by this gallery's own samples (no view)."""
        names = list(self._names)
        if method == "knn":
            res = self.search(queries, self.vote_k() if k is None else k)
            winner, score, nearest = attr.knn_vote(res.labels, res.distances, len(names), weighting)
            stat = nearest[np.arange(len(winner)), winner]
            ratio = attr.ratio_of(stat, _second_smallest(self.model_distances(queries), winner))
            order = np.argsort(nearest, axis=1, kind="stable")[:, :top]
            tops = [[(names[j], float(nearest[r, j])) for j in row if np.isfinite(nearest[r, j])]
                    for r, row in enumerate(order)]
        elif method == "centroid":
            self._ensure_ready()
            dist = self._centroid_dists(queries)
            winner, score = attr.centroid_scores(dist)
            stat = dist[np.arange(len(winner)), winner]
            ratio = attr.ratio_of(stat, _second_smallest(dist, winner))
            order = np.argsort(dist, axis=1, kind="stable")[:, :top]
            tops = [[(names[j], float(dist[r, j])) for j in row] for r, row in enumerate(order)]
        else:
            raise ValueError(f"unknown method {method!r}; expected 'knn' or 'centroid'")
        rec = self.calibration.get(method)
        clean = self.query_condition(queries, method, sides, condition, jpeg)

        def thresholds(rec):  # queries that look clean meet the thresholds of clean held-out images
            if not rec:
                return np.full(len(winner), np.inf), np.full(len(winner), np.inf)
            thr, rthr = attr.thresholds_for(rec, names)[winner], attr.ratio_thresholds_for(rec, names)[winner]
            if clean is not None:
                thr = np.where(clean, attr.thresholds_for(rec["clean"], names)[winner], thr)
                rthr = np.where(clean, attr.ratio_thresholds_for(rec["clean"], names)[winner], rthr)
            return thr, rthr
        thr, rthr = thresholds(rec)
        choice = None
        if self.reads_openset:   # clean-looking queries: the open-set statistics of their own space
            choice = attr.open_set_margin(stat, thr, ratio, rthr)   # the searched space's, kept
            idx = np.arange(len(winner)) if clean is None else np.flatnonzero(clean)
            stat, ratio, thr, rthr = (np.array(a, np.float64) for a in (stat, ratio, thr, rthr))
            if len(idx):   # measured for those queries alone
                q = queries if _is_torch(queries) else _to_numpy(queries)
                dm = self.stat_distances(_take(q.reshape(-1, self.spec.dim), idx), method, openset=True)
                os_stat = dm[np.arange(len(idx)), winner[idx]]
                os_ratio = attr.ratio_of(os_stat, _second_smallest(dm, winner[idx]))
                os_thr, os_rthr = thresholds((rec or {}).get("openset"))
                if self.openset_space == "normalized":   # its ratio joins the searched space's two tests
                    ratio[idx] = attr.joined_ratio(ratio[idx], rthr[idx], os_ratio, os_rthr[idx])
                else:
                    stat[idx], ratio[idx] = os_stat, os_ratio
                    thr[idx], rthr[idx] = os_thr[idx], os_rthr[idx]
        predicted = [names[j] for j in winner]
        unknown = attr.open_set_margin(stat, thr, ratio, rthr) > 0
        unknown &= np.isfinite(thr) | np.isfinite(rthr)  # nothing is unknown without a calibration
        model = [attr.UNKNOWN if u else p for p, u in zip(predicted, unknown)]
        return attr.Attribution(model, predicted, np.asarray(score, np.float64),
                                np.asarray(stat, np.float64), thr, tops, method, ratio, rthr,
                                None if clean is None else np.where(clean, "clean", "processed").tolist(), choice)

    def route(self, queries, sides=None, condition=None, jpeg=None) -> np.ndarray | None:
        """Per query, the view (:mod:`.views`) that answers it, "" for the gallery itself; None
        when the gallery has no fitted router (or it reads ``condition`` vectors and none were
        given). ``sides``, ``condition`` and ``jpeg`` as in :meth:`attribute`."""
        usable = {n: v for n, v in self.views.items() if len(v)}
        if not self.router or not usable:
            return None
        x = self._detector_input(self.router, "gallery router", queries, condition)
        if x is None:
            return None
        try:
            r = views.Router.from_dict(self.router, x.shape[1])
        except ValueError as e:
            raise GalleryError(f"gallery router: {e}") from None
        return r.route(x, sides, self._calibrated_side(), usable, jpeg, full_size=self.large_views,
                       native=self.min_side)

    def file_type_matters(self, queries, sides=None, condition=None, method: str = "knn") -> np.ndarray | None:
        """Per query, True where learning that its file is *not* a JPEG would change the answer:
        where :meth:`route` or :meth:`query_condition` says otherwise for a file of unknown type
        than for a lossless one (the JPEG view, a detector's "processed" call). Only these
        queries' pixels are worth reading for a JPEG grid (:mod:`.jpeg_grid`); None when the
        gallery has neither a router nor a detector."""
        n = int(queries.reshape(-1, self.spec.dim).shape[0]) if _is_torch(queries) else \
            len(np.asarray(queries).reshape(-1, self.spec.dim))
        unknown, lossless = np.full(n, np.nan), np.zeros(n)
        out = np.zeros(n, bool)
        answered = False
        for decide in (lambda j: self.route(queries, sides, condition, j),
                       lambda j: self.query_condition(queries, method, sides, condition, j)):
            a = decide(unknown)
            if a is not None:
                answered = True
                out |= a != decide(lossless)
        return out if answered else None

    def _detector_input(self, rec: dict, what: str, queries, condition) -> np.ndarray | None:
        """The host vectors [Q, D] a detector record ``rec`` reads (``input``: the gallery's own
        vectors, or the ``handcrafted`` ones of a plain learned embedding), None when those are
        ``condition`` vectors and none were given."""
        handcrafted = rec.get("input") == "handcrafted"
        x = condition if handcrafted else queries
        if x is None:
            return None
        if handcrafted and self._hold_cond is None:
            raise GalleryError(f"{what}: a detector of handcrafted vectors in a gallery that keeps none")
        return _to_numpy(x).reshape(-1, self._hold_cond.shape[1] if handcrafted else self.spec.dim)

    def _calibrated_side(self) -> int | None:
        """Under the ``crop`` geometry, the side below which a query is smaller than the spec's crop
        and every image enrolled or held out (:meth:`note_sides`); None when unknown."""
        return min(self.spec.size, self.min_side) if self.spec.geometry == "crop" and self.min_side else None

    def own_model_distance(self, vectors, models: Sequence[str], method: str = "knn", *,
                           openset: bool = False) -> np.ndarray:
        """Open-set statistic of each vector with respect to its own (enrolled) model: exact
        distance to the model's nearest sample (knn) or to its centroid (centroid); ``openset``:
        in the open-set space of :attr:`openset_blocks` (:meth:`stat_distances`)."""
        self._ensure_ready()
        x = self._check_vectors(vectors, "held-out vectors")
        models = list(models)
        if len(models) != x.shape[0]:
            raise ValueError(f"{len(models)} model names for {x.shape[0]} vectors")
        missing = sorted(set(models) - set(self._names))
        if missing:
            raise ValueError(f"held-out samples of models not in the gallery: {missing}")
        lab = np.array([self._names.index(m) for m in models], np.int64)
        if openset:
            return self.stat_distances(x, method, openset=True)[np.arange(len(lab)), lab]
        z = self._normalizer.transform(x)
        out = np.empty(x.shape[0], np.float64)
        if method == "centroid":
            c = self.centroids()[lab]
            return ((z.astype(np.float64) - c) ** 2).sum(1)
        if method != "knn":
            raise ValueError(f"unknown method {method!r}; expected 'knn' or 'centroid'")
        import torch
        for j in np.unique(lab):
            sel = lab == j
            d, _ = torch_knn(torch.from_numpy(z[sel]), torch.from_numpy(self._z[self._labels == j]), 1)
            out[sel] = d[:, 0].numpy()
        return out

    def own_model_ratio(self, vectors, models: Sequence[str], method: str = "knn") -> np.ndarray:
        """The ratio statistic (:mod:`.attribution`) of each vector with respect to its own
        (enrolled) model: its :meth:`own_model_distance` over that to the nearest sample of any
        other model (:meth:`model_distances`; knn), or to the nearest other model's mean (centroid)."""
        return self._ratio_given(self.own_model_distance(vectors, models, method), vectors, models, method)

    def _ratio_given(self, own: np.ndarray, vectors, models: Sequence[str], method: str,
                     openset: bool = False) -> np.ndarray:
        """:meth:`own_model_ratio` from the vectors' :meth:`own_model_distance` ``own``."""
        lab = np.array([self._names.index(m) for m in models], np.int64)
        x = self._check_vectors(vectors, "held-out vectors")
        return attr.ratio_of(own, _second_smallest(self.stat_distances(x, method, openset=openset), lab))

    def stat_distances(self, queries, method: str = "knn", *, openset: bool = False) -> np.ndarray:
        """[Q, M] squared distance of each query to each model: to its nearest sample (knn) or its
        mean (centroid); in the normalised space searched (:meth:`model_distances`,
        :meth:`_centroid_dists`), or with ``openset`` in the open-set space of :attr:`openset_blocks`
        (:mod:`.openspace`: one block's squared distance, or several blocks' scaled geometric mean),
        exact, on the queries' device (returned on the host)."""
        if not openset:
            if method not in ("knn", "centroid"):
                raise ValueError(f"unknown method {method!r}; expected 'knn' or 'centroid'")
            return self._centroid_dists(queries) if method == "centroid" else self.model_distances(queries)
        scales = openspace.scales_for(self.openset_scales.get(method), list(self._names), len(self.openset_blocks))
        return openspace.combine(self.block_distances(queries, method), scales)

    def block_distances(self, queries, method: str = "knn") -> list[np.ndarray]:
        """Per block of :attr:`openset_blocks`, the [Q, M] squared distance of each query to each
        model's nearest sample (knn) or mean (centroid) in it, exact."""
        if method not in ("knn", "centroid"):
            raise ValueError(f"unknown method {method!r}; expected 'knn' or 'centroid'")
        if not self.openset_blocks:
            raise ValueError("this gallery reads no open-set statistics of their own (openset_blocks is not set)")
        self._ensure_ready()
        import torch
        q = queries if _is_torch(queries) else torch.from_numpy(_to_numpy(queries))
        q = q.reshape(-1, self.spec.dim).float()
        out = []
        if self.openset_space == "normalized":
            q = self._normalizer.transform(q)
        for (a, b, *_), (base, sq, lab, mu, sd, gauss) in zip(self.openset_blocks, self._os_base(q.device, method)):
            qb = q[:, a:b] if mu is None else (q[:, a:b] - mu) / sd
            if gauss is not None and len(gauss[2]) == len(self._names):   # every model its own Gaussian
                d = _whitened_sq(qb, *gauss[:2])
            else:
                d = _min_by_label(qb, base, sq, lab, len(self._names))
                if gauss is not None:   # the models with a Gaussian of their own: its Mahalanobis distance
                    d[:, gauss[2]] = _whitened_sq(qb, *gauss[:2])
            out.append(d.cpu().numpy())
        return out

    def _os_base(self, device, method: str):
        """Per block of :attr:`openset_blocks`, (vectors, squared norms, label ids, mean, std or None,
        Gaussians or None) on ``device`` that :meth:`block_distances` measures against: the samples'
        block, or their per-model means; for a ``gauss`` block the means and whitening maps of the
        models that have one (:func:`.openspace.gaussians`) and those models' ids."""
        import torch
        key = (str(device), method, tuple(self.openset_blocks), self.openset_space)
        c = self._os_cache
        if c is None or c[0] is not self._vectors or c[1] is not self._normalizer or c[2] != key:
            def t(a):
                return None if a is None else torch.as_tensor(np.asarray(a, np.float32), device=device)
            bases = []
            src = self._vectors if self.openset_space == "vectors" else self._z   # _ensure_ready: fitted
            if max(b[1] for b in self.openset_blocks) > src.shape[1]:
                raise GalleryError(f"open-set blocks {self.openset_blocks} reach beyond the {src.shape[1]} dimensions of "
                                   f"the gallery's {self.openset_space} vectors")
            for blk, (x, mu, sd) in zip(self.openset_blocks, openspace.block_views(src, self.openset_blocks)):
                lab = self._labels.astype(np.int64)
                gauss = None
                if openspace.kind_of(blk) == "gauss":
                    means, maps, ok = openspace.gaussians(x, lab, len(self._names))
                    if ok.any():
                        gauss = (t(means[ok]), t(maps[ok]), torch.as_tensor(np.flatnonzero(ok), device=device))
                if method == "centroid":
                    m = len(self._names)
                    sums = np.zeros((m, x.shape[1]), np.float64)
                    np.add.at(sums, lab, x)
                    x, lab = sums / np.maximum(np.bincount(lab, minlength=m), 1)[:, None], np.arange(m)
                base = t(x)
                bases.append((base, (base * base).sum(1), torch.as_tensor(lab, device=device), t(mu), t(sd), gauss))
            self._os_cache = (self._vectors, self._normalizer, key, bases)
        return self._os_cache[3]

    def _largest_model(self) -> int:
        """The most samples any model has, counted once per labels array (a new array on every
        change; :attr:`reads_openset` asks on every attribute batch)."""
        c = self._count_cache
        if c is None or c[0] is not self._labels:
            c = self._count_cache = (self._labels, int(np.bincount(self._labels).max()) if len(self._labels) else 0)
        return c[1]

    @property
    def reads_openset(self) -> bool:
        """Whether clean-looking queries meet open-set statistics of :attr:`openset_blocks`: blocks of
        the raw vector always; a normalised space only while it is an LDA's (refitted with another
        method, its first axes discriminate nothing) and some model has a Gaussian of its own in a
        ``gauss`` block (:data:`.openspace.GAUSS_MIN_FACTOR` enrolled samples per axis). Below
        that, the space's ratio is a nearest sample's in fewer axes: joined, it added nothing and
        loosened the other two tests (their share of the FRR falls to a third; fewer `unknown`s in
        small galleries: benchmarks/results/embedding.md, "Issue 14, twentieth session")."""
        if not self.openset_blocks:
            return False
        if self.openset_space == "vectors":
            return True
        if self.normalize != "lda":
            return False
        most = self._largest_model()
        return any(openspace.kind_of(b) == "gauss" and most >= openspace.GAUSS_MIN_FACTOR * (b[1] - b[0])
                   for b in self.openset_blocks)

    def fit_openset_scales(self, vectors, models: Sequence[str], method: str = "knn") -> dict | None:
        """With several :attr:`openset_blocks`: the blocks' per-model scales from clean held-out
        ``vectors`` of ``models`` (:func:`.openspace.fit_scales`), stored in :attr:`openset_scales`
        and returned; None (nothing stored) with one block or none."""
        if not self.openset_blocks or len(self.openset_blocks) < 2:
            self.openset_scales.pop(method, None)   # blocks changed since: no stale scales
            return None
        lab = np.array([self._names.index(m) for m in models], np.int64)
        rows = np.arange(len(lab))
        own = np.stack([d[rows, lab] for d in self.block_distances(vectors, method)])
        self.openset_scales[method] = openspace.fit_scales(own, lab, list(self._names))
        return self.openset_scales[method]

    def model_distances(self, queries, block: int = 32768, q_block: int = 1024) -> np.ndarray:
        """[Q, M] squared L2 distance (normalised space) of each query to each model's nearest
        sample, computed on the queries' device: exact on a flat gallery (a brute-force pass over
        ``q_block`` queries x ``block`` samples at a time), else among the
        :data:`~.attribution.RATIO_K` nearest (inf for a model with none among them)."""
        self._ensure_ready()
        m = len(self._names)
        if self.index_type != "flat":
            res = self.search(queries, attr.RATIO_K)
            return attr.knn_vote(res.labels, res.distances, m)[2]
        import torch
        q = queries if _is_torch(queries) else torch.from_numpy(_to_numpy(queries))
        zq = self._normalizer.transform(q.float())
        z, sq = self._device_base(zq.device)
        zq = zq[None] if zq.dim() == 1 else zq
        lab = torch.as_tensor(self._labels, dtype=torch.int64, device=zq.device)
        return _min_by_label(zq, z, sq, lab, m, block, q_block).cpu().numpy()

    def calibrate(self, vectors, models: Sequence[str], frr: float = 0.05, *,
                  per_model: bool = True, method: str = "knn", min_per_model: int = 5, joint: bool = True) -> dict:
        """Open-set thresholds from held-out samples of enrolled models (not in the gallery): per
        model (and a global fallback) a quantile of their distance to their own model and one of
        their ratio statistic, at the common level at which about ``frr`` of genuine samples are
        answered ``unknown`` (:func:`~.attribution.calibrate_thresholds`). Stored in
        ``self.calibration[method]`` (saved with the gallery) and returned; with :attr:`openset_blocks`
        the thresholds of the open-set statistics' own space under ``openset`` too (several blocks:
        their scales fitted on the same samples first)."""
        stats, ratios, lab = self._open_set_stats(vectors, models, method)
        os_stats = None
        if self.reads_openset:
            self.fit_openset_scales(vectors, models, method)
            os_stats = (*self._open_set_stats(vectors, models, method, True)[:2], None)
        return self._store_calibration(method, stats, ratios, lab, frr, per_model=per_model,
                                       min_per_model=min_per_model, openset=os_stats, joint=joint)

    def _store_calibration(self, method: str, stats, ratios, lab, frr: float, clean=None, *,
                           per_model: bool = True, min_per_model: int = 5, crossfitted=None,
                           openset=None, joint: bool = True) -> dict:
        """The record of :meth:`calibrate` from its statistics, stored; with ``clean`` (a mask of
        them), the clean ones' record too, under ``clean``. ``crossfitted``: (distance, ratio, label
        ids) of enrolled samples (:mod:`.crossfit`), joining the global thresholds of the record
        that clean queries meet. ``openset``: (distance, ratio statistics, crossfitted or None) of the
        same samples in the space of :attr:`openset_blocks`, recorded the same way under ``openset``.
        ``joint``: the tests a query meets share ``frr`` by one common factor of their thresholds
        (:func:`~.attribution.joint_scale`); False: each at its union-bound share, as before 2026-12-07."""
        # a normalised open-set space adds its ratio to the two tests clean-looking queries meet: each of
        # the three fitted at a third of frr, in the record they meet and in the open-set one, then the
        # three scaled together
        three = self.reads_openset and self.openset_space == "normalized"
        fc = frr * 2 / 3 if three else frr
        each = joint and not three
        rec = self._calibration_record(stats, ratios, lab, frr, clean, per_model, min_per_model, crossfitted, fc,
                                       joint, each)
        if openset is not None:
            s, r, xs = openset
            rec["openset"] = self._calibration_record(s, r, lab, fc, clean, per_model, min_per_model, xs, fc, each, each)
            if three and joint:
                self._join_three(rec, (stats, ratios, lab, crossfitted), openset, clean, frr)
        self.calibration[method] = rec
        return rec

    def _join_three(self, rec: dict, main, openset, clean, frr: float) -> None:
        """Scale, in place, the thresholds clean-looking queries meet in ``rec`` (its ``clean`` record,
        or the whole one without ``clean``: distance and ratio) and the open-set space's ratio
        thresholds (``rec["openset"]``'s) by one factor, at which about ``frr`` of the samples those
        records were fitted on (held-out, and cross-fitted ones where both spaces have them) exceed
        any of the three tests."""
        names = list(self._names)
        key = "clean" if clean is not None else None
        sel = slice(None) if clean is None else np.asarray(clean, bool)

        def samples(stats, ratios, lab, xs):
            d, r, y = np.asarray(stats)[sel], np.asarray(ratios)[sel], np.asarray(lab)[sel]
            if xs is not None and len(xs[0]):
                d, r, y = np.concatenate([d, xs[0]]), np.concatenate([r, xs[1]]), np.concatenate([y, xs[2]])
            return d, r, y
        if main[1] is None or openset[1] is None:
            return
        xs_m, xs_o = main[3], openset[2]
        if (xs_m is None) != (xs_o is None) or (xs_m is not None and (xs_o[1] is None or len(xs_m[0]) != len(xs_o[0]))):
            xs_m = xs_o = None    # not the same cross-fitted samples: the held-out ones alone
        d, r, y = samples(main[0], main[1], main[2], xs_m)
        _, r_os, _ = samples(openset[0], openset[1], main[2], xs_o)
        m_rec = rec if key is None else rec[key]
        o_rec = rec["openset"] if key is None else rec["openset"][key]
        tests = [(d, attr.thresholds_for(m_rec, names)[y]), (r, attr.ratio_thresholds_for(m_rec, names)[y]),
                 (r_os, attr.ratio_thresholds_for(o_rec, names)[y])]
        tau = attr.joint_scale(tests, frr)
        rejected = attr.exceeded([(s_, t * tau) for s_, t in tests])
        m_rec, o_rec = ({**attr.scale_record(x, tau), "rejected": rejected} for x in (m_rec, o_rec))
        if key is None:
            rec.update({k: v for k, v in m_rec.items() if k != "openset"})
            rec["openset"] = o_rec
        else:
            rec[key], rec["openset"][key] = m_rec, o_rec

    def _calibration_record(self, stats, ratios, lab, frr: float, clean, per_model: bool, min_per_model: int,
                            crossfitted, frr_clean: float | None = None, joint: bool = True,
                            joint_clean: bool = True) -> dict:
        """The record of :meth:`_store_calibration`; ``frr_clean`` (default ``frr``): the level of the
        thresholds clean-looking queries meet (``clean``'s, or the whole record's without ``clean``);
        ``joint`` / ``joint_clean``: whether the processed record's / that record's two tests share
        their level jointly (:func:`~.attribution.calibrate_thresholds`)."""
        names = list(self._names)
        frr_clean = frr if frr_clean is None else frr_clean

        def record(s, r, lab_, add, level, j):   # r None: the distance alone
            own = np.ones(len(s), bool)
            if add is not None and len(add[0]):
                s, lab_ = np.concatenate([s, add[0]]), np.concatenate([lab_, add[2]])
                r = None if r is None else np.concatenate([r, add[1]])
                own = np.r_[own, np.zeros(len(add[0]), bool)]
            return attr.calibrate_thresholds(s, lab_, names, level, per_model, min_per_model, r, own, j)
        if clean is None:
            rec = record(stats, ratios, lab, crossfitted, frr_clean, joint_clean)
        else:
            rec = record(stats, ratios, lab, None, frr, joint)
        rec["date"] = store.now()
        if clean is not None:
            rec["clean"] = {**record(stats[clean], None if ratios is None else ratios[clean], lab[clean], crossfitted,
                                     frr_clean, joint_clean), "date": rec["date"]}
        return rec

    def _open_set_stats(self, vectors, models: Sequence[str], method: str, openset: bool = False):
        """(distance statistics, ratio statistics, label ids) of held-out ``vectors`` of ``models``
        (``openset``: in the space of :attr:`openset_blocks`)."""
        models = list(models)
        stats = self.own_model_distance(vectors, models, method, openset=openset)
        # several blocks: the scaled distance alone (the ratio ranked unknown designs worse there:
        # benchmarks/results/embedding.md, "Issue 14, sixteenth session")
        several = openset and len(self.openset_blocks) > 1
        ratios = None if several else self._ratio_given(stats, vectors, models, method, openset)
        return stats, ratios, np.array([self._names.index(m) for m in models], np.int64)

    def add_holdout(self, model: str, vectors, keys: Sequence[str] | None = None, *,
                    skip_known: bool = False, condition=None) -> int:
        """Keep held-out samples of an enrolled ``model`` (not searched) for :meth:`recalibrate`,
        so that later enrollments and refits can recalibrate every model, old ones included.
        ``keys`` and ``skip_known`` as in :meth:`add`; ``condition``: for a plain learned
        embedding, the samples' :func:`~.conditions.detector_spec` vectors (the condition
        detector's input; without them these samples do not train it). Returns how many were kept."""
        if model not in self._names:
            raise KeyError(f"model {model!r} is not enrolled; enroll samples before held-out ones")
        x = self._check_vectors(vectors, f"held-out vectors of {model!r}")
        keys = [str(k) for k in keys] if keys is not None else [""] * x.shape[0]
        if len(keys) != x.shape[0]:
            raise ValueError(f"{len(keys)} keys for {x.shape[0]} held-out vectors of {model!r}")
        c = None
        if self._hold_cond is not None:
            c = np.full((x.shape[0], self._hold_cond.shape[1]), np.nan, np.float32) if condition is None \
                else _to_numpy(condition)
            if c.shape != (x.shape[0], self._hold_cond.shape[1]):
                raise ValueError(f"condition vectors must have shape [{x.shape[0]}, {self._hold_cond.shape[1]}], "
                                 f"got {list(c.shape)}")
        if skip_known:
            sel = self._new_rows(keys)
            x, keys = x[sel], [keys[i] for i in sel]
            c = None if c is None else c[sel]
        if c is not None:
            self._hold_cond = np.concatenate([self._hold_cond, c])
        self._hold_keys.extend(keys)
        self._hold_vectors = np.concatenate([self._hold_vectors, x])
        self._hold_labels = np.concatenate([self._hold_labels,
                                            np.full(x.shape[0], self._names.index(model), np.int32)])
        return x.shape[0]

    def note_sides(self, sides) -> None:
        """Record the shorter sides (before the crop) of images enrolled or held out: a query
        smaller than all of them and than the spec's crop counts as processed
        (:meth:`query_condition`); with :attr:`large_views`, one smaller than all of them is routed
        by its size (:meth:`route`)."""
        sides = [int(x) for x in (sides or [])]
        if sides:
            self.min_side = min(sides + ([self.min_side] if self.min_side else []))

    def note_copy_sides(self, sides) -> None:
        """Record the shorter sides of the regions views and calibration copies were made of
        (decoded with :func:`.conditions.copy_spec`: at most its size). A gallery holding copies
        from before this was recorded made them of its crops: those count at its ``min_side``."""
        sides = [int(x) for x in (sides or [])]
        if sides:
            old = self.copy_side
            if old is None and (any(len(v) for v in self.views.values()) or any(map(cond.is_copy, self._hold_keys))):
                old = self._calibrated_side()   # copies made before their regions were recorded: of the crop
            self.copy_side = min(sides + ([old] if old else []))

    @property
    def large_views(self) -> bool:
        """Whether every down-scaled copy behind the views and the router was a whole crop of a
        larger image (:meth:`note_copy_sides`): a down-scaled query of such images is no smaller
        than the crop, and the router then sends queries of any size that look down-scaled to a
        view (:meth:`.views.Router.route`, ``full_size``)."""
        s = self.spec
        return bool(self.copy_side and cond.copy_spec(s) is not s
                    and self.copy_side >= math.ceil(s.size / cond.MIN_SCALE))

    @property
    def hold_keys(self) -> list[str]:
        """The held-out samples' keys, in order ("" where none was given)."""
        return list(self._hold_keys)

    def holdout_counts(self) -> dict[str, int]:
        counts = np.bincount(self._hold_labels, minlength=len(self._names))
        return {m: int(c) for m, c in zip(self._names, counts) if c}

    def recalibrate(self, frr: float = 0.05, methods: Sequence[str] = ("knn", "centroid"), *,
                    cross_fit: bool = True, **kw) -> dict:
        """:meth:`calibrate` every method on the stored held-out samples (no-op without any).
        Where they include processed copies (:mod:`.conditions`) and a detector of them can be
        fitted, each method's record is calibrated on all of them and carries, under ``clean``,
        the record calibrated on the clean ones alone and, under ``detector``, the detector that
        decides per query which of the two :meth:`attribute` applies. While the clean held-out
        images are few, the enrolled samples' cross-fitted statistics join theirs in the global
        thresholds of the record clean queries meet (:mod:`.crossfit`; ``cross_fit=False``: the
        held-out samples alone, as before 2026-12-06)."""
        if not len(self._hold_labels):
            return {}
        models = [self._names[i] for i in self._hold_labels]
        kind = np.array([views.copy_name(k) for k in self._hold_keys], dtype=object)  # None: the image itself
        clean = np.equal(kind, None)
        clean_models = [m for m, c in zip(models, clean) if c]
        x, given = self._hold_vectors, np.ones(len(clean), bool)
        if self._hold_cond is not None:
            x, given = self._hold_cond, np.isfinite(self._hold_cond).all(1)
        det = cond.ConditionDetector.fit(x[given], clean[given]) if not clean.all() else None
        out = {}
        if self.reads_openset and clean.any():   # the open-set space's scales before its statistics
            for m in methods:
                self.fit_openset_scales(self._hold_vectors[clean], clean_models, m)
        xs, xs_os = {}, {}  # few clean statistics: the enrolled samples' cross-fitted ones join them
        if cross_fit and 0 < int(clean.sum()) < crossfit.CROSSFIT_BELOW:
            xs = crossfit.crossfit_stats(self, methods, self._hold_vectors[clean], self._hold_labels[clean])
            if self.reads_openset:
                xs_os = crossfit.crossfit_stats(self, methods, self._hold_vectors[clean], self._hold_labels[clean],
                                                openset=True)
        for m in methods:  # each held-out sample's statistics once, for both records
            stats, ratios, lab = self._open_set_stats(self._hold_vectors, models, m)
            os_stats = None
            if self.reads_openset:
                os_stats = (*self._open_set_stats(self._hold_vectors, models, m, True)[:2], xs_os.get(m))
            out[m] = self._store_calibration(m, stats, ratios, lab, frr, clean if det is not None else None,
                                             crossfitted=xs.get(m), openset=os_stats, **kw)
            if det is not None:
                out[m]["detector"] = det.to_dict("vector" if self._hold_cond is None else "handcrafted")
        self._calibrate_views(x[given], kind, given, frr, methods, **kw)
        return out

    def _calibrate_views(self, x, kind: np.ndarray, given: np.ndarray, frr: float, methods, **kw) -> None:
        """Fit the router on the detectors' input ``x`` of the held-out samples that have one
        (``given``; ``kind``: each held-out sample's copy name, None for an image) and calibrate
        each view on the held-out copies of its
        kind (:data:`.views.FEEDS`), searched in the view: global thresholds only (per-model ones,
        fitted on copies made one way, answered most queries processed another way `unknown` on
        validation images: ``benchmarks/results/embedding.md``, eighth session, item 7). With
        :attr:`large_views` (and the gallery's own vectors as the detectors' input) the enrolled
        images and their scale views also teach the router's down-scale detectors (fewer clean
        images misrouted: ``benchmarks/results/accuracy.md``, "Large images, down-scaled")."""
        self.router = None
        if not self.views:
            return
        look = None
        if self.large_views and self._hold_cond is None:  # the enrolled images and their down-scaled views
            look = [(self._vectors, None)] + [(self.views[v]._vectors, feeds[0]) for v, feeds in views.FEEDS.items()
                                              if feeds[0] in views.SCALED and v in self.views and len(self.views[v])]
        r = views.Router.fit(x, kind[given].tolist(), look)
        self.router = None if r is None else r.to_dict("vector" if self._hold_cond is None else "handcrafted")
        for name, v in self.views.items():
            v._hold_vectors, v._hold_labels, v._hold_keys = v._hold_vectors[:0], v._hold_labels[:0], []
            if v._hold_cond is not None:
                v._hold_cond = v._hold_cond[:0]
            feed = np.isin(kind, views.FEEDS[name])
            for j, model in enumerate(self._names):
                sel = np.flatnonzero(feed & (self._hold_labels == j))
                if len(sel) and model in v._names:
                    v.add_holdout(model, self._hold_vectors[sel], [self._hold_keys[i] for i in sel])
            v.calibration = {}
            if len(v) and len(v._hold_labels):  # global thresholds: per model, those of one processing's
                v.recalibrate(frr, methods, **{**kw, "per_model": False})  # copies are too tight for others'

    def query_condition(self, queries, method: str = "knn", sides=None, condition=None,
                        jpeg=None) -> np.ndarray | None:
        """Per query, True where ``method``'s calibration detector calls it clean (None: the
        gallery has no detector, or it needs ``condition`` vectors - a plain learned embedding's
        :func:`~.conditions.detector_spec` vectors of the queries - and none were given; every
        query then meets the pooled calibration). ``sides``: each query image's shorter side before
        the crop (optional); under the ``crop`` geometry one below both the spec's size and
        every enrolled image's side (:meth:`note_sides`) is smaller than any image the gallery
        was calibrated on, so cropped or down-scaled: processed, whatever the detector says.
        ``jpeg`` (per query 1 / 0 / NaN, as in :meth:`attribute`): a query whose file is known
        not to be a JPEG and that is not smaller is clean, whatever the detector says (the
        detector called a fifth of clean PNGs and most of an unseen generator's processed, whose
        looser thresholds then let it through: ``benchmarks/results/accuracy.md``, "The open-set
        score, left one model out")."""
        d = (self.calibration.get(method) or {}).get("detector")
        if d is None:
            return None
        x = self._detector_input(d, f"gallery calibration {method!r}", queries, condition)
        if x is None:
            return None
        try:
            det = cond.ConditionDetector.from_dict(d, x.shape[1])
        except ValueError as e:
            raise GalleryError(f"gallery calibration {method!r}: {e}") from None
        clean = det.is_clean(x)
        if jpeg is not None:
            clean |= np.asarray(jpeg, np.float64).reshape(-1) == 0
        side = self._calibrated_side()
        if sides is not None and side:
            clean &= np.asarray(sides).reshape(-1) >= side
        return clean
