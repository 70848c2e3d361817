"""30,000 references: the ManiFPT loop (2 queries), torch exact and bound exact (64 queries), synthetic and real patches."""
import os, sys, time, tempfile, numpy as np, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_projectors import manifpt_nearest
from fpfast.zoo.real import bundled_photos, random_patches
from fpfast.projectors.manifold import ManifoldProjector, build_manifold
print("load", os.getloadavg())
n, s, nq = 30000, 64, 64
rng = np.random.default_rng(0)
base = torch.nn.functional.interpolate(torch.rand(n, 3, s // 8, s // 8, generator=torch.Generator().manual_seed(0)), size=(s, s), mode="bilinear", align_corners=False)
syn = (base * 255 + torch.from_numpy(rng.normal(0, 8, (n, 3, s, s))).float()).clamp(0, 255).round().to(torch.uint8)
src = rng.choice(n, nq, replace=False)
qsyn = (syn[src].float() / 255 + 0.03 * torch.randn(nq, 3, s, s)).clamp(0, 1)
ph = bundled_photos()
real = torch.from_numpy(random_patches(ph, n, s, seed=1)).permute(0, 3, 1, 2).contiguous()
qreal = torch.from_numpy(random_patches(ph, nq, s, seed=2)).permute(0, 3, 1, 2).float() / 255
for name, refs, q in (("synthetic", syn, qsyn), ("real patches", real, qreal)):
    tmp = tempfile.mkdtemp(); build_manifold(refs.permute(0, 2, 3, 1).numpy(), tmp, s, modes=("exact",))
    t = time.perf_counter(); manifpt_nearest(q[:2], refs.float().div(255), torch.device("cpu")); loop = (time.perf_counter() - t) / 2
    pt = ManifoldProjector(tmp, engine="torch", batch_size=nq); pt.search(q[:2])
    t = time.perf_counter(); _, it = pt.search(q); tt = time.perf_counter() - t
    print(f"{name}: loop {loop:.3f} s/query; torch exact {tt:.3f} s/64 -> {loop*nq/tt:.0f}x", flush=True)
    for dims in (64, 128, 256):
        pb = ManifoldProjector(tmp, engine="bound", bound_dims=dims, batch_size=nq)
        t = time.perf_counter(); pb.search(q[:2]); fit = time.perf_counter() - t
        t = time.perf_counter(); _, ib = pb.search(q); tb = time.perf_counter() - t
        print(f"  bound dims {dims}: fit {fit:.1f}s, {tb:.3f} s/64 -> {loop*nq/tb:.0f}x the loop, {tt/tb:.2f}x torch; same ids as torch exact: {(ib==it).all().item()}", flush=True)
print("load", os.getloadavg())
