"""The runner: reader -> decode stage -> mapper -> writer, with per-stage timing.

::

    summary = run(["photos/", "shards/{0000..0099}.tar"], mapper, "out/", spec=spec, workers=2)
    sys.exit(summary.exit_code)

It knows nothing of fingerprints or galleries: the jobs (:mod:`fpfast.jobs`) give it a mapper.

* **reader** - :func:`fpfast.io.sources.iter_sources`, in the main process, in input order:
  ``(key, payload)`` pairs, numbered here ``(index, key, payload)``.
* **decode stage** - turns numbered inputs into :class:`Batch` es (``images``: a tensor
  [B, H, W, 3] on any device, with the inputs' ``indices``, ``keys`` and ``notes``) and
  :class:`Failed` inputs (their error rows). It must yield every input once, as a member of a
  batch or as a failure, and must not hold back inputs of an earlier shard once it has moved on
  to a later one (``shard_of(index)``); a batch holds inputs of one shard. The default, :func:`cpu_decode_stage`, decodes with
  :func:`fpfast.io.decode.decode_item` in ``workers`` processes (:func:`decode_stream`: chunks of
  ``chunksize`` inputs, at most ``2 * workers + 1`` in flight, so memory stays flat) and groups
  the images by shape and dtype (:class:`Batcher`; 16-bit sources stay uint16; the spec's geometry
  applied: ``crop`` by the decoder, ``resize`` here, giving float32 [0, 1] images of
  ``spec.size``; ``none`` keeps the image) into CPU batches of ``batch_size``, flushing partial
  batches at every shard boundary and when more than ``4 * batch_size`` images wait. **Seam for a
  device decoder**: a stage with the same signature that decodes JPEG bytes in batches on the GPU
  (e.g. ``torchvision.io.decode_jpeg(list_of_bytes, device="cuda")``) yields CUDA batches; the
  mapper then receives them where they are, and nothing else changes.
* **mapper** - ``mapper(images, keys) -> {column: values}``: one column per output field, each a
  tensor [B, ...] (left on the batch's device: a GPU batch stays on the GPU through fingerprint,
  embedding and search) or a sequence of B values. Never one dict per image. A mapper with a
  true ``reads_sides`` attribute is called ``mapper(images, keys, sides)``: each image's shorter
  side before the crop (the batch's ``sides``; 0 where the decoder did not say), which a gallery
  of large images compares with its own (:func:`call_mapper`).
* **writer** - :mod:`fpfast.io.writers`. The write stage moves each batch's columns to the host
  (one copy per tensor column and batch) and cuts them into rows; the runner adds ``path`` (the
  input's key), ``error`` (None when fine: null in parquet / jsonl, empty in csv) and ``note`` to
  every row; failed inputs carry only those three. Inputs are cut into shards of ``shard_size`` consecutive inputs; a shard is
  written atomically once all its rows exist; rows inside a shard are in input order and shards
  are numbered by input position, so the output order is the input order. ``resume=True`` skips
  the inputs of finished shards (they are not even decoded).

Exit status (:attr:`RunSummary.exit_code`, and :func:`fpfast.errors.exit_code_for` for a run that
raised): 0 every input gave a row without error; 3 the run completed and some rows carry an
``error``; 2 usage or configuration error, nothing run (bad source pattern, output exists
without resume, resume with another configuration, unknown backend); 1 anything unexpected (a
crash; the output stays resumable). The map is :mod:`fpfast.errors`.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import multiprocessing
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Union

import numpy as np
import torch

from .errors import EXIT_OK, EXIT_ROW_ERRORS
from .io.decode import DEFAULT_MAX_PIXELS, Decoded, decode_item
from .io.limits import DEFAULT_MAX_BYTES
from .io.sources import Item, check_sources, counted_sources, iter_sources, require_inputs
from .io.workers import new_pool
from .io.writers import OutputError, open_writer
from .prepare import apply_geometry
from .progress import Progress
from .spec import FingerprintSpec, load_spec

MAX_WORKER_DEATHS = 100  # a run whose workers die more often than this stops (exit 1)
Columns = dict                                 # column name -> tensor [B, ...] or B values
Mapper = Callable[[torch.Tensor, list], Columns]
STAGES = ("read", "decode", "decode_wait", "batch", "map", "write")


@dataclass
class Batch:
    """Decoded inputs of one shape: ``images`` [B, H, W, 3] (any device) and their bookkeeping;
    ``sides``: each image's shorter side before the crop (None: not known)."""
    indices: list
    keys: list
    notes: list
    images: torch.Tensor
    sides: list | None = None


