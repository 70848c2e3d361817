"""Options shared by the streaming commands, and the one place errors become exit codes."""
from __future__ import annotations

import functools
import os
import sys

import click

from ..embed.model import FLIP_COUNTS
from ..errors import EXIT_ROW_ERRORS, EXIT_USAGE, FpfastError, exit_code_for
from ..io.decode import DEFAULT_MAX_PIXELS
from ..io.limits import DEFAULT_MAX_BYTES
from ..jobs.options import StreamOptions


class GalleryDir(click.Path):
    """An existing gallery directory; one missing because a save was killed mid-swap is named so
    (:func:`fpfast.gallery.store.interrupted_save`), not just "does not exist"."""

    def __init__(self):
        super().__init__(exists=True, file_okay=False)

    def convert(self, value, param, ctx):
        if not os.path.exists(value):
            from ..gallery.store import interrupted_save
            msg = interrupted_save(os.fspath(value))
            if msg:
                self.fail(msg, param, ctx)
        return super().convert(value, param, ctx)


def flips_option(what: str, default: str):
    """``--flips N`` (a string of :data:`~fpfast.embed.model.FLIP_COUNTS`; None when not given):
    ``what`` begins its help (whose vectors are averaged), ``default`` ends it."""
    return click.option(
        "--flips", type=click.Choice([str(n) for n in FLIP_COUNTS]), default=None,
        help=f"{what} over this many of its mirror images (1: the image alone; 2: and its left-right "
             "mirror; 4: and the up-down ones): that many times the network's cost at enrollment and "
             f"query time, a steadier vector (benchmarks/results/embedding.md).  [default: {default}]")


def stream_options(fn):
    """--device --backend --batch-size --workers --max-pixels --max-bytes --precision --compile --decode --quiet, gathered
    into ``opts: StreamOptions``."""
    @click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                  help="Where fingerprints are computed.")
    @click.option("--backend", type=click.Choice(["auto", "torch", "cpp", "triton", "cuda"]), default="auto",
                  show_default=True, help="Kernel backend; naming one that cannot run here is an error.")
    @click.option("--batch-size", type=click.IntRange(1, 65536), default=64, show_default=True)
    @click.option("--workers", type=click.IntRange(0, 256), default=0, show_default=True,
                  help="Decode worker processes (0: decode in this process).")
    @click.option("--max-pixels", type=click.IntRange(1), default=DEFAULT_MAX_PIXELS, show_default=True,
                  help="Images with more pixels are refused (decompression-bomb guard): an error row.")
    @click.option("--max-bytes", type=click.IntRange(1), default=DEFAULT_MAX_BYTES, show_default=True,
                  help="Inputs larger than this are not read: an error row. Only regular files are read.")
    @click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto",
                  show_default=True, help="Learned-embedding inference precision (auto: fp16 on CUDA, fp32 on CPU).")
    @click.option("--compile", "compile_", is_flag=True,
                  help="torch.compile a learned embedding's network: faster on long streams, after a "
                       "compile of seconds up front.")
    @click.option("--decode", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
                  help="Where JPEGs are decoded: cuda = nvJPEG batches on the GPU (torchvision), other "
                       "formats on the CPU. Its pixels differ slightly from the CPU decoder's: enroll "
                       "and query with the same choice.")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
    @functools.wraps(fn)
    def wrapper(*args, device, backend, batch_size, workers, max_pixels, max_bytes, precision, compile_, decode,
                quiet, **kw):
        opts = StreamOptions(backend=backend, device=device, batch_size=batch_size, workers=workers, quiet=quiet,
                             max_pixels=max_pixels, precision=precision, compile=compile_, decode=decode,
                             max_bytes=max_bytes)
        return fn(*args, opts=opts, **kw)
    return wrapper


