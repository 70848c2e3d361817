"""Readers: every input named on the command line -> ``Item(key, payload)``, in a fixed order.

A source is a string:

* a file path (an image; a ``.tar`` shard; a ``.parquet`` file),
* a folder (walked recursively, directories and files sorted by name; only image extensions
  :data:`IMAGE_EXTENSIONS` are taken, sidecar files are skipped),
* a glob (``*``, ``?``, ``[...]``, ``**``; matches sorted),
* a brace pattern (``shards/{0000..0099}.tar``, ``{a,b}``; expanded in the order written),
* ``@list.txt``: one path per line (blank lines and lines starting with ``#`` skipped; each line is
  taken literally, with no glob or brace expansion, so names may hold ``*`` or ``{``).

A literal path that exists is never glob- or brace-expanded. Order: sources in the order given,
then the order above inside each. The same arguments give the same order on every run, which is
what resume relies on.

Payloads (what the decoder receives):

* :class:`FileRef` - a path, read by the decode worker (keeps file bytes out of the parent),
* ``bytes`` - already in memory (tar members, parquet cells),
* :class:`SourceError` - the input could not be read; becomes an error row.

The invariant: every input yields exactly one item, errors included. A tar shard with a damaged
member header yields one error item for the damaged stretch (the names inside it are lost) and the
members after it are still read; a tar that cannot be opened at all is one error item keyed by
the shard path. A parquet row whose bytes cell is null is one error item.
"""
from __future__ import annotations

import glob as _glob
import os
import re
import tarfile
from typing import Callable, Iterable, Iterator, NamedTuple, Union

from .limits import DEFAULT_MAX_BYTES, read_file, too_big

from ..errors import UsageError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
TAR_EXTENSIONS = (".tar", ".tar.gz", ".tgz")
GZ_TAR_EXTENSIONS = (".tar.gz", ".tgz")  # read as a stream (no seeking, no count without reading)
PARQUET_EXTENSIONS = (".parquet", ".pq")
# parquet columns tried, in order, when no --column is given
BYTES_COLUMN_GUESSES = ("image", "jpg", "png", "webp", "img", "image_bytes", "bytes")
KEY_COLUMN_GUESSES = ("__key__", "key", "path", "url")


class SourceSpecError(UsageError):
    """A source argument is unusable as a whole (a glob matching nothing, a parquet without a
    bytes column): a usage error, not an error row."""


class FileRef(NamedTuple):
    """An image file to be read by whoever decodes it, at most ``max_bytes`` of it."""
    path: str
    max_bytes: int = DEFAULT_MAX_BYTES


class SourceError(NamedTuple):
    """An input that could not be read; ``message`` says why."""
    message: str


Payload = Union[bytes, FileRef, SourceError]


class Item(NamedTuple):
    key: str
    payload: Payload


def load_bytes(payload: Payload) -> bytes:
    """The bytes of a payload; raises OSError/ValueError with a readable message."""
    if isinstance(payload, SourceError):
        raise ValueError(payload.message)
    if isinstance(payload, FileRef):
        return read_file(payload.path, payload.max_bytes)
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    raise TypeError(f"unknown payload type {type(payload).__name__}")


# ---------------------------------------------------------------------------- patterns
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


def expand_braces(pattern: str) -> list[str]:
    """``a{00..02}b`` -> ``[a00b, a01b, a02b]``; ``{x,y}`` -> both; several groups multiply,
    leftmost varying slowest. Zero padding follows the wider bound."""
    m = _BRACE.search(pattern)
    if m is None:
        return [pattern]
    body = m.group(1)
    r = _RANGE.match(body)
    if r:
        lo, hi = int(r.group(1)), int(r.group(2))
        width = max(len(r.group(1)), len(r.group(2))) if r.group(1).startswith("0") or r.group(2).startswith("0") else 0
        step = 1 if hi >= lo else -1
        choices = [str(i).zfill(width) for i in range(lo, hi + step, step)]
    elif "," in body:
        choices = body.split(",")
    else:  # a literal {word}: keep it and expand what follows
        head, tail = pattern[:m.end()], pattern[m.end():]
        return [head + rest for rest in expand_braces(tail)]
    head, tail = pattern[:m.start()], pattern[m.end():]
    return [p for c in choices for p in expand_braces(head + c + tail)]


