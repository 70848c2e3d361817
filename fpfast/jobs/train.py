"""Train a learned embedding for a gallery and re-enroll every model with it."""
from __future__ import annotations

from ..embed.model import FLIP_COUNTS
from ..errors import UsageError
from ..gallery import Gallery
from ..gallery.conditions import centre, copy_region
from ..prepare import map_images
from ..progress import Progress, Stages
from ..spec import FingerprintSpec
from .augment import add_augmented, add_calibration_copies, add_views
from .collect import sized_image_sources
from .enroll import finish_enrollment, model_folders, split_holdout
from .mappers import condition_mapper, host_vectors
from .options import StreamOptions, resolve_device

OPEN_SET_FROM = ("gaussian", "ensemble", "network", "vector")   # train_gallery's open_set_from


def train_gallery(gallery: Gallery, root: str, opts: StreamOptions, *, epochs: int | None = None,
                  holdout: float = 0.2, frr: float = 0.05, seed: int = 0, handcrafted: bool | None = None,
                  normalize: str | None = None, arch: dict | None = None, fine_tune: bool = False,
                  calibrate_on: str = "augmented", keep_handcrafted: bool | None = None,
                  open_set_from: str | None = None, flips: int | None = None, log=None, stages=None,
                  causal: dict | None = None, **train_opts):
    """Train a learned embedding on the labelled folders ``root/<model>/`` (one per enrolled
    model; extra folders are enrolled as new models), then rebuild ``gallery`` in the embedding's
    space: every folder image embedded, the same ``holdout`` split as :func:`enroll` (held-out
    images are not trained on: they calibrate the open-set threshold), refit, recalibrate,
    save (atomic; the handcrafted vectors are replaced). ``fine_tune``: start from the gallery's
    current embedding (e.g. after enrolling a new model with it frozen) instead of from scratch;
    ``handcrafted=None``: the current embedding's choice, else off. ``calibrate_on``: ``clean``
    held-out images, or ``augmented``: those plus their processed copies (JPEG, down-scaling,
    a crop; :mod:`fpfast.gallery.conditions`), so that processed queries of known models are not
    all answered 'unknown' and clean ones still meet clean thresholds. ``keep_handcrafted``:
    fine-tuning an embedding whose vectors are followed by the handcrafted fingerprint (the
    default gallery's), keep that fingerprint behind the fine-tuned network's (None: yes when
    fine-tuning such an embedding); ``normalize`` None: ``lda`` for such vectors, else ``none``.
    ``open_set_from``: with the handcrafted fingerprint kept, read the open-set statistics of
    clean-looking queries from the ``ensemble`` (the default: the fine-tuned network's dimensions,
    the handcrafted fingerprint and a reference network's vector - the network fine-tuning started
    from, one pass, appended to the embedding: :meth:`~fpfast.embed.model.Embedder.with_reference`
    - each scaled per model: :mod:`fpfast.gallery.openspace`), the ``network``'s dimensions alone
    or the whole ``vector``.
    ``flips``: the trained network's vector of an image averaged over 1, 2 or 4 of its mirror
    images (:meth:`~fpfast.embed.model.Embedder.with_flips`; that many times the network's inference
    at enrollment and query time); None: 4 with the handcrafted fingerprint kept, else the
    fine-tuned embedding's own (1 from scratch).
    ``causal``: train the
    decoupled fingerprint of issue 15 instead ({"content": the zoo's content table or root,
    "hsic": weight, "pair": weight, optional "project_out": rank}; see
    :mod:`fpfast.causal.objective`). Progress (unless ``opts.quiet``): reading, then epochs with
    their loss and an ETA (:mod:`fpfast.progress`); ``stages`` (a :class:`fpfast.progress.Stages`)
    gets the read / train / re-enroll times. Returns (new gallery, summary dict)."""
    if calibrate_on not in ("clean", "augmented"):
        raise ValueError(f"calibrate_on must be 'clean' or 'augmented', got {calibrate_on!r}")
    if open_set_from not in (None, *OPEN_SET_FROM):
        raise ValueError(f"open_set_from must be one of {list(OPEN_SET_FROM)}, got {open_set_from!r}")
    if flips not in (None, *FLIP_COUNTS):
        raise ValueError(f"flips must be one of {list(FLIP_COUNTS)}, got {flips!r}")
    if gallery.spec.crops is not None:
        raise UsageError(f"gallery {gallery.path} fingerprints {gallery.spec.n_crops} crops per image: training "
                         "an embedding on a multi-crop gallery is not supported yet (enroll without --crops)")
    from ..embed import train_embedding
    init = gallery.embedder() if fine_tune else None
    if fine_tune and init is None:
        raise UsageError("--fine-tune needs a gallery that already has a learned embedding "
                         "(train one first: fpfast train GALLERY --from-folders ROOT)")
    appended = bool(init is not None and init.appended_dim)
    keep_handcrafted = appended if keep_handcrafted is None else keep_handcrafted
    if keep_handcrafted and not appended:
        raise UsageError("--keep-handcrafted fine-tunes a gallery whose vectors are an embedding followed by the "
                         "handcrafted fingerprint (fpfast enroll's default); this gallery's are not")
    if handcrafted is None:
        handcrafted = bool(init is not None and init.arch["handcrafted_dim"])
    folders = model_folders(root)
    missing = sorted(set(gallery.models()) - set(folders))
    if missing:
        raise UsageError(f"--from-folders {root} lacks folders of enrolled models {missing}: training "
                         "re-enrolls every model from its images, one sub-folder per model")
    base = gallery.spec.handcrafted()
    cbase, size = copy_region(base)   # the regions views and calibration copies are made of; trained on their crops
    stages = stages or Stages()
    data, errors = {}, 0
    with stages("read"):
        for name, folder in folders.items():
            regions, keys, errs, sides = sized_image_sources([folder], cbase, opts, desc=f"reading {name}")
            errors += len(errs)
            if not regions:
                raise UsageError(f"model {name!r}: no image could be read from {folder}")
            keep, hold = split_holdout(len(regions), holdout, seed)
            data[name] = ([centre(im, size) for im in regions], keys, keep, hold, regions, sides)
    tr_x = [data[m][0][i] for m in data for i in data[m][2]]
    tr_y = [m for m in data for _ in data[m][2]]
    if epochs is not None:
        train_opts["epochs"] = epochs
    dev = resolve_device(opts.device)
    objective = None
    if causal is not None:
        objective = _causal_objective(causal, [data[m][1][i] for m in data for i in data[m][2]], tr_y, base)
    bar = Progress("training", None, unit="epoch", quiet=opts.quiet)

    def on_epoch(rec: dict) -> None:
        if bar.total is None:
            bar.set_total(rec["epochs"])
        bar.update(1, loss=round(rec["loss"], 4), acc=round(rec["train_acc"], 3))
        if log is not None:
            log(rec)

    # a universal+handcrafted gallery fine-tunes its network (init.plain()) and keeps the handcrafted half
    # behind it: on the zoo's training images ahead of the network alone on JPEG 90, down-scales and crops
    # (benchmarks/results/embedding.md, "Issue 14, thirteenth session"); its `unknown`: below
    with stages("train"), bar:
        emb, history = train_embedding(tr_x, tr_y, base, arch=arch, handcrafted=handcrafted, device=dev,
                                       backend=opts.backend, log=on_epoch, seed=seed,
                                       init=init.plain() if init is not None else None,
                                       objective=objective, **train_opts)
    if keep_handcrafted:
        emb = emb.with_handcrafted()
    # the kept gallery's network vectors averaged over the image's 4 mirror images: on the zoo's training
    # images AUROC 0.902 against 0.829 and every attribution column as good or better (benchmarks/
    # results/embedding.md, "Issue 14, fifteenth session"); not measured for the other trainings
    if flips is None:
        flips = 4 if keep_handcrafted else init.flips if init is not None else 1
    emb = emb.with_flips(flips)
    open_set_from = open_set_from or "gaussian"
    if keep_handcrafted and open_set_from in ("gaussian", "ensemble"):
        # the network fine-tuning started from, kept beside the fine-tuned one: its dimensions help name the
        # model, and `ensemble` reads `unknown` from them too (with the handcrafted fingerprint, on the zoo's
        # training images AUROC 0.86 against 0.74 over three sibling designs: benchmarks/results/
        # embedding.md, "Issue 14, sixteenth session")
        emb = emb.with_reference(init.reference if init.reference is not None else init.plain())
    normalize = normalize or ("lda" if keep_handcrafted else "none")
    g = gallery.with_embedding(emb)
    if keep_handcrafted and open_set_from != "vector":
        # clean-looking queries' `unknown` from the fine-tuned network's half (raw), the name from the whole
        # vector: on the zoo's training images AUROC 0.829 against 0.788, processed queries as before
        # (benchmarks/results/embedding.md, "Issue 14, fourteenth session"); `ensemble`: from the three
        # blocks; `gaussian` (default): each model's own Gaussian of the network's block and of the
        # handcrafted one, AUROC 0.941 against the ensemble's 0.878 over six sibling designs (the same,
        # "Issue 14, eighteenth session")
        net, hand = int(emb.arch["dim"]), emb.appended_dim
        if open_set_from == "gaussian":
            g.openset_blocks = [(0, net, False, "gauss"), (net, net + hand, True, "gauss")]
        elif emb.reference is not None:
            g.openset_blocks = [(0, net, False), (net, net + hand, True), (net + hand, emb.dim, False)]
        else:
            g.openset_blocks = [(0, net, False)]

    def embed(b):
        return emb.embed(b, device=dev, layout="hwc", precision=opts.precision)
    cm = condition_mapper(g.spec, opts)   # the condition detector's vectors: the handcrafted ones beside it
    condition = None if cm is None else host_vectors(cm)
    with stages("re-enroll"):
        for name, (imgs, keys, keep, hold, regions, sides) in data.items():
            g.note_sides(sides)
            g.note_copy_sides([min(im.shape[:2]) for im in regions])
            v = map_images(imgs, embed)
            g.add(name, v[keep], [keys[i] for i in keep])
            add_augmented(g, name, [imgs[i] for i in keep], [keys[i] for i in keep],
                          embed, g.augment, seed)
            add_views(g, name, [regions[i] for i in keep], [keys[i] for i in keep], embed, size)
            if len(hold):
                held = [imgs[i] for i in hold]
                g.add_holdout(name, v[hold], [keys[i] for i in hold],
                              condition=None if condition is None else map_images(held, condition))
                if calibrate_on == "augmented":
                    add_calibration_copies(g, name, [regions[i] for i in hold], [keys[i] for i in hold], embed,
                                           condition, size)
        cal = finish_enrollment(g, normalize, frr)
    return g, {"models": len(data), "trained_on": len(tr_x), "errors": errors, "history": history,
               "calibrated": bool(cal), "identity": emb.identity, "dim": emb.dim}


def _causal_objective(causal: dict, keys: list, labels: list, spec: FingerprintSpec):
    """The :class:`~fpfast.causal.objective.CausalObjective` of the training images ``keys``."""
    from pathlib import Path

    from ..causal.objective import CausalObjective
    from ..causal.pairs import content_of, load_content
    src = Path(causal["content"])
    table = load_content(src)
    ids = content_of(keys, table, src if src.is_dir() else src.parent)
    if not any(c is not None for c in ids):
        raise UsageError(f"none of the training images is in the content table {src}: train on the zoo's "
                         "train split (--from-folders ZOO/train) or pass its table with --content")
    codes = {c: j for j, c in enumerate(sorted({c for c in ids if c is not None}))}
    classes = sorted(set(labels), key=str)
    return CausalObjective([classes.index(v) for v in labels], [codes.get(c, -1) for c in ids],
                           spec.residual, spec.sigma, hsic=causal.get("hsic", 1.0), pair=causal.get("pair", 1.0),
                           project_out=causal.get("project_out", 0))
