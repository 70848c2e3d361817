"""Triton backend vs the torch reference on a CUDA machine: errors per family and time per batch.

    python benchmarks/triton_check.py [--ops denoise,median3,npr,highpass] [--sizes 64:64,256:32,512:8]

Prints, per residual op and (size, batch): max abs / max rel error of each feature family against
fingerprint_features(..., backend="torch") (float32 reference on the same GPU), and the median time
per batch (triton.testing.do_bench) of the fused kernel alone, of the whole triton path (kernel +
radial FFT + finalize) and of the torch reference.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
import triton  # noqa: E402
from triton.testing import do_bench  # noqa: E402

from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.ops.triton import features as tfeat  # noqa: E402
from fpfast.ops.triton.features import feature_sums  # noqa: E402
from fpfast.spec import FingerprintSpec  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", default="denoise,median3,npr,highpass")
    ap.add_argument("--sizes", default="64:64,256:32,512:8")
    ap.add_argument("--configs", default="", help="also time the kernel at TILE_HxTILE_W/num_warps, "
                    "e.g. 16x32/2,32x32/4,32x64/4,64x64/8")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU")
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
    g = torch.Generator(device="cuda").manual_seed(0)
    for op in args.ops.split(","):
        for item in args.sizes.split(","):
            s, b = (int(v) for v in item.split(":"))
            spec = FingerprintSpec(size=s, residual=op)
            x = torch.randint(0, 256, (b, s, s, 3), dtype=torch.uint8, device="cuda", generator=g)
            out = fingerprint_features(x, spec, backend="triton")
            ref = fingerprint_features(x, spec, backend="torch")
            errs = []
            for fam, sl in spec.slices.items():
                d = (out[:, sl] - ref[:, sl]).abs()
                errs.append(f"{fam} {d.max().item():.1e}/{(d / (ref[:, sl].abs() + 1e-6)).max().item():.1e}")
            xc = x.permute(0, 3, 1, 2)
            t_k = do_bench(lambda: feature_sums(xc, spec, op, False, False), warmup=50, rep=300)
            t_t = do_bench(lambda: fingerprint_features(x, spec, backend="triton"), warmup=50, rep=300)
            t_r = do_bench(lambda: fingerprint_features(x, spec, backend="torch"), warmup=50, rep=300)
            gbs = x.numel() / (t_k * 1e-3) / 1e9
            print(f"{op:9s} {s:4d}^2 x{b:3d} | err abs/rel: " + ", ".join(errs))
            tried = []
            for cfg in filter(None, args.configs.split(",")):
                tile, nw = cfg.split("/")
                th, tw = (int(v) for v in tile.split("x"))
                old = (tfeat.TILE_H, tfeat.TILE_W, tfeat.NUM_WARPS)
                tfeat.TILE_H, tfeat.TILE_W, tfeat.NUM_WARPS = th, tw, int(nw)
                tried.append(f"{cfg} {do_bench(lambda: feature_sums(xc, spec, op, False, False), warmup=50, rep=300):.3f}")
                tfeat.TILE_H, tfeat.TILE_W, tfeat.NUM_WARPS = old
            if tried:
                print(f"{'':9s} {'':11s} | kernel ms by config: " + ", ".join(tried))
            print(f"{'':9s} {'':11s} | kernel {t_k:.3f} ms ({gbs:.1f} GB/s uint8 read), "
                  f"triton path {t_t:.3f} ms, torch ref {t_r:.3f} ms, ref/triton {t_r / t_t:.1f}x")


if __name__ == "__main__":
    main()
