"""Gallery search benchmark: faiss flat vs IVF vs HNSW vs torch matmul + top-k.

A synthetic clustered gallery of ``--n`` vectors (default 1M) at the default spec's dimension
(``FingerprintSpec().dim``) and ``--queries`` queries (default 10k) drawn from the same clusters.
For each method: build time (train + add; for torch, the copy to the device and the norms),
search time and queries/s for ``--k`` neighbours, recall@1 against exact search (an id counts as
right when it is the exact nearest one or lies at the same distance). The exact answer comes
from faiss flat, or where faiss is not installed (the GPU machines) from a float64 brute force
on ``--device``.

Results are merged into ``benchmarks/results/gallery.csv`` (rows of the same device, n and
method are replaced) and rendered to ``benchmarks/results/gallery.md``.

    python benchmarks/bench_gallery.py --n 200000                 # CPU: faiss + torch
    python benchmarks/bench_gallery.py --device cuda --methods torch   # GPU torch path
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from fpfast.gallery import index as fidx  # noqa: E402
from fpfast.search import faiss_search  # noqa: E402
from fpfast.search import knn as torch_knn  # noqa: E402
from fpfast.spec import FingerprintSpec  # noqa: E402

FIELDS = ["method", "backend", "device", "n", "dim", "queries", "k", "params", "build_s",
          "search_s", "queries_per_s", "recall_at_1", "threads", "torch", "faiss", "numpy",
          "date", "note"]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cpus)"
    except OSError:
        pass
    return platform.processor() or "cpu"


def make_data(n: int, q: int, dim: int, clusters: int, seed: int, args_spread: float):
    """Clustered vectors (roughly what standardised fingerprints of many models look like)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32) * args_spread
    def draw(m):
        out = np.empty((m, dim), np.float32)
        for s in range(0, m, 100_000):
            e = min(m, s + 100_000)
            out[s:e] = centres[rng.integers(0, clusters, e - s)] + rng.normal(size=(e - s, dim)).astype(np.float32)
        return out
    return draw(n), draw(q)


def exact_float64(x: np.ndarray, q: np.ndarray, device) -> tuple[np.ndarray, np.ndarray]:
    """Nearest neighbour by float64 brute force (an oracle independent of the float32 path)."""
    xb = torch.from_numpy(x).to(device, torch.float64)
    x_sq = (xb * xb).sum(1)
    out_d, out_i = np.empty((q.shape[0], 1), np.float32), np.empty((q.shape[0], 1), np.int64)
    for s in range(0, q.shape[0], 1024):
        qb = torch.from_numpy(q[s:s + 1024]).to(device, torch.float64)
        d = (qb * qb).sum(1, keepdim=True) - 2 * qb @ xb.T + x_sq
        v, i = d.min(1)
        out_d[s:s + qb.shape[0], 0] = v.cpu().numpy()
        out_i[s:s + qb.shape[0], 0] = i.cpu().numpy()
    return out_d, out_i


