"""Stream throughput and memory: decode-only vs the full pipeline, and a long synthetic stream.

    python benchmarks/bench_stream.py [--n-files 300] [--n 20000] [--workers 2] [--batch-size 64]

1. Files: ``--n-files`` 256x256 images written once as PNG and as JPEG (q90) under /tmp.
   * decode-only: reader + decode workers (:func:`fpfast.pipeline.decode_stream`), nothing else;
   * full: :func:`fpfast.pipeline.run` with the fingerprint mapper (default spec, torch backend
     unless the C++ one is built) writing parquet shards. Ratio full / decode-only.
2. Long stream: ``--n`` inputs generated on the fly (a pool of 64 distinct 256x256 JPEGs cycled
   under unique keys, so the reader costs nothing), through the full pipeline to parquet shards;
   RSS of the parent and of the worker processes sampled every second (must stay flat).

Writes benchmarks/results/stream.md and stream.csv (long format: one row per measurement).
"""
from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import shutil
import sys
import tempfile
import threading
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import torch  # noqa: E402

import fpfast  # noqa: E402
from fpfast.bench import append_csv  # noqa: E402
from fpfast.io.sources import iter_sources  # noqa: E402
from fpfast.jobs.mappers import fingerprint_mapper  # noqa: E402
from fpfast.pipeline import decode_stream, run, run_stream  # noqa: E402
from fpfast.io.writers import open_writer  # noqa: E402
from fpfast.spec import FingerprintSpec  # noqa: E402

DEVICE = "cpu"
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def synth(i: int, size: int = 256) -> np.ndarray:
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[0:size, 0:size]
    base = (np.sin(xx / (5 + i % 7)) + np.cos(yy / (3 + i % 5))) * 60 + 128
    return np.clip(base[:, :, None] + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)


def make_files(root: str, n: int) -> dict[str, str]:
    dirs = {"png": os.path.join(root, "png"), "jpeg": os.path.join(root, "jpeg")}
    for fmt, d in dirs.items():
        if os.path.isdir(d) and len(os.listdir(d)) == n:
            continue
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for i in range(n):
            img = Image.fromarray(synth(i))
            if fmt == "png":
                img.save(os.path.join(d, f"{i:06d}.png"))
            else:
                img.save(os.path.join(d, f"{i:06d}.jpg"), quality=90)
    return dirs


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children_rss_mb() -> float:
    me = os.getpid()
    total = 0.0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me:
            total += rss_mb(int(p))
    return total


class Sampler(threading.Thread):
    def __init__(self, counter, period=1.0):
        super().__init__(daemon=True)
        self.counter, self.period, self.samples, self.stop = counter, period, [], threading.Event()
        self.t0 = time.perf_counter()

    def run(self):
        while not self.stop.is_set():
            self.samples.append((time.perf_counter() - self.t0, self.counter[0], rss_mb(os.getpid()), children_rss_mb()))
            self.stop.wait(self.period)


def decode_only(src: str, spec, workers: int) -> float:
    items = ((i, k, p) for i, (k, p) in enumerate(iter_sources([src])))
    t0 = time.perf_counter()
    n = sum(1 for _ in decode_stream(items, spec, workers=workers))
    return n / (time.perf_counter() - t0)


def noop_mapper(batch, keys):
    return {}


def map_only(src: str, spec, batch: int) -> float:
    """The fingerprint mapper alone on already decoded batches (this process, torch threads)."""
    from fpfast.io.decode import decode_item
    imgs = [decode_item(k, p, spec).image for k, p in iter_sources([src])]
    imgs = [x for x in imgs if x is not None]
    m = fingerprint_mapper(spec, device=DEVICE)
    batches = [torch.from_numpy(np.stack(imgs[i:i + batch])) for i in range(0, len(imgs), batch)]
    m(batches[0], [""] * len(batches[0]))
    t0 = time.perf_counter()
    for b in batches:
        m(b, [""] * len(b))
    return len(imgs) / (time.perf_counter() - t0)


