"""The Ray Data engine: the same decode stage and mapper as the local engine, run in Ray actors.

::

    stage = ray_decode_stage(attribute_recipe("G", opts), spec, RayOptions(address=None))
    summary = run(sources, precomputed, "out/", spec=spec, shard_size=10_000, decode_stage=stage)

It plugs into :func:`fpfast.pipeline.run_stream` at its decode-stage seam, so everything around
it is the local engine's: the reader (:func:`fpfast.io.sources.iter_sources`, in the driver, in
input order), the resume skips and key checks, the shard assembly, the writer and its manifest,
the progress bar and the summary. A reader of the output finds the same rows, shards and manifest
entries whichever engine wrote it; only the manifest's shard lines may come in another order (they
follow the order shards complete, and Ray returns blocks out of order).

* **blocks of known keys** - the driver numbers the inputs and cuts them into blocks of at most
  ``block_rows`` consecutive ``(index, key, payload)`` (never across an output shard). Payloads
  are what the reader yields: a path (:class:`~fpfast.io.sources.FileRef`, read by the actor:
  on a cluster the files must be where the workers see them), bytes (tar members, parquet
  cells: they travel through Ray's object store) or a read error. One Ray row holds one block.
  The driver cuts every block before Ray starts, so it holds the inputs still to do (their
  payloads) in memory: run very large sets in slices.
* **actors** - ``map_batches`` with :class:`MapActor`: it builds the job's mapper once from a
  *recipe* (:mod:`fpfast.jobs.recipes`: loads the spec, the compiled op, the gallery and its
  embedding) and runs, per block, the local engine's decode stage
  (:func:`fpfast.pipeline.make_decode_stage`: the CPU one, or the nvJPEG one with ``--decode cuda``,
  checked in the actor, on its GPU; the same decoder, the same error rows, the same batcher) and
  the mapper. Columns come back on the host (:func:`fpfast.pipeline.columns_to_host`), one packet
  per block, pickled once by Ray. One GPU per actor when the cluster has GPUs, one CPU otherwise;
  as many actors as the cluster has GPUs (or CPUs), unless ``actors`` says otherwise; ``--decode
  cuda`` on actors without a GPU is refused before any actor starts.
* **exactly once** - Ray restarts a dead actor and retries its task (Ray Data's defaults); the
  driver keeps the first packet of every input and drops a retried duplicate, and a run that
  ends without a row for some input raises instead of writing a short shard.
* **the driver's mapper** is :func:`precomputed`: the batches it receives already hold the columns.

Timings in the summary: ``decode``, ``batch`` and ``map`` are the actors' seconds (summed over
actors), ``decode_wait`` the driver's wait for them, ``read`` and ``write`` the driver's.
Ray's own logs and progress bars stay hidden unless ``verbose``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from ..io.decode import DEFAULT_MAX_PIXELS
from ..pipeline import STAGES, Batch, Failed, Mapper, call_mapper, columns_to_host, make_decode_stage
from . import DEFAULT_BLOCK_ROWS, require_ray


@dataclass
class RayOptions:
    """Where and how wide the Ray engine runs."""

    address: str | None = None   # None: start a Ray of its own here; "auto" or HOST:PORT: join a cluster
    actors: int = 0              # 0: one per GPU of the cluster, else one per CPU
    verbose: bool = False        # show Ray's logs and progress bars
    gpus: bool = True            # GPU actors when the cluster has GPUs (False: CPU actors, e.g. --device cpu)
    block_rows: int = DEFAULT_BLOCK_ROWS


def precomputed(columns: dict, keys: list) -> dict:
    """The driver-side mapper of the Ray engine: the actors computed the columns already."""
    return columns


def connect(opts: RayOptions):
    """``(ray, started)``: joins ``opts.address`` (or starts a local Ray) unless this process is
    connected already; ``started`` says whether :func:`disconnect` should shut it down."""
    ray = require_ray()
    if ray.is_initialized():
        _quiet_ray_data(ray, opts.verbose)
        return ray, False
    level = logging.INFO if opts.verbose else logging.ERROR
    kw = {"log_to_driver": opts.verbose, "logging_level": level}
    if opts.address is None:
        kw["include_dashboard"] = False
    # "local": always a Ray of its own (address=None would join a Ray found running here, or hang
    # on a stale /tmp/ray/ray_current_cluster of one that died)
    ray.init(address=opts.address or "local", **kw)
    _quiet_ray_data(ray, opts.verbose)
    return ray, True


@contextlib.contextmanager
def ray_logs_aside(verbose: bool = False):
    """Ray's C++ core writes its logs to this process's file descriptor 2, whatever Python's
    logging says: unless ``verbose``, point descriptor 2 at the null device for the block, and
    ``sys.stderr`` (progress, summary, errors) at the terminal's stderr as before."""
    if verbose:
        yield
        return
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    old = sys.stderr
    try:
        python_writes_fd2 = old.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a captured stderr (tests): leave it be
        python_writes_fd2 = False
    if python_writes_fd2:
        sys.stderr = open(saved, "w", buffering=1, encoding=old.encoding, errors=old.errors, closefd=False)
    os.dup2(null, 2)
    try:
        with warnings.catch_warnings():  # Ray Data's advice (actor pool sizing...) goes to sys.stderr
            warnings.filterwarnings("ignore", module=r"ray(\.|$)")
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        if python_writes_fd2:
            sys.stderr.close()
            sys.stderr = old
        os.close(saved)
        os.close(null)


