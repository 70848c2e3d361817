"""Benchmark the heavy projectors against their papers' own recipes, in one run each.

* manifold: nearest-real search (ours: FAISS exact / torch exact / ivfpq / hnsw, each re-ranked
  exactly) vs ManiFPT's algorithm: for each query an exhaustive torch loop over a DataLoader of the
  real images (batch 8), squared L2, argmin. Recall@1 against that loop's answers.
* autoencoder / diffusion: residual images/s on a randomly initialised model of a realistic
  architecture at a small size; the diffusion projector at its default steps vs DIRE's recipe
  (20 DDIM inversion + 20 reconstruction steps, batch 16, diffusers' DDIM schedulers, float32).

    python benchmarks/bench_projectors.py [--device cpu|cuda] [--quick]

Writes benchmarks/results/projectors{,_cuda}.csv and .md. Attribution accuracy of the diffusion
projector vs DIRE needs the GM-zoo and is reported as pending when fpfast.zoo is absent.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import importlib.util
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fpfast.projectors.autoencoder import AutoencoderProjector  # noqa: E402
from fpfast.projectors.diffusion import DiffusionProjector  # noqa: E402
from fpfast.projectors.manifold import ManifoldProjector, build_manifold  # noqa: E402

FIELDS = ["op", "variant", "backend", "device", "shape", "batch", "n_ref", "median_s", "images_per_s",
          "speedup", "recall_at_1", "note", "versions", "date"]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeat=3):
    out, ts = None, []
    for _ in range(repeat):
        sync(device)
        t = time.perf_counter()
        out = fn()
        sync(device)
        ts.append(time.perf_counter() - t)
    return out, statistics.median(ts)


def device_name(device):
    return torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())


# ---------------------------------------------------------------------------- ManiFPT's loop
@torch.no_grad()
def manifpt_nearest(queries, reals, device):
    """ManiFPT's projection: per query, a full pass of a DataLoader (batch 8) over the reals."""
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(reals), batch_size=8, shuffle=False)
    out = []
    for q in queries:
        q = q.to(device)
        best, best_i, seen = float("inf"), -1, 0
        for (batch,) in loader:
            batch = batch.to(device)
            d = ((batch - q[None]) ** 2).sum(dim=(1, 2, 3))
            v, i = d.min(0)
            if v.item() < best:
                best, best_i = v.item(), seen + i.item()
            seen += batch.shape[0]
        out.append(best_i)
    return torch.tensor(out)


VARIANTS = {"exact-faiss": ("exact", "faiss", "SQ8_direct (uint8) + exact re-rank 2"),
            "exact-torch": ("exact", "torch", "matmul+topk + exact re-rank 2"),
            "exact-bound": ("exact", "bound", "PCA-64 lower bound, exact float64 on survivors"),
            "ivfpq": ("ivfpq", "faiss", "IVF-PQ nprobe 16 + re-rank 8"),
            "hnsw": ("hnsw", "faiss", "HNSW32 SQ8_direct + re-rank 8")}


