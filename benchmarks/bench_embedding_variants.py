"""Embedding inference at 64 px on the CPU: what each speed-up buys (issue 14, item 5).

    python benchmarks/bench_embedding_variants.py [--batch 256] [--rounds 5] [--weights DIR] [--out F.json]

Variants (uint8 [B, 64, 64, 3] in, unit vectors out): the shipped network as it ran before
(BatchNorms folded, the torch reference residual inside the network), today's path
(:meth:`Embedder.embed_tensor`: the residual from the backend op, the cpp kernel here), + ``torch.compile``,
+ bf16 autocast; the space-to-depth stem (``stem: unshuffle``, widths 16/32/64) with the weights of
``--weights DIR`` (a ``fpfast pretrain`` output) or random ones, eager and compiled; a narrower
network ([8, 16, 32], random weights: speed only); the handcrafted fused op on the same batch;
the denoise residual alone, torch reference against the backend op.
The machine is shared: the variants are timed in interleaved rounds (each round times every
variant once) so that they see the same load, and the load average is recorded; the ratios are
the result, the absolute figures hold for that load.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fpfast.embed import Embedder, ResidualEmbedNet  # noqa: E402
from fpfast.embed.model import fold_batchnorm  # noqa: E402
from fpfast.embed.universal import load_card, load_universal  # noqa: E402
from fpfast.ops.features import fingerprint_features  # noqa: E402
from fpfast.ops.residual import residual as residual_op  # noqa: E402
from fpfast.reference.residual import residual as reference_residual  # noqa: E402
from fpfast.spec import FingerprintSpec  # noqa: E402

BEFORE = "shipped, torch residual in the network (before)"


def _before(emb: Embedder, x: torch.Tensor):
    """The path before the residual moved to the backend op: the folded network on float CHW input."""
    net = fold_batchnorm(emb.net).to(memory_format=torch.channels_last)

    def run():
        with torch.inference_mode():
            return net(x.permute(0, 3, 1, 2).float().div(255).contiguous(memory_format=torch.channels_last))
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--weights", default=None, help="a fpfast pretrain output with stem=unshuffle")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    uni = load_universal()
    spec = FingerprintSpec()
    unshuf = (load_card(a.weights)[0] if a.weights else
              Embedder(ResidualEmbedNet({"stem": "unshuffle"}), {"spec": spec.to_dict()}))
    tag = f"unshuffle {unshuf.arch['widths']}" + ("" if a.weights else " (random weights)")
    narrow = Embedder(ResidualEmbedNet({"widths": [8, 16, 32]}), {"spec": spec.to_dict()})
    x = torch.randint(0, 256, (a.batch, 64, 64, 3), dtype=torch.uint8)
    variants = {
        BEFORE: _before(uni, x),
        "shipped, residual from the backend op (default)": lambda: uni.embed_tensor(x, layout="hwc"),
        "shipped + bf16": lambda: uni.embed_tensor(x, layout="hwc", precision="bf16"),
        f"{tag}": lambda: unshuf.embed_tensor(x, layout="hwc"),
        "widths [8, 16, 32] (random weights)": lambda: narrow.embed_tensor(x, layout="hwc"),
    }
    if not a.no_compile:
        variants["shipped + compile"] = lambda: uni.embed_tensor(x, layout="hwc", compile=True)
        variants[f"{tag} + compile"] = lambda: unshuf.embed_tensor(x, layout="hwc", compile=True)
        variants["widths [8, 16, 32] + compile"] = lambda: narrow.embed_tensor(x, layout="hwc", compile=True)
    variants["handcrafted fused op (cpp)"] = lambda: fingerprint_features(x, spec)
    xf = x.permute(0, 3, 1, 2).float().div(255).contiguous()  # the residual alone, both ways
    variants["denoise residual alone, torch reference"] = lambda: reference_residual(xf, "denoise", 1.0)
    variants["denoise residual alone, backend op (cpp)"] = lambda: residual_op(xf, "denoise", 1.0)
    load0 = os.getloadavg()[0]
    for f in variants.values():  # warm-up (and compilation) outside the timed rounds
        f()
    times = {k: [] for k in variants}
    for _ in range(a.rounds):
        for k, f in variants.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    base = sorted(times[BEFORE])[a.rounds // 2]
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "batch": a.batch,
           "threads": torch.get_num_threads(), "torch": torch.__version__,
           "load_avg_1min": [load0, os.getloadavg()[0]], "shipped": uni.identity[:12],
           "unshuffle_weights": unshuf.identity[:12] if a.weights else "random", "rows": {}}
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
