"""Design-choice analysis of a built zoo (`fpfast analyze`) with a ManiFPT reference set of real
patches cut from the bundled photos (a seed the zoo did not use), for benchmarks/results/design.md.

    python -m benchmarks.bench_design ZOO_DIR --work DIR [--refs 2000] [--gallery G] [--no-tsne] [--reduce whiten]

Writes DIR/refset (reused when present) and DIR/REPORT (the analysis; replaced).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def refset(zoo: Path, out: Path, n: int, seed: int = 12345) -> Path:
    from fpfast.projectors import build_manifold
    from fpfast.zoo.real import bundled_photos, random_patches
    if (out / "manifest.json").exists():
        return out
    size = json.loads((zoo / "zoo.json").read_text())["image_size"]
    build_manifold(random_patches(bundled_photos(), n, size, seed), out, size)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("zoo")
    ap.add_argument("--work", required=True)
    ap.add_argument("--refs", type=int, default=2000)
    ap.add_argument("--gallery")
    ap.add_argument("--no-tsne", action="store_true")
    ap.add_argument("--reduce", default="pca", choices=("pca", "whiten"))
    ap.add_argument("--report", default="report", help="name of the analysis folder under --work")
    a = ap.parse_args(argv)
    work = Path(a.work)
    ref = refset(Path(a.zoo), work / "refset", a.refs)
    cmd = [sys.executable, "-m", "fpfast", "analyze", a.zoo, "--out", str(work / a.report), "--refset", str(ref),
           "--reduce", a.reduce, "--overwrite"] + (["--gallery", a.gallery] if a.gallery else []) + (["--no-tsne"] if a.no_tsne else [])
    return subprocess.call(cmd, cwd=ROOT)


if __name__ == "__main__":
    raise SystemExit(main())