def bench_manifold(args, device, rows):
    s, n, nq = args.size, args.n_ref, args.n_query
    rng = np.random.default_rng(0)
    # smooth random "photos" (low-pass noise) so near-duplicates and approximate search mean something
    base = torch.nn.functional.interpolate(torch.rand(n, 3, s // 8, s // 8, generator=torch.Generator().manual_seed(0)),
                                           size=(s, s), mode="bilinear", align_corners=False)
    reals = (base * 255 + torch.from_numpy(rng.normal(0, 8, (n, 3, s, s))).float()).clamp(0, 255).round().to(torch.uint8)
    real_nhwc = reals.permute(0, 2, 3, 1).numpy()
    src = rng.choice(n, nq, replace=False)
    queries = (reals[src].float() / 255 + 0.03 * torch.randn(nq, 3, s, s)).clamp(0, 1)
    variants = [VARIANTS[v] for v in args.variants.split(",")]
    tmp = tempfile.mkdtemp()
    t = time.perf_counter()
    build_manifold(real_nhwc, tmp, s, modes=tuple(dict.fromkeys(m for m, _, _ in variants)))
    build_s = time.perf_counter() - t
    reals_f = reals.float().div(255).to(device)
    nb = min(nq, args.baseline_queries)
    truth, t_base = timed(lambda: manifpt_nearest(queries[:nb].to(device), reals_f, device), device, repeat=1)
    per_q_base = t_base / nb
    truth_all = manifpt_nearest(queries.to(device), reals_f, device) if nb < nq else truth
    rows.append(dict(op="manifold", variant="ManiFPT loop (DataLoader b=8, sq. L2, argmin)", backend="torch",
                     batch=8, median_s=per_q_base * nq, images_per_s=1 / per_q_base, speedup=1.0, recall_at_1=1.0,
                     note=f"timed on {nb} queries, per query x {nq}"))
    for mode, engine, what in variants:
        if device.type == "cuda" and engine == "faiss" and importlib.util.find_spec("faiss") is None:
            continue
        p = ManifoldProjector(tmp, mode=mode, engine=engine, batch_size=nq)
        x = queries.to(device)
        _, t_warm = timed(lambda: p.search(x), device, repeat=1)  # warm: index read, torch vectors / bound built
        (_, idx), ts = timed(lambda: p.search(x), device)
        rec = float((idx[:, 0].cpu() == truth_all.cpu()).float().mean())
        rows.append(dict(op="manifold", variant=f"{mode}: {what}", backend=engine, batch=nq, median_s=ts,
                         images_per_s=nq / ts, speedup=per_q_base * nq / ts, recall_at_1=rec,
                         note=(f"build {build_s:.1f}s for {len(variants)} variants' indexes" if mode == "exact" and engine == "faiss"
                               else f"first call {t_warm:.1f}s (bound fitted)" if engine == "bound" else "")))
    for r in rows:
        if r["op"] == "manifold":
            r.update(shape=f"3x{s}x{s}", n_ref=n)


# ---------------------------------------------------------------------------- models
def sd_like_vae():
    from diffusers import AutoencoderKL
    torch.manual_seed(0)  # Stable Diffusion's VAE architecture, random weights (no download)
    return AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4).eval()


