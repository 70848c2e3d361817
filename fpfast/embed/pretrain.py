"""Pretraining the universal fingerprint embedding on random decoders (issue 14).

Every step draws ``batch_classes`` classes from a pool of ``classes`` (class 0 = the real photos,
the others decoders of :mod:`fpfast.embed.synth`, built once when first drawn), ``per_class``
fresh real crops for each, runs each class's decoder on its crops, post-processes the batch as
images in the wild are (a rescale by a factor in [0.5, 1.5] with a nearest / bilinear / bicubic
filter with or without antialiasing, or Lanczos; a JPEG round trip at a quality in
[``jpeg_min``, 100]; a random ``patch``-px crop) and trains :class:`ResidualEmbedNet` with a
metric-learning objective:

* ``cosface``: normalised softmax with an additive cosine margin over the pool's classes
  (s = ``scale``, m = ``margin``), the objective of ``fpfast train``;
* ``arcface``: the additive angular margin, cos(theta + m);
* ``supcon``: supervised contrastive loss over the batch (temperature ``temperature``; every class
  of the batch has ``per_class`` positives, which the P x K sampling guarantees).

SupCon is the default: after 150 steps on 128 decoders (seed 1) it reached few-shot accuracy
0.41 on held-out decoders against 0.24 (ArcFace) and 0.23 (CosFace), chance 0.125
(``benchmarks/results/embedding.md``). The choice is measured on *held-out* random
decoders (ids from :data:`HELDOUT_BASE` on, never drawn in training): few-shot nearest-centroid
accuracy (``heldout_enroll`` images enrolled per decoder, ``heldout_query`` queries, clean, after
JPEG 90, and made by the same architectures with another draw of their weights: a retrained seed)
and the AUROC of the distance to the nearest centroid, half of the held-out decoders enrolled and
half unknown.

``weight_draws`` W > 1 makes each class an *architecture*: its images come from W independent
draws of the decoder's weights (:func:`fpfast.embed.synth.design`'s ``draw``), so the embedding is
trained to keep what an architecture leaves and not what one set of weights does (a real model
retrained from another seed keeps its architecture). Deterministic for ``seed`` on CPU at a fixed
torch thread count (and CPU kind: another one rounds otherwise).

``device``: where the decoders and the network run (``cpu`` or ``cuda[:i]``; the photo bank, the
draws of classes, crops and augmentations stay on the host, so a run's data stream is the same on
every device; the JPEG and Lanczos round trips run on the host). ``precision``: the network's
autocast dtype (``auto`` = fp16 on CUDA with a gradient scaler, fp32 on CPU; ``bf16`` anywhere);
the decoders, the residual and the loss stay fp32. A CUDA run is not bit-reproducible (cuDNN's
convolution algorithms), only statistically: the card records device and precision.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..spec import load_spec
from .model import Embedder, EmbedError, ResidualEmbedNet, resolve_arch
from .synth import REAL, make_decoder, to_uint8
from .train import _jpeg

DEFAULT_PRETRAIN = {"steps": 2000, "classes": 512, "batch_classes": 16, "per_class": 4, "crop": 64,
                    "patch": 32, "lr": 3e-3, "weight_decay": 5e-4, "objective": "supcon", "scale": 30.0,
                    "margin": 0.35, "temperature": 0.1, "p_jpeg": 0.6, "jpeg_min": 60, "p_rescale": 0.5,
                    "bank": 4096, "heldout": 16, "heldout_enroll": 10, "heldout_query": 20, "seed": 0,
                    "decoder_fit_steps": 0, "weight_draws": 1, "siblings": 1}
OBJECTIVES = ("cosface", "arcface", "supcon")
HELDOUT_BASE = 1_000_000  # held-out decoder ids start here; training draws ids below ``classes``
FIT_CROPS = 8
# (interpolation, antialias): the resampling filters of the rescale augmentation; lanczos via Pillow
RESAMPLERS = (("nearest", False), ("bilinear", True), ("bilinear", False), ("bicubic", True),
              ("bicubic", False), ("lanczos", True))


def rescale(x: torch.Tensor, size: int, mode: str, antialias: bool) -> torch.Tensor:
    """float [B,3,H,W] in [0,1] resized to ``size`` x ``size`` with one of :data:`RESAMPLERS`."""
    if mode == "lanczos":
        u8 = to_uint8(x)
        out = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.LANCZOS)) for im in u8])
        return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255.0
    kw = {} if mode == "nearest" else {"align_corners": False, "antialias": antialias}
    return F.interpolate(x, size=(size, size), mode=mode, **kw).clamp(0, 1)


def postprocess(x: torch.Tensor, rng: np.random.Generator, opts: dict) -> np.ndarray:
    """The in-the-wild augmentations of one batch: float [B,3,C,C] -> uint8 [B,patch,patch,3]."""
    c, patch = x.shape[-1], int(opts["patch"])
    if rng.random() < opts["p_rescale"]:
        size = max(patch, int(round(c * float(rng.uniform(0.5, 1.5)))))
        mode, aa = RESAMPLERS[int(rng.integers(len(RESAMPLERS)))]
        x = rescale(x, size, mode, aa)
    imgs = to_uint8(x)
    out = np.empty((len(imgs), patch, patch, 3), np.uint8)
    for i, img in enumerate(imgs):
        if rng.random() < opts["p_jpeg"]:
            img = _jpeg(img, int(rng.integers(opts["jpeg_min"], 101)))
        t, l = (int(v) for v in rng.integers(0, img.shape[0] - patch + 1, size=2))
        out[i] = img[t:t + patch, l:l + patch]
    return out


class DecoderPool:
    """Decoders of one family built on first use (and cached), their output layers fitted on the
    same fixed crops; ``generate(i, x)`` is decoder ``i`` applied to ``x`` (class 0: ``x`` itself)."""

    def __init__(self, family_seed: int, fit_batch: torch.Tensor, device: torch.device | str = "cpu",
                 fit_steps: int = 0):
        self.family_seed, self.fit_batch, self._cache = int(family_seed), fit_batch, {}
        self.device, self.fit_steps = torch.device(device), int(fit_steps)

    def generate(self, i: int, x: torch.Tensor, draw: int = 0, sibling: int = 0) -> torch.Tensor:
        """Decoder ``i`` (weights of draw ``draw``; its sibling ``sibling``) on ``x`` (a host
        tensor), computed on the pool's device, returned there."""
        x = x.to(self.device)
        if i == REAL:
            return x
        key = (i, draw, sibling)
        if key not in self._cache:  # designed and fitted on the host (float64 solve), then moved
            self._cache[key] = make_decoder(self.family_seed, i, self.fit_batch, self.fit_steps,
                                            draw, sibling).to(self.device)
        with torch.no_grad():
            return self._cache[key](x)

    def generate_draws(self, i: int, x: torch.Tensor, draws: np.ndarray, sibling: int = 0) -> torch.Tensor:
        """Decoder ``i`` (its sibling ``sibling``) on each image of ``x`` with the weights of that
        image's draw."""
        out = torch.empty_like(x, device=self.device)
        for r in np.unique(draws):
            sel = torch.from_numpy(np.flatnonzero(draws == r))
            out[sel.to(self.device)] = self.generate(i, x[sel], int(r), sibling)
        return out