def _quiet_ray_data(ray, verbose: bool) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = verbose
    ctx.print_on_execution_start = verbose
    if not verbose:
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)


def actor_resources(ray, opts: RayOptions) -> tuple[int, dict]:
    """``(actors, per-actor resources)`` from the cluster: GPU actors when it has GPUs (and
    ``opts.gpus``); CPU actors
    take one CPU each, or their share when ``opts.actors`` asks for more actors than CPUs."""
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), float(res.get("CPU", 1))
    if gpus > 0 and opts.gpus:
        n = opts.actors or gpus
        return n, {"num_gpus": min(1.0, gpus / n)}  # more actors than GPUs share them
    n = opts.actors or max(1, int(cpus))
    return n, {"num_cpus": min(1.0, cpus / n)}


class MapActor:
    """One Ray actor: the job's mapper built once, then decode + map per block (module docstring)."""

    def __init__(self, recipe: Callable[[], Mapper], spec, batch_size: int, max_pixels: int, decode_device: str):
        from ..jobs.options import resolve_decode
        self.stage = make_decode_stage(spec, batch_size, 0, 16, max_pixels, None, resolve_decode(decode_device))
        self.mapper = recipe()

    def __call__(self, batch: dict) -> dict:
        packets = np.empty(len(batch["block"]), dtype=object)  # filled one by one: numpy would unpack tuples
        for j, block in enumerate(batch["block"]):
            packets[j] = self.run_block(block)
        return {"packet": packets}

    def run_block(self, block: bytes) -> tuple[list, dict]:
        """A pickled block of ``(index, key, payload)`` -> ``(results, timings)``: :class:`Batch` es
        (their columns on the host in ``images``) and :class:`Failed` inputs."""
        timings = {s: 0.0 for s in STAGES}
        results = []
        # a block holds inputs of one output shard (_blocks): one shard for the stage
        for x in self.stage(iter(pickle.loads(block)), lambda i: 0, timings):
            if isinstance(x, Failed):
                results.append(x)
                continue
            t0 = time.perf_counter()
            columns = call_mapper(self.mapper, x)
            if not isinstance(columns, dict):
                raise TypeError(f"a mapper returns {{column: values}}, got {type(columns).__name__}")
            host = columns_to_host(columns)
            timings["map"] += time.perf_counter() - t0
            results.append(Batch(x.indices, x.keys, x.notes, host, x.sides))
        return results, timings


def _blocks(indexed: Iterator, shard_of: Callable[[int], int], block_rows: int) -> Iterator[list]:
    block: list = []
    for item in indexed:
        if block and (len(block) >= block_rows or shard_of(block[0][0]) != shard_of(item[0])):
            yield block
            block = []
        block.append(item)
    if block:
        yield block


def ray_decode_stage(recipe: Callable[[], Mapper], spec, opts: RayOptions | None = None, *,
                     batch_size: int = 64, max_pixels: int = DEFAULT_MAX_PIXELS, decode_device: str = "cpu"):
    """A decode stage for :func:`fpfast.pipeline.run_stream` that decodes and maps in Ray actors
    (module docstring); pair it with the mapper :func:`precomputed`. ``recipe()`` builds the
    job's mapper in each actor (it must pickle); ``decode_device`` is checked there."""
    opts = opts or RayOptions()

    def stage(indexed: Iterator, shard_of: Callable[[int], int], timings: dict) -> Iterator:
        blocks, n_inputs = [], 0
        for b in _blocks(indexed, shard_of, opts.block_rows):
            blocks.append(pickle.dumps(b, protocol=5))
            n_inputs += len(b)
        if not blocks:
            return
        ray, started = connect(opts)
        try:
            n_actors, resources = actor_resources(ray, opts)
            if decode_device != "cpu" and "num_gpus" not in resources:
                from ..backends import BackendUnavailable
                raise BackendUnavailable(f"--decode {decode_device}: the Ray actors get no GPU ("
                                         + ("--device cpu" if not opts.gpus else "the cluster has none")
                                         + "); use --decode cpu")
            ds = ray.data.from_items([{"block": b} for b in blocks], override_num_blocks=len(blocks))
            blocks.clear()  # the object store holds them now
            ds = ds.map_batches(MapActor, fn_constructor_args=(recipe, spec, batch_size, max_pixels, decode_device),
                                batch_size=1, batch_format="numpy", concurrency=n_actors, **resources)
            yield from _collect(ds, timings, n_inputs)
        finally:
            if started:
                ray.shutdown()
    return stage


def _collect(ds, timings: dict, n_inputs: int) -> Iterator:
    """The actors' packets as :class:`Batch` (columns in ``images``) and :class:`Failed` items,
    each input once: a packet retried by Ray after an actor died is dropped."""
    done: set[int] = set()
    batches = iter(ds.iter_batches(batch_size=None, batch_format="numpy"))
    while True:
        t0 = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            break
        finally:
            timings["decode_wait"] += time.perf_counter() - t0
        for results, seconds in batch["packet"]:
            indices = {i for x in results for i in ([x.index] if isinstance(x, Failed) else x.indices)}
            if indices <= done:
                continue  # a retried block whose first packet arrived
            if indices & done:
                raise RuntimeError("a Ray block came back with some of its inputs done already")
            done |= indices
            for s in ("decode", "batch", "map"):
                timings[s] += seconds[s]
            yield from results
    if len(done) != n_inputs:
        raise RuntimeError(f"the Ray engine returned {len(done)} of {n_inputs} inputs")
