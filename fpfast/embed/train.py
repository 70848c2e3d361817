"""Training the residual embedding from labelled images.

Objective: cross-entropy on a normalised cosine head with an additive margin (CosFace,
``s * (cos - m)`` for the true class; s = 30, m = 0.35: against s = 16, m = 0.2, and with
``p_half`` 0.5 in the same run, the small zoo's open-set AUROC rose from 0.85 to 0.88 and JPEG 75
accuracy from 0.95 to 0.97). Chosen over supervised contrastive because it works with the small
batches a 2-core CPU affords (SupCon wants many positives per class in every batch),
its loss falls monotonically from the first epoch on tiny sets, and it optimises exactly the
angle between unit vectors that the gallery's L2 kNN on normalised embeddings measures. The head
(one unit vector per training class) is discarded after training: the embedding, not the
classifier, is what the gallery stores, so models enrolled later reuse it frozen.

Augmentations, drawn from one ``numpy`` generator seeded by ``seed`` (so a CPU run is
repeatable): horizontal/vertical flips; per batch, with probability ``p_rescale``, a down-scale by
a factor that is 0.5 (the usual thumbnail ratio) with probability ``p_half`` and uniform in
(0.5, 1) otherwise, with a Pillow filter drawn from bilinear, bicubic, Lanczos and box
(antialiased); per image, with probability ``p_jpeg``, an in-memory JPEG round trip at a quality
in [``jpeg_min``, 100]; then a random crop at a random offset (shifts the JPEG and up-sampling
grids): ``patch`` pixels on a side when ``patch`` > 0 (train on patches of large images, embed
whole ones: the network pools globally), else a few pixels smaller than the (rescaled) working
size. Images of a batch share one size so that they stack.

Fine-tuning (``init=`` an existing :class:`Embedder`): the network starts from its weights and
each class's head vector from the normalised mean embedding of that class's (unaugmented)
images, so known classes start where the gallery already puts them and a newly enrolled model
starts at its few-shot centroid.
"""
from __future__ import annotations

import copy
import io
import time
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..prepare import map_images
from ..spec import FingerprintSpec, load_spec
from .model import PROJECTOR_INPUT, Embedder, EmbedError, ResidualEmbedNet, handcrafted_input, resolve_arch

PROJECTOR_MULTIPLE = 8  # training crops fed to a heavy projector are cut to a multiple of 8 px (the SD VAE's factor)

# epochs None: :func:`auto_epochs`
DEFAULT_TRAIN = {"epochs": None, "batch_size": 64, "lr": 3e-3, "weight_decay": 5e-4, "scale": 30.0,
                 "margin": 0.35, "p_jpeg": 0.5, "jpeg_min": 60, "p_rescale": 0.4, "p_half": 1 / 3,
                 "patch": 0, "seed": 0}
_FILTERS = (Image.BILINEAR, Image.BICUBIC, Image.LANCZOS, Image.BOX)


def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(q))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def _rescale(img: np.ndarray, f: float, resample=Image.BILINEAR) -> np.ndarray:
    h, w = img.shape[:2]
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(Image.fromarray(img).resize(size, resample))


