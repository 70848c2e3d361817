"""ManiFPT's projector: the artifact of x is x minus its nearest real image (or the mean of k).

The neighbour is searched in a space (``rgb``, ``freq``, ``embed``, see :mod:`.spaces`) of a
reference set (:mod:`.refset`); the artifact is taken in RGB (``subtract='rgb'``, ManiFPT's
released code reuses the RGB neighbour) or in the search space (``subtract='space'``: for
``freq`` the log-spectrum difference, an image of the same shape). :meth:`artifacts` returns both.

Engines: ``faiss`` (CPU; GPU when faiss has GPUs and the index can move there) and ``torch``
(exact only: chunked matrix product + top-k on the reference vectors, fp16 storage on CUDA; used
on CUDA tensors and where faiss is missing), and ``bound`` (exact only: a float64 lower bound on
every distance from 64 principal directions and the residual norm, :class:`fpfast.search.PcaBound`,
then exact distances for only the references whose bound does not exceed the k-th distance found;
queries needing more than 512 exact evaluations fall back to ``torch``). Approximate modes ask
for ``k + rerank`` candidates and re-rank them by exact float64 distances recomputed from the
uint8 reference images; exact mode asks for at least ``k + 32``, re-ranks the first ``k + rerank``
and more while a left-out candidate could lie within the rounding margin of ``_tolerance`` of the
k-th (duplicates, flat patches), searching again with more candidates when needed, so exact mode
returns brute force's neighbours with every engine.

CLI: ``fpfast manifold build REAL_SOURCE... --out DIR --size S``.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ..search import PcaBound, bounded_knn, faiss_gpus, faiss_search, index_to_gpu, knn
from .base import Projector, register
from .identity import module_sha256
from .loading import ProjectorError
from .refset import MODES, ReferenceSet, build_manifold, images_to_float
from .spaces import SPACES, space_image, space_vectors

__all__ = ["ManifoldProjector", "ReferenceSet", "build_manifold"]

ENGINES = ("auto", "faiss", "torch", "bound")


@register("manifold")
class ManifoldProjector(Projector):
    """Nearest-real projection on a reference set.

    ``reference``: a reference-set directory or a loaded :class:`ReferenceSet`. ``space``: where
    to search; ``mode``: exact / ivfpq / hnsw (an index of that mode must have been built);
    ``k``: neighbours averaged; ``subtract``: rgb or space; ``rerank``: extra candidates re-ranked
    exactly (default 2 exact, 8 approximate); ``nprobe`` / ``ef_search``: approximate-search knobs; ``encoder``: the torch module of
    the embed space (its hash must match the reference set's); ``engine``: auto, faiss, torch or bound; ``bound_dims``: principal directions of the bound engine.
    """

    def __init__(self, reference: "str | os.PathLike | ReferenceSet", space: str = "rgb", mode: str = "exact",
                 k: int = 1, subtract: str = "rgb", rerank: int | None = None, nprobe: int = 16, ef_search: int = 64,
                 encoder: torch.nn.Module | None = None, engine: str = "auto", batch_size: int = 64,
                 device: "str | torch.device | None" = None, bound_dims: int = 64):
        self.ref = reference if isinstance(reference, ReferenceSet) else ReferenceSet(reference)
        if space not in SPACES:
            raise ProjectorError(f"unknown space {space!r}; expected one of {SPACES}")
        if mode not in MODES:
            raise ProjectorError(f"unknown mode {mode!r}; expected one of {MODES}")
        if subtract not in ("rgb", "space"):
            raise ProjectorError(f"subtract must be rgb or space, got {subtract!r}")
        if subtract == "space" and space == "embed":
            raise ProjectorError("subtract='space' needs an image-shaped space (rgb, freq); the embed artifact "
                                 "is a vector: use artifacts(x)['space'] for it")
        if not 1 <= k <= len(self.ref):
            raise ProjectorError(f"k must lie in [1, {len(self.ref)}] (the reference set size), got {k}")
        if engine not in ENGINES:
            raise ProjectorError(f"engine must be one of {ENGINES}, got {engine!r}")
        if engine in ("torch", "bound") and mode != "exact":
            raise ProjectorError(f"the {engine} engine searches exactly; use mode='exact' or engine='faiss'")
        self.ref.entry(space, mode)  # raises when the index was not built
        if space == "embed":
            if encoder is None:
                raise ProjectorError("the embed space needs the encoder the reference set was built with")
            if module_sha256(encoder) != self.ref.manifest.get("encoder_sha256"):
                raise ProjectorError("this encoder is not the one the reference set was built with (hash differs)")
        self.space, self.mode, self.k, self.subtract = space, mode, int(k), subtract
        # exact: 2 extra candidates re-ranked in float64, more where float32 error could hide a tie
        rerank = (2 if mode == "exact" else 8) if rerank is None else rerank
        if int(rerank) < 0:
            raise ProjectorError(f"rerank must be >= 0, got {rerank}")
        self.rerank, self.nprobe, self.ef_search = int(rerank), int(nprobe), int(ef_search)
        self.encoder, self.engine, self.batch_size = encoder, engine, int(batch_size)
        self.device = torch.device(device) if device is not None else None
        self.bound_dims = int(bound_dims)
        self._torch_db: dict[str, Any] = {}
        self._bounds: dict[str, PcaBound] = {}
        self._gpu_index = None
        self._ref_norm: float | None = None

    # ------------------------------------------------------------------ identity
    def params(self) -> dict[str, Any]:
        p = {"space": self.space, "mode": self.mode, "k": self.k, "subtract": self.subtract,
             "size": self.ref.size}
        if self.mode != "exact":
            p.update(rerank=self.rerank, nprobe=self.nprobe, ef_search=self.ef_search)
        return p

    def sha256(self) -> str:
        return self.ref.identity(self.space, self.mode)

    def source(self) -> str:
        return str(self.ref.dir.resolve())

    @classmethod
    def from_spec_dict(cls, desc: dict[str, Any], source: Any = None, encoder=None, device=None,
                       engine: str = "auto", **_: Any) -> "ManifoldProjector":
        p = dict(desc.get("params", {}))
        src = source or desc.get("source")
        if not src:
            raise ProjectorError("the spec's manifold projector has no source; pass source=REFERENCE_DIR")
        ref = ReferenceSet(src)
        if "size" in p and int(p["size"]) != ref.size:
            raise ProjectorError(f"reference set {src} has working size {ref.size}, the spec's projector "
                                 f"{p['size']}")
        p.pop("size", None)
        return cls(ref, encoder=encoder, device=device, engine=engine, **p)

    # ------------------------------------------------------------------ search
    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        x = super().check_input(x)
        if not bool(torch.isfinite(x).all()):
            raise ProjectorError("the images hold NaN or infinite values: no neighbour is defined")
        s = self.ref.size
        if tuple(x.shape[-2:]) != (s, s):
            raise ProjectorError(f"the reference set {self.ref.dir} was built at working size {s}x{s}; these "
                                 f"images are {x.shape[-1]}x{x.shape[-2]}: use a spec of size {s} (and a "
                                 f"geometry that yields it) or build a reference set at size {x.shape[-1]}")
        return x

    def _engine(self, device: torch.device) -> str:
        if self.engine != "auto":
            return self.engine
        if self.mode != "exact":
            return "faiss"
        if device.type == "cuda":
            return "torch"
        try:
            import faiss  # noqa: F401
        except ImportError:
            return "torch"
        return "faiss"

    def _faiss_search(self, q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss
        index = self.ref.index(self.space, self.mode)
        if self.mode == "ivfpq":
            faiss.extract_index_ivf(index).nprobe = self.nprobe
        elif self.mode == "hnsw":
            index.hnsw.efSearch = max(self.ef_search, kk)
        if self._gpu_index is None and faiss_gpus() > 0:
            try:  # not every index type / PQ layout exists on the GPU: keep the CPU one then
                self._gpu_index = index_to_gpu(index, 0)
            except Exception:  # noqa: BLE001
                self._gpu_index = False
        # faiss's GPU indexes return at most 2048 neighbours: a longer list is the CPU index's
        return faiss_search(self._gpu_index if self._gpu_index and kk <= 2048 else index, q, kk)

    def _torch_vectors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._torch_db:
            dt = torch.float16 if device.type == "cuda" else torch.float32
            chunks = []
            for i in range(0, len(self.ref), 1024):
                x = images_to_float(self.ref.images[i:i + 1024], device)
                chunks.append(space_vectors(x, self.space, self.encoder).to(dt))
            db = torch.cat(chunks)
            norms = torch.cat([c.float().pow(2).sum(1) for c in db.split(8192)])
            self._torch_db[key] = (db, norms)
        return self._torch_db[key]

    def _torch_search(self, q: torch.Tensor, kk: int) -> tuple[torch.Tensor, torch.Tensor]:
        db, norms = self._torch_vectors(q.device)
        return knn(q, db, kk, base_sq_norms=norms, base_chunk=8192)

    def _candidates(self, xb: torch.Tensor, eng: str, kk: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(float32 distances, ids) [B, kk] of the engine's search: nearest first."""
        if eng == "torch":
            return self._torch_search(space_vectors(xb, self.space, self.encoder), kk)
        q = space_vectors(xb.cpu(), self.space, self.encoder).numpy()
        d, i = self._faiss_search(q, kk)
        return torch.as_tensor(d).to(xb.device), torch.as_tensor(i).to(xb.device)

    def _max_ref_norm(self, eng: str, device: torch.device) -> float:
        """The largest reference vector norm in the space (computed once): from the engine's own
        vectors (the torch engine's norms, the faiss index's decoded rows; rgb: the uint8 images),
        so that no encoder runs over the reference set again."""
        if self._ref_norm is None:
            if eng == "torch":
                n2 = float(self._torch_vectors(device)[1].max())
            elif self.space == "rgb":
                n2 = max(float((self.ref.images[i:i + 1024].astype(np.float64) ** 2).sum((1, 2, 3)).max())
                         for i in range(0, len(self.ref), 1024))
            else:
                index = self.ref.index(self.space, self.mode)
                n2 = max(float((index.reconstruct_n(i, min(1024, len(self.ref) - i)).astype(np.float64) ** 2)
                               .sum(1).max()) for i in range(0, len(self.ref), 1024))
            self._ref_norm = n2 ** 0.5
        return self._ref_norm

    def _tolerance(self, q: torch.Tensor, eng: str) -> torch.Tensor:
        """A margin [B] on |float32 distance - exact distance| for queries q [B, D] (float64).

        The float32 search computes |q|^2 - 2 q.r + |r|^2 from sums of D rounded products. Rounding
        errors of such a sum grow like sqrt(D) u (u = 2^-24) of the terms' magnitude (D u is the
        worst case, reached only by adversarial inputs, and at D = 12,288 it would make most queries
        search again); the margin is 8 sqrt(D) u (|q| + R)^2, R the largest reference norm, plus
        3 u16 (|q| + R)^2 where the engine holds the reference vectors in float16 (u16 = 2^-11 per
        element): faiss's fp16 exact index (the freq and embed spaces' default) and the torch
        engine on CUDA outside the rgb space (0-255 pixels are exact in float16).
        """
        u = 2.0 ** -24
        c = 8 * q.shape[1] ** 0.5 * u
        if self.space != "rgb" and ((eng == "torch" and q.device.type == "cuda") or
                                    (eng == "faiss" and self.ref.entry(self.space, self.mode).get("storage") == "fp16")):
            c += 3 * 2.0 ** -11
        return c * (q.norm(dim=1) + self._max_ref_norm(eng, q.device)) ** 2

    def _certified(self, x: torch.Tensor, eng: str, kk: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact (distances, ids) [B, k] from a float32 engine.

        The engine returns its ``fetch`` (>= k + 32) nearest in float32; the first ``kk`` are
        re-ranked in float64. A query is settled when every candidate left out is farther in float32
        than its k-th exact distance plus the rounding margin of :meth:`_tolerance`; otherwise every
        fetched candidate within that margin is re-ranked too, and a query that needs more than were
        fetched is searched again with 64x as many (one more pass over the references), until
        settled or every reference is a candidate.
        Duplicates and near-ties in the reference set therefore cannot push the true neighbour out.
        """
        n, k = len(self.ref), self.k
        xf = x.float()
        d = torch.empty(x.shape[0], k, dtype=torch.float64, device=x.device)
        j = torch.empty(x.shape[0], k, dtype=torch.int64, device=x.device)
        rows = torch.arange(x.shape[0], device=x.device)
        tol = self._tolerance(self._query_vectors(x), eng)
        fetch = min(n, max(kk, k + 32))
        inf = torch.tensor(float("inf"), dtype=torch.float64, device=x.device)

        def left_out(approx: torch.Tensor, m: int) -> torch.Tensor:  # a float32 floor of the rest
            return approx[:, m] if m < fetch else (approx[:, -1] if fetch < n else inf.expand(len(approx)))

        while rows.numel():
            approx, cand = self._candidates(xf[rows], eng, fetch)
            approx, cand, t = approx.double().to(x.device), cand.to(x.device), tol[rows]
            m = min(kk, fetch)
            dd, jj = self._exact(x[rows], cand[:, :m])
            d[rows], j[rows] = dd[:, :k], jj[:, :k]
            sure = left_out(approx, m) - t > dd[:, k - 1]
            if not sure.all():
                r = (~sure).nonzero().flatten()
                m = max(m, int((approx[r] <= (dd[r, k - 1] + t[r])[:, None]).sum(1).max()))
                dd, jj = self._exact(x[rows[r]], cand[r, :m])
                d[rows[r]], j[rows[r]] = dd[:, :k], jj[:, :k]
                sure[r] = left_out(approx[r], m) - t[r] > dd[:, k - 1]
            if fetch >= n:  # every reference was a candidate: final (non-finite distances end here)
                break
            rows, fetch = rows[~sure], min(n, fetch * 64)
        return d, j

    def _ref_vectors(self, idx: np.ndarray, device: torch.device) -> torch.Tensor:
        """float64 vectors of reference images idx in the space (rgb: their exact integer pixels)."""
        if self.space == "rgb":
            rv = torch.from_numpy(np.ascontiguousarray(self.ref.images[idx])).to(device)
            return rv.permute(0, 3, 1, 2).reshape(len(idx), -1).double()
        imgs = images_to_float(self.ref.images[idx], device, torch.float64)
        return space_vectors(imgs if self.space != "embed" else imgs.float(), self.space, self.encoder).double()

    def _query_vectors(self, x: torch.Tensor) -> torch.Tensor:
        return space_vectors(x.double() if self.space != "embed" else x.float(), self.space, self.encoder).double()

    def _bound_search(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact (distances, ids) [B, k] by lower-bound pruning (:class:`fpfast.search.PcaBound`);
        queries the bound cannot prune well fall back to the matrix-product search."""
        key = str(x.device)
        if key not in self._bounds:
            self._bounds[key] = PcaBound.fit(lambda i: self._ref_vectors(i.numpy(), x.device), len(self.ref),
                                             dims=self.bound_dims)
        lower = self._bounds[key].lower_bounds(self._query_vectors(x))
        d, j, over = bounded_knn(lower, lambda rows, cand: self._exact(x[rows], cand), k,
                                 slots=max(16, 2 ** 25 // x[0].numel()))
        d, j = d[:, :k], j[:, :k]
        if over.any():
            d[over], j[over] = self._certified(x[over], "torch", min(len(self.ref), k + self.rerank))
        return d, j

    def _exact(self, x: torch.Tensor, cand: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact float64 squared distances of x [B,3,S,S] to candidates [B,kk] in the space; sorted.
        Rows go in chunks of at most 2^24 candidate values (128 MB of float64) at a time."""
        step = max(1, 2 ** 24 // max(1, cand.shape[1] * x[0].numel()))
        if cand.shape[0] > step:
            parts = [self._exact(x[i:i + step], cand[i:i + step]) for i in range(0, cand.shape[0], step)]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        b, kk = cand.shape
        flat = cand.reshape(-1).cpu().numpy()
        valid = flat >= 0
        flat = np.where(valid, flat, 0)
        uniq, inv = np.unique(flat, return_inverse=True)
        rv = self._ref_vectors(uniq, x.device)
        xv = self._query_vectors(x)
        cv = rv[torch.from_numpy(inv).to(x.device)].reshape(b, kk, -1)
        diff = cv - xv[:, None, :]
        d = torch.einsum("bkd,bkd->bk", diff, diff)
        d = torch.where(torch.from_numpy(valid.reshape(b, kk)).to(x.device), d, torch.full_like(d, float("inf")))
        cand = cand.to(x.device)
        # stable sort: at equal distance the lower reference index wins, as numpy's argmin
        order = torch.argsort(cand, dim=1)
        d, cand = d.gather(1, order), cand.gather(1, order)
        d, pos = torch.sort(d, dim=1, stable=True)
        return d, cand.gather(1, pos)

    @torch.no_grad()
    def search(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(squared distances float64 [B,k], reference indices int64 [B,k]) in the search space."""
        x = self.check_input(x)
        if self.device is not None:
            x = x.to(self.device)
        kk = min(len(self.ref), self.k + max(0, self.rerank))
        ds, js = [], []
        for i in range(0, x.shape[0], self.batch_size):
            xb = x[i:i + self.batch_size].float()
            eng = self._engine(xb.device)
            if eng == "bound":
                d, j = self._bound_search(x[i:i + self.batch_size], self.k)  # exact: no re-rank margin
            elif self.mode == "exact":
                d, j = self._certified(x[i:i + self.batch_size], eng, kk)
            else:
                d, j = self._exact(x[i:i + self.batch_size], self._candidates(xb, eng, kk)[1])
            if bool((j[:, :self.k] < 0).any()):
                raise ProjectorError(f"the {self.mode} index found fewer than k={self.k} neighbours for some "
                                     f"queries: raise nprobe / ef_search, or use mode='exact'")
            ds.append(d[:, :self.k])
            js.append(j[:, :self.k])
        if not ds:
            return (torch.zeros(0, self.k, dtype=torch.float64, device=x.device),
                    torch.zeros(0, self.k, dtype=torch.int64, device=x.device))
        return torch.cat(ds), torch.cat(js)

    def neighbours(self, idx: torch.Tensor, device: "torch.device | str" = "cpu") -> torch.Tensor:
        """The reference images idx [B,k] as float32 [B,k,3,S,S] in [0,1] (uint8 / 255)."""
        b, k = idx.shape
        imgs = np.ascontiguousarray(self.ref.images[idx.reshape(-1).cpu().numpy()])
        return images_to_float(imgs, device).reshape(b, k, 3, self.ref.size, self.ref.size)

    @torch.no_grad()
    def artifacts(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{'rgb': x - mean RGB neighbour, 'space': artifact in the search space, 'index', 'distance'}."""
        dist, idx = self.search(x)
        x = x.to(idx.device).float()
        nb = self.neighbours(idx, x.device)
        out = {"index": idx, "distance": dist, "rgb": x - (nb[:, 0] if self.k == 1 else nb.mean(1))}
        if self.space == "rgb":
            out["space"] = out["rgb"]
        elif self.space == "freq":
            out["space"] = space_image(x, "freq") - space_image(nb.flatten(0, 1), "freq").unflatten(0, nb.shape[:2]).mean(1)
        else:
            ev = space_vectors(nb.flatten(0, 1), "embed", self.encoder).unflatten(0, nb.shape[:2]).mean(1)
            out["space"] = space_vectors(x, "embed", self.encoder) - ev
        return out

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        x = self.check_input(x)
        if x.shape[0] == 0:
            return torch.zeros_like(x, dtype=torch.float32)
        return self.artifacts(x)[self.subtract]

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The mean neighbour in the domain of the residual (RGB image, or log-spectrum)."""
        x = self.check_input(x)
        dom = x.float() if self.subtract == "rgb" else space_image(x.float(), self.space)
        return dom - self.residual(x)