def call_mapper(mapper: Mapper, b: Batch) -> Columns:
    """``mapper``'s columns of batch ``b``, with the images' sides where it reads them."""
    if getattr(mapper, "reads_sides", False):
        return mapper(b.images, b.keys, b.sides)
    return mapper(b.images, b.keys)


@dataclass
class Failed:
    """An input that could not be read or decoded: its error row."""
    index: int
    key: str
    error: str
    note: str = ""


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
def _decode_chunk(chunk, spec, max_pixels, decode_fn=decode_item):
    return [(i, decode_fn(key, payload, spec, max_pixels)) for i, key, payload in chunk]


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
                  timings: dict | None = None, decode_fn=decode_item) -> Iterator[tuple[int, Decoded]]:
    """``(index, key, payload)`` -> ``(index, Decoded)`` in the same order, ``workers`` processes.
    ``decode_fn(key, payload, spec, max_pixels) -> Decoded``: a module-level function (workers
    import it), :func:`fpfast.io.decode.decode_item` by default."""
    timings = timings if timings is not None else {s: 0.0 for s in STAGES}
    if workers <= 0:
        for i, key, payload in items:
            d = decode_fn(key, payload, spec, max_pixels)
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
                inflight.append((chunk, pool.submit(_decode_chunk, chunk, spec, max_pixels, decode_fn)))
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
                            results += pool.submit(_decode_chunk, [it], spec, max_pixels, decode_fn).result()
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
        if self.spec.geometry == "crop" and self.spec.crops is None and max(image.shape[:2]) > self.spec.size:
            x = torch.from_numpy(image).permute(2, 0, 1)
            return np.ascontiguousarray(apply_geometry(x, self.spec).permute(1, 2, 0).numpy())
        return image

    def add(self, index: int, key: str, note: str, image: np.ndarray, side: int = 0) -> list[Batch]:
        """Queue one decoded image (``side``: its shorter side before the crop, 0 if not known);
        returns the batches that became ready."""
        image = self._shape(image)
        g = (image.shape, image.dtype.str)
        self.groups.setdefault(g, []).append((index, key, note, image, side))
        self.waiting += 1
        out = []
        if len(self.groups[g]) >= self.batch_size:
            out.append(self._take(g))
        while self.waiting > self.max_waiting:
            out.append(self._take(max(self.groups, key=lambda k: len(self.groups[k]))))
        return out

    def _take(self, g) -> Batch:
        members = self.groups.pop(g)
        self.waiting -= len(members)
        return Batch([m[0] for m in members], [m[1] for m in members], [m[2] for m in members],
                     torch.from_numpy(np.stack([m[3] for m in members])), [m[4] for m in members])

    def flush(self) -> list[Batch]:
        return [self._take(g) for g in list(self.groups)]


