"""Paths as fpfast stores and writes them: file names that are not UTF-8, and where an output may go.

* :func:`path_text` / :func:`path_key`: a key (a path as Python reads it from the file system,
  undecodable bytes surrogate-escaped) as text any parquet/JSON reader accepts, losslessly: a name
  that is not valid UTF-8 is written with its backslashes doubled and each undecodable byte as
  ``\\xNN``, and its row's ``note`` says so (:data:`ESCAPED_NOTE`); :func:`path_key` gives the
  original back (``os.fsencode(path_key(text))`` are the name's bytes).
* :func:`check_output_path`: an output must not lie inside an input or a gallery, must have a
  known suffix, and an existing directory must be empty or an fpfast output.
"""
from __future__ import annotations

import os
import re

ESCAPED_NOTE = "file name is not valid UTF-8: path holds it with \\xNN escapes (fpfast.io.paths.path_key)"
_ESC = re.compile(r"\\\\|\\x([0-9a-f]{2})")


def path_text(key: str) -> tuple[str, bool]:
    """(text to store, whether it was escaped) for a key."""
    try:
        key.encode("utf-8")
        return key, False
    except UnicodeEncodeError:
        raw = key.encode("utf-8", "surrogateescape")
        text = raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
        return text, True


def path_key(text: str, escaped: bool = True) -> str:
    """The key :func:`path_text` stored as ``text`` (``escaped``: its row carries :data:`ESCAPED_NOTE`)."""
    if not escaped:
        return text
    out = bytearray()
    pos = 0
    for m in _ESC.finditer(text):
        out += text[pos:m.start()].encode("utf-8")
        out += b"\\" if m.group(1) is None else bytes([int(m.group(1), 16)])
        pos = m.end()
    out += text[pos:].encode("utf-8")
    return out.decode("utf-8", "surrogateescape")


def _inside(path: str, root: str) -> bool:
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _source_root(source: str) -> str | None:
    """The file or folder a source argument reads (a glob's fixed leading folders), or None."""
    from .sources import _has_glob, expand_braces
    if source.startswith("@") and not os.path.exists(source):
        return None
    if os.path.exists(source):
        return source
    head = expand_braces(source)[0] if "{" in source else source
    parts = []
    for part in head.split(os.sep):
        if _has_glob(part) or "{" in part:
            break
        parts.append(part)
    root = os.sep.join(parts) or "."
    return root if os.path.isdir(root) else None


def check_output_path(out: str, sources=(), gallery: str | None = None, kind: str = "rows") -> None:
    """Raise :class:`fpfast.io.writers.OutputError` for an output that cannot be right: ``-``, an
    unknown suffix (``rows``: .parquet/.csv/.jsonl or a directory; ``npy`` and ``dir``: a
    directory), a path inside an input or the gallery, or an existing non-empty directory that is
    not an fpfast output."""
    from .writers import SINGLE_FILE_FORMATS, OutputError, holds_run
    if out in ("", "-"):
        raise OutputError(f"--out {out!r}: fpfast writes files, not a stream; give a "
                          f"{'/'.join(SINGLE_FILE_FORMATS)} file or a directory")
    is_dir = os.path.isdir(out) or out.endswith(os.sep)
    ext = "" if is_dir else os.path.splitext(out)[1].lower()
    allowed = SINGLE_FILE_FORMATS if kind == "rows" else ()
    if kind != "dir" and ext and ext not in allowed:
        accepted = ", ".join(allowed) + (", or " if allowed else "") + "a directory (a name without a suffix, or ending in /)"
        raise OutputError(f"--out {out}: unknown output suffix {ext!r}; accepted: {accepted}")
    for src in sources:
        root = _source_root(str(src))
        if root is not None and _inside(out, root):
            raise OutputError(f"--out {out} lies inside the input {src}: a later run would read the output as "
                              "input; choose an output outside the inputs")
    if gallery is not None and _inside(out, gallery):
        raise OutputError(f"--out {out} lies inside the gallery {gallery}; choose an output outside it")
    if os.path.isdir(out) and not holds_run(out) and set(os.listdir(out)) - {".fpfast.lock"} \
            and kind != "dir":
        raise OutputError(f"--out {out} is a directory that is not empty and not an fpfast output; "
                          "choose a new or empty directory")
