import json

import click

from ..info import format_gallery_info, format_info, gallery_info, info
from .options import GalleryDir, handle_errors


@click.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--gallery", type=GalleryDir(),
              help="Describe this gallery instead: models, spec, calibration, learned embedding.")
@click.option("--digest", is_flag=True,
              help="With --gallery: print one sha256 of all its files, to pin and check with --expect-digest.")
@handle_errors
def info_cmd(as_json: bool, gallery: str | None, digest: bool) -> None:
    """Version, compiled and usable backends, devices, faiss GPUs; or what a gallery holds.

    \b
    Examples:
      fpfast info
      fpfast info --gallery my_gallery
      fpfast info --gallery my_gallery --digest
    """
    if digest:
        if not gallery:
            raise click.UsageError("--digest needs --gallery")
        from ..gallery import Gallery
        click.echo(Gallery.digest(gallery))
        return
    d = gallery_info(gallery) if gallery else info()
    text = format_gallery_info(d) if gallery else format_info(d)
    click.echo(json.dumps(d, indent=2, default=str) if as_json else text)
