"""fpfast's exception tree and its one exit-code map.

* :class:`UsageError` - fix the command: a bad option value, a source pattern matching nothing,
  an output that exists without ``--resume``. Exit 2.
* :class:`ConfigError` (a :class:`UsageError`) - a configuration that cannot work here: a
  malformed or mismatched spec, gallery, projector or embedding, a backend that cannot run on
  this machine. Exit 2.
* :class:`InputDataError` - an input image (or all of a model's inputs) cannot be used. Inside the
  stream it becomes the input's error row and the run goes on; the run then exits 3. Raised out
  of a command (nothing usable at all) it also exits 3.
* Anything else is a bug: exit 1, with the traceback.

The fpfast errors derive from :class:`ValueError` too (``BackendUnavailable`` from
``RuntimeError``), so callers that catch those keep working; the CLI decides on the tree, never
on ``ValueError`` / ``KeyError`` (a broken internal contract must not read as a user mistake).
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1       # a bug or an unexpected fault; the output stays resumable
EXIT_USAGE = 2         # usage or configuration error: nothing was run
EXIT_ROW_ERRORS = 3    # the run completed and some rows carry an error


class FpfastError(Exception):
    """Base of the errors fpfast reports as one line (no traceback)."""

    exit_code = EXIT_FAILURE


class UsageError(FpfastError, ValueError):
    """The command or its arguments must change."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A configuration (spec, gallery, projector, embedding, backend) is malformed or cannot run here."""


class InputDataError(FpfastError, ValueError):
    """Input data that cannot be used: an error row in the stream, exit 3 at the end."""

    exit_code = EXIT_ROW_ERRORS


def exit_code_for(exc: BaseException) -> int:
    """The exit status of a run that ended with ``exc``: the tree's code, 2 for a path that does
    not exist (a usage error), else 1 (a bug)."""
    if isinstance(exc, FpfastError):
        return exc.exit_code
    if isinstance(exc, FileNotFoundError):
        return EXIT_USAGE
    return EXIT_FAILURE
