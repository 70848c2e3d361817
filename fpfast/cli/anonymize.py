import os

import click

from ..causal.anonymize import DEFAULTS, Anonymizer
from ..gallery import Gallery
from ..jobs.anonymize import IMAGES, REPORT, anonymize_mapper, anonymize_schema, whole_image_spec
from ..jobs.options import resolve_device
from ..pipeline import run
from .options import GalleryDir, check_output, finish, handle_errors, stream_options


@click.command("anonymize")
@click.argument("sources", nargs=-1, required=True)
@click.option("--gallery", "-g", required=True, type=GalleryDir())
@click.option("--out", "-o", required=True,
              help="A new directory: counterfactual PNGs under images/, the report's parquet shards under report/.")
@click.option("--target", default="real", show_default=True,
              help="The model whose fingerprint the counterfactual should carry ('real': none).")
@click.option("--strength", type=click.FloatRange(0, 1), default=DEFAULTS["strength"], show_default=True,
              help="Fraction of the residual r(x) removed before the optimisation (0: none).")
@click.option("--eps", type=click.FloatRange(0, 64), default=DEFAULTS["eps"], show_default=True,
              help="Largest change per pixel of the optimisation, in 8-bit levels.")
@click.option("--steps", type=click.IntRange(0, 1000), default=DEFAULTS["steps"], show_default=True,
              help="Signed-gradient steps against the gallery's learned fingerprint (0: residual removal only).")
@click.option("--shard-size", type=click.IntRange(1, 10_000_000), default=1000, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted run in OUT.")
@click.option("--overwrite", is_flag=True, help="Replace the report of an earlier run in OUT (its images are rewritten).")
@stream_options
@handle_errors
def anonymize_cmd(sources, gallery, out, target, strength, eps, steps, shard_size, resume, overwrite, opts):
    """Write, for every image of SOURCES, a counterfactual without its source model's fingerprint.

    Each input gives OUT/images/<hash>.png (same size, 8-bit) and a row in OUT/report/ (parquet
    shards): path, output,
    source_before / source_after (the gallery's attribution), scores, target, psnr, ssim, error.
    Exit 0 when every row succeeded, 3 when some rows carry an error.

    \b
    Example:
      fpfast train my_gallery --from-folders zoo/train --causal
      fpfast anonymize zoo/test/ae_tconv --gallery my_gallery --out anon/
    """
    if out.lower().endswith((".parquet", ".csv", ".jsonl")):
        raise click.UsageError("--out is a directory for anonymize (images and report shards)")
    out = out.rstrip("/") + "/"
    report = out + REPORT + "/"
    if os.path.isdir(out) and set(os.listdir(out)) - {REPORT, IMAGES}:
        raise click.UsageError(f"--out {out} holds files that anonymize did not write; choose a new or empty directory")
    check_output(report, resume, overwrite, sources, gallery)
    g = Gallery.load(gallery, with_digest=True)
    an = Anonymizer(g, target, strength, eps, steps, device=resolve_device(opts.device))
    mapper = anonymize_mapper(g, opts, out, an)
    summary = run(list(sources), mapper, report, spec=whole_image_spec(g.spec), shard_size=shard_size,
                  resume=resume, overwrite=overwrite, schema=anonymize_schema(),
                  config={"gallery": g.path, "gallery_digest": g.loaded_digest, "anonymize": an.config()},
                  on_mapper_error="rows",
                  **opts.stream_kw())
    finish(summary, opts.quiet)