def class_decoder(c: int, siblings: int) -> tuple[int, int]:
    """(decoder id, sibling) of pretraining class ``c``: with S siblings per decoder, class 0 is the
    real photos and classes 1 + S(i-1) ... S i are decoder ``i`` and its first S-1 siblings (the
    last decoder's group cut short where the classes end)."""
    if c == REAL:
        return REAL, 0
    return (c - 1) // siblings + 1, (c - 1) % siblings


def draw_classes(rng: np.random.Generator, classes: int, n: int, siblings: int) -> np.ndarray:
    """``n`` distinct classes of a step: at S = 1 a uniform draw; at S > 1 whole sibling groups
    (the real class a group of one), so that every decoder in the batch meets its siblings there."""
    if siblings == 1:
        return rng.choice(classes, size=n, replace=False)
    groups = rng.permutation(-(-(classes - 1) // siblings) + 1)
    out: list[int] = []
    for g in groups:
        out += [REAL] if g == 0 else list(range(1 + siblings * (g - 1), min(1 + siblings * g, classes)))
        if len(out) >= n:
            break
    return np.asarray(out[:n])


def photo_bank(n: int, size: int, seed: int, real_dirs=()) -> torch.Tensor:
    """``n`` seeded random ``size``-px crops of the bundled real photos (and of ``real_dirs``'
    photos): float [n, 3, size, size] in [0, 1], what the decoders run on and the held-out
    evaluation draws from."""
    from ..zoo.real import bundled_photos, folder_photos, random_patches
    photos = bundled_photos()
    for d in real_dirs:
        photos += folder_photos(d)
    p = random_patches(photos, n, size, seed)
    return torch.from_numpy(p).permute(0, 3, 1, 2).float() / 255.0


def _loss(z, yb, head, opts):
    if opts["objective"] == "supcon":
        sim = z @ z.t() / opts["temperature"]
        eye = torch.eye(len(yb), dtype=torch.bool)
        sim = sim.masked_fill(eye, -1e9)
        pos = (yb[:, None] == yb[None, :]) & ~eye
        logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
        return -(logp * pos).sum(1).div(pos.sum(1).clamp(min=1)).mean()
    cos = z @ F.normalize(head, dim=1).t()
    onehot = F.one_hot(yb, head.shape[0]).bool()
    if opts["objective"] == "arcface":
        theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
        target = torch.cos(theta + opts["margin"])
    else:
        target = cos - opts["margin"]
    return F.cross_entropy(opts["scale"] * torch.where(onehot, target, cos), yb)


def _precision(precision: str, dev: torch.device) -> torch.dtype:
    from .model import resolve_precision
    if precision == "fp16" and dev.type != "cuda":
        raise EmbedError("fp16 pretraining needs a CUDA device (--device cuda); on CPU use fp32 or bf16")
    return resolve_precision(precision, dev)


def pretrain_embedding(*, arch: dict | None = None, spec=None, real_dirs=(), log=None, device: str = "cpu",
                       precision: str = "auto", **opts_in) -> tuple[Embedder, list[dict], dict]:
    """Train the universal embedding; returns (embedder, log records, held-out evaluation).

    ``opts_in``: overrides of :data:`DEFAULT_PRETRAIN`; ``real_dirs``: folders of real photos added
    to the bundled ones; ``spec``: the handcrafted spec whose residual operator feeds the network
    (default: the ``default`` preset).
    """
    unknown = sorted(set(opts_in) - set(DEFAULT_PRETRAIN))
    if unknown:
        raise EmbedError(f"unknown pretraining options {unknown}; expected {sorted(DEFAULT_PRETRAIN)}")
    opts = {**DEFAULT_PRETRAIN, **opts_in}
    if opts["objective"] not in OBJECTIVES:
        raise EmbedError(f"unknown objective {opts['objective']!r}; expected one of {OBJECTIVES}")
    if not 2 <= opts["batch_classes"] <= opts["classes"] or opts["classes"] >= HELDOUT_BASE:
        raise EmbedError(f"need 2 <= batch_classes <= classes < {HELDOUT_BASE}, got "
                         f"{opts['batch_classes']} and {opts['classes']}")
    if opts["crop"] % 4 or opts["patch"] > opts["crop"] // 2 * 2 or opts["patch"] < 16:
        raise EmbedError(f"crop must be a multiple of 4 and 16 <= patch <= crop, got {opts['crop']}, {opts['patch']}")
    spec = load_spec(spec).handcrafted()
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EmbedError(f"--device {device}: no CUDA device is visible to torch")
    dtype = _precision(precision, dev)
    seed = int(opts["seed"])
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    bank = photo_bank(int(opts["bank"]), int(opts["crop"]), seed, real_dirs)
    pool = DecoderPool(seed, bank[:FIT_CROPS], dev, opts["decoder_fit_steps"])
    a = resolve_arch(arch, residual=spec.residual, sigma=spec.sigma, handcrafted_dim=0)
    net = ResidualEmbedNet(a).to(dev)
    head = torch.nn.Parameter(torch.randn(int(opts["classes"]), int(a["dim"]),
                                          generator=torch.Generator().manual_seed(seed)).to(dev))
    params = list(net.parameters()) + ([head] if opts["objective"] != "supcon" else [])
    opt = torch.optim.AdamW(params, lr=opts["lr"], weight_decay=opts["weight_decay"])
    steps = int(opts["steps"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opts["lr"], total_steps=max(steps, 20), pct_start=0.1)
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)
    P, K, W = int(opts["batch_classes"]), int(opts["per_class"]), int(opts["weight_draws"])
    S = int(opts["siblings"])
    if W < 1:
        raise EmbedError(f"weight_draws must be >= 1, got {W}")
    if not 1 <= S <= min(4, P):
        raise EmbedError(f"siblings must be 1..4 (every decoder has at least 4 one-knob siblings) and at most "
                         f"batch_classes; got {S} with batch_classes {P}")
    history, t0, run_loss = [], time.perf_counter(), 0.0
    every = max(1, steps // 20)
    net.train()
    for step in range(steps):
        cls = draw_classes(rng, int(opts["classes"]), P, S)
        crops = bank[rng.integers(0, len(bank), size=P * K)]
        dec = [class_decoder(int(c), S) for c in cls]
        if W > 1:  # each image of a class from one of its W weight draws (the rng is untouched at W = 1)
            draws = rng.integers(0, W, size=(P, K))
            x = torch.cat([pool.generate_draws(i, crops[j * K:(j + 1) * K], draws[j], sib)
                           for j, (i, sib) in enumerate(dec)])
        else:
            x = torch.cat([pool.generate(i, crops[j * K:(j + 1) * K], sibling=sib) for j, (i, sib) in enumerate(dec)])
        xb = torch.from_numpy(postprocess(x, rng, opts)).to(dev).permute(0, 3, 1, 2).float() / 255.0
        yb = torch.from_numpy(np.repeat(cls, K).astype(np.int64)).to(dev)
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
            z = net(xb)
        loss = _loss(z.float(), yb, head, opts)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        run_loss += float(loss.detach())
        if (step + 1) % every == 0 or step + 1 == steps:
            secs = time.perf_counter() - t0
            rec = {"step": step + 1, "steps": steps, "loss": run_loss / (((step) % every) + 1),
                   "seconds": round(secs, 1), "images_per_s": round((step + 1) * P * K / max(secs, 1e-9), 1)}
            run_loss = 0.0
            history.append(rec)
            if log is not None:
                log(rec)
    net = net.eval().cpu()
    config = {"arch": a, "spec": spec.to_dict(),
              "training": {"kind": "pretrain", **_recorded(opts), "real_dirs": len(real_dirs),
                           "torch_version": torch.__version__, **_device_record(dev, precision),
                           "final_loss": history[-1]["loss"] if history else None}}
    emb = Embedder(net, config)
    return emb, history, heldout_eval(emb, opts, bank, device=dev)


def _recorded(opts: dict) -> dict:
    """The options a config records: ``decoder_fit_steps``, ``weight_draws`` and ``siblings`` only
    when used, so that a recipe from before these options keeps its identity."""
    return {k: v for k, v in opts.items() if not ((k == "decoder_fit_steps" and not v)
                                                  or (k in ("weight_draws", "siblings") and v == 1))}


def _device_name(device: str) -> str:
    dev = torch.device(device)
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def _device_record(dev: torch.device, precision: str) -> dict:
    """Where a pretraining ran, for its config: nothing on CPU in fp32 (so the CPU identity of a
    seed is what it was before devices were a choice), else the device kind and precision."""
    if dev.type == "cpu" and precision in ("auto", "fp32"):
        return {}
    return {"device": dev.type, "precision": precision}


def heldout_eval(emb: Embedder, opts: dict, bank: torch.Tensor, device: torch.device | str = "cpu") -> dict:
    """Few-shot attribution of held-out random decoders (never drawn in training; see module doc)."""
    n, ne, nq = int(opts["heldout"]), int(opts["heldout_enroll"]), int(opts["heldout_query"])
    seed, patch = int(opts["seed"]), int(opts["patch"])
    rng = np.random.default_rng([seed, 0xE7A1])
    pool = DecoderPool(seed, bank[:FIT_CROPS], device, opts.get("decoder_fit_steps", 0))
    known = n - n // 2
    cents, q_clean, q_jpeg, labels, q_draw, q_sib = [], [], [], [], [], []
    c0 = (int(opts["crop"]) - patch) // 2
    draw_rng = np.random.default_rng([seed, 0xD4A3])  # its own stream: the other figures stay comparable
    sib_rng = np.random.default_rng([seed, 0x51B1])

    def patches(j, crops, draw=0, sibling=0):
        return np.ascontiguousarray(to_uint8(pool.generate(HELDOUT_BASE + j, crops, draw, sibling).cpu())
                                    [:, c0:c0 + patch, c0:c0 + patch])

    for j in range(n):
        crops = bank[rng.integers(0, len(bank), size=ne + nq)]
        imgs = patches(j, crops)
        z = emb.embed(torch.from_numpy(imgs), layout="hwc")
        if j < known:
            cents.append(F.normalize(torch.from_numpy(z[:ne]).mean(0), dim=0).numpy())
            # the same architecture with other weights (a retrained seed), enrolled from draw 0
            q_draw.append(emb.embed(torch.from_numpy(patches(
                j, bank[draw_rng.integers(0, len(bank), size=nq)], draw=1)), layout="hwc"))
            # its first sibling (one design choice changed, the same weights): an unknown model
            q_sib.append(emb.embed(torch.from_numpy(patches(
                j, bank[sib_rng.integers(0, len(bank), size=nq)], sibling=1)), layout="hwc"))
        q_clean.append(z[ne:])
        q_jpeg.append(emb.embed(torch.from_numpy(np.stack([_jpeg(np.ascontiguousarray(im), 90)
                                                           for im in imgs[ne:]])), layout="hwc"))
        labels += [j] * nq
    c = np.stack(cents)
    y = np.array(labels)

    def dists(q):
        return np.sqrt(np.maximum(2 - 2 * np.concatenate(q) @ c.T, 0))

    from ..gallery.openset import auroc as auc   # unknown = positive, scored by its distance (numpy only)
    d, dj, dd, ds = dists(q_clean), dists(q_jpeg), dists(q_draw), dists(q_sib)
    kn = y < known
    return {"decoders": n, "known": known, "chance": 1.0 / known,
            "acc_clean": float((d[kn].argmin(1) == y[kn]).mean()),
            "acc_jpeg90": float((dj[kn].argmin(1) == y[kn]).mean()),
            "acc_new_weights": float((dd.argmin(1) == y[kn]).mean()), "auroc": auc(d[kn].min(1), d[~kn].min(1)),
            "auroc_siblings": auc(d[kn].min(1), ds.min(1))}


def pretrain(out: str, *, arch: dict | None = None, real_dirs=(), log=None, command: str | None = None,
             device: str = "cpu", precision: str = "auto", **opts) -> dict:
    """``fpfast pretrain OUT``: pretrain, evaluate on held-out decoders and write
    ``OUT/universal.safetensors`` + ``OUT/universal.json`` (:mod:`fpfast.embed.universal`).
    Returns the card."""
    import datetime
    import os
    from .universal import CARD, write_card

    if os.path.exists(out) and not os.path.isdir(out):
        raise EmbedError(f"{out} exists and is not a directory")
    if os.path.isdir(out) and set(os.listdir(out)) - {CARD, "universal.safetensors"}:
        raise EmbedError(f"{out} holds other files: pretrain writes only into a new or its own directory")
    t0 = time.perf_counter()
    emb, history, ev = pretrain_embedding(arch=arch, real_dirs=tuple(real_dirs), log=log, device=device,
                                          precision=precision, **opts)
    secs = time.perf_counter() - t0
    full = {**DEFAULT_PRETRAIN, **opts}
    card = {"name": "fpfast universal fingerprint embedding",
            "recipe": f"random shallow decoders (fpfast.embed.synth) on real photos, {full['objective']} "
                      f"over {full['classes']} classes, {full['batch_classes']}x{full['per_class']} "
                      f"images per step, {full['patch']}-px patches, JPEG/rescale augmentations",
            "seed": full["seed"], "steps": full["steps"],
            "data": "scikit-image + scikit-learn bundled colour photos"
                    + (f" + {len(real_dirs)} user folder(s)" if real_dirs else ""),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "seconds": round(secs, 1), "torch_threads": torch.get_num_threads(),
            "device": _device_name(device), "precision": precision, "command": command, "heldout": ev,
            "final_loss": history[-1]["loss"] if history else None}
    return write_card(emb, out, card)