def augment_batch(images: Sequence[np.ndarray], base: int, min_size: int, rng: np.random.Generator,
                  opts: dict) -> np.ndarray:
    """One augmented uint8 batch [B, C, C, 3] (see the module docstring)."""
    f = 1.0
    if rng.random() < opts["p_rescale"]:
        f = 0.5 if rng.random() < opts["p_half"] else float(rng.uniform(0.5, 1.0))
        resample = _FILTERS[int(rng.integers(len(_FILTERS)))]
    work = max(min_size, int(round(base * f)))
    if opts.get("patch"):
        crop = max(min_size, min(work, int(opts["patch"])))
    else:
        crop = max(min_size, work - int(rng.integers(0, max(1, work // 8) + 1)))
    out = np.empty((len(images), crop, crop, 3), np.uint8)
    for i, img in enumerate(images):
        if rng.random() < 0.5:
            img = img[:, ::-1]
        if rng.random() < 0.5:
            img = img[::-1]
        img = np.ascontiguousarray(img)
        if f != 1.0:
            img = _rescale(img, f, resample)
            if min(img.shape[:2]) < crop:  # a tiny image pushed below the floor: scale back up
                img = _rescale(img, crop / min(img.shape[:2]), resample)
        if rng.random() < opts["p_jpeg"]:
            img = _jpeg(img, int(rng.integers(opts["jpeg_min"], 101)))
        h, w = img.shape[:2]
        t = int(rng.integers(0, h - crop + 1))
        l = int(rng.integers(0, w - crop + 1))
        out[i] = img[t:t + crop, l:l + crop]
    return out


def projector_crop(xb: torch.Tensor) -> torch.Tensor:
    """An augmented batch [B, H, W, 3] (a tensor or an array) cut to sides a multiple of
    :data:`PROJECTOR_MULTIPLE`, for a heavy projector (autoencoders down-sample by a power of 2)."""
    m = PROJECTOR_MULTIPLE
    return xb[:, :xb.shape[1] // m * m, :xb.shape[2] // m * m]


def _center(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    t, l = (h - min(h, size)) // 2, (w - min(w, size)) // 2
    return img[t:t + min(h, size), l:l + min(w, size)]


def train_embedding(images: Sequence[np.ndarray], labels: Sequence, spec: FingerprintSpec | str | None = None,
                    *, arch: dict | None = None, handcrafted: bool = False, device: str = "cpu",
                    backend: str = "auto", log=None, init: Embedder | None = None, objective=None,
                    **train_opts) -> tuple[Embedder, list[dict]]:
    """Train an :class:`Embedder` on uint8 HxWx3 ``images`` with class ``labels`` (any hashables).

    ``spec``: the handcrafted spec (its residual operator feeds the network - or, when it names a
    heavy projector, that projector's residual x - P(x), computed per augmented batch without
    gradient -, its geometry crops the images, its features are concatenated with
    ``handcrafted=True``). ``train_opts``: overrides of :data:`DEFAULT_TRAIN`. ``log``: optional
    callable receiving each epoch's record. ``init``: fine-tune this embedder (its architecture;
    ``arch``/``handcrafted`` must agree).
    ``objective``: extra loss terms added to the CosFace loss (e.g. :class:`fpfast.causal.objective.CausalObjective`):
    an object with ``order(rng, n) -> indices`` (the epoch's image order, cut into batches),
    ``loss(z, x, ids, r) -> scalar tensor`` (r: the network's input residual of x) and ``config``
    (recorded in the embedding's config).
    Returns (embedder, per-epoch log). Deterministic for a seed on CPU (same torch thread count).
    """
    spec = load_spec(spec).handcrafted()
    unknown = sorted(set(train_opts) - set(DEFAULT_TRAIN))
    if unknown:
        raise EmbedError(f"unknown training options {unknown}; expected {sorted(DEFAULT_TRAIN)}")
    opts = {**DEFAULT_TRAIN, **train_opts}
    if handcrafted and opts["patch"]:
        raise EmbedError("patch training with handcrafted features would feed the head features of "
                         f"{opts['patch']}-px patches and, at query time, of whole images: train on "
                         "whole images (patch=0) or without --handcrafted")
    if len(images) != len(labels) or not len(images):
        raise EmbedError(f"need as many labels as images (> 0), got {len(images)} images, {len(labels)} labels")
    classes = sorted(set(labels), key=str)
    if len(classes) < 2:
        raise EmbedError(f"need at least two classes to train an embedding, got {classes}")
    y = np.array([classes.index(v) for v in labels], np.int64)
    imgs = [_center(np.asarray(im, np.uint8), spec.size) for im in images]
    if any(im.ndim != 3 or im.shape[2] != 3 for im in imgs):
        raise EmbedError("images must be uint8 HxWx3")
    base = min(min(im.shape[:2]) for im in imgs)
    if base < spec.min_size:
        raise EmbedError(f"an image is {base} px on a side, below the spec's min_size {spec.min_size}")

    seed = int(opts["seed"])
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = torch.device(device)
    proj = None
    if spec.projector is not None:  # the network takes the heavy projector's residual (computed here)
        from ..projectors import load_projector
        proj = load_projector(spec.projector, device=dev)
    a = resolve_arch(arch, residual=PROJECTOR_INPUT if proj is not None else spec.residual, sigma=spec.sigma,
                     handcrafted_dim=spec.dim if handcrafted else 0)
    if init is None:
        net = ResidualEmbedNet(a).to(dev)
        head0 = torch.randn(len(classes), int(a["dim"]), generator=torch.Generator().manual_seed(seed))
    else:
        a = _check_init(init, a, arch, spec)
        net = copy.deepcopy(init.net).to(dev)
        head0 = _class_means(init, imgs, y, len(classes), dev, backend)
    head = torch.nn.Parameter(head0.to(dev))
    params = list(net.parameters()) + [head]
    opt = torch.optim.AdamW(params, lr=opts["lr"], weight_decay=opts["weight_decay"])
    bs = int(min(opts["batch_size"], len(imgs)))
    steps_per_epoch = max(1, len(imgs) // bs)
    if opts["epochs"] is None:
        opts["epochs"] = auto_epochs(steps_per_epoch)
    total = steps_per_epoch * int(opts["epochs"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opts["lr"], total_steps=max(total, 1),
                                                pct_start=0.15)
    def net_inputs(xb: torch.Tensor):
        """(images x, input residual r - computed once: the objective's content code reuses it -,
        handcrafted features or None) of a uint8 batch [B, H, W, 3]."""
        if proj is not None:
            xb = projector_crop(xb)
        x = xb.to(dev).permute(0, 3, 1, 2).float() / 255.0
        if proj is not None:
            with torch.no_grad():
                r = proj.residual(x).to(dev)
        else:
            r = net.residual(x)
        hand = handcrafted_input(xb.to(dev), r, spec, proj is not None, backend, "hwc") if handcrafted else None
        return x, r, hand

    history: list[dict] = []
    t0 = time.perf_counter()
    for epoch in range(int(opts["epochs"])):
        net.train()
        perm = rng.permutation(len(imgs)) if objective is None else objective.order(rng, len(imgs))
        tot_loss, correct, seen = 0.0, 0, 0
        for s in range(steps_per_epoch):
            ids = perm[s * bs:(s + 1) * bs]
            xb = torch.from_numpy(augment_batch([imgs[i] for i in ids], base, spec.min_size, rng, opts))
            yb = torch.from_numpy(y[ids]).to(dev)
            x, r, hand = net_inputs(xb)
            z = net.embed_residual(r, hand)
            cos = z @ F.normalize(head, dim=1).t()
            logits = opts["scale"] * (cos - opts["margin"] * F.one_hot(yb, len(classes)))
            loss = F.cross_entropy(logits, yb)
            if objective is not None:
                loss = loss + objective.loss(z, x, ids, r)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot_loss += float(loss.detach()) * len(ids)
            correct += int((cos.argmax(1) == yb).sum())
            seen += len(ids)
        secs = time.perf_counter() - t0
        rec = {"epoch": epoch + 1, "epochs": int(opts["epochs"]), "loss": tot_loss / seen,
               "train_acc": correct / seen, "seconds": round(secs, 3),
               "images_per_s": round((epoch + 1) * steps_per_epoch * bs / max(secs, 1e-9), 1)}
        history.append(rec)
        if log is not None:
            log(rec)
    net.eval()
    if objective is not None and getattr(objective, "project_out", 0):
        _project_out(net, imgs, objective, net_inputs)
    net = net.cpu()
    config = {"arch": a, "spec": spec.to_dict(),
              "training": {**opts, "init": init.identity if init is not None else None,
                           **({"objective": objective.config} if objective is not None else {}),
                           "classes": [str(c) for c in classes], "n_images": len(imgs),
                           "device": dev.type, "torch_version": torch.__version__,
                           "final_loss": history[-1]["loss"] if history else None}}
    # (no wall-clock time in the config: it is part of the identity, which must repeat for a seed)
    return Embedder(net, config), history


def _project_out(net: ResidualEmbedNet, imgs: Sequence[np.ndarray], objective, net_inputs) -> None:
    """Fold the projection removing the content subspace of the training images' (unaugmented)
    embeddings into ``net``'s head (:mod:`fpfast.causal.project`; ``objective``: its ``labels``,
    ``content`` and ``project_out`` rank)."""
    from ..causal.project import content_subspace, fold_projection

    def embed(b: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            _, r, hand = net_inputs(b)
            return net.embed_residual(r, hand).cpu().numpy()
    z = map_images(imgs, embed)
    fold_projection(net.head, content_subspace(z, objective.content, objective.labels, objective.project_out))


AUTO_STEPS, AUTO_EPOCHS = 4000, (10, 200)


def auto_epochs(steps_per_epoch: int) -> int:
    """Epochs giving about :data:`AUTO_STEPS` optimizer steps, within :data:`AUTO_EPOCHS` (why
    that many: ``benchmarks/results/embedding.md``)."""
    lo, hi = AUTO_EPOCHS
    return int(min(hi, max(lo, -(-AUTO_STEPS // max(1, steps_per_epoch)))))


def _check_init(init: Embedder, a: dict, arch: dict | None, spec: FingerprintSpec) -> dict:
    """The architecture of a fine-tuning run: ``init``'s, which must agree with what was asked."""
    want = dict(init.arch)
    if arch is not None and any(want.get(k) != v for k, v in arch.items()):
        raise EmbedError(f"fine-tuning keeps the embedding's architecture {want}; got arch={arch}")
    if bool(want["handcrafted_dim"]) != bool(a["handcrafted_dim"]):
        raise EmbedError("fine-tuning keeps the embedding's handcrafted concatenation "
                         f"({'on' if want['handcrafted_dim'] else 'off'}); --handcrafted must agree")
    if (want["residual"], float(want["sigma"])) != (a["residual"], float(a["sigma"])) or \
            want["handcrafted_dim"] not in (0, a["handcrafted_dim"]):
        raise EmbedError(f"the embedding was trained on residual {want['residual']!r} (sigma "
                         f"{want['sigma']}) with {want['handcrafted_dim']} handcrafted dims; this spec "
                         f"gives {a['residual']!r} (sigma {a['sigma']}) and {a['handcrafted_dim']}")
    return want


def _class_means(emb: Embedder, imgs: Sequence[np.ndarray], y: np.ndarray, n_classes: int,
                 dev: torch.device, backend: str) -> torch.Tensor:
    """[n_classes, dim] unit mean embedding of each class's images (grouped by shape to stack)."""
    z = map_images(imgs, lambda b: emb.embed(b, device=dev, backend=backend, layout="hwc"))
    sums = torch.zeros(n_classes, emb.dim, dtype=torch.float64)
    sums.index_add_(0, torch.from_numpy(y), torch.from_numpy(z).double())
    return F.normalize(sums.float(), dim=1)
