import os

import click

from ..errors import EXIT_ROW_ERRORS
from ..jobs.augment import enroll_copies
from ..jobs.collect import gallery_fingerprints
from ..jobs.enroll import enroll, finish_enrollment, model_folders, use_discriminant_openset
from ..jobs.specs import resolve_spec
from ..jobs.train import train_gallery
from ..embed.universal import HYBRID, SHIPPED_DIR, UNIVERSAL, shipped_embedder
from ..gallery.normalize import METHODS as NORMALIZERS
from ..gallery.store import MAX_AUGMENT
from ..gallery.views import VIEWS, parse_views
from ..gallery.update import enroll_warnings, updating
from ..io.sources import check_sources
from ..progress import Stages
from ..spec import load_spec, parse_crops
from .options import flips_option, handle_errors, stream_options

DEFAULT_SPEC = HYBRID  # a new gallery's vectors without --spec (issue 14; the trade-off: README, "Measured")


@click.command("enroll")
@click.argument("gallery", type=click.Path(file_okay=False))
@click.argument("sources", nargs=-1)
@click.option("--model", "-m", help="Model name for SOURCES.")
@click.option("--from-folders", "root", type=click.Path(exists=True, file_okay=False),
              help="Enroll every sub-folder of ROOT as a model named after it.")
@click.option("--spec", help="Fingerprint spec of a new gallery: universal+handcrafted (the default: the shipped "
                   "pretrained universal embedding followed by the handcrafted fingerprint, LDA-normalised), "
                   "universal (the embedding alone), a handcrafted preset (default or handcrafted: the speed "
                   "mode, many times faster on a CPU; npr, highpass, median, photo256), a JSON file, or "
                   "KIND:PATH[@PRESET] for a heavy projector (manifold:DIR, autoencoder:DIR, diffusion:DIR).")
@click.option("--crops", default=None, metavar="N[:grid|random[:SEED]]",
              help="Fingerprint N crops of each image (a grid over the whole image, or seeded random crops) "
                   "and average their vectors, for images larger than the spec's size (new gallery; "
                   "default 1, the centre crop). Queries then use the gallery's crops.")
@click.option("--normalize", type=click.Choice(NORMALIZERS), default=None,
              help="Normalisation refitted after enrollment (a new gallery: lda with universal+handcrafted, "
                   "none with universal, else standardize).")
@click.option("--index", type=click.Choice(["flat", "ivf", "hnsw"]), default="flat", show_default=True,
              help="FAISS index of a new gallery (ivf/hnsw for >= 1M samples).")
@click.option("--holdout", type=click.FloatRange(0, 0.5), default=0.2, show_default=True,
              help="Fraction of each model's images kept apart to calibrate the 'unknown' threshold.")
@click.option("--frr", type=click.FloatRange(0.001, 0.5), default=0.05, show_default=True,
              help="False-reject rate the open-set thresholds are calibrated to: about this fraction of held-out "
                   "images of known models fails some open-set test (the tests share it jointly) and is answered "
                   "'unknown'; lower it for fewer false 'unknown's, raise it to catch more unknown generators.")
@click.option("--calibrate-on", type=click.Choice(["augmented", "clean"]), default="augmented", show_default=True,
              help="augmented: each held-out image also gets JPEG, down-scaled and cropped copies, and the gallery "
                   "learns to tell processed queries from clean ones, each meeting thresholds calibrated on their "
                   "kind; clean: the held-out images alone (processed queries of known models then often "
                   "come out 'unknown').")
@click.option("--augment", type=click.IntRange(0, MAX_AUGMENT), default=None, metavar="K",
              help="Also enroll K re-encoded copies (JPEG, down-scaling) of each image, so re-encoded queries "
                   "of known models find samples like them (a new gallery; later enrollments and `fpfast "
                   "train` keep it). [default: 0]")
@click.option("--views", default=None, metavar="all|none|NAME[,NAME]",
              help="Also enroll each image as a JPEG-compressed (jpeg85) and a down-scaled (scale075, scale05) "
                   "copy, each kind a searchable view of the gallery; queries that look JPEG-compressed or "
                   "down-scaled are answered by the view that matches (a new gallery; it needs "
                   "--calibrate-on augmented). [default: all; none for heavy projectors and with --calibrate-on clean]")
