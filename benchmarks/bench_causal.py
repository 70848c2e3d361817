"""Issue 15's measurements, through the CLI as a user runs it (``benchmarks/results/causal.md``).

    python3 benchmarks/bench_causal.py --zoo ZOO --work WORK --epochs 20 train leak
    python3 benchmarks/bench_causal.py --zoo ZOO --work WORK anon --tag pgd3 -- --eps 3 --steps 10

``subsample``: a smaller copy of ``--from`` (a zoo too big for the CPU) at ``--zoo``: the same
``--per-split`` file indices (drawn with ``--seed``) of every model, so contents stay paired
across generators; ``val`` takes contents of ``--from``'s train split that ``train`` does not
(for choices such as the ``--project-out`` rank: never the test splits). Files are hard links
(copies across file systems: the sub-zoo is read, never written); content.parquet keeps the
chosen rows.
``vae``: the small autoencoder of ``causal_ae`` (trained on the zoo's train real photos).
``train``: galleries ``hand`` (handcrafted default spec), ``plain`` (learned embedding, seed 0),
``causal`` (``--causal``, seed 0), ``causal_s1`` and ``plain_s1`` (seed 1), and the variants of
:data:`GALLERIES`; ``--galleries`` picks.
``leak``: ``fpfast leakage`` of each gallery on ``--splits`` (default ``test``, by content, and
``cross_content``; ``val`` of a sub-zoo for choices).
``anon``: ``fpfast anonymize`` (against ``--against``, default ``causal``) of the first
``--per-model`` images (of ``--anon-split``, default test) of every non-real gallery model,
then ``fpfast attribute`` of the inputs and of the counterfactuals with every gallery of
``--attributors``: the share attributed (closed set) to the true source before / after, mean
PSNR / SSIM, images/s. Results: WORK/results.jsonl (one line each).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

GALLERIES = {"hand": [], "plain": ["--seed", "0"], "causal": ["--causal", "--seed", "0"],
             "causal_s1": ["--causal", "--seed", "1"], "plain_s1": ["--seed", "1"],
             "causal_hsic4": ["--causal", "--hsic", "4", "--pair", "0", "--seed", "0"],
             "causal_pair_only": ["--causal", "--hsic", "0", "--pair", "1", "--seed", "0"],
             # issue 15 item 2(c): the input - the autoencoder's reconstruction residual (stage vae) ...
             "causal_ae": ["--causal", "--seed", "0"],
             # ... and the multi-feature representation (handcrafted families + learned)
             "causal_multi": ["--causal", "--handcrafted", "--seed", "0"],
             # post-hoc: the training contents' subspace projected out (fpfast.causal.project)
             "causal_po32": ["--causal", "--project-out", "32", "--seed", "0"],
             "causal_po64": ["--causal", "--project-out", "64", "--seed", "0"],
             "causal_po16": ["--causal", "--project-out", "16", "--seed", "0"],
             "causal_po48": ["--causal", "--project-out", "48", "--seed", "0"],
             # the standard zoo's rank (chosen on val), trained longer (EPOCHS below) ...
             "causal_e20_po48": ["--causal", "--project-out", "48", "--seed", "0"],
             "plain_e20": ["--seed", "0"],  # its plain reference, as long
             # ... or with a 4x stronger content adversary
             "causal_hsic4_po48": ["--causal", "--hsic", "4", "--project-out", "48", "--seed", "0"],
             "causal_multi_po32": ["--causal", "--handcrafted", "--project-out", "32", "--seed", "0"]}
EPOCHS = {"causal_e20_po48": 20, "plain_e20": 20}  # galleries trained longer than --epochs
ENROLL = {"causal_ae": lambda a: ["--spec", f"autoencoder:{os.path.join(a.work, 'vae')}"]}


def fp(*args, check=True):
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "fpfast", *map(str, args)], capture_output=True, text=True)
    if check and r.returncode not in (0, 3):
        raise SystemExit(f"fpfast {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r, time.perf_counter() - t


def record(work, rec):
    rec["date"] = time.strftime("%Y-%m-%d %H:%M")
    rec["load"] = os.getloadavg()[0]
    with open(os.path.join(work, "results.jsonl"), "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    print(json.dumps(rec), flush=True)


def subsample(src, dst, per_split: dict, seed: int = 0):
    """Write the sub-zoo ``dst`` of zoo ``src``: for each ``split: n`` of ``per_split`` the same n
    file indices (seeded) of every model of that split; ``val: n`` draws from ``src``'s train
    indices after those of ``train``. Refuses an existing ``dst``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    if os.path.exists(dst):
        raise SystemExit(f"{dst} exists: subsample writes a new directory")
    rows = pq.read_table(os.path.join(src, "content.parquet")).to_pylist()
    stem = lambda f: os.path.splitext(os.path.basename(f))[0]  # noqa: E731
    rng = np.random.default_rng(seed)
    pick, taken = {}, {}
    for split, n in per_split.items():
        base = "train" if split == "val" else split
        if base not in taken:
            stems = sorted({stem(r["file"]) for r in rows if r["split"] == base})
            taken[base] = [stems[i] for i in rng.permutation(len(stems))]
        if n > len(taken[base]):
            raise SystemExit(f"split {base} of {src} has too few images left for {split}: {n}")
        pick[split], taken[base] = (base, set(taken[base][:n])), taken[base][n:]
    out = []
    for split, (base, stems) in pick.items():
        for r in rows:
            if r["split"] == base and stem(r["file"]) in stems:
                rel = os.path.join(split, r["model"], os.path.basename(r["file"]))
                os.makedirs(os.path.join(dst, split, r["model"]), exist_ok=True)
                try:
                    os.link(os.path.join(src, r["file"]), os.path.join(dst, rel))
                except OSError:
                    import shutil
                    shutil.copyfile(os.path.join(src, r["file"]), os.path.join(dst, rel))
                out.append({**r, "split": split, "file": rel})
    pq.write_table(pa.Table.from_pylist(out), os.path.join(dst, "content.parquet"))
    return len(out)


