"""Options shared by the streaming commands, and the one place errors become exit codes."""
from __future__ import annotations

import functools
import sys

import click

from ..workflows import StreamOptions

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_ROW_ERRORS = 0, 1, 2, 3


def stream_options(fn):
    """--device --backend --batch-size --workers --quiet, gathered into ``opts: StreamOptions``."""
    @click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                  help="Where fingerprints are computed.")
    @click.option("--backend", type=click.Choice(["auto", "torch", "cpp", "triton", "cuda"]), default="auto",
                  show_default=True, help="Kernel backend; naming one that cannot run here is an error.")
    @click.option("--batch-size", type=click.IntRange(1, 65536), default=64, show_default=True)
    @click.option("--workers", type=click.IntRange(0, 256), default=0, show_default=True,
                  help="Decode worker processes (0: decode in this process).")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
    @functools.wraps(fn)
    def wrapper(*args, device, backend, batch_size, workers, quiet, **kw):
        opts = StreamOptions(backend=backend, device=device, batch_size=batch_size, workers=workers, quiet=quiet)
        return fn(*args, opts=opts, **kw)
    return wrapper


def usage_errors():
    """The exception types that mean 'fix the command or its inputs' (exit 2)."""
    from ..backends import BackendUnavailable
    from ..gallery import GalleryError
    from ..io.sources import SourceSpecError
    from ..io.writers import OutputError
    from ..projectors import ProjectorError
    from ..spec import SpecError
    return (BackendUnavailable, GalleryError, SourceSpecError, OutputError, SpecError, ProjectorError,
            FileNotFoundError, KeyError, ValueError)


def handle_errors(fn):
    """Print a usage/config error as one line with what to do, and exit 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kw):
        try:
            return fn(*args, **kw)
        except usage_errors() as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            click.echo(f"fpfast: error: {msg}", err=True)
            sys.exit(EXIT_USAGE)
    return wrapper


def finish(summary, quiet: bool) -> None:
    """Print the run summary and exit 0, or 3 when some rows carry an error."""
    if not quiet:
        click.echo(summary.format(), err=True)
    if summary.errors:
        click.echo(f"fpfast: {summary.errors} input(s) could not be processed; see the 'error' column "
                   f"(exit {EXIT_ROW_ERRORS})", err=True)
        sys.exit(EXIT_ROW_ERRORS)
