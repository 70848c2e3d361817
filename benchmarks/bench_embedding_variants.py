"""Embedding inference at 64 px on the CPU: what each speed-up buys (issue 14, item 5).

    python benchmarks/bench_embedding_variants.py [--batch 256] [--rounds 5] [--out /tmp/variants.json]

Variants (uint8 [B, 64, 64, 3] in, unit vectors out, :meth:`Embedder.embed_tensor`): the
network as it was (BatchNorms unfolded) in NCHW and channels-last, BatchNorms folded (today's
default), + ``torch.compile``, + bf16 autocast, both, and narrower networks ([8, 32, 64] and
[8, 16, 32] channels, random weights: speed only, they would need their own pretraining), next
to the handcrafted fused op on the same batch. The machine is shared: the variants are timed in
interleaved rounds (each round times every variant once) so that they see the same load, and the
load average is recorded; the ratios are the result, the absolute figures hold for that load.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fpfast.embed import Embedder, ResidualEmbedNet  # noqa: E402
from fpfast.embed.universal import load_universal  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.spec import FingerprintSpec  # noqa: E402


def _unfolded(emb: Embedder, channels_last: bool) -> Embedder:
    """A copy of ``emb`` whose inference network keeps its BatchNorms (the path before folding)."""
    e = Embedder(copy.deepcopy(emb.net), emb.config)
    net = copy.deepcopy(emb.net).eval()
    e._dev_nets[("cpu", "fp32", False)] = net.to(memory_format=torch.channels_last) if channels_last else net
    return e


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    uni = load_universal()
    spec = FingerprintSpec()
    narrow = {w: Embedder(ResidualEmbedNet({"widths": list(w)}), {"spec": spec.to_dict()})
              for w in ((8, 32, 64), (8, 16, 32))}
    x = torch.randint(0, 256, (a.batch, 64, 64, 3), dtype=torch.uint8)
    variants = {
        "unfolded, NCHW, fp32": lambda: _unfolded(uni, False).embed_tensor(x, layout="hwc"),
        "unfolded, channels-last, fp32 (before)": lambda: _unfolded(uni, True).embed_tensor(x, layout="hwc"),
        "folded BN, channels-last, fp32 (default)": lambda: uni.embed_tensor(x, layout="hwc"),
        "folded + bf16": lambda: uni.embed_tensor(x, layout="hwc", precision="bf16"),
    }
    if not a.no_compile:
        variants["folded + compile"] = lambda: uni.embed_tensor(x, layout="hwc", compile=True)
        variants["folded + bf16 + compile"] = lambda: uni.embed_tensor(x, layout="hwc", precision="bf16", compile=True)
    for w, e in narrow.items():
        variants[f"widths {list(w)}, fp32"] = lambda e=e: e.embed_tensor(x, layout="hwc")
        if not a.no_compile:
            variants[f"widths {list(w)}, bf16 + compile"] = lambda e=e: e.embed_tensor(
                x, layout="hwc", precision="bf16", compile=True)
    variants["handcrafted fused op (cpp)"] = lambda: fingerprint_features(x, spec)
    load0 = os.getloadavg()[0]
    for f in variants.values():  # warm-up (and compilation) outside the timed rounds
        f()
    times = {k: [] for k in variants}
    for _ in range(a.rounds):
        for k, f in variants.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    base = sorted(times["unfolded, channels-last, fp32 (before)"])[a.rounds // 2]
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "batch": a.batch,
           "threads": torch.get_num_threads(), "torch": torch.__version__,
           "load_avg_1min": [load0, os.getloadavg()[0]], "rows": {}}
    for k, ts in times.items():
        med = sorted(ts)[a.rounds // 2]
        res["rows"][k] = {"images_per_s": round(a.batch / med, 1), "vs_before": round(base / med, 2)}
        print(f"| {k} | {a.batch / med:,.0f} | {base / med:.2f} |", flush=True)
    print(json.dumps(res))
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
