"""Exact mode's float32 rounding margin: the torch engine on 30,000 real 64-px patches, margin on
(brute force's answers) vs off (k + 32 float32 candidates fetched, the first k + rerank re-ranked,
no second pass: the old behaviour), alternated in one run on the CPU.

    python benchmarks/bench_exact_margin.py
"""
import os
import tempfile
import time

import torch

from fpfast.projectors.manifold import ManifoldProjector, build_manifold
from fpfast.zoo.real import bundled_photos, random_patches

n, s, nq = 30000, 64, 64
ph = bundled_photos()
tmp = tempfile.mkdtemp()
build_manifold(random_patches(ph, n, s, seed=1), tmp, s, modes=("exact",))
q = torch.from_numpy(random_patches(ph, nq, s, seed=2)).permute(0, 3, 1, 2).float() / 255
p = ManifoldProjector(tmp, engine="torch", batch_size=nq)
p.search(q[:2])
calls, candidates, margin = [], p._candidates, p._tolerance
p._candidates = lambda xb, eng, kk: calls.append((xb.shape[0], kk)) or candidates(xb, eng, kk)
off = lambda qv, eng: torch.full((qv.shape[0],), -float("inf"), dtype=torch.float64)  # noqa: E731
print("load", os.getloadavg())
for rep in range(3):
    ids = {}
    for mode, tol in (("margin", margin), ("no margin", off)):
        p._tolerance, calls[:] = tol, []
        t = time.perf_counter()
        ids[mode] = p.search(q)[1]
        print(f"{mode}: {time.perf_counter() - t:.3f} s / {nq} queries; searches (rows, candidates): {calls}",
              flush=True)
    print("queries answered differently:", (ids["margin"] != ids["no margin"]).any(1).nonzero().flatten().tolist())
print("load", os.getloadavg())
