"""The stream: reader -> decode workers -> batcher -> mapper -> writer.

::

    summary = run(["photos/", "shards/{0000..0099}.tar"], mapper, "out/", spec=spec, workers=2)
    sys.exit(summary.exit_code)

* **reader** - :func:`fpfast.io.sources.iter_sources`, in the main process, in input order.
* **decode** - :func:`fpfast.io.decode.decode_item` in ``workers`` worker processes
  (``workers=0``: in this process). Chunks of ``chunksize`` inputs go out and come back in input
  order, at most ``2 * workers + 1`` chunks in flight, so memory stays flat however long the stream.
* **batcher** - images grouped by shape (and dtype: 16-bit sources stay uint16) into batches of
  ``batch_size``; the spec's geometry is applied first (``crop`` by the decoder, ``resize`` here,
  giving float32 [0, 1] images of ``spec.size``; ``none`` keeps the image). Partial batches are
  flushed at every shard boundary and when more than ``4 * batch_size`` images wait.
* **mapper** - ``mapper(batch, keys) -> list[dict]`` with ``batch`` a CPU tensor [B, H, W, 3]
  (uint8, or uint16 / float32 as above) and one dict per image. The pipeline adds ``path`` (the
  input's key), ``error`` ("" when fine) and ``note`` to every row; rows of inputs that failed to
  read or decode carry only those three and go straight to the writer.
* **writer** - :mod:`fpfast.io.writers`: inputs are cut into shards of ``shard_size`` consecutive
  inputs; a shard is written atomically once all its rows exist; rows inside a shard are in input
  order and shards are numbered by input position, so the output order is the input order.
  ``resume=True`` skips the inputs of finished shards (they are not even decoded).

Exit status (:attr:`RunSummary.exit_code`, for the CLI):

* ``0`` (:data:`EXIT_OK`) - every input gave a row without error;
* ``2`` (:data:`EXIT_USAGE`) - usage or configuration error, nothing run (bad source pattern,
  output exists without resume, resume with another configuration, unknown backend);
  raised as :class:`fpfast.io.sources.SourceSpecError` / :class:`fpfast.io.writers.OutputError`,
  which :func:`exit_code_for` maps to 2;
* ``3`` (:data:`EXIT_ROW_ERRORS`) - the run completed, and some rows carry an ``error``;
* ``1`` - anything unexpected (a crash; the output stays resumable).
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import multiprocessing
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from .io.decode import DEFAULT_MAX_PIXELS, Decoded, decode_item
from .io.limits import DEFAULT_MAX_BYTES
from .io.sources import Item, SourceSpecError, check_sources, iter_sources, require_inputs
from .io.workers import new_pool
from .io.writers import OutputError, open_writer
from .prepare import apply_geometry
from .spec import FingerprintSpec, SpecError, load_spec

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_ROW_ERRORS = 3

MAX_WORKER_DEATHS = 100  # a run whose workers die more often than this stops (exit 1)
Mapper = Callable[[torch.Tensor, list], list]
STAGES = ("read", "decode", "decode_wait", "batch", "map", "write")


def exit_code_for(exc: BaseException) -> int:
    """2 for usage/config errors (bad sources, unusable output, bad spec), else 1."""
    from .backends import BackendUnavailable
    if isinstance(exc, (SourceSpecError, OutputError, SpecError, BackendUnavailable)):
        return EXIT_USAGE
    return EXIT_FAILURE


@dataclass
class RunSummary:
    inputs: int = 0          # inputs seen in this run (skipped ones included)
    ok: int = 0              # rows written without error in this run
    errors: int = 0          # rows written with an error in this run
    skipped: int = 0         # inputs of finished shards skipped by resume
    ignored: int = 0         # folder entries that are not images (not inputs, not rows)
    shards: int = 0          # shards written in this run
    wall: float = 0.0
    seconds: dict = field(default_factory=lambda: {s: 0.0 for s in STAGES})

    @property
    def images_per_s(self) -> float:
        return (self.ok + self.errors) / self.wall if self.wall > 0 else 0.0

    @property
    def exit_code(self) -> int:
        return EXIT_ROW_ERRORS if self.errors else EXIT_OK

    def format(self) -> str:
        s = self.seconds
        stages = ", ".join(f"{k} {s[k]:.2f}s" for k in STAGES)
        return (f"{self.inputs} inputs: {self.ok} ok, {self.errors} errors, {self.skipped} skipped "
                f"(resume); {self.shards} shards written in {self.wall:.2f}s "
                f"({self.images_per_s:.1f} images/s). Stages: {stages} "
                f"(decode = seconds spent reading and decoding, summed over workers; decode_wait = "
                f"time the stream waited for them)"
                + (f"; {self.ignored} folder entries ignored (not image files)" if self.ignored else ""))


# ---------------------------------------------------------------------------- decode stage
def _decode_chunk(chunk, spec, max_pixels):
    return [(i, decode_item(key, payload, spec, max_pixels)) for i, key, payload in chunk]


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for x in items:
        chunk.append(x)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _default_context():
    # forkserver: workers fork from a clean server that has imported the decoder once (no torch
    # threads or locks inherited from the parent, unlike fork; cheaper than spawn per worker).
    # Like spawn, it needs the main module importable (a script, not stdin).
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["fpfast.io.decode"])
        return ctx
    return multiprocessing.get_context("spawn")


def decode_stream(items: Iterable[tuple[int, str, object]], spec: FingerprintSpec, workers: int = 0,
                  chunksize: int = 16, max_pixels: int = DEFAULT_MAX_PIXELS, mp_context=None,
                  timings: dict | None = None) -> Iterator[tuple[int, Decoded]]:
    """``(index, key, payload)`` -> ``(index, Decoded)`` in the same order, ``workers`` processes."""
    timings = timings if timings is not None else {s: 0.0 for s in STAGES}
    if workers <= 0:
        for i, key, payload in items:
            d = decode_item(key, payload, spec, max_pixels)
            timings["decode"] += d.seconds
            yield i, d
        return
    ctx = mp_context or _default_context()
    chunks = _chunks(iter(items), chunksize)
    max_inflight = 2 * workers + 1
    pool = new_pool(workers, ctx)
    inflight: collections.deque = collections.deque()
    done_chunks, breaks = 0, 0
    try:
        exhausted = False
        while True:
            while not exhausted and len(inflight) < max_inflight:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    exhausted = True
                    break
                inflight.append((chunk, pool.submit(_decode_chunk, chunk, spec, max_pixels)))
            if not inflight:
                return
            chunk, fut = inflight.popleft()
            t0 = time.perf_counter()
            try:
                results = fut.result()
            except cf.process.BrokenProcessPool as e:
                # A worker died (a decoder crash, out of memory). Every chunk in flight is lost;
                # a fresh pool decodes their inputs again one at a time, so that only an input
                # that kills a worker on its own becomes an error row.
                breaks += 1
                if breaks > MAX_WORKER_DEATHS:
                    raise RuntimeError(f"decoder worker processes keep dying ({e}); run with "
                                       f"workers=0 to see the failure in this process") from e
                lost = [chunk] + [c for c, _ in inflight]
                inflight.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool(workers, ctx)
                results, retried_ok, retried_dead = [], 0, 0
                for c in lost:
                    for it in c:
                        try:
                            results += pool.submit(_decode_chunk, [it], spec, max_pixels).result()
                            retried_ok += 1
                        except cf.process.BrokenProcessPool:
                            breaks += 1
                            retried_dead += 1
                            if (retried_dead >= 3 and retried_ok == 0 and done_chunks == 0) \
                                    or breaks > MAX_WORKER_DEATHS:
                                raise RuntimeError(
                                    "decoder worker processes die on every input (cannot start? "
                                    "the main module must be importable, not stdin); run with "
                                    "workers=0 to see the failure in this process") from e
                            msg = ("the decoder worker process died on this input (a crash in the "
                                   "image library or out of memory)")
                            results.append((it[0], Decoded(it[1], None, msg, "", 0.0)))
                            pool.shutdown(wait=False, cancel_futures=True)
                            pool = new_pool(workers, ctx)
            else:
                done_chunks += 1
            timings["decode_wait"] += time.perf_counter() - t0
            for i, d in results:
                timings["decode"] += d.seconds
                yield i, d
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------- batcher
class Batcher:
    """Groups images by (shape, dtype) into batches of ``batch_size``."""

    def __init__(self, batch_size: int, spec: FingerprintSpec, max_waiting: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.spec = batch_size, spec
        self.max_waiting = max_waiting or 4 * batch_size
        self.groups: dict[tuple, list] = {}
        self.waiting = 0

    def _shape(self, image: np.ndarray) -> np.ndarray:
        if self.spec.geometry == "resize":
            x = torch.from_numpy(image).permute(2, 0, 1)[None]
            x = x.float() / (65535.0 if image.dtype == np.uint16 else 255.0)
            return apply_geometry(x, self.spec)[0].permute(1, 2, 0).contiguous().numpy()
        if self.spec.geometry == "crop" and max(image.shape[:2]) > self.spec.size:
            x = torch.from_numpy(image).permute(2, 0, 1)
            return np.ascontiguousarray(apply_geometry(x, self.spec).permute(1, 2, 0).numpy())
        return image

    def add(self, index: int, key: str, note: str, image: np.ndarray) -> list[tuple]:
        image = self._shape(image)
        g = (image.shape, image.dtype.str)
        self.groups.setdefault(g, []).append((index, key, note, image))
        self.waiting += 1
        out = []
        if len(self.groups[g]) >= self.batch_size:
            out.append(self._take(g))
        while self.waiting > self.max_waiting:
            out.append(self._take(max(self.groups, key=lambda k: len(self.groups[k]))))
        return out

    def _take(self, g) -> tuple:
        members = self.groups.pop(g)
        self.waiting -= len(members)
        indices = [m[0] for m in members]
        keys = [m[1] for m in members]
        notes = [m[2] for m in members]
        batch = torch.from_numpy(np.stack([m[3] for m in members]))
        return indices, keys, notes, batch

    def flush(self) -> list[tuple]:
        return [self._take(g) for g in list(self.groups)]


# ---------------------------------------------------------------------------- the stream
def _progress(quiet: bool):
    from tqdm import tqdm
    return tqdm(unit="img", disable=quiet or not sys.stderr.isatty(), file=sys.stderr,
                smoothing=0.1, mininterval=0.5, dynamic_ncols=True)


def run_stream(items: Iterable[Item], mapper: Mapper, writer, *, spec: FingerprintSpec | str | None = None,
               batch_size: int = 64, workers: int = 0, chunksize: int = 16,
               max_pixels: int = DEFAULT_MAX_PIXELS, quiet: bool = False, on_mapper_error: str = "raise",
               mp_context=None) -> RunSummary:
    """Run ``items`` through decode -> batch -> ``mapper`` -> ``writer`` (see the module docstring).

    ``writer``: an object with ``shard_size``, ``is_done(shard)``, ``write_shard(shard, rows, inputs)``
    and ``close()`` (:func:`fpfast.io.writers.open_writer`). ``on_mapper_error``: ``"raise"`` (a
    failing mapper ends the run; finished shards stay and ``resume`` continues) or ``"rows"``
    (the batch's rows get the exception as their ``error``).
    """
    if on_mapper_error not in ("raise", "rows"):
        raise ValueError(f"on_mapper_error must be 'raise' or 'rows', got {on_mapper_error!r}")
    spec = load_spec(spec)
    S = writer.shard_size
    summary = RunSummary()
    T = summary.seconds
    t_start = time.perf_counter()
    pending: dict[int, dict[int, dict]] = collections.defaultdict(dict)  # shard -> index -> row
    seen: dict[int, int] = collections.defaultdict(int)                  # shard -> inputs seen
    batcher = Batcher(batch_size, spec)
    bar = _progress(quiet)

    def indexed() -> Iterator[tuple[int, str, object]]:
        it = iter(items)
        i = 0
        while True:
            t0 = time.perf_counter()
            try:
                key, payload = next(it)
            except StopIteration:
                T["read"] += time.perf_counter() - t0
                return
            T["read"] += time.perf_counter() - t0
            summary.inputs += 1
            if writer.is_done(i // S):
                summary.skipped += 1
                if hasattr(writer, "note_skipped"):  # the resumed shard must have the same inputs
                    writer.note_skipped(i // S, key)
            else:
                seen[i // S] += 1
                yield i, key, payload
            i += 1

    def map_batch(b) -> None:
        indices, keys, notes, batch = b
        t0 = time.perf_counter()
        try:
            rows = mapper(batch, keys)
            if len(rows) != len(keys):
                raise ValueError(f"mapper returned {len(rows)} rows for a batch of {len(keys)}")
            err = ""
        except Exception as e:
            if on_mapper_error == "raise":
                raise
            rows, err = [{} for _ in keys], f"fingerprinting failed: {type(e).__name__}: {e}"
        T["map"] += time.perf_counter() - t0
        for i, k, n, r in zip(indices, keys, notes, rows):
            row = {"path": k, "error": err, "note": n}
            row.update(r)
            pending[i // S][i] = row

    def write_ready(upto_shard: int | None) -> None:
        """Write every shard below ``upto_shard`` (None: all) whose rows are all there."""
        for s in sorted(pending):
            if upto_shard is not None and s >= upto_shard:
                break
            rows = pending[s]
            if len(rows) < seen[s]:
                continue
            t0 = time.perf_counter()
            ordered = [rows[i] for i in sorted(rows)]
            writer.write_shard(s, ordered, seen[s])
            T["write"] += time.perf_counter() - t0
            summary.shards += 1
            summary.errors += sum(1 for r in ordered if r.get("error"))
            summary.ok += sum(1 for r in ordered if not r.get("error"))
            del pending[s], seen[s]

    def flush_batches() -> None:
        t0 = time.perf_counter()
        ready = batcher.flush()
        T["batch"] += time.perf_counter() - t0
        for b in ready:
            map_batch(b)

    current = None
    try:
        for i, d in decode_stream(indexed(), spec, workers, chunksize, max_pixels, mp_context, T):
            s = i // S
            if current is not None and s != current:
                flush_batches()      # every input of the earlier shards has been decoded
                write_ready(s)
            current = s
            if d.error:
                pending[s][i] = {"path": d.key, "error": d.error, "note": d.note}
            else:
                t0 = time.perf_counter()
                ready = batcher.add(i, d.key, d.note, d.image)
                T["batch"] += time.perf_counter() - t0
                for b in ready:
                    map_batch(b)
            bar.update(1)
        flush_batches()
        write_ready(None)
        t0 = time.perf_counter()
        writer.close()
        T["write"] += time.perf_counter() - t0
    finally:
        bar.close()
    summary.wall = time.perf_counter() - t_start
    return summary


def run(sources: Iterable[str] | str, mapper: Mapper, out: str | None = None, *, writer=None,
        spec: FingerprintSpec | str | None = None, column: str | None = None,
        key_column: str | None = None, shard_size: int = 10_000, resume: bool = False,
        overwrite: bool = False, config: dict | None = None, schema=None, kind: str = "rows",
        **stream_kw) -> RunSummary:
    """Read ``sources``, run the stream, write to ``out`` (or to a ready ``writer``).

    ``config`` is stored in the output's manifest and must match on resume; the spec id and the
    source list are added to it; the spec (JSON) goes into every parquet file's schema metadata
    under ``fpfast.spec`` (and ``spec.json`` for ``npy``). ``kind``: ``rows`` (parquet/csv/jsonl) or ``npy`` (extract).
    Other keywords go to :func:`run_stream`.
    """
    spec = load_spec(spec)
    if isinstance(sources, str):
        sources = [sources]
    sources = list(sources)
    check_sources(sources)  # a glob matching nothing is a usage error before anything runs
    ignored: list[str] = []
    items = iter_sources(sources, column=column, key_column=key_column, ignored=ignored.append,
                         max_bytes=stream_kw.pop("max_bytes", DEFAULT_MAX_BYTES))
    items = require_inputs(items, sources, ignored)  # "no inputs" is one error, before any output exists
    if writer is None:
        if out is None:
            raise OutputError("give an output path or a writer")
        cfg = {"spec_id": spec.id, "sources": sources, "column": column, "key_column": key_column}
        cfg.update(config or {})
        from . import __version__
        meta = {"fpfast.spec": spec.to_json(), "fpfast.version": __version__}
        writer = open_writer(out, shard_size, resume, overwrite, cfg, schema, kind, meta)
    summary = run_stream(items, mapper, writer, spec=spec, **stream_kw)
    summary.ignored = len(ignored)
    return summary


def fingerprint_mapper(spec: FingerprintSpec | str | None = None, backend: str = "auto",
                       column: str = "vector", device: str = "cpu") -> Mapper:
    """A mapper computing :func:`fpfast.ops.features.fingerprint_features` per batch; each row
    gets ``column``: the float32 vector as a numpy array (what ``extract`` writes). ``device``:
    where the batch is fingerprinted (``cuda`` copies it there from pinned memory)."""
    from .ops.features import fingerprint_features
    spec = load_spec(spec)
    dev = torch.device(device)
    projector = None
    if spec.projector is not None:  # a heavy projector (manifold / autoencoder / diffusion): load it once
        from .projectors import fingerprint_with_projector, load_projector
        projector = load_projector(spec.projector, device=dev)

    def mapper(batch: torch.Tensor, keys: list) -> list[dict]:
        if dev.type != "cpu":
            batch = batch.pin_memory().to(dev, non_blocking=True)
        with torch.inference_mode():
            if projector is not None:
                v = fingerprint_with_projector(batch, spec, backend=backend, projector=projector, layout="hwc")
            else:
                v = fingerprint_features(batch, spec, backend=backend, layout="hwc")
        v = v.cpu().numpy()
        return [{column: v[j]} for j in range(len(keys))]

    return mapper
