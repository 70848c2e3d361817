import sys

import click

from .options import EXIT_ROW_ERRORS, GalleryDir, handle_errors, stream_options


@click.command("analyze")
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(), help="Directory for the table, CSV and PNGs.")
@click.option("--design", "design_csv", type=click.Path(exists=True, dir_okay=False),
              help="CSV with a 'model' column and one column per design attribute (SOURCE: per-model folders).")
@click.option("--split", default="test", show_default=True,
              help="For a zoo SOURCE: the split whose models are analysed (plus unseen_seed and open_set).")
@click.option("--spec", help="Handcrafted fingerprint spec: a preset or a JSON file (default: the default spec).")
@click.option("--gallery", type=GalleryDir(),
              help="Also analyse this gallery's vectors (its learned embedding when it has one).")
@click.option("--refset", type=click.Path(exists=True, file_okay=False),
              help="A ManiFPT reference set (fpfast manifold build): adds the RGB and FREQ artifact spaces.")
@click.option("--encoder", type=click.Path(dir_okay=False),
              help="A local .safetensors image encoder: adds its feature space (artifact vs the RGB neighbour "
                   "with --refset).")
@click.option("--encoder-arch", type=click.Choice(["resnet50", "tiny"]), default="resnet50", show_default=True,
              help="The encoder's architecture (tiny: fpfast's 3-layer test CNN).")
@click.option("--no-tsne", is_flag=True, help="PCA maps only (t-SNE takes the longest on large sets).")
@click.option("--max-points", type=click.IntRange(10), default=2000, show_default=True,
              help="Points per 2-D map (a random subsample).")
@click.option("--reduce", "reduction", type=click.Choice(["pca", "whiten"]), default="pca", show_default=True,
              help="What k-means clusters: the standardised fingerprints' first 64 principal components (pca) "
                   "or 16 whitened ones (whiten).")
@click.option("--within", metavar="ATTRIBUTE",
              help="Also score every other attribute inside each value of this one (e.g. family: "
                   "up-sampling among the autoencoders only), to separate confounded design choices.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an earlier analysis in OUT.")
@stream_options
@handle_errors
def analyze_cmd(source, out, design_csv, split, spec, gallery, refset, encoder, encoder_arch, no_tsne, max_points,
                reduction, within, seed, overwrite, opts):
    """How well fingerprints reveal how each model was built (ManiFPT Table 5 + model parsing).

    SOURCE is a GM-zoo folder (labels from model.json) or one sub-folder per model with --design.
    For every design attribute and fingerprint space: NMI and ARI of k-means clusters, and the
    leave-one-model-out accuracy of a linear probe with its chance level. OUT gets design.md,
    design.csv, errors.csv (unreadable images), manifest.json, and PNGs: map_pca_<space>.png,
    map_tsne_<space>.png (coloured per attribute), distance_<space>.png (model x model) and
    spectra.png (mean residual power spectrum per model). Exit 3 when some images could not be read.

    \b
    Examples:
      fpfast analyze zoo/ --out report/
      fpfast analyze models/ --design design.csv --out report/ --refset refset/ --gallery G
    """
    from ..analyze import analyze, load_design
    from ..analyze.run import check_out
    from ..jobs.specs import resolve_spec

    check_out(out, overwrite)
    design = load_design(source, design_csv, split)
    g = None
    if gallery:
        from ..gallery import Gallery
        g = Gallery.load(gallery)
    ref = None
    the_spec = resolve_spec(spec)
    if the_spec.projector is not None or the_spec.embedding is not None:
        raise click.UsageError("--spec: give a handcrafted spec (use --refset for ManiFPT, --gallery for an embedding)")
    if refset:
        from ..projectors import ReferenceSet
        ref = ReferenceSet(refset)
        the_spec = the_spec.replace(size=ref.size)
    enc, about = None, ""
    if encoder:
        from ..analyze.encoders import load_encoder
        enc = load_encoder(encoder, encoder_arch)
        about = f"encoder {encoder_arch} from {encoder}"
    log = (lambda m: None) if opts.quiet else (lambda m: click.echo(m, err=True))
    m = analyze(design, out, the_spec, opts, gallery=g, refset=ref, encoder=enc, encoder_about=about,
                tsne=not no_tsne, max_points=max_points, seed=seed, reduction=reduction, within=within,
                source=source, log=log)
    click.echo(open(f"{out}/design.md").read())
    click.echo(f"written to {out}: {', '.join(m['files'])}", err=True)
    if m["errors"]:
        click.echo(f"fpfast: {m['errors']} image(s) could not be used; see errors.csv (exit {EXIT_ROW_ERRORS})",
                   err=True)
        sys.exit(EXIT_ROW_ERRORS)