# ---------------------------------------------------------------------------- the stream
def cpu_decode_stage(spec: FingerprintSpec, batch_size: int = 64, workers: int = 0, chunksize: int = 16,
                     max_pixels: int = DEFAULT_MAX_PIXELS, mp_context=None):
    """The default decode stage (see the module docstring): CPU decode in ``workers`` processes,
    then :class:`Batcher`. Returns ``stage(indexed, shard_of, timings) -> Iterator[Batch | Failed]``."""
    batcher = Batcher(batch_size, spec)

    def stage(indexed: Iterator[tuple[int, str, object]], shard_of: Callable[[int], int],
              timings: dict) -> Iterator[Union[Batch, Failed]]:
        current = None
        for i, d in decode_stream(indexed, spec, workers, chunksize, max_pixels, mp_context, timings):
            s = shard_of(i)
            if current is not None and s != current:   # every input of the earlier shards is decoded
                t0 = time.perf_counter()
                ready = batcher.flush()
                timings["batch"] += time.perf_counter() - t0
                yield from ready
            current = s
            if d.error:
                yield Failed(i, d.key, d.error, d.note)
                continue
            t0 = time.perf_counter()
            ready = batcher.add(i, d.key, d.note, d.image, d.side)
            timings["batch"] += time.perf_counter() - t0
            yield from ready
        t0 = time.perf_counter()
        ready = batcher.flush()
        timings["batch"] += time.perf_counter() - t0
        yield from ready
    return stage


def make_decode_stage(spec: FingerprintSpec, batch_size: int = 64, workers: int = 0, chunksize: int = 16,
                      max_pixels: int = DEFAULT_MAX_PIXELS, mp_context=None, decode_device: str = "cpu"):
    """The decode stage of ``decode_device``: :func:`cpu_decode_stage`, or for a GPU
    :func:`fpfast.device_stage.device_decode_stage` (JPEGs decoded by nvJPEG on it)."""
    if decode_device != "cpu":
        from .device_stage import device_decode_stage
        return device_decode_stage(spec, batch_size, workers, chunksize, max_pixels, mp_context, decode_device)
    return cpu_decode_stage(spec, batch_size, workers, chunksize, max_pixels, mp_context)


def columns_to_host(columns: Columns) -> dict:
    """A mapper's columns with every tensor copied to the host (numpy), once."""
    return {name: col.detach().cpu().numpy() if isinstance(col, torch.Tensor) else col
            for name, col in columns.items()}


def columns_to_rows(columns: Columns, n: int) -> list[dict]:
    """A mapper's columns as ``n`` row dicts: each tensor column copied to the host once."""
    host = columns_to_host(columns)
    for name, col in host.items():
        if len(col) != n:
            raise ValueError(f"mapper column {name!r} has {len(col)} values for a batch of {n}")
    return [{name: col[j] for name, col in host.items()} for j in range(n)]


