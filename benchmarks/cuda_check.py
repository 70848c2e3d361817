"""Check the cuda backend of the fused op on a GPU machine: errors vs the torch reference, and speed.

Builds nothing (run after `pip install --no-build-isolation --no-deps -e .`).
    python benchmarks/cuda_check.py [--reps 50] [--ops denoise,median3,npr,highpass]

Per shape (64^2 x 256, 256^2 x 64, 512^2 x 16; uint8 HWC as a decoder hands it over):
  * max |error| per feature family, cuda backend vs the float64 torch reference (first batch);
  * time per batch: CUDA events, median of `reps` after warm-up, inputs rotated over >= 4
    buffers that together exceed 50 MB (more than the L2), for the fused sums alone and for the
    whole fingerprint_features (with the radial FFT and finalize), and the torch reference on
    the GPU for the ratio;
  * achieved input GB/s of the fused sums vs a measured device-to-device copy bandwidth;
then, at 256^2 x 512, the time of each stage of the op (kernel, rfft2, post stages, whole op
eager / fused post / CUDA graph) beside a device copy of the same bytes.
"""
from __future__ import annotations

import argparse
import statistics

import torch

import fpfast
from fpfast.ops import cuda as cuda_ops
from fpfast.ops.features import fingerprint_features
from fpfast.prepare import to_float
from fpfast.reference.features import features as reference_features
from fpfast.reference.residual import residual as reference_residual
from fpfast.spec import FingerprintSpec

SHAPES = ((64, 256), (256, 64), (512, 16))
MIN_BYTES = 50 * 2**20


def time_ms(fn, inputs, reps):
    for x in inputs[:2]:
        fn(x)
    torch.cuda.synchronize()
    out = []
    for i in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        x = inputs[i % len(inputs)]
        a.record()
        fn(x)
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b))
    return statistics.median(out)


def copy_bandwidth(reps):
    src = torch.empty(512 * 2**20, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = time_ms(lambda s: dst.copy_(s), [src], reps)
    return 2 * src.numel() / (ms * 1e-3) / 1e9  # read + write


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--ops", default="denoise,median3,npr,highpass")
    args = ap.parse_args()
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    cfg = fpfast.build_config()
    mod = fpfast.backends.cuda_module()
    info = mod.device_info(torch.cuda.current_device())
    print("build:", cfg.get("cuda_build"))
    print("device:", {k: v for k, v in info.items() if k != "kernels"})
    for name, k in info["kernels"].items():
        print(f"  kernel {name:18s} {k}")
    bw = copy_bandwidth(args.reps)
    print(f"device-to-device copy: {bw:.0f} GB/s (read + write)\n")
    print(f"{'op':9s} {'shape':>9s} {'batch':>5s} | max abs err vs float64 reference per family"
          f" | sums ms  GB/s  %copy | features ms | torch-ref ms  speedup")
    for op in args.ops.split(","):
        spec = FingerprintSpec(geometry="none", residual=op)
        for side, batch in SHAPES:
            nbytes = batch * side * side * 3
            nbuf = max(4, -(-MIN_BYTES // nbytes))
            g = torch.Generator(device="cuda").manual_seed(side)
            inputs = [torch.randint(0, 256, (batch, side, side, 3), device="cuda", dtype=torch.uint8, generator=g)
                      for _ in range(nbuf)]
            chw = [x.permute(0, 3, 1, 2) for x in inputs]
            out = fingerprint_features(inputs[0], spec, backend="cuda")
            x0 = to_float(chw[0][: min(batch, 16)].cpu()).double()
            truth = reference_features(reference_residual(x0, op, spec.sigma), spec)
            err = (out[: x0.shape[0]].cpu().double() - truth).abs()
            errs = " ".join(f"{f}={err[:, sl].max().item():.1e}" for f, sl in spec.slices.items())
            t_sums = time_ms(lambda x: cuda_ops.feature_sums(x, spec, op, False, False), chw, args.reps)
            t_feat = time_ms(lambda x: fingerprint_features(x, spec, backend="cuda"), inputs, args.reps)
            t_ref = time_ms(lambda x: fingerprint_features(x, spec, backend="torch"), inputs, max(5, args.reps // 5))
            gbs = nbytes / (t_sums * 1e-3) / 1e9
            print(f"{op:9s} {side:>4d}x{side:<4d} {batch:5d} | {errs} | {t_sums:7.3f} {gbs:5.0f} {100 * gbs / bw:5.1f}%"
                  f" | {t_feat:8.3f} | {t_ref:9.3f} {t_ref / t_feat:7.1f}x")
            del inputs, chw
    stages(args.reps)


def stages(reps, side=256, batch=512):
    """Where the time of one batch goes at side^2 x batch (denoise): kernel, rfft2, post, whole op
    (torch post / fused post / CUDA graph), and a device copy of the same bytes."""
    from fpfast.ops.graph import fused_op
    from fpfast.ops.sums import finalize, radial_features
    from fpfast.ops.triton.post import finalize_partials
    spec = FingerprintSpec(geometry="none")
    g = torch.Generator(device="cuda").manual_seed(1)
    inputs = [torch.randint(0, 256, (batch, side, side, 3), device="cuda", dtype=torch.uint8, generator=g)
              for _ in range(2)]
    chw = [x.permute(0, 3, 1, 2) for x in inputs]
    part, gray, _ = cuda_ops.feature_partials(chw[0], spec, "denoise", True, False)
    nbytes = inputs[0].numel()
    dst = torch.empty_like(inputs[0])
    op = fused_op(inputs[0], spec, backend="cuda")
    op.input.copy_(inputs[0])
    rows = {
        "device copy of the batch": lambda x: dst.copy_(x),
        "cuda kernel (partials + gray)": lambda x: cuda_ops.feature_partials(x.permute(0, 3, 1, 2), spec, "denoise", True, False),
        "rfft2 of gray": lambda x: torch.fft.rfft2(gray),
        "torch post (sum, radial, finalize)": lambda x: finalize(part.sum(1, dtype=torch.float64), side, side, spec,
                                                                 radial_features(gray, spec.radial_bins)),
        "fused post (rfft2 + 1 launch)": lambda x: finalize_partials(part, gray, side, side, spec),
        "whole op, post=torch": lambda x: fingerprint_features(x, spec, backend="cuda", post="torch"),
        "whole op, post=fused": lambda x: fingerprint_features(x, spec, backend="cuda", post="fused"),
        "whole op, CUDA graph (input in place)": lambda x: op(op.input),
        "whole op, CUDA graph + input copy": lambda x: op(x),
    }
    print(f"\nstages at {side}^2 x {batch} (denoise; graph captured: {op.captured} {op.error or ''})")
    for name, fn in rows.items():
        ms = time_ms(fn, inputs, reps)
        print(f"  {name:40s} {ms:8.3f} ms  {nbytes / (ms * 1e-3) / 1e9:7.0f} GB/s of input")


if __name__ == "__main__":
    main()
