"""The jobs the CLI runs, as plain functions: fingerprint sources, enroll, attribute, evaluate.

The CLI only parses options and prints; every step here is usable from Python on its own.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from .gallery import Gallery, GalleryError
from .io.decode import DEFAULT_MAX_PIXELS
from .io.limits import DEFAULT_MAX_BYTES
from .pipeline import RunSummary, fingerprint_mapper, run
from .spec import FingerprintSpec, load_spec


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from .backends import BackendUnavailable
        raise BackendUnavailable("--device cuda: torch sees no CUDA GPU here (use --device cpu or auto)")
    return device


@dataclass
class StreamOptions:
    """How images flow: the options every streaming command shares."""

    backend: str = "auto"
    device: str = "auto"
    batch_size: int = 64
    workers: int = 0
    quiet: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    precision: str = "auto"      # learned-embedding inference: auto (fp16 on CUDA) | fp32 | fp16 | bf16
    compile: bool = False        # torch.compile the learned embedding's network
    max_bytes: int = DEFAULT_MAX_BYTES  # the read cap of every input

    def stream_kw(self) -> dict:
        return {"batch_size": self.batch_size, "workers": self.workers, "quiet": self.quiet,
                "max_pixels": self.max_pixels, "max_bytes": self.max_bytes}


def check_backend(opts: StreamOptions) -> str:
    """The device ``opts`` runs on, after checking that ``opts.backend`` can run there: a named
    backend that cannot is a usage error now, before any output is opened (not at the first batch)."""
    from .backends import resolve
    device = resolve_device(opts.device)
    if opts.backend != "auto":
        resolve(opts.backend, device)
    return device


class CollectWriter:
    """An in-memory writer for the pipeline: keeps every row, in input order."""

    shard_size = 1 << 62

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def is_done(self, shard: int) -> bool:
        return False

    def write_shard(self, shard: int, rows: list[dict], inputs: int | None = None) -> None:
        self.rows.extend(rows)

    def close(self) -> None:
        pass


@dataclass
class Fingerprints:
    vectors: np.ndarray          # [N, D] float32, rows that decoded
    keys: list[str]              # their input keys
    errors: list[dict]           # rows that failed: {"path", "error", ...}
    summary: RunSummary


def embedding_mapper(embedder, backend: str = "auto", column: str = "vector", device: str = "cpu",
                     precision: str = "auto", compile: bool = False):
    """A pipeline mapper computing a learned embedding per batch (rows like :func:`fingerprint_mapper`)."""
    from .embed.model import resolve_precision
    resolve_precision(precision, torch.device(device))  # a bad choice fails before the stream starts

    def mapper(batch: torch.Tensor, keys: list) -> list[dict]:
        v = embedder.embed(batch, device=device, backend=backend, layout="hwc", precision=precision,
                           compile=compile)
        return [{column: v[j]} for j in range(len(keys))]
    return mapper


def vector_mapper(spec: FingerprintSpec, opts: StreamOptions, embedder=None, column: str = "vector"):
    """The mapper producing ``spec``'s vectors: handcrafted, or ``embedder``'s when the spec names
    a learned embedding (whose identity must then be ``embedder``'s)."""
    device = check_backend(opts)
    if spec.embedding is None:
        if embedder is not None:
            raise ValueError("an embedder was given for a handcrafted spec")
        return fingerprint_mapper(spec, opts.backend, column=column, device=device)
    if embedder is None:
        raise ValueError("this spec's vectors are a learned embedding: pass the gallery's embedder "
                         "(Gallery.embedder())")
    if embedder.identity != spec.embedding["identity"]:
        raise ValueError(f"embedder {embedder.identity[:16]}... is not the spec's embedding "
                         f"{spec.embedding['identity'][:16]}...")
    return embedding_mapper(embedder, opts.backend, column=column, device=device, precision=opts.precision,
                            compile=opts.compile)


def fingerprint_sources(sources, spec: FingerprintSpec | str | None, opts: StreamOptions,
                        embedder=None, **source_kw) -> Fingerprints:
    """Fingerprint every image of ``sources`` into memory (enrollment, eval): the spec's
    handcrafted vector, or ``embedder``'s embedding for a spec that names one."""
    spec = load_spec(spec)
    w = CollectWriter()
    mapper = vector_mapper(spec, opts, embedder)
    summary = run(sources, mapper, writer=w, spec=spec, **source_kw, **opts.stream_kw())
    ok = [r for r in w.rows if not r.get("error")]
    vecs = np.stack([r["vector"] for r in ok]).astype(np.float32) if ok else np.zeros((0, spec.dim), np.float32)
    return Fingerprints(vecs, [r["path"] for r in ok], [r for r in w.rows if r.get("error")], summary)


def gallery_fingerprints(gallery: Gallery, sources, opts: StreamOptions, **source_kw) -> Fingerprints:
    """:func:`fingerprint_sources` in the gallery's vector space (its embedding when it has one)."""
    return fingerprint_sources(sources, gallery.spec, opts, embedder=gallery.embedder(), **source_kw)


def image_sources(sources, spec: FingerprintSpec, opts: StreamOptions, **source_kw):
    """(uint8 HxWx3 images as the pipeline hands them over (decoded, in the spec's geometry),
    keys, error rows) of ``sources``: what training reads."""
    w = CollectWriter()

    def mapper(batch: torch.Tensor, keys: list) -> list[dict]:
        b = batch.numpy()
        return [{"image": b[j]} for j in range(len(keys))]

    run(sources, mapper, writer=w, spec=spec, **source_kw, **opts.stream_kw())
    ok = [r for r in w.rows if not r.get("error")]
    return [r["image"] for r in ok], [r["path"] for r in ok], [r for r in w.rows if r.get("error")]


def train_gallery(gallery: Gallery, root: str, opts: StreamOptions, *, epochs: int | None = None,
                  holdout: float = 0.2, frr: float = 0.05, seed: int = 0, handcrafted: bool | None = None,
                  normalize: str = "none", arch: dict | None = None, fine_tune: bool = False,
                  calibrate_on: str = "augmented", log=None, **train_opts):
    """Train a learned embedding on the labelled folders ``root/<model>/`` (one per enrolled
    model; extra folders are enrolled as new models), then rebuild ``gallery`` in the embedding's
    space: every folder image embedded, the same ``holdout`` split as :func:`enroll` (held-out
    images are not trained on: they calibrate the open-set threshold), refit, recalibrate,
    save (atomic; the handcrafted vectors are replaced). ``fine_tune``: start from the gallery's
    current embedding (e.g. after enrolling a new model with it frozen) instead of from scratch;
    ``handcrafted=None``: the current embedding's choice, else off. ``calibrate_on``: ``clean``
    held-out images, or ``augmented``: those plus one copy of each under the training
    augmentations (JPEG, down-scaling, crops), so that re-encoded queries of known models are not
    all answered 'unknown'. Returns (new gallery, summary dict)."""
    if calibrate_on not in ("clean", "augmented"):
        raise ValueError(f"calibrate_on must be 'clean' or 'augmented', got {calibrate_on!r}")
    from .embed import train_embedding
    init = gallery.embedder() if fine_tune else None
    if fine_tune and init is None:
        raise ValueError("--fine-tune needs a gallery that already has a learned embedding "
                         "(train one first: fpfast train GALLERY --from-folders ROOT)")
    if handcrafted is None:
        handcrafted = bool(init is not None and init.arch["handcrafted_dim"])
    folders = model_folders(root)
    missing = sorted(set(gallery.models()) - set(folders))
    if missing:
        raise ValueError(f"--from-folders {root} lacks folders of enrolled models {missing}: training "
                         "re-enrolls every model from its images, one sub-folder per model")
    base = gallery.spec.handcrafted()
    quiet = StreamOptions(**{**opts.__dict__, "quiet": True})
    data, errors = {}, 0
    for name, folder in folders.items():
        imgs, keys, errs = image_sources([folder], base, quiet)
        errors += len(errs)
        if not imgs:
            raise ValueError(f"model {name!r}: no image could be read from {folder}")
        keep, hold = split_holdout(len(imgs), holdout, seed)
        data[name] = (imgs, keys, keep, hold)
    tr_x = [data[m][0][i] for m in data for i in data[m][2]]
    tr_y = [m for m in data for _ in data[m][2]]
    if epochs is not None:
        train_opts["epochs"] = epochs
    dev = resolve_device(opts.device)
    emb, history = train_embedding(tr_x, tr_y, base, arch=arch, handcrafted=handcrafted, device=dev,
                                   backend=opts.backend, log=log, seed=seed, init=init, **train_opts)
    g = gallery.with_embedding(emb)
    for name, (imgs, keys, keep, hold) in data.items():
        groups, order = _same_shape_groups(imgs)
        vecs = np.concatenate([emb.embed(torch.from_numpy(np.stack(grp)), device=dev, layout="hwc",
                                         precision=opts.precision) for grp in groups])
        v = np.empty_like(vecs)
        v[order] = vecs
        g.add(name, v[keep], [keys[i] for i in keep])
        if len(hold):
            g.add_holdout(name, v[hold])
            if calibrate_on == "augmented":
                g.add_holdout(name, _augmented_embeddings(emb, [imgs[i] for i in hold], base, dev, seed,
                                                          opts.precision))
    cal = finish_enrollment(g, normalize, frr)
    return g, {"models": len(data), "trained_on": len(tr_x), "errors": errors, "history": history,
               "calibrated": bool(cal), "identity": emb.identity, "dim": emb.dim}


def _augmented_embeddings(emb, imgs: list, spec: FingerprintSpec, device: str, seed: int,
                          precision: str = "auto") -> np.ndarray:
    """Embeddings of ``imgs`` after one draw of the embedding's training augmentations each."""
    from .embed.train import DEFAULT_TRAIN, augment_batch
    opts = {**DEFAULT_TRAIN, **{k: v for k, v in emb.config.get("training", {}).items() if k in DEFAULT_TRAIN},
            "patch": 0}  # queries are embedded whole, so are their calibration copies
    rng = np.random.default_rng([seed, 0xCA1])
    out = []
    for s in range(0, len(imgs), 64):
        chunk = imgs[s:s + 64]
        base = min(min(im.shape[:2]) for im in chunk)
        xb = augment_batch(chunk, base, spec.min_size, rng, opts)
        out.append(emb.embed(torch.from_numpy(xb), device=device, layout="hwc", precision=precision))
    return np.concatenate(out)


def _same_shape_groups(imgs: list) -> tuple[list[list], np.ndarray]:
    """Images grouped by shape (to stack), and the original index of each image in group order."""
    groups: dict[tuple, list[int]] = {}
    for i, im in enumerate(imgs):
        groups.setdefault(im.shape, []).append(i)
    order = np.array([i for ids in groups.values() for i in ids], np.int64)
    return [[imgs[i] for i in ids] for ids in groups.values()], order


def model_folders(root: str) -> dict[str, str]:
    """{model name: folder} for every sub-folder of ``root`` (sorted)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--from-folders {root}: not a directory")
    subs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not subs:
        raise FileNotFoundError(f"--from-folders {root}: no sub-folders (one per model expected)")
    return {d: os.path.join(root, d) for d in subs}


def open_or_create(path: str, spec: FingerprintSpec | None, normalize: str, index: str) -> Gallery:
    """Load the gallery at ``path`` (checking ``spec`` if one was asked for) or create it."""
    if os.path.exists(os.path.join(path, "gallery.json")):
        return Gallery.load(path, spec)
    if os.path.exists(path) and os.listdir(path):
        raise GalleryError(f"{path} exists, is not empty and holds no gallery.json: refusing to write there")
    return Gallery.create(path, load_spec(spec), normalize=normalize, index=index)


def split_holdout(n: int, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(enroll ids, held-out ids): ``frac`` of n held out for calibration, none when n < 10."""
    idx = np.random.default_rng(seed).permutation(n)
    k = int(round(n * frac)) if n >= 10 else 0
    return np.sort(idx[k:]), np.sort(idx[:k])


def enroll(gallery: Gallery, model: str, fp: Fingerprints, holdout: float = 0.2, seed: int = 0) -> dict:
    """Add a model's fingerprints; ``holdout`` of them are kept apart for open-set calibration."""
    if len(fp.keys) == 0:
        first = f" (first: {fp.errors[0]['path']}: {fp.errors[0]['error']})" if fp.errors else ""
        raise ValueError(f"model {model!r}: none of its {len(fp.errors)} input(s) could be read{first}; "
                         f"fix or remove them, or leave the model out")
    keep, hold = split_holdout(len(fp.keys), holdout, seed)
    added = gallery.add(model, fp.vectors[keep], [fp.keys[i] for i in keep], skip_known=True)
    held = gallery.add_holdout(model, fp.vectors[hold], [fp.keys[i] for i in hold], skip_known=True) \
        if len(hold) and model in gallery.models() else 0
    return {"model": model, "enrolled": added, "held_out": held, "errors": len(fp.errors),
            "skipped": len(fp.keys) - added - held}


def finish_enrollment(gallery: Gallery, normalize: str | None, frr: float) -> dict:
    """Refit the normaliser on everything enrolled, recalibrate on every held-out sample, save."""
    gallery.fit(normalize)
    cal = gallery.recalibrate(frr)
    gallery.save()
    return cal


def attribute_mapper(gallery: Gallery, opts: StreamOptions, method: str = "knn", k: int = 10, top: int = 3):
    """A pipeline mapper: fingerprint a batch, look it up, one row per image."""
    fp = vector_mapper(gallery.spec, opts, gallery.embedder())

    def mapper(batch: torch.Tensor, keys: list) -> list[dict]:
        vecs = np.stack([r["vector"] for r in fp(batch, keys)])
        a = gallery.attribute(vecs, method=method, k=k, top=top)
        rows = []
        for i in range(len(keys)):
            row = {"model": str(a.model[i]), "score": float(a.score[i]),
                   "distance": float(a.distance[i]), "predicted": str(a.predicted[i])}
            pairs = list(a.top[i][:top]) + [("", float("nan"))] * (top - len(a.top[i][:top]))
            for j, (name, dist) in enumerate(pairs):
                row[f"top{j + 1}_model"] = str(name)
                row[f"top{j + 1}_distance"] = float(dist)
            rows.append(row)
        return rows

    return mapper


def attribute_schema(top: int = 3):
    """The columns of ``attribute`` output, fixed up front so that an output whose rows all failed
    still has every column (model, score, distance, top-k) for pandas and the other readers."""
    import pyarrow as pa
    fields = [("path", pa.string()), ("error", pa.string()), ("note", pa.string()), ("model", pa.string()),
              ("score", pa.float64()), ("distance", pa.float64()), ("predicted", pa.string())]
    for j in range(1, top + 1):
        fields += [(f"top{j}_model", pa.string()), (f"top{j}_distance", pa.float64())]
    return pa.schema(fields)


PROJECTOR_KINDS = ("manifold", "autoencoder", "diffusion")


def resolve_spec(value: "str | FingerprintSpec | None") -> FingerprintSpec:
    """A ``--spec`` value: a preset name, a JSON file, or ``KIND:PATH[@PRESET]`` for a heavy
    projector (``manifold:refset/``, ``autoencoder:vae_dir``, ``diffusion:unet_dir@npr``): the
    projector is loaded from PATH and recorded, with its identity hash, in the spec."""
    if isinstance(value, str) and value.split(":", 1)[0] in PROJECTOR_KINDS and ":" in value:
        kind, rest = value.split(":", 1)
        path, _, base = rest.partition("@")
        from . import projectors
        cls = {"manifold": "ManifoldProjector", "autoencoder": "AutoencoderProjector",
               "diffusion": "DiffusionProjector"}[kind]
        proj = getattr(projectors, cls)(path, device="cpu")
        spec = load_spec(base or None)
        ref = getattr(proj, "ref", None)
        if ref is not None and getattr(ref, "size", None):
            spec = spec.replace(size=int(ref.size))  # the reference set fixes the working size
        return proj.spec(spec)
    return load_spec(value)