def _has_glob(s: str) -> bool:
    return any(ch in s for ch in "*?[")


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lower()


# ---------------------------------------------------------------------------- readers
def iter_folder(root: str, max_bytes: int = DEFAULT_MAX_BYTES,
                ignored: Callable[[str], None] | None = None) -> Iterator[Item]:
    """Image files under ``root``, recursively, sorted (directories before their later siblings'
    files is not guaranteed: the walk is depth-first with names sorted at each level). Files
    without an image extension are passed to ``ignored`` (the run reports how many)."""
    errors: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append, followlinks=False):
        dirnames.sort()
        for e in errors:  # an unreadable subfolder: one error item for it
            yield Item(e.filename or dirpath, SourceError(f"cannot read folder: {e.strerror or e}"))
        errors.clear()
        for name in sorted(filenames):
            if _ext(name) in IMAGE_EXTENSIONS:
                yield Item(os.path.join(dirpath, name), FileRef(os.path.join(dirpath, name), max_bytes))
            elif ignored is not None and not name.startswith("."):
                ignored(os.path.join(dirpath, name))
    for e in errors:
        yield Item(e.filename or root, SourceError(f"cannot read folder: {e.strerror or e}"))


def _is_image_member(name: str) -> bool:
    return _ext(name) in IMAGE_EXTENSIONS


def _member_key(member: tarfile.TarInfo, prefix: str, max_bytes: int) -> tuple[str | None, Item | None]:
    """(key, None) of an image member to read; (key, error item) of one over the read cap;
    (None, None) of a member to skip (a directory, a sidecar)."""
    if not member.isfile() or not _is_image_member(member.name):
        return None, None
    key = f"{prefix}/{member.name}"
    return key, Item(key, SourceError(too_big(member.size, max_bytes))) if member.size > max_bytes else None


def _nonzero(fh, start: int, stop: int) -> bool:
    fh.seek(start)
    left = stop - start
    while left > 0:
        chunk = fh.read(min(left, 1 << 20))
        if not chunk:
            return False
        if chunk.count(0) != len(chunk):
            return True
        left -= len(chunk)
    return False


