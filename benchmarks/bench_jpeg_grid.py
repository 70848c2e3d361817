"""How well the JPEG grid read from pixels tells a PNG re-saved from a JPEG from one never compressed
(``fpfast.gallery.jpeg_grid``), on the zoos' training images (the threshold's validation set).

    python benchmarks/bench_jpeg_grid.py ZOO [ZOO...] --out results/jpeg_grid.json

Images: training images 150-189 of every model, whole and as a 3/4 crop at a seeded random offset
(cropped after compression: another grid phase), clean and JPEG-compressed at quality 95 / 90 / 85
/ 80 / 70 (Pillow) and decoded. Per zoo and framing: the share of clean images above
:data:`~fpfast.gallery.jpeg_grid.THRESHOLD` (false positives) and of each quality (detections),
the clean score's 95th / 98th / 99th percentiles, and the CPU time per image.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_universal import _jpeg, first_n  # noqa: E402
from fpfast.gallery.jpeg_grid import THRESHOLD, grid_score  # noqa: E402
from fpfast.zoo import load_zoo_split  # noqa: E402

QUALITIES = (95, 90, 85, 80, 70)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zoos", nargs="+")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threshold": THRESHOLD,
           "torch_threads": torch.get_num_threads(), "zoos": {}}
    for zoo in a.zoos:
        x, y = load_zoo_split(zoo, "train")[:2]
        clean = [x[i] for i in first_n(y, 40, offset=150)]
        rng = np.random.default_rng(0)
        side = min(clean[0].shape[:2])
        c = side * 3 // 4
        offs = rng.integers(0, side - c + 1, (len(clean), 2))
        sets = {"clean": clean, **{f"JPEG {q}": [_jpeg(im, q) for im in clean] for q in QUALITIES}}
        rows = {}
        for framing in ("whole", "3/4 crop"):
            def frame(ims):
                if framing == "whole":
                    return torch.from_numpy(np.stack(ims))
                return torch.from_numpy(np.stack([im[o[0]:o[0] + c, o[1]:o[1] + c] for im, o in zip(ims, offs)]))
            t0 = time.perf_counter()
            s = {k: grid_score(frame(v)).numpy() for k, v in sets.items()}
            secs = time.perf_counter() - t0
            rows[framing] = {"above threshold": {k: round(float(np.mean(v > THRESHOLD)), 4) for k, v in s.items()},
                             "clean percentiles 95/98/99": [round(float(p), 4) for p in
                                                            np.percentile(s["clean"], [95, 98, 99])]
                             if np.isfinite(s["clean"]).all() else None,  # None: too small to say
                             "ms per image": round(1e3 * secs / sum(len(v) for v in sets.values()), 3),
                             "images": len(clean)}
        res["zoos"][zoo] = rows
        print(json.dumps({zoo: rows}), flush=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