def recall_at_1(ids, dists, exact_ids, exact_d) -> float:
    ok = (ids[:, 0] == exact_ids[:, 0]) | (np.abs(dists[:, 0] - exact_d[:, 0]) <= 1e-5 * np.maximum(exact_d[:, 0], 1.0))
    return float(ok.mean())


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="gallery size")
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--dim", type=int, default=FingerprintSpec().dim)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--spread", type=float, default=0.5,
                    help="std of the cluster centres relative to the within-cluster noise (1)")
    ap.add_argument("--methods", default="flat,ivf,hnsw,torch")
    ap.add_argument("--device", default="cpu", help="device of the torch method: cpu or cuda")
    ap.add_argument("--query-chunk", type=int, default=4096)
    ap.add_argument("--base-chunk", type=int, default=262144)
    ap.add_argument("--nlist", type=int, default=None)
    ap.add_argument("--nprobe", type=int, default=None)
    ap.add_argument("--M", type=int, default=None)
    ap.add_argument("--ef-construction", type=int, default=None)
    ap.add_argument("--ef-search", type=int, default=None)
    ap.add_argument("--note", default="", help="free text stored with the rows (e.g. 'shared machine')")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    faiss = fidx.faiss_module()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if faiss is None:
        dropped = [m for m in methods if m != "torch"]
        if dropped:
            print(f"faiss is not installed: skipping {dropped}")
        methods = [m for m in methods if m == "torch"]
    device = torch.device(args.device)
    threads = torch.get_num_threads()
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    versions = {"torch": torch.__version__, "faiss": getattr(faiss, "__version__", "") if faiss else "",
                "numpy": np.__version__}

    t = time.perf_counter()
    x, q = make_data(args.n, args.queries, args.dim, args.clusters, args.seed, args.spread)
    print(f"data: {args.n} x {args.dim} gallery, {args.queries} queries ({time.perf_counter() - t:.1f}s)")

    t = time.perf_counter()
    if faiss is not None:
        exact_index = fidx.build("flat", {}, x)
        exact_d, exact_i = faiss_search(exact_index, q, 1)
        truth = "faiss flat"
    else:
        exact_d, exact_i = exact_float64(x, q, device)
        truth = f"float64 brute force on {device.type}"
    print(f"exact answers from {truth} ({time.perf_counter() - t:.1f}s)")

    rows = []
    for method in methods:
        params: dict = {}
        if method in ("flat", "ivf", "hnsw"):
            given = {"nlist": args.nlist, "nprobe": args.nprobe, "M": args.M,
                     "ef_construction": args.ef_construction, "ef_search": args.ef_search}
            params = fidx.resolve_params(method, {k: v for k, v in given.items()
                                                  if v is not None and k in fidx.DEFAULT_PARAMS[method]})
            t = time.perf_counter()
            index = fidx.build(method, params, x)
            build_s = time.perf_counter() - t
            if method == "ivf":
                params = dict(params, nlist=int(index.nlist))
            t = time.perf_counter()
            d, i = faiss_search(index, q, args.k)
            search_s = time.perf_counter() - t
            backend, dev_name = "faiss-cpu", cpu_name()
            del index
        elif method == "torch":
            t = time.perf_counter()
            xb = torch.from_numpy(x).to(device)
            sq = (xb * xb).sum(1)
            sync(device)
            build_s = time.perf_counter() - t
            qb = torch.from_numpy(q).to(device)
            kw = dict(base_sq_norms=sq, query_chunk=args.query_chunk, base_chunk=args.base_chunk)
            if device.type == "cuda":             # warm-up, then the median of 5 runs
                torch_knn(qb[:256], xb, args.k, **kw)
                times = []
                for _ in range(5):
                    sync(device)
                    t = time.perf_counter()
                    dt, it = torch_knn(qb, xb, args.k, **kw)
                    sync(device)
                    times.append(time.perf_counter() - t)
                search_s = float(np.median(times))
                dev_name = torch.cuda.get_device_name(device)
            else:
                t = time.perf_counter()
                dt, it = torch_knn(qb, xb, args.k, **kw)
                search_s = time.perf_counter() - t
                dev_name = cpu_name()
            d, i = dt.cpu().numpy(), it.cpu().numpy()
            params = {"query_chunk": args.query_chunk, "base_chunk": args.base_chunk}
            backend = f"torch-{device.type}"
            del xb, sq, qb
        else:
            raise SystemExit(f"unknown method {method!r}")
        rec = recall_at_1(i, d, exact_i, exact_d)
        row = {"method": method, "backend": backend, "device": dev_name, "n": args.n, "dim": args.dim,
               "queries": args.queries, "k": args.k,
               "params": " ".join(f"{k}={v}" for k, v in params.items()),
               "build_s": f"{build_s:.3f}", "search_s": f"{search_s:.3f}",
               "queries_per_s": f"{args.queries / search_s:.0f}", "recall_at_1": f"{rec:.4f}",
               "threads": threads, **versions, "date": date, "note": args.note}
        print(f"{method:6s} {backend:10s} build {build_s:8.2f}s  search {search_s:8.2f}s  "
              f"{args.queries / search_s:10.0f} q/s  recall@1 {rec:.4f}")
        rows.append(row)

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "gallery.csv")
    old = []
    if os.path.exists(path):
        with open(path, newline="") as fh:
            old = list(csv.DictReader(fh))
    new_keys = {(r["device"], str(r["n"]), r["method"], r["backend"]) for r in rows}
    keep = [r for r in old if (r["device"], r["n"], r["method"], r["backend"]) not in new_keys]
    allrows = keep + rows
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(allrows)
    render_md(allrows, os.path.join(args.out, "gallery.md"), truth)
    print(f"wrote {path} and gallery.md")


def render_md(rows, path, truth) -> None:
    lines = [
        "# Gallery search benchmark",
        "",
        "Generated by `benchmarks/bench_gallery.py` from `gallery.csv`. Synthetic clustered data "
        "(1000 Gaussian clusters, centres of std 0.5 around unit within-cluster noise: clusters overlap, so the nearest neighbour is often in another cluster) at the default spec's dimension; squared L2; k neighbours per "
        "query; recall@1 against exact search (an answer at the exact nearest distance counts as "
        "right). Build = train + add (torch: copy to the device + norms). CPU timings include "
        "faiss/torch using all threads listed; GPU torch timings are the median of 5 runs after "
        "a warm-up.",
        "",
        "| method | backend | device | N | dim | queries | k | params | build s | search s | queries/s | recall@1 | threads | versions | date | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ver = f"torch {r['torch']}" + (f", faiss {r['faiss']}" if r.get("faiss") else "") + f", numpy {r['numpy']}"
        lines.append(f"| {r['method']} | {r['backend']} | {r['device']} | {r['n']} | {r['dim']} | "
                     f"{r['queries']} | {r['k']} | {r['params']} | {r['build_s']} | {r['search_s']} | "
                     f"{r['queries_per_s']} | {r['recall_at_1']} | {r['threads']} | {ver} | "
                     f"{r['date']} | {r.get('note', '')} |")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
