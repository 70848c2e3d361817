"""`fpfast demo`: the whole job, offline, on an embedded default.

Builds a GM-zoo preset (tiny generative models trained here on photos bundled with
scikit-image/scikit-learn), enrolls every gallery model from its train split twice (the
handcrafted fingerprint; and what `fpfast enroll` gives by default: the shipped universal
embedding followed by the handcrafted fingerprint, with views), trains a learned embedding on
the same split as `fpfast train` does (unless ``embedding_epochs`` is 0), attributes the held-out
test images and the images of a model kept out of the gallery (open set) through the same stream
`fpfast attribute` uses, with each gallery, and evaluates the answers against the folder each
image came from. Every stage shows progress
(:mod:`fpfast.progress`) unless ``opts.quiet``; the result's ``stages`` holds each stage's seconds.
"""
from __future__ import annotations

import os
import shutil
import time
from typing import Callable

import dataclasses

from .gallery import Gallery, evaluate
from .io.writers import read_rows
from .embed.universal import HYBRID, shipped_embedder
from .gallery.views import VIEWS
from .jobs.collect import gallery_fingerprints
from .jobs.augment import enroll_copies
from .jobs.enroll import enroll, finish_enrollment, model_folders, use_discriminant_openset
from .jobs.mappers import attribute_mapper
from .jobs.options import StreamOptions, resolve_device
from .jobs.specs import resolve_spec
from .jobs.train import train_gallery
from .pipeline import run
from .progress import Stages
from .spec import load_spec


def true_model(path: str) -> str:
    """The model an image of the zoo came from: its folder's name."""
    return os.path.basename(os.path.dirname(path))