def small_unet(size, big):
    from diffusers import UNet2DModel
    torch.manual_seed(0)
    if big:  # google/ddpm-cifar10-32's architecture (35.7M parameters)
        return UNet2DModel(sample_size=size, block_out_channels=(128, 256, 256, 256), layers_per_block=2,
                           down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D")).eval()
    return UNet2DModel(sample_size=size, block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=8,
                       down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3).eval()


@torch.no_grad()
def dire_recipe(unet, x, steps=20):
    from diffusers import DDIMInverseScheduler, DDIMScheduler
    inv, fwd = DDIMInverseScheduler(clip_sample=False), DDIMScheduler(clip_sample=False)
    inv.set_timesteps(steps)
    fwd.set_timesteps(steps)
    z = 2 * x - 1
    for t in inv.timesteps:
        z = inv.step(unet(z, t).sample, t, z).prev_sample
    for t in fwd.timesteps:
        z = fwd.step(unet(z, t).sample, t, z).prev_sample
    return x - ((z + 1) / 2).clamp(0, 1)


def bench_models(args, device, rows):
    gpu = device.type == "cuda"
    s = args.model_size
    vae = sd_like_vae()
    ae = AutoencoderProjector(vae, device=device, batch_size=args.ae_batch)
    x = torch.rand(args.ae_batch, 3, s, s, device=device)
    ae.residual(x[:1])
    _, ts = timed(lambda: ae.residual(x), device, repeat=2)
    rows.append(dict(op="autoencoder", variant="SD-VAE architecture (random weights), x - D(E(x))",
                     backend="torch " + str(ae.dtype).replace("torch.", ""), shape=f"3x{s}x{s}",
                     batch=args.ae_batch, median_s=ts, images_per_s=args.ae_batch / ts))
    ds = args.unet_size
    unet = small_unet(ds, big=gpu or args.big_unet)
    arch = "ddpm-cifar10-32 architecture" if (gpu or args.big_unet) else "small UNet (32,64,64)"
    b = 16
    xb = torch.rand(b, 3, ds, ds, device=device)
    base_unet = unet.to(device)
    dire_recipe(base_unet, xb[:2], steps=1)
    _, t_dire = timed(lambda: dire_recipe(base_unet, xb, 20), device, repeat=1)
    rows.append(dict(op="diffusion", variant=f"DIRE recipe 20+20 DDIM steps, float32 ({arch})", backend="torch float32",
                     shape=f"3x{ds}x{ds}", batch=b, median_s=t_dire, images_per_s=b / t_dire, speedup=1.0,
                     note="attribution accuracy: reference"))
    zoo = importlib.util.find_spec("fpfast.zoo") is not None
    for steps in (4, 20):
        p = DiffusionProjector(small_unet(ds, big=gpu or args.big_unet), steps=steps, device=device, batch_size=b)
        p.residual(xb[:2])
        _, tp = timed(lambda: p.residual(xb), device, repeat=1)
        rows.append(dict(op="diffusion", variant=f"fpfast DiffusionProjector steps={steps}{' (default)' if steps == 4 else ''}",
                         backend="torch " + str(p.dtype).replace("torch.", ""), shape=f"3x{ds}x{ds}", batch=b,
                         median_s=tp, images_per_s=b / tp, speedup=t_dire / tp,
                         note="attribution accuracy: " + ("run benchmarks with the zoo" if zoo else "pending (no GM-zoo)")))


def write(rows, device, args):
    ver = f"torch {torch.__version__}; diffusers {__import__('diffusers').__version__}"
    if importlib.util.find_spec("faiss"):
        ver += f"; faiss {__import__('faiss').__version__}"
    date = datetime.date.today().isoformat()
    name = args.name or ("projectors" if device.type == "cpu" else f"projectors_{device.type}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    for r in rows:
        r.setdefault("device", device_name(device))
        r.update(versions=ver, date=date)
    with open(out / f"{name}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})
    f = lambda v, fmt: "" if v in (None, "") else format(v, fmt)  # noqa: E731
    lines = [f"# Projector benchmarks ({device.type})", "",
             f"Device: {device_name(device)}, {torch.get_num_threads()} torch threads; {ver}; {date}.",
             args.note, "",
             "| op | variant | backend | shape | batch | n_ref | time (s) | images/s | speed-up | recall@1 | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['op']} | {r['variant']} | {r['backend']} | {r.get('shape', '')} | {r.get('batch', '')} | "
                     f"{r.get('n_ref', '')} | {f(r['median_s'], '.4g')} | {f(r['images_per_s'], '.4g')} | "
                     f"{f(r.get('speedup'), '.1f')} | {f(r.get('recall_at_1'), '.3f')} | {r.get('note', '')} |")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=64, help="manifold working size")
    ap.add_argument("--n-ref", type=int, default=2000)
    ap.add_argument("--n-query", type=int, default=64)
    ap.add_argument("--baseline-queries", type=int, default=16, help="queries the ManiFPT loop is timed on")
    ap.add_argument("--model-size", type=int, default=64)
    ap.add_argument("--ae-batch", type=int, default=4)
    ap.add_argument("--unet-size", type=int, default=32)
    ap.add_argument("--big-unet", action="store_true")
    ap.add_argument("--skip-models", action="store_true")
    ap.add_argument("--note", default="")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"manifold searches, of {','.join(VARIANTS)}")
    ap.add_argument("--name", default=None, help="results file stem (default projectors[_DEVICE])")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here")
    rows = []
    bench_manifold(args, device, rows)
    if not args.skip_models:
        bench_models(args, device, rows)
    write(rows, device, args)


if __name__ == "__main__":
    main()
