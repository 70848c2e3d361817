import click

from ..pipeline import fingerprint_mapper, run
from ..workflows import check_backend, resolve_spec
from .options import check_output, finish, handle_errors, output_options, stream_options


@click.command("extract")
@click.argument("sources", nargs=-1, required=True)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Directory: embeddings/*.npy + metadata/*.parquet (+ errors/, spec.json).")
@click.option("--spec", help="Fingerprint spec: a preset, a JSON file, or KIND:PATH for a heavy projector (manifold:DIR, autoencoder:DIR, diffusion:DIR).")
@output_options(shard_size=100_000)
@stream_options
@handle_errors
def extract_cmd(sources, out, spec, column, shard_size, resume, overwrite, opts):
    """Fingerprints of SOURCES as .npy shards with parquet metadata (pandas/autofaiss layout).

    \b
    Example:
      fpfast extract images/ --out fingerprints/ --spec default --workers 4
    """
    check_output(out, resume, overwrite)
    spec = resolve_spec(spec)
    mapper = fingerprint_mapper(spec, opts.backend, device=check_backend(opts))
    summary = run(list(sources), mapper, out, spec=spec, column=column, shard_size=shard_size,
                  resume=resume, overwrite=overwrite, kind="npy", **opts.stream_kw())
    finish(summary, opts.quiet)