def run_stream(items: Iterable[Item], mapper: Mapper, writer, *, spec: FingerprintSpec | str | None = None,
               batch_size: int = 64, workers: int = 0, chunksize: int = 16,
               max_pixels: int = DEFAULT_MAX_PIXELS, quiet: bool = False, on_mapper_error: str = "raise",
               mp_context=None, decode_stage=None, decode_device: str = "cpu", total: int | None = None,
               desc: str = "images") -> RunSummary:
    """Run ``items`` through the decode stage -> ``mapper`` -> ``writer`` (see the module docstring).

    ``writer``: an object with ``shard_size``, ``is_done(shard)``, ``write_shard(shard, rows, inputs)``
    and ``close()`` (:func:`fpfast.io.writers.open_writer`). ``on_mapper_error``: ``"raise"`` (a
    failing mapper ends the run; finished shards stay and ``resume`` continues) or ``"rows"``
    (the batch's rows get the exception as their ``error``). ``decode_stage``: replaces
    :func:`cpu_decode_stage` (built from ``spec``, ``batch_size``, ``workers``, ``chunksize``,
    ``max_pixels``, ``mp_context``) or, with ``decode_device="cuda"``,
    :func:`fpfast.device_stage.device_decode_stage` (:func:`make_decode_stage`).
    Progress (:class:`fpfast.progress.Progress`, unless ``quiet``): ``desc`` over ``total`` inputs.
    """
    if on_mapper_error not in ("raise", "rows"):
        raise ValueError(f"on_mapper_error must be 'raise' or 'rows', got {on_mapper_error!r}")
    spec = load_spec(spec)
    stage = decode_stage or make_decode_stage(spec, batch_size, workers, chunksize, max_pixels, mp_context,
                                              decode_device)
    S = writer.shard_size
    summary = RunSummary()
    T = summary.seconds
    t_start = time.perf_counter()
    # shard -> [(indices, keys, notes, error, columns or None)] of mapped batches and failed inputs
    pending: dict[int, list] = collections.defaultdict(list)
    count: dict[int, int] = collections.defaultdict(int)   # shard -> inputs accounted for
    seen: dict[int, int] = collections.defaultdict(int)    # shard -> inputs read
    reading = [0]                                          # shard the reader is in
    bar = Progress(desc, total, unit="img", quiet=quiet)

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
            reading[0] = i // S
            if writer.is_done(i // S):
                summary.skipped += 1
                bar.update(1)
                if hasattr(writer, "note_skipped"):  # the resumed shard must have the same inputs
                    writer.note_skipped(i // S, key)
            else:
                seen[i // S] += 1
                yield i, key, payload
            i += 1

    def add(indices, keys, notes, err, columns) -> None:
        s = indices[0] // S
        if any(i // S != s for i in indices):
            raise ValueError("the decode stage yielded a batch that spans two output shards")
        pending[s].append((indices, keys, notes, err, columns))
        count[s] += len(indices)

    def map_batch(b: Batch) -> None:
        t0 = time.perf_counter()
        try:
            columns, err = call_mapper(mapper, b), None
            if not isinstance(columns, dict):
                raise TypeError(f"a mapper returns {{column: values}}, got {type(columns).__name__}")
        except Exception as e:
            if on_mapper_error == "raise":
                raise
            columns, err = None, f"fingerprinting failed: {type(e).__name__}: {e}"
        T["map"] += time.perf_counter() - t0
        add(b.indices, b.keys, b.notes, err, columns)

    def write_ready(upto_shard: int | None) -> None:
        """Write every shard below ``upto_shard`` (None: all) whose rows are all there."""
        for s in sorted(pending):
            if upto_shard is not None and s >= upto_shard:
                break
            if count[s] < seen[s]:
                continue
            t0 = time.perf_counter()
            rows = {}
            for indices, keys, notes, err, columns in pending[s]:
                values = columns_to_rows(columns, len(keys)) if columns else [{} for _ in keys]
                for i, k, n, v in zip(indices, keys, notes, values):
                    rows[i] = {"path": k, "error": err, "note": n, **v}
            ordered = [rows[i] for i in sorted(rows)]
            writer.write_shard(s, ordered, seen[s])
            T["write"] += time.perf_counter() - t0
            summary.shards += 1
            summary.errors += sum(1 for r in ordered if r.get("error"))
            summary.ok += sum(1 for r in ordered if not r.get("error"))
            del pending[s], seen[s], count[s]

    try:
        for x in stage(indexed(), lambda i: i // S, T):
            if isinstance(x, Failed):
                add([x.index], [x.key], [x.note], x.error, None)
                n = 1
            else:
                map_batch(x)
                n = len(x.keys)
            bar.update(n)
            write_ready(reading[0])
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
        only_keys: set | None = None, **stream_kw) -> RunSummary:
    """Read ``sources``, run the stream, write to ``out`` (or to a ready ``writer``).

    ``only_keys``: decode and map only the inputs with these keys (the others are read past, not
    decoded, and give no row): a second pass over a few of the inputs of a first.

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
    read_kw = {"column": column, "key_column": key_column, "ignored": ignored.append,
               "max_bytes": stream_kw.pop("max_bytes", DEFAULT_MAX_BYTES)}
    if only_keys is not None:
        stream_kw["total"] = len(only_keys)
        items = (it for it in iter_sources(sources, **read_kw) if it.key in only_keys)
    elif stream_kw.get("quiet") or stream_kw.get("total") is not None:
        items = iter_sources(sources, **read_kw)
    else:  # the progress bar's total; the stream goes on from the files the count met
        items, stream_kw["total"] = counted_sources(sources, **read_kw)
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