@click.option("--universal", "universal_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="A new gallery's universal embedding from this `fpfast pretrain` output folder instead of "
                   "the shipped one (with --spec universal or universal+handcrafted, the default); checked "
                   "against its card.")
@flips_option("A new universal gallery: average the network's vector of an image", "1")
@click.option("--column", help="Image-bytes column of parquet sources.")
@click.option("--fine-tune-from", "tune_root", type=click.Path(exists=True, file_okay=False),
              help="Gallery with a learned embedding: after enrolling, fine-tune the embedding on these "
                   "labelled folders (one per model, the new ones included) and re-enroll every model "
                   "with it, as `fpfast train --fine-tune` does.")
@click.option("--epochs", type=click.IntRange(1, 10_000), default=None,
              help="Fine-tuning passes over the --fine-tune-from images.  [default: about 4000 steps, 10-200 epochs]")
@stream_options
@handle_errors
def enroll_cmd(gallery, sources, model, root, spec, crops, normalize, index, holdout, frr, calibrate_on, augment,
               views, universal_dir, flips, column, tune_root, epochs, opts):
    """Add models' sample images to GALLERY (created when missing).

    A new gallery embeds images, by default, with the universal embedding shipped inside fpfast
    (pretrained on random decoders by `fpfast pretrain`, frozen) followed by the handcrafted
    fingerprint, normalised by LDA: no training and no download, and ten images per model are
    enough (benchmarks/results/accuracy.md). --spec default keeps the handcrafted fingerprint alone
    (the speed mode); --spec universal the embedding alone. Each image is also enrolled
    JPEG-compressed and down-scaled (--views), so that processed queries are searched among
    images processed alike. A gallery with a learned embedding (`fpfast train`) embeds new models
    with it, frozen. To adapt the embedding to the new models,
    add --fine-tune-from ROOT (or run `fpfast train GALLERY --from-folders ROOT --fine-tune`).

    \b
    Examples:
      fpfast enroll my_gallery --model sdxl samples/sdxl/
      fpfast enroll my_gallery --from-folders samples/                   # universal+handcrafted
      fpfast enroll fast_gallery --from-folders samples/ --spec default --views none  # the speed mode
      fpfast enroll my_gallery --from-folders samples/ --universal my_universal/  # fpfast pretrain's output
    """
    if bool(root) == bool(model):
        raise click.UsageError("give either --model NAME SOURCE... or --from-folders ROOT")
    if model and not sources:
        raise click.UsageError("--model needs at least one SOURCE (file, folder, glob, @list, tar, parquet)")
    if root and sources:
        raise click.UsageError("--from-folders takes no SOURCE arguments")
    if epochs is not None and not tune_root:
        raise click.UsageError("--epochs sets the fine-tuning of --fine-tune-from ROOT; without it nothing is trained")
    groups = {model: list(sources)} if model else {m: [d] for m, d in model_folders(root).items()}
    for srcs in groups.values():
        check_sources(srcs, column=column)  # a glob matching nothing is a usage error before the gallery is created
    try:
        want_views = None if views is None else parse_views(views)
    except ValueError as e:
        raise click.UsageError(f"--views: {e}") from None
    if want_views and calibrate_on == "clean":
        raise click.UsageError("--views needs --calibrate-on augmented: its router is fitted on the held-out images' "
                               "processed copies")
    new = not os.path.exists(os.path.join(gallery, "gallery.json"))
    if new and spec is None:
        spec = DEFAULT_SPEC
    # issue 14: --spec universal[+handcrafted] embeds with the shipped pretrained embedding, checked against
    # its card first; its appended handcrafted vector is raw, so that gallery needs LDA
    if universal_dir is not None and (not new or spec not in (UNIVERSAL, HYBRID)):
        raise click.UsageError(f"--universal sets the universal embedding of a new gallery with --spec {UNIVERSAL} "
                               f"or {HYBRID}" + ("" if new else f"; {gallery} already has its vectors"))
    universal = shipped_embedder(spec, universal_dir or SHIPPED_DIR)
    if flips is not None and universal is not None:
        universal = universal.with_flips(int(flips))
    want = None if spec is None or universal is not None else resolve_spec(spec)
    crops_rec = parse_crops(crops) if crops is not None else None
    if crops is not None and new:
        want = (want or load_spec(None)).replace(crops=crops_rec)
    default_norm = {UNIVERSAL: "none", HYBRID: "lda"}.get(spec, "standardize")
    with updating(gallery, want if new or universal is None else None, normalize or default_norm, index) as g:
        if crops is not None and g.spec.crops != crops_rec:
            raise click.UsageError(f"--crops {crops}: {gallery} fingerprints {g.spec.n_crops} crop(s) per image "
                                   f"({g.spec.crops or 'centre crop'}); a gallery's crops are fixed when it is created")
        if flips is not None and universal is None:   # the gallery's own vectors
            if g.spec.embedding is None:
                raise click.UsageError(f"--flips {flips}: mirror images average a learned embedding's vectors; "
                                       f"{gallery} {'would hold' if new else 'holds'} handcrafted fingerprints")
            have = g.embedder().flips
            if have != int(flips):
                raise click.UsageError(f"--flips {flips}: {gallery} averages its embedding over {have} mirror "
                                       "image(s); that is fixed when a gallery is created (leave out --flips)")
        if universal is not None and new:
            g = g.with_embedding(universal)
            use_discriminant_openset(g)
        elif universal is not None and (g.spec.embedding or {}).get("identity") != universal.identity:
            raise click.UsageError(
                f"--spec {spec}: {gallery} already holds other vectors ({g.spec.id}); if it was enrolled "
                f"with an earlier fpfast's shipped weights, leave out --spec: the gallery keeps its own embedding")
        if new:
            g.augment = augment or 0
            g.view_names = want_views if want_views is not None else \
                (() if g.spec.projector is not None or calibrate_on == "clean" else tuple(VIEWS))
        elif augment is not None and augment != g.augment:
            raise click.UsageError(f"--augment {augment}: {gallery} enrolls {g.augment} augmented copies per image; "
                                   "that is fixed when a gallery is created (leave out --augment)")
        elif want_views is not None and want_views != g.view_names:
            raise click.UsageError(f"--views {views}: {gallery} keeps the views {', '.join(g.view_names) or 'none'}; "
                                   "they are fixed when a gallery is created (leave out --views)")
        if tune_root and g.spec.embedding is None:
            raise click.UsageError("--fine-tune-from needs a gallery with a learned embedding (fpfast train)")
        stages = Stages()
        with stages("fingerprint"):
            errors = _enroll_groups(g, groups, column, holdout, calibrate_on, opts)
        with stages("calibrate"):
            cal = finish_enrollment(g, normalize, frr)
        click.echo(f"gallery {gallery}: {len(g.models())} models, {len(g)} samples"
                   + (f"; open-set thresholds calibrated at FRR {frr}" if cal else "; not calibrated (no held-out samples)"))
        if tune_root:
            g, info = train_gallery(g, tune_root, opts, fine_tune=True, holdout=holdout, frr=frr, epochs=epochs,
                                    calibrate_on=calibrate_on, stages=stages)
            click.echo(f"gallery {gallery}: embedding fine-tuned on {info['trained_on']} images -> "
                       f"{info['identity'][:16]}; {len(g.models())} models, {len(g)} samples re-enrolled")
    stages.report(opts.quiet)
    if errors:
        raise SystemExit(EXIT_ROW_ERRORS)


def _enroll_groups(g, groups, column, holdout, calibrate_on, opts) -> int:
    """Enroll each model's sources; returns how many images were unreadable."""
    errors = 0
    for name, srcs in groups.items():
        fp = gallery_fingerprints(g, srcs, opts, column=column, desc=name)
        r = enroll(g, name, fp, holdout=holdout)
        n_aug, _ = enroll_copies(g, name, srcs, r["keys"], r["held_keys"], opts, column=column,
                                 calibrate_on=calibrate_on)
        errors += r["errors"]
        for line in enroll_warnings(name, r["enrolled"] + r["held_out"] + r["skipped"], r["skipped"]):
            click.echo(line, err=True)
        if not opts.quiet:
            click.echo(f"{name}: {r['enrolled']} enrolled" + (f" (+ {n_aug} augmented copies)" if n_aug else "")
                       + f", {r['held_out']} held out for calibration"
                       + (f", {r['errors']} unreadable" if r["errors"] else ""), err=True)
    return errors
