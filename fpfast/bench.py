"""Kernel benchmark harness: time fingerprint_features on every usable backend, with the ratios
that give the numbers meaning (vs the torch reference, vs torch.compile of it, vs the memory floor),
into one long-format CSV and a Markdown table rendered from it.

Used by ``benchmarks/bench_kernels.py`` (``python -m benchmarks.bench_kernels``), by
``benchmarks/test_bench_kernels.py`` (pytest-benchmark) and, later, by an ``fpfast bench`` CLI.

Timing: warm-up calls first, then the median of ``repeats`` calls, the input batch rotated among
copies that together exceed the last-level cache (CPU: time.perf_counter; GPU: CUDA events around
each call). The floor is the time to merely read the same uint8 bytes once (CPU: numpy ``max`` over
the buffer, one thread; GPU: a device-to-device copy into a buffer made once).
"""
from __future__ import annotations

import csv
import datetime as _dt
import importlib.metadata
import math
import os
import platform
import statistics
import time
from typing import Callable

import torch

from . import __version__, backends
from .ops import features as features_op
from .ops.features import fingerprint_features
from .reference import fingerprint as reference_fingerprint
from .spec import FingerprintSpec

COLUMNS = ["run_id", "op", "backend", "device", "size", "batch", "threads", "median_s", "images_per_s",
           "input_gb_per_s", "vs_torch", "vs_compile", "floor_fraction", "repeats", "load_avg", "torch",
           "triton", "fpfast", "date", "note"]
FLOOR = "floor"
DEFAULT_SIZES = (64, 256, 512)
CPU_BATCHES = {64: 256, 256: 32, 512: 8}      # a few MB of uint8 per call
GPU_BATCHES = {64: 4096, 256: 512, 512: 128}  # ~50-100 MB per call: fills an H100
ROTATE_BYTES = 128 << 20                      # inputs rotated over > 2x a 32-64 MB LLC / 50 MB L2


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return ""


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            name = next(l.split(":", 1)[1].strip() for l in fh if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name} x{os.cpu_count()}"


def backends_for(device: str) -> list[str]:
    """The fused backends of fingerprint_features usable on ``device`` here (torch excluded); on a GPU
    also the CUDA-graph variants ("cuda.graph", "triton.graph") and the cuda kernel with the torch
    post stage ("cuda.torchpost": what the fused post kernel replaced)."""
    out = [b for b in features_op.IMPLEMENTED if b != "torch" and backends.why_unusable(b, device) is None]
    if device == "cuda":
        out += [f"{b}.graph" for b in ("cuda", "triton") if b in out]
        if "cuda" in out:
            out.append("cuda.torchpost")
    return out


def make_runner(backend: str, spec: FingerprintSpec) -> Callable[[torch.Tensor], torch.Tensor]:
    """fn(images) for a backend name: torch, torch.compile, a fused backend, or the floor."""
    if backend == "torch.compile":
        return torch.compile(lambda x: reference_fingerprint(x, spec))
    if backend == FLOOR:
        out = {}

        def floor(x):  # GPU: a device-to-device copy of the bytes; CPU: read every byte once
            if not x.is_cuda:
                return x.numpy().max()
            buf = out.get(x.shape)
            if buf is None:
                buf = out[x.shape] = torch.empty_like(x)
            return buf.copy_(x)
        return floor
    if backend.endswith(".graph"):
        from .ops.graph import fused_op
        ops = {}

        def graphed(x):  # the batch is already in the graph's static input (a producer writes there)
            op = ops.get(x.shape)
            if op is None:
                op = ops[x.shape] = fused_op(x, spec, backend=backend[:-len(".graph")])
                if not op.captured:
                    raise RuntimeError(f"CUDA graph capture failed: {op.error}")
                op.input.copy_(x)
            return op(op.input)
        return graphed
    if backend.endswith(".torchpost"):
        return lambda x: fingerprint_features(x, spec, backend=backend[:-len(".torchpost")], post="torch")
    return lambda x: fingerprint_features(x, spec, backend=backend)


def make_inputs(size: int, batch: int, device: str, seed: int = 0) -> list[torch.Tensor]:
    """Random uint8 HWC batches [B, S, S, 3] (as decoded), enough copies to exceed the caches."""
    g = torch.Generator().manual_seed(seed)
    nbytes = batch * size * size * 3
    copies = max(2, min(32, math.ceil(ROTATE_BYTES / max(nbytes, 1))))
    base = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=g).to(device)
    return [base.roll(k, dims=0).contiguous() if k else base for k in range(copies)]


