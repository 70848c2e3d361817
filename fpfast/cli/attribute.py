import click

from ..gallery import Gallery
from ..engines import logs_aside, ray_run_kw
from ..jobs.mappers import attribute_mapper
from ..jobs.options import check_decode
from ..jobs.recipes import attribute_recipe
from ..jobs.schema import attribute_schema
from ..pipeline import run
from .options import (GalleryDir, check_output, engine_options, expect_digest_option, finish, handle_errors,
                      output_options, stream_options)


@click.command("attribute")
@click.argument("sources", nargs=-1, required=True)
@click.option("--gallery", "-g", required=True, type=GalleryDir())
@click.option("--out", "-o", required=True,
              help="A .parquet/.csv/.jsonl file, or a directory of parquet shards.")
@click.option("--method", type=click.Choice(["knn", "centroid"]), default="knn", show_default=True)
@click.option("-k", "k", type=click.IntRange(1, 1000), default=None,
              help="Neighbours for the kNN vote.  [default: a tenth of the smallest model's samples, 1 to 10]")
@click.option("--top", type=click.IntRange(1, 20), default=3, show_default=True, help="Models listed per row.")
@output_options(shard_size=10_000)
@expect_digest_option
@stream_options
@handle_errors
@engine_options
def attribute_cmd(sources, gallery, out, method, k, top, column, shard_size, resume, overwrite, expect_digest, opts,
                  engine):
    """Name the model behind every image of SOURCES: one row per input.

    Rows: path, error (null when fine), note, model (a gallery model or 'unknown'), predicted
    (the best model whatever the threshold), score, distance, top-k models with distances (the
    README's table says what each holds). Exit 0 when every row succeeded, 3 when some rows carry
    an error, 2 for a usage or configuration error.

    \b
    Example:
      fpfast attribute 'shards/{0000..0099}.tar' --gallery my_gallery --out results/ --workers 4
      fpfast attribute 'shards/{0000..0099}.tar' --gallery my_gallery --out results/ --engine ray
    """
    check_output(out, resume, overwrite, sources, gallery)
    g = Gallery.load(gallery, expect_digest=expect_digest, with_digest=True)
    k = g.vote_k() if k is None else k
    if engine.engine == "ray":  # each actor loads the gallery itself, pinned to this digest; a --decode
        # mismatch fails here first
        check_decode(g, opts)
        kw = ray_run_kw(engine, attribute_recipe(g.path, opts, method, k, top, g.loaded_digest), g.spec, opts)
    else:
        kw = {**opts.stream_kw(), "mapper": attribute_mapper(g, opts, method=method, k=k, top=top)}
    with logs_aside(engine):
        summary = run(list(sources), out=out, spec=g.spec, column=column, shard_size=shard_size,
                      resume=resume, overwrite=overwrite, schema=attribute_schema(top),
                      config=attribute_config(g, method, k, top), **kw)
    finish(summary, opts.quiet)


def attribute_config(g: Gallery, method: str = "knn", k: int | None = None, top: int = 3) -> dict:
    """What an ``attribute`` output records of its run (a resume with other values is refused):
    the gallery as loaded (``g`` from ``Gallery.load(..., with_digest=True)``: a gallery changed
    since would answer the remaining inputs differently), the rule, and the output's columns."""
    return {"gallery": g.path, "gallery_digest": g.loaded_digest, "method": method,
            "k": g.vote_k() if k is None else k, "top": top,
            "columns": attribute_schema(top).names}