def train(a):
    for name in a.galleries.split(","):
        extra = GALLERIES[name]
        g = os.path.join(a.work, name)
        if os.path.exists(g):
            continue
        _, t_enroll = fp("enroll", g, "--from-folders", f"{a.zoo}/train", "-q",
                         *ENROLL.get(name, lambda a: [])(a))
        t_train, epochs = 0.0, EPOCHS.get(name, a.epochs)
        if name != "hand":
            _, t_train = fp("train", g, "--from-folders", f"{a.zoo}/train", "--epochs", epochs, "-q", *extra)
        record(a.work, {"stage": "train", "gallery": name, "epochs": epochs, "enroll_s": round(t_enroll, 1),
                        "train_s": round(t_train, 1)})


def vae(a):
    """A small AutoencoderKL (one down-sampling, 4 latent channels) trained to reconstruct the
    zoo's *train* real photos (MSE of the decoded latent mean, Adam, seed 0), saved to WORK/vae:
    the projector of ``causal_ae`` (the seed's pretrained diffusion autoencoder, at zoo scale)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from diffusers import AutoencoderKL
    out = os.path.join(a.work, "vae")
    if os.path.exists(out):
        return
    d = os.path.join(a.zoo, "train", "real")
    x = torch.from_numpy(np.stack([np.asarray(Image.open(os.path.join(d, f)).convert("RGB"))
                                   for f in sorted(os.listdir(d)) if f.endswith(".png")]))
    x = x.permute(0, 3, 1, 2).float() / 127.5 - 1
    torch.manual_seed(0)
    net = AutoencoderKL(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
                        layers_per_block=1, sample_size=x.shape[-1])
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    for step in range(a.vae_steps):
        xb = x[torch.randint(0, len(x), (32,), generator=g)]
        if step % 2:
            xb = xb.flip(-1)
        loss = F.mse_loss(net.decode(net.encode(xb).latent_dist.mean).sample, xb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        rec = net.decode(net.encode(x).latent_dist.mean).sample.clamp(-1, 1)
        psnr = float(10 * torch.log10(4 / F.mse_loss(rec, x)))
    net.eval().save_pretrained(out)
    record(a.work, {"stage": "vae", "steps": a.vae_steps, "train_images": len(x), "final_loss": float(loss.detach()),
                    "reconstruction_psnr_train": round(psnr, 2), "seconds": round(time.perf_counter() - t, 1)})


def leak(a):
    for name in a.galleries.split(","):
        for split in a.splits.split(","):
            r, t = fp("leakage", os.path.join(a.work, name), "--zoo", a.zoo, "--split", split)
            rep = json.loads(r.stdout)
            record(a.work, {"stage": "leak", "gallery": name, "split": split, "seconds": round(t, 1),
                            "probe": rep["probe"], "content_r2": rep["content_r2"],
                            "fdr_overall": rep["fdr"]["overall"], "fdr_per_class": rep["fdr"]["per_class"],
                            "accuracy_knn": rep["accuracy_knn"], "accuracy_centroid": rep["accuracy_centroid"]})


def anon(a, extra):
    import pyarrow.parquet as pq
    sp = a.anon_split
    zoo_models = sorted(d for d in os.listdir(f"{a.zoo}/{sp}") if d != "real")
    inputs = []
    for m in zoo_models:
        fs = sorted(f for f in os.listdir(f"{a.zoo}/{sp}/{m}") if f.endswith(".png"))[:a.per_model]
        inputs += [os.path.abspath(os.path.join(a.zoo, sp, m, f)) for f in fs]
    lst = os.path.join(a.work, f"anon_{a.tag}_inputs.txt")
    with open(lst, "w") as fh:
        fh.write("\n".join(inputs) + "\n")
    out = os.path.join(a.work, f"anon_{a.tag}")
    r, secs = fp("anonymize", f"@{lst}", "--gallery", os.path.join(a.work, a.against), "--out", out,
                 "-q", *(["--overwrite"] if os.path.exists(out) else []), *extra)
    rows = pq.read_table(os.path.join(out, "report")).to_pylist()
    true = {r["path"]: r["path"].split(os.sep)[-2] for r in rows}
    outs = {os.path.abspath(os.path.join(out, r["output"])): r["path"] for r in rows if not r["error"]}
    # images already attributed to the target are left as they are (PSNR inf): not averaged
    changed = [r["psnr"] for r in rows if not r["error"] and r["psnr"] != float("inf")]
    rec = {"stage": "anon", "tag": a.tag, "split": sp, "against": a.against, "args": extra, "n": len(rows),
           "errors": sum(1 for r in rows if r["error"]), "seconds": round(secs, 1),
           "images_per_s": round(len(rows) / secs, 2),
           "unchanged": len(outs) - len(changed),
           "psnr_mean": sum(changed) / max(1, len(changed)),
           "psnr_min": min(r["psnr"] for r in rows if not r["error"]),
           "ssim_mean": sum(r["ssim"] for r in rows if not r["error"]) / max(1, len(outs)),
           "chance": 1 / (len(zoo_models) + 1), "true_source": {}}
    for name in a.attributors.split(","):
        res = {}
        for what, src in (("before", lst), ("after", None)):
            p = os.path.join(a.work, f"attr_{a.tag}_{name}_{what}.parquet")
            if src is None:
                src = os.path.join(a.work, f"anon_{a.tag}_outputs.txt")
                with open(src, "w") as fh:
                    fh.write("\n".join(outs) + "\n")
            fp("attribute", f"@{src}", "--gallery", os.path.join(a.work, name), "--out", p, "--overwrite", "-q")
            got = pq.read_table(p).to_pylist()
            key = (lambda q: q) if what == "before" else (lambda q: outs[q])
            res[what] = sum(1 for g in got if g["predicted"] == true[key(g["path"])]) / len(got)
        rec["true_source"][name] = res
    record(a.work, rec)


def report(a):
    """Markdown tables of WORK/results.jsonl (the last record of each gallery / split / tag)."""
    recs = [json.loads(line) for line in open(os.path.join(a.work, "results.jsonl"))]
    leaks = {(r["gallery"], r["split"]): r for r in recs if r["stage"] == "leak"}
    print("| gallery | split | content probe (chance) | probe / chance | content R² | FDR overall | "
          "attribution kNN | centroid |")
    print("|---|---|---|---|---|---|---|---|")
    for (g, sp), r in leaks.items():
        p = r["probe"]
        print(f"| {g} | {sp} | {p['accuracy']:.3f} ({p['chance']:.3f}) | {p['accuracy'] / p['chance']:.1f}x | "
              f"{r['content_r2']:.3f} | {r['fdr_overall']:.2f} | {r['accuracy_knn']:.3f} | "
              f"{r['accuracy_centroid']:.3f} |")
    anons = {r["tag"]: r for r in recs if r["stage"] == "anon"}
    if anons:  # attributors by position: the one optimised against, then --attributors' others
        print("\n| method | against | args | PSNR mean (min) | SSIM | against: before → after | others: "
              "before → after | images/s (incl. start) |")
        print("|---|---|---|---|---|---|---|---|")
        for t, r in anons.items():
            names = list(r["true_source"])
            cell = lambda n: f"{r['true_source'][n]['before']:.3f} → {r['true_source'][n]['after']:.3f}"  # noqa: E731
            others = "; ".join(f"{n} {cell(n)}" for n in names if n != r["against"])
            print(f"| {t} | {r['against']} | `{' '.join(r['args'])}` | {r['psnr_mean']:.1f} ({r['psnr_min']:.1f}) | "
                  f"{r['ssim_mean']:.3f} | {cell(r['against'])} | {others} | {r['images_per_s']:.2f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("stages", nargs="+")
    ap.add_argument("--zoo")
    ap.add_argument("--work", required=True)
    ap.add_argument("--from", dest="src", help="subsample: the full zoo")
    ap.add_argument("--per-split", default="train=200,val=60,test=100,cross_content=60",
                    help="subsample: images per model of each split")
    ap.add_argument("--seed", type=int, default=0, help="subsample's draw")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--per-model", type=int, default=20)
    ap.add_argument("--vae-steps", type=int, default=600)
    ap.add_argument("--tag", default="default")
    ap.add_argument("--against", default="causal")
    ap.add_argument("--anon-split", default="test", help="anon: the split whose images are anonymized")
    ap.add_argument("--attributors", default="causal,hand,causal_s1,plain")
    ap.add_argument("--splits", default="test,cross_content", help="leak: the zoo's splits")
    ap.add_argument("--galleries", default="hand,plain,causal,causal_s1")
    a, extra = ap.parse_known_args()
    extra = [e for e in extra if e != "--"]
    os.makedirs(a.work, exist_ok=True)
    for s in a.stages:
        if s == "subsample":
            if not a.src or not a.per_split:
                ap.error("subsample needs --from ZOO and --per-split split=n,...")
            try:
                per = {k: int(v) for k, v in (kv.split("=") for kv in a.per_split.split(","))}
            except ValueError:
                ap.error(f"--per-split {a.per_split!r}: expected split=n,split=n,...")
            n = subsample(a.src, a.zoo, per, a.seed)
            record(a.work, {"stage": "subsample", "from": a.src, "zoo": a.zoo, "per_split": per, "seed": a.seed,
                            "files": n})
        elif s == "vae":
            vae(a)
        elif s == "train":
            train(a)
        elif s == "leak":
            leak(a)
        elif s == "anon":
            anon(a, extra)
        elif s == "report":
            report(a)
        else:
            raise SystemExit(f"unknown stage {s}")


if __name__ == "__main__":
    main()