def iter_tar(path: str, key_prefix: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Item]:
    """Image members of a webdataset-style tar shard, in archive order; key ``shard.tar/member``.

    Non-image members (``.json``, ``.txt``, ``.cls`` sidecars) and directories are skipped. A
    member whose data is cut short is an error item; a damaged header is skipped over (the
    archive is scanned block by block for the next valid header) and the damaged stretch becomes
    one error item ``shard.tar/@<offset>``; the members after it are still read.
    """
    prefix = path if key_prefix is None else key_prefix
    if path.lower().endswith(GZ_TAR_EXTENSIONS):
        yield from _iter_tar_gz(path, prefix, max_bytes)
        return
    try:
        size = os.path.getsize(path)
        fh = open(path, "rb")
    except OSError as e:
        yield Item(prefix, SourceError(f"cannot open tar shard: {e.strerror or e}"))
        return
    with fh:
        try:
            tf = tarfile.open(fileobj=fh, mode="r:", ignore_zeros=True)
        except (tarfile.TarError, OSError) as e:
            yield Item(prefix, SourceError(f"not a readable tar shard: {e}"))
            return
        expected = 0  # where the next header should start if nothing was damaged
        while True:
            try:
                member = tf.next()
            except (tarfile.TarError, OSError, EOFError) as e:
                if expected >= size:  # the last member was cut short (already an error item)
                    return
                yield Item(f"{prefix}/@{expected}", SourceError(
                    f"tar shard is damaged at byte {expected}: {e}; the rest of the shard is lost"))
                return
            if member is None:
                break
            if member.offset > expected:
                pos = fh.tell()
                damaged = _nonzero(fh, expected, member.offset)
                fh.seek(pos)
                if damaged:
                    yield Item(f"{prefix}/@{expected}", SourceError(
                        f"tar shard has damaged data at bytes {expected}-{member.offset} (a member "
                        f"header was corrupt; that member is lost, reading resumed at "
                        f"{member.name!r})"))
            expected = member.offset_data + ((member.size + 511) // 512) * 512 if member.isfile() \
                else member.offset_data
            key, refused = _member_key(member, prefix, max_bytes)
            if key is None:
                continue
            if refused is not None:
                yield refused
                continue
            if member.offset_data + member.size > size:
                yield Item(key, SourceError(
                    f"tar member is truncated: {size - member.offset_data} of {member.size} bytes "
                    f"present (the shard was cut short)"))
                continue
            try:
                data = tf.extractfile(member).read()
            except (tarfile.TarError, OSError) as e:
                yield Item(key, SourceError(f"cannot read tar member: {e}"))
                continue
            if len(data) != member.size:
                yield Item(key, SourceError(f"tar member is truncated: {len(data)} of {member.size} bytes"))
                continue
            yield Item(key, data)
        if expected < size and _nonzero(fh, expected, size):
            # trailing bytes that hold no valid header: a damaged last member, or garbage
            yield Item(f"{prefix}/@{expected}", SourceError(
                f"tar shard has unreadable data after byte {expected} (a damaged or truncated "
                f"member header; the member is lost)"))


def _iter_tar_gz(path: str, prefix: str, max_bytes: int) -> Iterator[Item]:
    """Image members of a gzip-compressed tar shard (``.tar.gz`` / ``.tgz``, as webdataset writes
    them), read as one stream: a member over ``max_bytes`` is an error item and is not read; a
    damaged stream is one error item and the rest of the shard is lost (gzip cannot resync)."""
    import zlib
    last = None
    try:
        tf = tarfile.open(path, mode="r|gz")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        yield Item(prefix, SourceError(f"not a readable gzip tar shard: {e}"))
        return
    try:
        with tf:
            for member in tf:
                last = member.name
                key, refused = _member_key(member, prefix, max_bytes)
                if key is None:
                    continue
                if refused is not None:
                    yield refused
                    continue
                data = tf.extractfile(member).read()
                if len(data) != member.size:
                    yield Item(key, SourceError(f"tar member is truncated: {len(data)} of {member.size} bytes"))
                    return
                yield Item(key, data)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        where = f"after member {last!r}" if last else "at its start"
        yield Item(f"{prefix}/@{last or 0}", SourceError(
            f"gzip tar shard is damaged {where}: {e}; the rest of the shard is lost"))


def _pick_column(schema_names: list[str], types: dict, wanted: str | None, guesses, what: str,
                 path: str, required: bool) -> str | None:
    if wanted is not None:
        if wanted not in schema_names:
            raise SourceSpecError(f"{path}: no column {wanted!r}; columns are {schema_names}")
        return wanted
    for g in guesses:
        if g in schema_names:
            return g
    if what == "bytes":
        binary = [n for n in schema_names if types[n] == "binary"]
        if len(binary) == 1:
            return binary[0]
    if required:
        raise SourceSpecError(
            f"{path}: cannot tell which column holds the image bytes (columns {schema_names}); "
            f"name it with --column")
    return None


def iter_parquet(path: str, column: str | None = None, key_column: str | None = None,
                 batch_rows: int = 256, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Item]:
    """Rows of a parquet file with an image-bytes column; key = the key column's value, else
    ``file.parquet#row``. A struct column with a ``bytes`` field (Hugging Face ``Image``) works.
    A null cell is an error item."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        yield Item(path, SourceError(f"not a readable parquet file: {e}"))
        return
    schema = pf.schema_arrow
    names = schema.names
    types = {}
    for f in schema:
        t = f.type
        types[f.name] = ("binary" if pa.types.is_binary(t) or pa.types.is_large_binary(t)
                         else "struct" if pa.types.is_struct(t) else "other")
    col = _pick_column(names, types, column, BYTES_COLUMN_GUESSES, "bytes", path, True)
    kcol = _pick_column(names, types, key_column, KEY_COLUMN_GUESSES, "key", path, False)
    if types[col] == "struct" and "bytes" not in [f.name for f in schema.field(col).type]:
        raise SourceSpecError(f"{path}: column {col!r} is a struct without a 'bytes' field")
    if types[col] == "other":
        raise SourceSpecError(f"{path}: column {col!r} holds {schema.field(col).type}, not bytes")
    cols = [col] + ([kcol] if kcol and kcol != col else [])
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=cols):
            data = batch.column(0)
            if types[col] == "struct":
                data = data.field("bytes")
            values = data.to_pylist()
            keys = batch.column(1).to_pylist() if len(cols) > 1 else [None] * len(values)
            for v, k in zip(values, keys):
                key = str(k) if k is not None else f"{path}#{row}"
                if v is None:
                    yield Item(key, SourceError(f"parquet row {row}: the {col!r} cell is null"))
                elif len(v) > max_bytes:
                    yield Item(key, SourceError(too_big(len(v), max_bytes)))
                else:
                    yield Item(key, v)
                row += 1
    except (OSError, pa.ArrowException) as e:
        yield Item(f"{path}#{row}", SourceError(f"parquet file is damaged from row {row} on: {e}"))


def _iter_path(path: str, column: str | None, key_column: str | None,
               max_bytes: int = DEFAULT_MAX_BYTES, ignored: Callable[[str], None] | None = None) -> Iterator[Item]:
    """One existing-or-not literal path."""
    if os.path.isdir(path):
        yield from iter_folder(path, max_bytes, ignored)
    elif path.lower().endswith(TAR_EXTENSIONS):
        yield from iter_tar(path, max_bytes=max_bytes)
    elif path.lower().endswith(PARQUET_EXTENSIONS):
        if not os.path.exists(path):
            yield Item(path, SourceError("no such file"))
        else:
            yield from iter_parquet(path, column, key_column, max_bytes=max_bytes)
    elif not os.path.exists(path):
        yield Item(path, SourceError("no such file"))
    else:
        yield Item(path, FileRef(path, max_bytes))


def iter_list(list_path: str, column: str | None = None, key_column: str | None = None,
              max_bytes: int = DEFAULT_MAX_BYTES, ignored: Callable[[str], None] | None = None) -> Iterator[Item]:
    try:
        fh = open(list_path, encoding="utf-8")
    except OSError as e:
        raise SourceSpecError(f"cannot read list file {list_path!r}: {e.strerror or e}") from None
    with fh:
        for line in fh:
            p = line.rstrip("\r\n")
            if not p.strip() or p.lstrip().startswith("#"):
                continue
            yield from _iter_path(p, column, key_column, max_bytes, ignored)


def iter_source(source: str, column: str | None = None, key_column: str | None = None,
                max_bytes: int = DEFAULT_MAX_BYTES, ignored: Callable[[str], None] | None = None) -> Iterator[Item]:
    """Items of one source argument (see the module docstring); ``max_bytes``: the read cap of
    every input; ``ignored``: called with each folder entry that is not an image."""
    if source.startswith("@") and not os.path.exists(source):
        yield from iter_list(source[1:], column, key_column, max_bytes, ignored)
        return
    if os.path.exists(source):
        yield from _iter_path(source, column, key_column, max_bytes, ignored)
        return
    patterns = expand_braces(source)
    if len(patterns) == 1 and not _has_glob(source):
        yield Item(source, SourceError("no such file or folder"))
        return
    for pat in patterns:
        if _has_glob(pat):
            matches = sorted(_glob.glob(pat, recursive=True))
            if not matches:
                raise SourceSpecError(f"no files match {pat!r}")
            for m in matches:
                if os.path.isdir(m) and "**" in pat:
                    continue  # '**' also matches folders; their files match it as well
                yield from _iter_path(m, column, key_column, max_bytes, ignored)
        else:
            yield from _iter_path(pat, column, key_column, max_bytes, ignored)


def iter_sources(sources: Iterable[str] | str, column: str | None = None, key_column: str | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES, ignored: Callable[[str], None] | None = None) -> Iterator[Item]:
    """Items of every source, in order; see the module docstring and :func:`iter_source`."""
    if isinstance(sources, str):
        sources = [sources]
    for s in sources:
        yield from iter_source(s, column, key_column, max_bytes, ignored)


class _OverBudget(Exception):
    pass


def count_inputs(sources: Iterable[str] | str, column: str | None = None, budget_s: float = 2.0) -> int | None:
    """How many inputs ``sources`` hold, without reading an image (for a progress bar's total):
    folder walks, list lines, tar headers, parquet metadata. None when that is not cheap to know
    (a gzip tar shard, more than ``budget_s`` seconds of counting) or a source cannot be read."""
    import time
    deadline = time.monotonic() + budget_s
    if isinstance(sources, str):
        sources = [sources]

    def tick() -> None:
        if time.monotonic() > deadline:
            raise _OverBudget

    def path_count(path: str) -> int:
        tick()
        if os.path.isdir(path):
            n = 0
            for _, dirnames, filenames in os.walk(path):
                dirnames.sort()
                n += sum(1 for f in filenames if _ext(f) in IMAGE_EXTENSIONS)
                tick()
            return n
        low = path.lower()
        if low.endswith(GZ_TAR_EXTENSIONS):
            raise _OverBudget
        if low.endswith(TAR_EXTENSIONS):
            n = 0
            with tarfile.open(path, mode="r:", ignore_zeros=True) as tf:
                for m in tf:
                    n += m.isfile() and _is_image_member(m.name)
                    if n % 1000 == 0:
                        tick()
            return n
        if low.endswith(PARQUET_EXTENSIONS):
            import pyarrow.parquet as pq
            return pq.ParquetFile(path).metadata.num_rows
        return 1

    def source_count(source: str) -> int:
        if source.startswith("@") and not os.path.exists(source):
            with open(source[1:], encoding="utf-8") as fh:
                return sum(path_count(line.rstrip("\r\n")) for line in fh
                           if line.strip() and not line.lstrip().startswith("#"))
        if os.path.exists(source):
            return path_count(source)
        n = 0
        for pat in expand_braces(source):
            if _has_glob(pat):
                n += sum(path_count(m) for m in sorted(_glob.glob(pat, recursive=True))
                         if not (os.path.isdir(m) and "**" in pat))
            else:
                n += path_count(pat)
        return n

    try:
        return sum(source_count(s) for s in sources)
    except Exception:  # noqa: BLE001 - a count is a nicety; the run reports the real problem
        return None


def require_inputs(items: Iterator[Item], sources, ignored: list[str]) -> Iterator[Item]:
    """``items`` unchanged, or :class:`SourceSpecError` at once when there is none at all (an
    empty folder, a list of nothing): one clear error wherever sources are read."""
    import itertools
    items = iter(items)
    try:
        first = next(items)
    except StopIteration:
        what = f" ({len(ignored)} entries that are not image files, e.g. {ignored[0]!r})" if ignored else ""
        raise SourceSpecError(f"no inputs: {', '.join(map(str, sources))} holds no image file{what}; "
                              f"image extensions: {' '.join(sorted(IMAGE_EXTENSIONS))}") from None
    return itertools.chain([first], items)


def check_sources(sources: Iterable[str] | str, column: str | None = None,
                  key_column: str | None = None) -> None:
    """Raise :class:`SourceSpecError` now for a source that can only fail (a glob matching
    nothing, an unreadable list file), without reading any image. Meant for CLIs, before a run."""
    if isinstance(sources, str):
        sources = [sources]
    for s in sources:
        if s.startswith("@") and not os.path.exists(s):
            if not os.path.isfile(s[1:]):
                raise SourceSpecError(f"list file {s[1:]!r} does not exist")
        elif not os.path.exists(s):
            for pat in expand_braces(s):
                if _has_glob(pat) and not _glob.glob(pat, recursive=True):
                    raise SourceSpecError(f"no files match {pat!r}")
