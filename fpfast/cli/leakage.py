import json

import click

from ..gallery import Gallery
from ..jobs.leakage import leakage_report
from .options import GalleryDir, handle_errors, stream_options


@click.command("leakage")
@click.argument("gallery", type=GalleryDir())
@click.option("--zoo", required=True, type=click.Path(exists=True, file_okay=False),
              help="A zoo built by `fpfast zoo build` (it holds content.parquet).")
@click.option("--split", default="test", show_default=True, help="e.g. test, cross_content, train.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@stream_options
@handle_errors
def leakage_cmd(gallery, zoo, split, out, opts):
    """How much image content GALLERY's fingerprint carries, on a split of a zoo.

    Prints JSON: a linear probe's content-id accuracy (leave one generator out) and its chance,
    the R^2 of a ridge regression onto the content code of P(x), the Fisher discriminant ratio
    per generator, and the closed-set attribution accuracy on the split.

    \b
    Example:
      fpfast leakage my_gallery --zoo zoo/ --split cross_content
    """
    rep = leakage_report(Gallery.load(gallery), zoo, split, opts)
    text = json.dumps(rep, indent=1, sort_keys=True)
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    click.echo(text)
