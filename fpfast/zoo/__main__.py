"""python -m fpfast.zoo build OUT [--preset tiny|small|standard] [--seed N] [--real DIR] [--device auto]"""
from __future__ import annotations

import argparse

from .build import build_zoo
from .presets import PRESETS


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fpfast.zoo")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="train the zoo's models and write their images")
    b.add_argument("out")
    b.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--real", default=None, help="folder of real images extending the bundled photos")
    b.add_argument("--real-only", action="store_true", help="use --real in place of the bundled photos")
    b.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    s = build_zoo(a.out, a.preset, a.seed, a.real, a.device, replace_real=a.real_only)
    print(f"{len(s['models'])} classes, {sum(sum(v.values()) for v in s['splits'].values())} images, "
          f"{s['build_seconds']:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
