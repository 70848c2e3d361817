"""The Ray engine's overhead on one machine: ``fpfast attribute`` with the local engine vs
``--engine ray`` (a local Ray) on the same image set, run back to back, alternating.

    python benchmarks/bench_ray.py [--n 20000] [--size 128] [--rounds 2] \\
        [--local "--workers 2"] [--ray "--engine ray"] [--ray "--engine ray --ray-block-rows 1024"] ...

* images: ``--n`` synthetic ``--size`` px JPEGs (q90; smooth waves + noise, seeded) in folders of
  1,000 under ``--root`` (made once); gallery: 3 synthetic "models" x 20 images, default spec;
* each configuration is the CLI as a user runs it (``python -m fpfast attribute IMAGES -g G -o
  OUT --shard-size 10000 ...``), in its own process; wall = the run's own summary (Ray's start-up
  included) and the whole process (imports too); peak memory = the peak, over samples every 0.5 s,
  of the summed RSS of the process and all its descendants (Ray's GCS, raylet, workers; shared
  pages counted once per process, so an upper bound); ``uptime``'s 1-minute load beside each run.

Prints one Markdown table row per run (for benchmarks/results/ray.md) and appends them to
benchmarks/results/ray.csv.
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import subprocess
import sys
import threading
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from fpfast.bench import append_csv  # noqa: E402

RESULTS = os.path.join(ROOT, "benchmarks", "results")


def synth(i: int, size: int, period: int = 0) -> np.ndarray:
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[0:size, 0:size]
    base = (np.sin(xx / (5 + i % 7)) + np.cos(yy / (3 + i % 5))) * 60 + 128
    if period:
        base = base + ((xx % period == 0) | (yy % period == 0)) * 60.0
    return np.clip(base[:, :, None] + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)


def make_set(root: str, n: int, size: int) -> tuple[str, str]:
    images, train = os.path.join(root, f"images_{n}_{size}"), os.path.join(root, "train")
    if not os.path.isdir(images):
        tmp = images + ".tmp"
        for i in range(n):
            d = os.path.join(tmp, f"{i // 1000:03d}")
            os.makedirs(d, exist_ok=True)
            Image.fromarray(synth(i, size)).save(os.path.join(d, f"{i:06d}.jpg"), quality=90)
        os.rename(tmp, images)
    if not os.path.isdir(train):
        for m, period in (("alpha", 2), ("beta", 3), ("gamma", 5)):
            d = os.path.join(train, m)
            os.makedirs(d)
            for i in range(20):
                Image.fromarray(synth(10_000_000 + 100 * period + i, size, period)).save(
                    os.path.join(d, f"{i:03d}.jpg"), quality=90)
    return images, train


def tree_rss(pid: int) -> int:
    """Summed RSS (bytes) of ``pid`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(p))
        rss[int(p)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total


def load1() -> float:
    return os.getloadavg()[0]


def run_one(images: str, gallery: str, out: str, extra: str) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "fpfast", "attribute", images, "-g", gallery, "-o", out, "--shard-size", "10000",
           "--overwrite", *shlex.split(extra)]
    load_before = load1()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.5)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    th.join()
    m = re.search(r"(\d+) inputs: (\d+) ok, (\d+) errors.* in ([\d.]+)s \(([\d.]+) images/s\)", err)
    if proc.returncode != 0 or m is None:
        raise SystemExit(f"{cmd} failed ({proc.returncode}):\n{err[-3000:]}")
    return {"config": extra, "inputs": int(m.group(1)), "ok": int(m.group(2)), "run_s": float(m.group(4)),
            "images_per_s": float(m.group(5)), "process_s": wall, "peak_rss_mb": peak[0] / 2**20,
            "load1_before": load_before, "load1_after": load1(), "stages": err.split("Stages: ")[1].split(" (")[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--root", default="/tmp/fpfast_ray_bench")
    ap.add_argument("--local", action="append", help="extra CLI arguments of a local configuration")
    ap.add_argument("--ray", action="append", help="extra CLI arguments of a Ray configuration")
    a = ap.parse_args()
    configs = (a.local or ["--workers 2"]) + (a.ray or ["--engine ray"])
    images, train = make_set(a.root, a.n, a.size)
    gallery = os.path.join(a.root, "gallery")
    if not os.path.isdir(gallery):
        subprocess.run([sys.executable, "-m", "fpfast", "enroll", gallery, "--from-folders", train, "--spec",
                        "default", "--quiet"], check=True, env=dict(os.environ, PYTHONPATH=ROOT))
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# {date}: {a.n} {a.size}px JPEGs, {a.rounds} rounds, machine: {os.cpu_count()} cores (shared)")
    print("| round | config | images/s (run) | run s | process s | peak RSS MB (tree) | load1 before/after | stages |")
    print("|---|---|---:|---:|---:|---:|---|---|")
    rows = []
    for r in range(a.rounds):
        for c in configs:
            res = run_one(images, gallery, os.path.join(a.root, "out"), c)
            res.update(round=r, date=date, n=a.n, size=a.size)
            rows.append(res)
            print(f"| {r} | `{c}` | {res['images_per_s']:.0f} | {res['run_s']:.1f} | {res['process_s']:.1f} | "
                  f"{res['peak_rss_mb']:.0f} | {res['load1_before']:.1f} / {res['load1_after']:.1f} | "
                  f"{res['stages']} |", flush=True)
    append_csv(rows, os.path.join(RESULTS, "ray.csv"), columns=None)


if __name__ == "__main__":
    main()