def full(src: str, spec, workers: int, batch: int, out: str, mapper=None):
    shutil.rmtree(out, ignore_errors=True)
    s = run([src], mapper or fingerprint_mapper(spec, device=DEVICE), out, spec=spec, workers=workers, batch_size=batch,
            shard_size=1000, quiet=True)
    return (s.ok + s.errors) / s.wall, s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-files", type=int, default=300)
    ap.add_argument("--n", type=int, default=20000, help="images in the long synthetic stream")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--shard-size", type=int, default=10000)
    ap.add_argument("--tmp", default=os.path.join(tempfile.gettempdir(), "fpfast_bench_stream"))
    ap.add_argument("--tag", default="")
    ap.add_argument("--machine-note", default="**shared with ~6 other agents** (numbers are noisy, CPU only, no GPU)")
    ap.add_argument("--device", default="cpu", help="where the fingerprint mapper runs (cpu, cuda)")
    a = ap.parse_args()
    global DEVICE
    DEVICE = a.device
    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    spec = FingerprintSpec()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    if DEVICE != "cpu":
        machine += f", mapper on {torch.cuda.get_device_name(0)}"
    versions = f"fpfast {fpfast.__version__}, torch {torch.__version__}, Pillow {Image.__version__}, python {platform.python_version()}"
    from fpfast.io import decode as _dec
    jpeg_path = "simplejpeg" if _dec.USE_SIMPLEJPEG else "Pillow"
    rows = []
    dirs = make_files(a.tmp, a.n_files)
    md = [f"# Stream benchmark ({now})", "",
          f"Machine: {machine} {a.machine_note}. "
          f"{versions}. JPEG decoder: {jpeg_path}. Spec: default (crop 64, denoise). "
          f"Backend: auto ({fpfast.build_config() if hasattr(fpfast, 'build_config') else ''}).", "",
          f"## Decode-only vs full pipeline, {a.n_files} 256x256 images, workers={a.workers}, batch={a.batch_size}", "",
          "* decode-only: reader + decode workers; pipeline (no-op mapper): reader + decode + batcher + "
          "parquet writer, i.e. the I/O half measured here; fingerprint alone: the mapper on decoded "
          "batches in one process; full: everything (fingerprint mapper).", "",
          "| format | decode-only img/s | pipeline, no-op mapper img/s | no-op / decode-only | fingerprint alone img/s | full img/s | full / decode-only | full: map s | write s | decode_wait s |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for fmt, d in dirs.items():
        decode_only(d, spec, a.workers)  # warm the page cache and the worker start
        dec = decode_only(d, spec, a.workers)
        noop, _ = full(d, spec, a.workers, a.batch_size, os.path.join(a.tmp, f"out_{fmt}"), noop_mapper)
        mo = map_only(d, spec, a.batch_size)
        ful, s = full(d, spec, a.workers, a.batch_size, os.path.join(a.tmp, f"out_{fmt}"))
        md.append(f"| {fmt} | {dec:.0f} | {noop:.0f} | {noop / dec:.2f} | {mo:.0f} | {ful:.0f} | {ful / dec:.2f} | {s.seconds['map']:.2f} | "
                  f"{s.seconds['write']:.2f} | {s.seconds['decode_wait']:.2f} |")
        for name, v in (("decode_only", dec), ("pipeline_noop_mapper", noop), ("fingerprint_only", mo), ("full", ful)):
            rows.append({"bench": name, "format": fmt, "n": a.n_files, "workers": a.workers,
                         "batch": a.batch_size, "images_per_s": round(v, 1), "peak_rss_mb": "",
                         "machine": machine, "date": now, "versions": versions})
        print(md[-1], flush=True)

    # ---- long synthetic stream
    pool = []
    for i in range(64):
        b = io.BytesIO()
        Image.fromarray(synth(1000 + i)).save(b, "JPEG", quality=90)
        pool.append(b.getvalue())
    counter = [0]

    def items():
        for i in range(a.n):
            counter[0] = i
            yield f"synthetic/{i:09d}.jpg", pool[i % 64]

    out = os.path.join(a.tmp, "out_long")
    shutil.rmtree(out, ignore_errors=True)
    sampler = Sampler(counter)
    sampler.start()
    writer = open_writer(out, a.shard_size)
    s = run_stream(items(), fingerprint_mapper(spec, device=DEVICE), writer, spec=spec, workers=a.workers,
                   batch_size=a.batch_size, quiet=True)
    sampler.stop.set()
    sampler.join()
    shutil.rmtree(out, ignore_errors=True)
    samp = sampler.samples
    peak_main = max(x[2] for x in samp)
    peak_total = max(x[2] + x[3] for x in samp)
    n4 = max(1, len(samp) // 4)
    first_q = max(x[2] for x in samp[:n4])
    last_q = max(x[2] for x in samp[-n4:])
    md += ["", f"## Long stream: {a.n} synthetic 256x256 JPEGs, workers={a.workers}, batch={a.batch_size}, "
           f"shards of {a.shard_size}", "",
           f"* {s.images_per_s:.0f} images/s over {s.wall:.0f} s; {s.shards} shards; {s.errors} errors",
           f"* peak RSS: parent {peak_main:.0f} MB, parent + workers {peak_total:.0f} MB (target <= 2048 MB)",
           f"* parent RSS, max over the first quarter {first_q:.0f} MB vs the last quarter {last_q:.0f} MB (flat = no growth)",
           f"* stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in s.seconds.items()), "",
           "| t (s) | images done | parent RSS MB | workers RSS MB |", "|---:|---:|---:|---:|"]
    step = max(1, len(samp) // 12)
    md += [f"| {t:.0f} | {n} | {m:.0f} | {c:.0f} |" for t, n, m, c in samp[::step]]
    rows.append({"bench": "long_stream", "format": "jpeg", "n": a.n, "workers": a.workers,
                 "batch": a.batch_size, "images_per_s": round(s.images_per_s, 1),
                 "peak_rss_mb": round(peak_total), "machine": machine, "date": now, "versions": versions})
    text = "\n".join(md) + "\n"
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"stream{a.tag}.md"), "w") as fh:
        fh.write(text)
    append_csv(rows, os.path.join(RESULTS, f"stream{a.tag}.csv"), columns=None)  # long format: every run appends its rows


if __name__ == "__main__":
    main()
