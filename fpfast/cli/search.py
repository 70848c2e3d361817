import dataclasses

import click

from ..errors import EXIT_OK, EXIT_ROW_ERRORS
from ..gallery import Gallery
from ..jobs.collect import gallery_fingerprints
from .options import expect_digest_option, handle_errors, stream_options


@click.command("search")
@click.argument("queries", nargs=-1, required=True)
@click.option("--gallery", "-g", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("-k", "k", type=click.IntRange(1, 1000), default=5, show_default=True)
@expect_digest_option
@stream_options
@handle_errors
def search_cmd(queries, gallery, k, expect_digest, opts):
    """Nearest enrolled samples (with their source keys) and nearest models of each query image.

    \b
    Example:
      fpfast search suspicious.png --gallery my_gallery -k 5
    """
    g = Gallery.load(gallery, expect_digest=expect_digest)
    fp = gallery_fingerprints(g, list(queries), dataclasses.replace(opts, quiet=True))
    for row in fp.errors:
        click.echo(f"{row['path']}: error: {row['error']}")
    if len(fp.keys) == 0:
        raise SystemExit(EXIT_ROW_ERRORS if fp.errors else EXIT_OK)
    res = g.search(fp.vectors, k=k)
    models = res.nearest_models()
    for i, key in enumerate(fp.keys):
        click.echo(f"{key}")
        click.echo("  models:  " + ", ".join(f"{m} ({d:.3g})" for m, d in models[i]))
        for j in range(res.ids.shape[1]):
            click.echo(f"  {j + 1:2d}. {res.models[i][j]:<20s} d={res.distances[i, j]:.4g}  {res.keys[i][j]}")
    if fp.errors:
        raise SystemExit(EXIT_ROW_ERRORS)