def time_fn(fn: Callable, inputs: list[torch.Tensor], repeats: int, warmup: int) -> float:
    """Median seconds of one call, inputs rotated; warm-up calls first (compilation, caches)."""
    for k in range(warmup):
        fn(inputs[k % len(inputs)])
    times = []
    if inputs[0].is_cuda:
        torch.cuda.synchronize()
        for k in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(inputs[(warmup + k) % len(inputs)])
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    else:
        for k in range(repeats):
            t0 = time.perf_counter()
            fn(inputs[(warmup + k) % len(inputs)])
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(sizes=DEFAULT_SIZES, device: str = "cpu", batches: dict | None = None, repeats: int = 5,
        warmup: int = 1, slow_repeats: int | None = None, compile: bool = True, run_id: str | None = None,
        note: str = "", log: Callable[[str], None] = print, compile_sizes=None) -> list[dict]:
    """Benchmark rows for every size: torch, torch.compile, each fused backend, the floor.

    ``slow_repeats``: repeats for the two torch baselines (default ``repeats``), which are the slow
    ones on a CPU. ``compile_sizes``: the sizes torch.compile runs at (default: all; compiling
    takes tens of seconds per shape).
    """
    batches = batches or (GPU_BATCHES if device == "cuda" else CPU_BATCHES)
    now = _dt.datetime.now(_dt.timezone.utc)
    run_id = run_id or now.strftime("%Y%m%dT%H%M%SZ")
    common = {"run_id": run_id, "device": device_name(device), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "triton": _version("triton"), "fpfast": __version__,
              "date": now.date().isoformat(), "note": note}
    omp_env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
                       if k in os.environ)
    if omp_env:  # the OpenMP wait policy alone can change CPU timings ~10x on a loaded machine
        common["note"] = "; ".join(s for s in (note, omp_env) if s)
    names = ["torch"] + (["torch.compile"] if compile else []) + backends_for(device) + [FLOOR]
    rows = []
    for size in sizes:
        batch = batches[size]
        spec = FingerprintSpec(size=size)
        inputs = make_inputs(size, batch, device)
        nbytes = batch * size * size * 3
        times: dict[str, float] = {}
        for name in names:
            if name == "torch.compile" and compile_sizes is not None and size not in compile_sizes:
                continue
            reps = slow_repeats if (slow_repeats and name in ("torch", "torch.compile")) else repeats
            extra = ""
            try:
                t = time_fn(make_runner(name, spec), inputs, reps, warmup)
            except Exception as e:  # a failed torch.compile is a result to report, not a crash
                t, extra = float("nan"), f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
            times[name] = t
            log(f"{size:>4}^2 x{batch:<4} {name:<14} {t * 1e3:10.2f} ms  {extra}")
            rows.append({**common, "op": "fingerprint_features", "backend": name, "size": size, "batch": batch,
                         "median_s": t, "images_per_s": batch / t, "input_gb_per_s": nbytes / t / 1e9,
                         "repeats": reps, "load_avg": round(os.getloadavg()[0], 2),
                         "note": "; ".join(s for s in (common["note"], extra) if s)})
        for r in rows[-len(times):]:
            t = r["median_s"]
            r["vs_torch"] = times["torch"] / t
            r["vs_compile"] = times.get("torch.compile", float("nan")) / t
            r["floor_fraction"] = times[FLOOR] / t
        if "cpp" in names:
            for r in cpp_stage_rows(spec, inputs, repeats, warmup, common, log):
                r["floor_fraction"] = times[FLOOR] / r["median_s"]
                rows.append(r)
    return rows


