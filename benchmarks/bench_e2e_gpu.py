"""End to end on a GPU: ``fpfast attribute`` over many 256² JPEGs, against decode-only on the same
device and the CPU stream beside it, plus how far nvJPEG's pixels are from the CPU decoder's.

    python benchmarks/bench_e2e_gpu.py [--n 100000] [--cpu-n 20000] [--work /tmp/fpfast-e2e]

1. Data, synthesised here (nothing downloaded): ``--models`` synthetic generators (smooth random
   content + a faint periodic grid of a per-model period + noise), JPEG q90 (Pillow's default
   4:2:0), ``--n`` queries in webdataset tar shards of 10,000 and ``--enroll`` images per model in
   folders; written by every CPU core in parallel, once (reused when present).
2. Galleries from the same folders: the handcrafted spec enrolled with CPU decode and with GPU
   decode (a gallery refuses queries decoded the other way), and the shipped universal embedding
   (``--spec universal``, GPU decode).
3. Rows (``benchmarks/results/e2e_gpu.csv`` / ``.md``): decode-only (GPU nvJPEG batches; CPU
   workers), ``fpfast attribute`` with GPU decode (handcrafted; embedding fp16 + channels-last +
   ``--compile``), ``fpfast attribute`` with CPU decode workers feeding the GPU, and the CPU stream;
   images/s from the command's wall time (start-up included) and from its own stage summary.
   Attribution overhead = decode-only time / attribute time.
4. Decode parity on ``--parity`` files: mean / max |GPU - CPU| per pixel, the share of differing
   pixels, attribution accuracy on both paths and the share of rows where they agree.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tarfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RESULTS = os.path.join(ROOT, "benchmarks", "results")
SHARD = 10_000
FIELDS = ["row", "device", "decode", "fingerprint", "n", "wall_s", "images_per_s", "stage_images_per_s",
          "note", "versions", "date"]


def synth(model: int, seed: int, size: int = 256) -> np.ndarray:
    """A 'generated' image: smooth content, a faint grid of period model+2, sensor-like noise."""
    rng = np.random.default_rng(seed)
    lo = rng.normal(0, 1, (size // 16, size // 16, 3))
    up = np.kron(lo, np.ones((16, 16, 1)))
    yy, xx = np.mgrid[:size, :size]
    p = model + 2
    grid = (((xx % p) == 0) | ((yy % p) == 0)) * 4.0
    img = 128 + 45 * up + grid[..., None] + rng.normal(0, 3, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _jpeg(a: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _write_shard(args):
    path, start, count, models = args
    tmp = path + ".tmp"
    with tarfile.open(tmp, "w") as tf:
        for i in range(start, start + count):
            data = _jpeg(synth(i % models, 1_000_000 + i))
            info = tarfile.TarInfo(f"m{i % models}_{i:07d}.jpg")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)


def _write_enroll(args):
    root, model, count = args
    d = os.path.join(root, f"m{model}")
    os.makedirs(d, exist_ok=True)
    for j in range(count):
        with open(os.path.join(d, f"{j:04d}.jpg"), "wb") as fh:
            fh.write(_jpeg(synth(model, model * 100_000 + j)))


def make_data(work: str, n: int, models: int, enroll: int) -> tuple[list[str], str]:
    os.makedirs(work, exist_ok=True)
    jobs, shards = [], []
    for s, start in enumerate(range(0, n, SHARD)):
        path = os.path.join(work, f"{s:04d}.tar")
        shards.append(path)
        if not os.path.exists(path):
            jobs.append((path, start, min(SHARD, n - start), models))
    enroll_root = os.path.join(work, "enroll")
    t = time.perf_counter()
    with mp.get_context("fork").Pool(os.cpu_count()) as pool:
        pool.map(_write_shard, jobs)
        if not os.path.isdir(enroll_root):
            pool.map(_write_enroll, [(enroll_root, m, enroll) for m in range(models)])
    print(f"data: {len(shards)} shards, {n} JPEGs + {models}x{enroll} enrollment images "
          f"({time.perf_counter() - t:.1f}s)", flush=True)
    return shards, enroll_root


def fpfast(*args, timeout=900) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "fpfast", *map(str, args)]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    wall = time.perf_counter() - t
    if p.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(cmd[2:])} -> exit {p.returncode}\n{p.stderr[-2000:]}")
    return wall, p.stderr


def stage_rate(stderr: str) -> float | None:
    """images/s from the run summary line the CLI prints ('... (1234.5 images/s)')."""
    import re
    m = re.findall(r"\(([\d.]+) images/s\)", stderr)
    return float(m[-1]) if m else None


def decode_only_gpu(shards: list[str], batch: int) -> tuple[float, int]:
    import torch
    from fpfast.io.device_decode import DeviceDecoder
    from fpfast.io.sources import iter_sources
    from fpfast.spec import FingerprintSpec
    dec = DeviceDecoder(FingerprintSpec(size=256), device="cuda")
    buf, n = [], 0
    torch.cuda.synchronize()
    t = time.perf_counter()
    for key, payload in iter_sources(shards):
        buf.append((key, payload))
        if len(buf) == batch:
            n += len(dec.decode(buf).images)
            buf = []
    if buf:
        n += len(dec.decode(buf).images)
    torch.cuda.synchronize()
    return time.perf_counter() - t, n


def decode_only_cpu(shards: list[str], workers: int) -> tuple[float, int]:
    from fpfast.io.sources import iter_sources
    from fpfast.pipeline import decode_stream
    from fpfast.spec import FingerprintSpec
    items = ((i, k, p) for i, (k, p) in enumerate(iter_sources(shards)))
    t = time.perf_counter()
    n = sum(1 for _ in decode_stream(items, FingerprintSpec(size=256), workers, 64))
    return time.perf_counter() - t, n


def pixel_parity(shard: str, count: int) -> tuple[dict, list]:
    """Pixels under nvJPEG vs the CPU decoder on the first ``count`` files of ``shard``."""
    import torch
    from fpfast.io.decode import decode_image
    from fpfast.io.device_decode import DeviceDecoder
    from fpfast.io.sources import iter_sources
    from fpfast.spec import FingerprintSpec
    items = [(k, p) for _, (k, p) in zip(range(count), iter_sources([shard]))]
    spec = FingerprintSpec(size=256)
    out = DeviceDecoder(spec, device="cuda").decode(items)
    means, maxes, differing, npx = [], [], 0, 0
    for i, (_k, data) in enumerate(items):
        ref = torch.from_numpy(decode_image(data, spec)[0].copy()).permute(2, 0, 1).int()
        d = (out.images[i].cpu().int() - ref).abs()
        means.append(float(d.float().mean()))
        maxes.append(int(d.max()))
        differing += int((d > 0).sum())
        npx += d.numel()
    return ({"files": count, "on_device": out.on_device, "mean_abs_diff": float(np.mean(means)),
             "max_abs_diff": max(maxes), "share_pixels_differing": differing / npx}, items)


def model_parity(items: list, galleries: dict, work: str) -> dict:
    """Accuracy of the attributed model (the file name holds the truth, ``m<k>_...``) with CPU decode
    against a CPU-enrolled gallery and with GPU decode against a GPU-enrolled one, and how often the
    two answers agree."""
    import pyarrow.parquet as pq
    sub = os.path.join(work, "parity.tar")
    with tarfile.open(sub, "w") as tf:
        for k, data in items:
            info = tarfile.TarInfo(k)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    truth = [k.split("_")[0] for k, _ in items]
    models, out = {}, {}
    for dec, gallery in galleries.items():
        o = os.path.join(work, f"parity_{dec}.parquet")
        if os.path.exists(o):
            os.remove(o)
        fpfast("attribute", sub, "--gallery", gallery, "--out", o, "--device", "cuda", "--decode", dec, "-q")
        models[dec] = pq.read_table(o, columns=["predicted"]).column("predicted").to_pylist()
        out[f"accuracy_{dec}"] = float(np.mean([a == b for a, b in zip(models[dec], truth)]))
    out["same_model"] = float(np.mean([a == b for a, b in zip(models["cpu"], models["cuda"])]))
    return out


def versions() -> str:
    import torch
    try:
        import triton
        tv = triton.__version__
    except ImportError:
        tv = "-"
    try:
        import torchvision
        tvv = torchvision.__version__
    except ImportError:
        tvv = "-"
    return f"torch {torch.__version__}; triton {tv}; torchvision {tvv}; CUDA {torch.version.cuda}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--cpu-n", type=int, default=20_000, help="images for the CPU stream rows")
    ap.add_argument("--models", type=int, default=8)
    ap.add_argument("--enroll", type=int, default=100, help="enrollment images per model")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--parity", type=int, default=1000)
    ap.add_argument("--work", default="/tmp/fpfast-e2e")
    ap.add_argument("--note", default="")
    ap.add_argument("--skip", default="", help="comma-separated rows to skip: attr,embedding,cpu,parity")
    ap.add_argument("--only", choices=["all", "decode"], default="all",
                    help="decode: data, decode-only rows and pixel parity (no gallery, no attribute)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    import torch
    dev_name = torch.cuda.get_device_name(0)
    shards, enroll_root = make_data(args.work, args.n, args.models, args.enroll)
    cpu_shards = shards[:max(1, args.cpu_n // SHARD)]
    n_cpu = min(args.n, len(cpu_shards) * SHARD)
    g_hand = os.path.join(args.work, "g_hand")          # enrolled with CPU decode
    g_hand_gpu = os.path.join(args.work, "g_hand_gpu")  # with --decode cuda: queries decode as it did
    g_emb = os.path.join(args.work, "g_emb")
    rows = []
    stamp = datetime.date.today().isoformat()

    def add(row, device, decode, fpr, n, wall, stage=None, note=""):
        r = {"row": row, "device": device, "decode": decode, "fingerprint": fpr, "n": n,
             "wall_s": round(wall, 3), "images_per_s": round(n / wall, 1),
             "stage_images_per_s": round(stage, 1) if stage else "", "note": note,
             "versions": versions(), "date": stamp}
        rows.append(r)
        print(json.dumps(r), flush=True)

    def step(name, fn):
        try:
            fn()
        except Exception as e:  # one failing row must not lose the others
            print(f"[{name}] FAILED: {type(e).__name__}: {e}", flush=True)

    par = None
    for g, dec in ((g_hand, "cpu"), (g_hand_gpu, "cuda")):
        if not os.path.isdir(g) and args.only != "decode":
            fpfast("enroll", g, "--from-folders", enroll_root, "--spec", "default", "--device", "cuda",
                   "--decode", dec, "-q")
    # warm the page cache and the CUDA context once, off the clock
    decode_only_gpu(shards[:1], args.batch_size)

    def dec_gpu():
        wall, n = decode_only_gpu(shards, args.batch_size)
        add("decode only", dev_name, "nvJPEG (torchvision), batches of %d" % args.batch_size, "-", n, wall)
    step("decode-gpu", dec_gpu)

    def dec_cpu():
        wall, n = decode_only_cpu(cpu_shards, args.workers)
        add("decode only", f"{os.cpu_count()} CPU cores", f"CPU, {args.workers} workers", "-", n, wall)
    step("decode-cpu", dec_cpu)

    def attr(name, gallery, n, srcs, device, decode, extra=(), fpr="handcrafted", note=""):
        out = os.path.join(args.work, f"out_{name}")
        if os.path.exists(out):
            import shutil
            shutil.rmtree(out)
        wall, err = fpfast("attribute", *srcs, "--gallery", gallery, "--out", out, "--device", device,
                           "--decode", decode, "--batch-size", args.batch_size, "--workers", args.workers,
                           *extra)
        add("fpfast attribute", dev_name if device == "cuda" else f"{os.cpu_count()} CPU cores",
            decode, fpr, n, wall, stage_rate(err), note)

    if args.only == "decode":
        skip |= {"embedding", "cpu", "attr"}
    if "attr" not in skip:
        step("attr-gpu", lambda: attr("gpu", g_hand_gpu, args.n, shards, "cuda", "cuda"))
        step("attr-gpu-cpudecode", lambda: attr("gpu_cpudec", g_hand, n_cpu, cpu_shards, "cuda", "cpu"))
    if "cpu" not in skip:
        step("attr-cpu", lambda: attr("cpu", g_hand, n_cpu, cpu_shards, "cpu", "cpu"))
    if "embedding" not in skip:
        def emb():
            if not os.path.isdir(g_emb):  # the shipped universal embedding, no training
                fpfast("enroll", g_emb, "--from-folders", enroll_root, "--spec", "universal", "--device",
                       "cuda", "--decode", "cuda", "-q")
            attr("emb", g_emb, args.n, shards, "cuda", "cuda", ("--precision", "fp16", "--compile"),
                 fpr="universal embedding fp16, channels-last, compiled", note="compile time included")
        step("attr-embedding", emb)
    if "parity" not in skip:
        def do_par():
            nonlocal par
            par, items = pixel_parity(shards[0], args.parity)
            print("parity:", json.dumps(par), flush=True)
            if args.only != "decode":
                par.update(model_parity(items, {"cpu": g_hand, "cuda": g_hand_gpu}, args.work))
        step("parity", do_par)
    write(rows, par, dev_name, args)


def write(rows, par, dev_name, args):
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "e2e_gpu.csv")
    new = not os.path.exists(path)
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        if new:
            w.writeheader()
        w.writerows(rows)
    md = [f"# End to end on {dev_name} ({datetime.date.today().isoformat()})", "",
          f"`python benchmarks/bench_e2e_gpu.py --n {args.n}`; {versions()}. 256x256 JPEG q90 (4:2:0) in "
          f"tar shards of {SHARD}; {args.models} synthetic models, {args.enroll} enrollment images each. "
          "images/s = inputs / wall time of the command (Python start-up, gallery load and any compile "
          "included); 'stage' = the stream's own summary. " + args.note, "",
          "| row | device | decode | fingerprint | images | wall (s) | images/s | stage images/s | note |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append("| " + " | ".join(str(r[k]) for k in ("row", "device", "decode", "fingerprint", "n", "wall_s",
                                                         "images_per_s", "stage_images_per_s", "note")) + " |")
    if par:
        md += ["", "## GPU vs CPU decode of the same JPEGs", "",
               f"{par['files']} files: mean |nvJPEG - CPU| = {par['mean_abs_diff']:.3f} levels per pixel, "
               f"max {par['max_abs_diff']}, {100 * par['share_pixels_differing']:.1f} % of pixels differ"
               + (f"; attribution accuracy {par['accuracy_cpu']:.3f} (CPU decode, CPU-enrolled gallery) vs "
                  f"{par['accuracy_cuda']:.3f} (GPU decode, GPU-enrolled gallery), same answer for "
                  f"{100 * par['same_model']:.1f} % of rows." if "same_model" in par else ".")]
    with open(os.path.join(RESULTS, f"e2e_gpu{'_decode' if args.only == 'decode' else ''}.md"), "w") as fh:
        fh.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
