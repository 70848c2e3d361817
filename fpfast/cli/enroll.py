import os
import shutil

import click

from .. import workflows as wf
from ..embed.universal import UNIVERSAL, load_universal
from ..embed.universal import available as universal_available
from ..gallery.normalize import METHODS as NORMALIZERS
from ..io.sources import check_sources
from .options import handle_errors, stream_options

FEW_SHOT = 10  # images per model the frozen embedding needs (tests/test_embed_finetune.py)


@click.command("enroll")
@click.argument("gallery", type=click.Path(file_okay=False))
@click.argument("sources", nargs=-1)
@click.option("--model", "-m", help="Model name for SOURCES.")
@click.option("--from-folders", "root", type=click.Path(exists=True, file_okay=False),
              help="Enroll every sub-folder of ROOT as a model named after it.")
@click.option("--spec", help="Fingerprint spec of a new gallery: universal (the shipped pretrained embedding, used when "
                   "--spec is not given), a handcrafted preset (default: the fast handcrafted fingerprint; npr, "
                   "highpass, median, photo256), a JSON file, or KIND:PATH[@PRESET] for a heavy projector "
                   "(manifold:DIR, autoencoder:DIR, diffusion:DIR).")
@click.option("--normalize", type=click.Choice(NORMALIZERS), default=None,
              help="Normalisation refitted after enrollment (a new gallery: none with the universal "
                   "embedding, else standardize).")
@click.option("--index", type=click.Choice(["flat", "ivf", "hnsw"]), default="flat", show_default=True,
              help="FAISS index of a new gallery (ivf/hnsw for >= 1M samples).")
@click.option("--holdout", type=click.FloatRange(0, 0.5), default=0.2, show_default=True,
              help="Fraction of each model's images kept apart to calibrate the 'unknown' threshold.")
@click.option("--frr", type=click.FloatRange(0.001, 0.5), default=0.05, show_default=True,
              help="False-reject rate the open-set threshold is calibrated to.")
@click.option("--column", help="Image-bytes column of parquet sources.")
@click.option("--fine-tune-from", "tune_root", type=click.Path(exists=True, file_okay=False),
              help="Gallery with a learned embedding: after enrolling, fine-tune the embedding on these "
                   "labelled folders (one per model, the new ones included) and re-enroll every model "
                   "with it, as `fpfast train --fine-tune` does.")
@stream_options
@handle_errors
def enroll_cmd(gallery, sources, model, root, spec, normalize, index, holdout, frr, column, tune_root, opts):
    """Add models' sample images to GALLERY (created when missing).

    A new gallery embeds images with the shipped universal embedding (pretrained on random
    decoders, `fpfast pretrain`), frozen: ten or more images per model, no training step. A gallery
    with a learned embedding (`fpfast train`) embeds new models with it, frozen, likewise. To adapt the embedding to the new models,
    add --fine-tune-from ROOT (or run `fpfast train GALLERY --from-folders ROOT --fine-tune`).

    \b
    Examples:
      fpfast enroll my_gallery --model sdxl samples/sdxl/
      fpfast enroll my_gallery --from-folders zoo/train --spec default    # handcrafted (speed mode)
    """
    if bool(root) == bool(model):
        raise click.UsageError("give either --model NAME SOURCE... or --from-folders ROOT")
    if model and not sources:
        raise click.UsageError("--model needs at least one SOURCE (file, folder, glob, @list, tar, parquet)")
    if root and sources:
        raise click.UsageError("--from-folders takes no SOURCE arguments")
    groups = {model: list(sources)} if model else {m: [d] for m, d in wf.model_folders(root).items()}
    for srcs in groups.values():
        check_sources(srcs, column=column)  # a glob matching nothing is a usage error before the gallery is created
    existed = os.path.exists(gallery)
    created = not os.path.exists(os.path.join(gallery, "gallery.json"))
    # issue 14: a new gallery embeds with the shipped universal embedding unless --spec names another
    univ = created and spec in (None, UNIVERSAL) and (universal_available() or spec == UNIVERSAL)
    universal = load_universal() if univ else None  # checked against its card before anything is written
    g = wf.open_or_create(gallery, None if spec in (None, UNIVERSAL) else wf.resolve_spec(spec),
                          normalize or ("none" if univ else "standardize"), index)
    if universal is not None:
        g = g.with_embedding(universal)
    try:
        if tune_root and g.spec.embedding is None:
            raise click.UsageError("--fine-tune-from needs a gallery with a learned embedding (fpfast train)")
        errors = _enroll_groups(g, groups, column, holdout, opts)
    except BaseException:
        if created:  # leave no empty gallery behind: a rerun after the fix must not find one
            shutil.rmtree(gallery, ignore_errors=True)
            if existed:
                os.makedirs(gallery, exist_ok=True)
        raise
    cal = wf.finish_enrollment(g, normalize, frr)
    click.echo(f"gallery {gallery}: {len(g.models())} models, {len(g)} samples"
               + (f"; open-set thresholds calibrated at FRR {frr}" if cal else "; not calibrated (no held-out samples)"))
    if tune_root:
        g, info = wf.train_gallery(g, tune_root, opts, fine_tune=True, holdout=holdout, frr=frr)
        click.echo(f"gallery {gallery}: embedding fine-tuned on {info['trained_on']} images -> "
                   f"{info['identity'][:16]}; {len(g.models())} models, {len(g)} samples re-enrolled")
    if errors:
        raise SystemExit(3)


def _enroll_groups(g, groups, column, holdout, opts) -> int:
    errors = 0
    for name, srcs in groups.items():
        fp = wf.gallery_fingerprints(g, srcs, wf.StreamOptions(**{**opts.__dict__, "quiet": True}),
                                    column=column)
        r = wf.enroll(g, name, fp, holdout=holdout)
        errors += r["errors"]
        n = r["enrolled"] + r["held_out"]
        if g.spec.embedding is not None and n < FEW_SHOT:
            click.echo(f"warning: model {name!r} has {n} readable image(s); attribution with a learned "
                       f"embedding needs >= {FEW_SHOT} per model", err=True)
        if not opts.quiet:
            click.echo(f"{name}: {r['enrolled']} enrolled, {r['held_out']} held out for calibration"
                       + (f", {r['errors']} unreadable" if r["errors"] else ""), err=True)
    return errors
