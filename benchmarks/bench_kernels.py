"""Time fingerprint_features on every usable backend; append to results/kernels.csv, render kernels.md.

    python -m benchmarks.bench_kernels [--device cpu|cuda] [--sizes 64 256 512] [--repeats 5] ...

On a GPU the rows are: torch (eager reference), torch.compile of it, cuda, triton, cuda.graph and
triton.graph (the op replayed as a CUDA graph, batch already in its static input), cuda.torchpost
(the cuda kernel followed by the torch post stage, i.e. before the fused post kernel) and floor (a
device copy of the same bytes).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # also run as a file
from benchmarks import harness  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    ap.add_argument("--sizes", type=int, nargs="+", default=list(harness.DEFAULT_SIZES))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--slow-repeats", type=int, default=None, help="repeats for torch and torch.compile")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (cpp follows OMP_NUM_THREADS)")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--compile-sizes", type=int, nargs="+", default=None,
                    help="sizes at which torch.compile runs (default: all; it compiles for tens of seconds per shape)")
    ap.add_argument("--note", default="", help="stored with every row, shown above the table")
    ap.add_argument("--csv", default=os.path.join(HERE, "results", "kernels.csv"))
    ap.add_argument("--md", default=os.path.join(HERE, "results", "kernels.md"))
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = harness.run(a.sizes, a.device, repeats=a.repeats, warmup=a.warmup, slow_repeats=a.slow_repeats,
                       compile=not a.no_compile, note=a.note,
                       compile_sizes=a.compile_sizes)
    harness.append_csv(rows, a.csv)
    notes = os.path.join(os.path.dirname(a.md), "kernels.notes.md")  # hand-written analysis, kept on re-render
    preamble = open(notes, encoding="utf-8").read().strip() if os.path.exists(notes) else ""
    harness.write_markdown(a.csv, a.md, preamble)
    print(f"appended {len(rows)} rows to {a.csv}; rendered {a.md}")


if __name__ == "__main__":
    main()
