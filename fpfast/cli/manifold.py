import click

from .options import handle_errors


@click.group("manifold")
def manifold_group():
    """ManiFPT reference sets: real images whose nearest neighbour is an image's projection."""


@manifold_group.command("build")
@click.argument("sources", nargs=-1, required=True)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False))
@click.option("--size", type=click.IntRange(16), default=64, show_default=True, help="Working size (the spec's size).")
@click.option("--geometry", type=click.Choice(["crop", "resize"]), default="crop", show_default=True)
@click.option("--space", "spaces", multiple=True, type=click.Choice(["rgb", "freq"]), help="Repeatable; default rgb.")
@click.option("--mode", "modes", multiple=True, type=click.Choice(["exact", "ivfpq", "hnsw"]),
              help="Repeatable; default exact.")
@click.option("--storage", type=click.Choice(["auto", "uint8", "fp16", "float32"]), default="auto", show_default=True,
              help="How the exact index stores vectors.")
@click.option("--overwrite", is_flag=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or timing summary.")
@handle_errors
def manifold_build_cmd(sources, out, size, geometry, spaces, modes, storage, overwrite, quiet):
    """Index real images (files, folders, globs, @lists) as a reference set.

    Use it as a fingerprint spec afterwards: --spec manifold:OUT

    \b
    Example:
      fpfast manifold build real_photos/ --out refset/ --size 64
      fpfast enroll my_gallery --from-folders models/ --spec manifold:refset/
    """
    from ..progress import Stages
    from ..projectors import build_manifold

    stages = Stages()
    ref = build_manifold(list(sources), out, size, spaces=spaces or ("rgb",), modes=modes or ("exact",),
                         storage=storage, geometry=geometry, overwrite=overwrite, quiet=quiet, stages=stages)
    click.echo(f"reference set {out}: {len(ref.images)} images at {ref.size}x{ref.size}")
    stages.report(quiet)