def engine_options(fn):
    """--engine --ray-address --ray-actors --ray-block-rows --verbose, gathered into ``engine: EngineOptions``
    (checked at once: ``--engine ray`` without Ray installed is a usage error)."""
    from ..engines import DEFAULT_BLOCK_ROWS, ENGINES, EngineOptions

    @click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
                  help="local: this machine's processes; ray: Ray Data actors (pip install 'fpfast[ray]'). "
                       "The output is the same.")
    @click.option("--ray-address", metavar="ADDR",
                  help="Join this Ray cluster ('auto' or HOST:PORT); without it --engine ray starts a local Ray.")
    @click.option("--ray-actors", type=click.IntRange(1), default=None,
                  help="Ray actors (default: one per GPU of the cluster, else one per CPU). --workers "
                       "does not apply: each actor decodes its own blocks.")
    @click.option("--ray-block-rows", type=click.IntRange(1), default=None,
                  help="Inputs per Ray task (default %d; a block never spans two output shards)." % DEFAULT_BLOCK_ROWS)
    @click.option("--verbose", is_flag=True, help="Show Ray's own logs and progress bars.")
    @functools.wraps(fn)
    def wrapper(*args, engine, ray_address, ray_actors, ray_block_rows, verbose, **kw):
        opts = EngineOptions(engine=engine, ray_address=ray_address, ray_actors=ray_actors or 0,
                             block_rows=ray_block_rows, verbose=verbose)
        opts.check()
        return fn(*args, engine=opts, **kw)
    return wrapper


expect_digest_option = click.option(
    "--expect-digest", metavar="SHA256",
    help="Refuse the gallery unless its digest (`fpfast info --gallery G --digest`) is this one: "
         "detects any change to its files, tampering included.")


def output_options(shard_size: int):
    """--column --shard-size --resume --overwrite of the commands that write a sharded output."""
    opts = [click.option("--column", help="Image-bytes column of parquet sources."),
            click.option("--shard-size", type=click.IntRange(1), default=shard_size, show_default=True,
                         help="Inputs per output shard (the unit of --resume)."),
            click.option("--resume", is_flag=True, help="Skip finished shards of an interrupted run into OUT."),
            click.option("--overwrite", is_flag=True, help="Replace an existing OUT.")]

    def deco(fn):
        for opt in reversed(opts):
            fn = opt(fn)
        return fn
    return deco


def handle_errors(fn):
    """An fpfast error (:mod:`fpfast.errors`) or a missing path as one line and its exit code (2 for
    usage and configuration, 3 for unusable input data); anything else is a bug and keeps its
    traceback (exit 1)."""
    @functools.wraps(fn)
    def wrapper(*args, **kw):
        try:
            return fn(*args, **kw)
        except (FpfastError, FileNotFoundError) as e:
            msg = str(e)
            from ..backends import BackendUnavailable
            if isinstance(e, BackendUnavailable):
                msg += " (`fpfast info` lists the usable backends; --backend auto picks one)"
            click.echo(f"fpfast: error: {msg}", err=True)
            sys.exit(exit_code_for(e))
        except OSError as e:  # the file system said no (read-only, full, not a directory, locked)
            click.echo(f"fpfast: error: {os_error_line(e)}", err=True)
            sys.exit(EXIT_USAGE)
    return wrapper


def os_error_line(e: OSError) -> str:
    """One line naming the path and the cause of a file-system error."""
    import errno
    import os
    cause = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
             errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
             errno.ENOTDIR: "a part of the path is a file, not a directory",
             errno.EEXIST: "it exists already"}.get(e.errno, e.strerror or str(e) or type(e).__name__)
    return cause if e.filename is None else f"{os.fsdecode(e.filename)}: {cause}"


def check_output(out: str, resume: bool, overwrite: bool, sources=(), gallery: str | None = None,
                 kind: str = "rows") -> None:
    """An output path that cannot be right is refused (:func:`fpfast.io.paths.check_output_path`),
    and one that holds an earlier run needs --resume or --overwrite: say so before anything runs."""
    from ..io.paths import check_output_path
    from ..io.writers import holds_run
    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    check_output_path(out, sources, gallery, kind)
    if not (resume or overwrite) and holds_run(out):
        raise click.UsageError(f"{out} exists (or holds an interrupted run): pass --resume to finish that run, "
                               f"--overwrite to replace it, or choose another --out")


def finish(summary, quiet: bool) -> None:
    """Print the run summary and exit 0, or 3 when some rows carry an error."""
    if not quiet:
        click.echo(summary.format(), err=True)
    if summary.errors:
        click.echo(f"fpfast: {summary.errors} input(s) could not be processed; see the 'error' column "
                   f"(exit {EXIT_ROW_ERRORS})", err=True)
        sys.exit(EXIT_ROW_ERRORS)