def run_demo(out: str, preset: str = "tiny", seed: int = 0, spec=None, opts: StreamOptions | None = None,
             method: str = "knn", embedding_epochs: int = 120, echo: Callable[[str], None] = print,
             stages: Stages | None = None) -> dict:
    """Run the demo into ``out``; returns the evaluation of the final gallery (the learned
    embedding's when one was trained, else the default one's), with ``handcrafted`` and
    ``default`` holding the other galleries' (None for the final one), ``stages`` the seconds of
    each stage and ``seconds`` the total: plain data (JSON). ``stages`` (a
    :class:`fpfast.progress.Stages`) gets each stage's time."""
    from .zoo import build_zoo

    opts = opts or StreamOptions()
    quiet = dataclasses.replace(opts, quiet=True)
    os.makedirs(out, exist_ok=True)
    stages = stages if stages is not None else Stages()
    steps = 6 if embedding_epochs else 5
    step = iter(f"[{i}/{steps}]" for i in range(1, steps + 1))
    zoo_dir = os.path.join(out, "zoo")
    echo(f"{next(step)} building the GM-zoo ({preset}, seed {seed}) in {zoo_dir} ...")
    with stages("zoo"):
        zoo = build_zoo(zoo_dir, preset=preset, seed=seed, device=resolve_device(opts.device),
                        progress=not opts.quiet, overwrite=True)  # the demo's own zoo
    size = zoo.get("image_size")
    spec = resolve_spec(spec) if spec else load_spec(None).replace(size=int(size))

    gdir = os.path.join(out, "gallery")
    echo(f"{next(step)} enrolling the train split into {gdir} (spec {spec.id}, {spec.dim} dims, LDA-normalised) ...")
    with stages("enroll"):
        g = Gallery.create(gdir, spec, overwrite=True)
        for model, r in _enroll_train(g, os.path.join(zoo_dir, "train"), quiet, seed).items():
            echo(f"      {model:<20s} {r['enrolled']:4d} enrolled, {r['held_out']:3d} held out")
    galleries = {"handcrafted": g}
    udir = os.path.join(out, "gallery-default")
    echo(f"{next(step)} enrolling it again as `fpfast enroll` does by default (the shipped universal embedding + "
         f"the handcrafted fingerprint, views) into {udir} ...")
    with stages("enroll"):
        gu = Gallery.create(udir, load_spec(None), normalize="lda", overwrite=True).with_embedding(
            shipped_embedder(HYBRID))
        use_discriminant_openset(gu)
        gu.view_names = tuple(VIEWS)
        _enroll_train(gu, os.path.join(zoo_dir, "train"), quiet, seed)
    galleries["universal ⊕ handcrafted"] = gu
    if embedding_epochs:
        edir = os.path.join(out, "gallery-embedding")
        echo(f"{next(step)} training a learned embedding of the artifact ({embedding_epochs} epochs) "
             f"into {edir} ...")
        with stages("train"):
            shutil.rmtree(edir, ignore_errors=True)
            shutil.copytree(gdir, edir)
            ge, info = train_gallery(Gallery.load(edir), os.path.join(zoo_dir, "train"), opts,
                                     epochs=embedding_epochs, seed=seed)
        echo(f"      trained on {info['trained_on']} images in {info['history'][-1]['seconds']:.0f}s "
             f"(embedding {info['identity'][:12]}, {info['dim']} dims)")
        galleries["learned embedding"] = ge

    sources = [os.path.join(zoo_dir, "test"), os.path.join(zoo_dir, "open_set")]
    echo(f"{next(step)} attributing {', '.join(os.path.relpath(s, out) for s in sources)} with "
         f"{' and '.join(galleries)} ...")
    results = {}
    for name, gal in galleries.items():
        tag = {"handcrafted": "", "universal ⊕ handcrafted": "-default"}.get(name, "-embedding")
        path = os.path.join(out, f"attributions{tag}.parquet")
        with stages("attribute"):
            summary = run(sources, attribute_mapper(gal, opts, method=method), path, spec=gal.spec,
                          overwrite=True, desc=f"attribute ({name})", **opts.stream_kw())
        results[name] = (path, summary, os.path.join(out, f"eval{tag}"))

    echo(f"{next(step)} evaluating against the folder each image came from ...")
    evals = {}
    for name, (path, summary, eval_dir) in results.items():
        with stages("eval"):
            rows = read_rows(path)
            ok = [r for r in rows if not r.get("error")]
            res = evaluate([true_model(r["path"]) for r in ok], [r["model"] for r in ok],
                           list(galleries[name].models()), open_set_scores=[r["distance"] for r in ok],
                           out_dir=eval_dir)
        res.update({"confusion": res["confusion"].tolist(), "rows": len(rows), "row_errors": summary.errors,
                    "attributions": path,
                    "eval_dir": eval_dir, "gallery": galleries[name].path, "vectors": name,
                    "examples": example_rows(ok)})
        evals[name] = res
    final = evals[list(evals)[-1]]
    others = {k: evals[name] if final is not evals[name] else None
              for k, name in (("handcrafted", "handcrafted"), ("default", "universal ⊕ handcrafted"))}
    final.update({"seconds": time.perf_counter() - stages.t0, "stages": dict(stages.seconds), "zoo": zoo_dir,
                  **others})
    return final


def _enroll_train(g: Gallery, train: str, opts: StreamOptions, seed: int) -> dict:
    """Enroll every model folder of ``train`` into ``g`` as `fpfast enroll` does (20 % held out, with
    their processed copies; views when ``g`` keeps some), refit by LDA (it beats standardize here:
    README, "Measured"), recalibrate and save; {model: :func:`~fpfast.jobs.enroll.enroll`'s result}."""
    out = {}
    for model, folder in model_folders(train).items():
        out[model] = r = enroll(g, model, gallery_fingerprints(g, [folder], opts), holdout=0.2, seed=seed)
        enroll_copies(g, model, [folder], r["keys"], r["held_keys"], opts)
    finish_enrollment(g, "lda", frr=0.05)
    return out


def example_rows(rows: list[dict], n: int = 3) -> list[dict]:
    """``n`` rows spread over the output (first, middle, last: the last is of the open set), with
    the model they truly came from."""
    picks = sorted({round(i * (len(rows) - 1) / max(1, n - 1)) for i in range(n)}) if rows else []
    return [{"path": rows[i]["path"], "true": true_model(rows[i]["path"]), "model": rows[i]["model"],
             "distance": float(rows[i]["distance"])} for i in picks]