def cpp_stage_rows(spec: FingerprintSpec, inputs: list[torch.Tensor], repeats: int, warmup: int, common: dict,
                   log: Callable[[str], None] = print) -> list[dict]:
    """Where the cpp path's time goes: the fused kernel (sums + gray), the radial FFT on gray,
    and finalize (sums -> vector)."""
    from .ops import cpp
    from .ops.sums import finalize, radial_features

    batch, size = inputs[0].shape[0], inputs[0].shape[1]
    chw = [x.permute(0, 3, 1, 2) for x in inputs]
    sums, gray, _ = cpp.feature_sums(chw[0], spec, spec.residual, True, False)
    rad = radial_features(gray, spec.radial_bins)
    stages = {
        "cpp.feature_sums (kernel)": (lambda x: cpp.feature_sums(x, spec, spec.residual, True, False), chw),
        "sums.radial_features": (lambda g: radial_features(g, spec.radial_bins), [gray]),
        "sums.finalize": (lambda s: finalize(s, size, size, spec, rad), [sums]),
    }
    rows = []
    for op, (fn, ins) in stages.items():
        t = time_fn(fn, ins, repeats, warmup)
        log(f"{size:>4}^2 x{batch:<4} {op:<26} {t * 1e3:10.2f} ms")
        rows.append({**common, "op": op, "backend": "cpp", "size": size, "batch": batch, "median_s": t,
                     "images_per_s": batch / t, "input_gb_per_s": batch * size * size * 3 / t / 1e9,
                     "vs_torch": float("nan"), "vs_compile": float("nan"), "repeats": repeats,
                     "load_avg": round(os.getloadavg()[0], 2)})
    return rows


def append_csv(rows: list[dict], path: str, columns: list[str] | None = COLUMNS) -> None:
    """Append ``rows`` to a long-format CSV, with a header when the file is new: the ``columns``
    (default :data:`COLUMNS`, the kernel benchmarks'; other keys are dropped), or with None those
    of the first row (the stream and Ray benchmarks). Appended to an existing file, its own header
    decides the columns (a row's new keys are dropped, missing ones left empty), so rows never
    shift under the wrong header. Floats are written to 6 significant digits."""
    if not rows:
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    if not new:
        with open(path, newline="", encoding="utf-8") as fh:
            columns = next(csv.reader(fh), None) or columns
    columns = list(rows[0]) if columns is None else columns
    with open(path, "a", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in columns})


def read_csv(path: str) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _fmt(v: str, digits: int = 3) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v or ""
    if math.isnan(f):
        return "n/a"
    return f"{f:.{digits}g}" if abs(f) < 1e3 else f"{f:,.0f}"


def render_markdown(rows: list[dict], title: str = "Kernel benchmarks", preamble: str = "",
                    source: str | None = None) -> str:
    """One table per run (newest first): the long-format rows, grouped by size. ``source``: the CSV
    the rows were read from (named in the text)."""
    origin = (f"Generated from `{source}` by `fpfast.bench.render_markdown`; edit the CSV, not this file."
              if source else "Rendered from this run's rows by `fpfast.bench.render_markdown`.")
    out = [f"# {title}", "", origin + " Ratios are measured in the same run: `vs torch` = torch eager reference time / "
           "this time (>1 is faster), `vs compile` likewise for `torch.compile` of the reference, "
           "`floor` = time to move the input bytes once / this time (1 = at the memory floor; GPU runs: a "
           "device-to-device copy of the batch, so `floor` is the fraction of measured copy bandwidth; CPU: numpy `max`).", ""]
    if preamble:
        out += [preamble, ""]
    runs: dict[str, list[dict]] = {}
    for r in rows:
        runs.setdefault(r["run_id"], []).append(r)
    for run_id in sorted(runs, reverse=True):
        rs = runs[run_id]
        r0 = rs[0]
        nth = r0["threads"]
        out += [f"## Run {run_id}: {r0['device']}, {nth} thread{'' if str(nth) == '1' else 's'}", "",
                f"torch {r0['torch']}, triton {r0['triton'] or '-'}, fpfast {r0['fpfast']}, {r0['date']}; "
                f"load average during the run: {min(float(r['load_avg']) for r in rs):.1f}-"
                f"{max(float(r['load_avg']) for r in rs):.1f}", ""]
        notes = sorted({r["note"] for r in rs if r["note"]})
        out += [f"> {n}" for n in notes] + ([""] if notes else [])
        out += ["| op | backend | size | batch | median ms | images/s | input GB/s | vs torch | vs compile | floor |",
                "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in rs:
            out.append(f"| {r['op']} | {r['backend']} | {r['size']}² | {r['batch']} | "
                       f"{_fmt(str(float(r['median_s']) * 1e3))} | {_fmt(r['images_per_s'])} | "
                       f"{_fmt(r['input_gb_per_s'])} | {_fmt(r['vs_torch'])} | {_fmt(r['vs_compile'])} | "
                       f"{_fmt(r['floor_fraction'])} |")
        out.append("")
    return "\n".join(out)


def write_markdown(csv_path: str, md_path: str, preamble: str = "") -> None:
    with open(md_path, "w", encoding="utf-8") as fh:
        fh.write(render_markdown(read_csv(csv_path), preamble=preamble, source=os.path.basename(csv_path)))
