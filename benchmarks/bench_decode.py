"""Does a faster JPEG decoder help? Pillow vs simplejpeg on the same 256x256 JPEGs (single core).

    python benchmarks/bench_decode.py [--n 300]

Writes benchmarks/results/decode.md. Also checks that both give identical pixels (a fingerprint
needs the same pixels at enrollment and query).
"""
from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import time

import numpy as np
from PIL import Image


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:256, 0:256]
    for i in range(n):
        base = (np.sin(xx / (5 + i % 7)) + np.cos(yy / (3 + i % 5))) * 60 + 128
        a = base[:, :, None] + rng.normal(0, 12, (256, 256, 3))
        yield np.clip(a, 0, 255).astype(np.uint8)


def bench(fn, datas, reps=3):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for d in datas:
            fn(d)
        best = min(best, time.perf_counter() - t0)
    return len(datas) / best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "decode.md"))
    a = ap.parse_args()
    datas = []
    for img in images(a.n):
        b = io.BytesIO()
        Image.fromarray(img).save(b, "JPEG", quality=90)
        datas.append(b.getvalue())
    from fpfast.io import decode
    rows = [("Pillow Image.open + np.asarray", bench(lambda d: np.asarray(Image.open(io.BytesIO(d)).convert("RGB")), datas))]
    use = decode.USE_SIMPLEJPEG
    decode.USE_SIMPLEJPEG = False
    rows.append(("fpfast decode_image, Pillow path (checks, crop 64)", bench(lambda d: decode.decode_image(d), datas)))
    decode.USE_SIMPLEJPEG = use
    if use:
        rows.append(("fpfast decode_image, simplejpeg path (checks, crop 64)", bench(lambda d: decode.decode_image(d), datas)))
    same = "n/a"
    try:
        import simplejpeg
        rows.append(("simplejpeg.decode_jpeg", bench(lambda d: simplejpeg.decode_jpeg(d, colorspace="RGB"), datas)))
        same = all(np.array_equal(simplejpeg.decode_jpeg(d, colorspace="RGB"),
                                  np.asarray(Image.open(io.BytesIO(d)).convert("RGB"))) for d in datas[:50])
        ver = simplejpeg.__version__
    except ImportError:
        ver = "not installed"
    lines = [f"# JPEG decode, 256x256 q90, {a.n} images, one process", "",
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores shared with other jobs (numbers are noisy); Pillow {Image.__version__}, simplejpeg {ver}", "",
             "| decoder | images/s |", "|---|---:|"]
    lines += [f"| {name} | {ips:.0f} |" for name, ips in rows]
    lines += ["", f"simplejpeg pixels identical to Pillow's on the first 50: {same}"]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(a.out, "w") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
