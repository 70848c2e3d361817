import click

from ..engines import logs_aside, ray_run_kw
from ..jobs.mappers import vector_mapper
from ..jobs.recipes import vector_recipe
from ..jobs.specs import resolve_spec
from ..pipeline import run
from .options import (GalleryDir, check_output, engine_options, expect_digest_option, finish, handle_errors,
                      output_options, stream_options)


@click.command("extract")
@click.argument("sources", nargs=-1, required=True)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Directory: embeddings/*.npy + metadata/*.parquet (+ errors/, spec.json).")
@click.option("--spec", help="Fingerprint spec: a preset, a JSON file, or KIND:PATH for a heavy projector (manifold:DIR, autoencoder:DIR, diffusion:DIR).")
@click.option("--gallery", type=GalleryDir(),
              help="Vectors in this gallery's space: its spec, and its learned embedding when it has one.")
@output_options(shard_size=100_000)
@expect_digest_option
@stream_options
@handle_errors
@engine_options
def extract_cmd(sources, out, spec, gallery, column, shard_size, resume, overwrite, expect_digest, opts, engine):
    """Fingerprints of SOURCES as .npy shards with parquet metadata (pandas/autofaiss layout).

    \b
    Examples:
      fpfast extract images/ --out fingerprints/ --spec default --workers 4
      fpfast extract images/ --out embeddings/ --gallery my_gallery   # its learned embedding
    """
    if spec and gallery:
        raise click.UsageError("give --spec or --gallery, not both (a gallery brings its own spec)")
    check_output(out, resume, overwrite, sources, gallery, kind="npy")
    embedder = None
    if gallery:
        from ..gallery import Gallery
        g = Gallery.load(gallery, expect_digest=expect_digest)
        spec = g.spec
        embedder = g.embedder() if engine.engine != "ray" else None  # Ray actors load their own
    else:
        spec = resolve_spec(spec)
    if engine.engine == "ray":  # each actor loads the spec (and the gallery's embedding) itself
        kw = ray_run_kw(engine, vector_recipe(spec, opts, gallery, expect_digest), spec, opts)
    else:
        kw = {**opts.stream_kw(), "mapper": vector_mapper(spec, opts, embedder)}
    with logs_aside(engine):
        summary = run(list(sources), out=out, spec=spec, column=column, shard_size=shard_size,
                      resume=resume, overwrite=overwrite, kind="npy", **kw)
    finish(summary, opts.quiet)
