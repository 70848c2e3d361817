"""One exception tree, one exit-code map; a broken internal contract is not a usage error."""
import pytest

from fpfast.backends import BackendUnavailable
from fpfast.cli.options import handle_errors
from fpfast.errors import (EXIT_FAILURE, EXIT_ROW_ERRORS, EXIT_USAGE, ConfigError, InputDataError, UsageError,
                           exit_code_for)
from fpfast.gallery import GalleryError
from fpfast.io.decode import DecodeError
from fpfast.io.sources import SourceSpecError
from fpfast.io.writers import OutputError
from fpfast.projectors import ProjectorError
from fpfast.spec import SpecError


@pytest.mark.parametrize("exc, code", [
    (SourceSpecError("x"), EXIT_USAGE), (OutputError("x"), EXIT_USAGE), (SpecError("x"), EXIT_USAGE),
    (GalleryError("x"), EXIT_USAGE), (ProjectorError("x"), EXIT_USAGE), (BackendUnavailable("x"), EXIT_USAGE),
    (FileNotFoundError("x"), EXIT_USAGE), (DecodeError("x"), EXIT_ROW_ERRORS),
    (ValueError("x"), EXIT_FAILURE), (KeyError("x"), EXIT_FAILURE), (RuntimeError("x"), EXIT_FAILURE)])
def test_exit_code_map(exc, code):
    assert exit_code_for(exc) == code


def test_the_tree():
    for cls in (SpecError, GalleryError, ProjectorError, BackendUnavailable):
        assert issubclass(cls, ConfigError) and issubclass(cls, UsageError)
    assert issubclass(DecodeError, InputDataError) and not issubclass(DecodeError, UsageError)
    assert issubclass(BackendUnavailable, RuntimeError)  # callers that caught it as such still do


def test_cli_reports_usage_errors_in_one_line_and_lets_bugs_through(capsys):
    @handle_errors
    def usage():
        raise GalleryError("no gallery here")

    @handle_errors
    def bug():
        raise ValueError("internal contract broken")

    with pytest.raises(SystemExit) as e:
        usage()
    assert e.value.code == EXIT_USAGE and "fpfast: error: no gallery here" in capsys.readouterr().err
    with pytest.raises(ValueError, match="internal contract"):  # exit 1 with its traceback, not 'usage'
        bug()
