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
member header yields one error item ``shard.tar/@<byte offset>`` for the damaged stretch (the names
inside it are lost) and the members after it are still read (a gzip shard cannot resync: its
damage is one error item and the rest of it is lost); a tar that cannot be opened at all is one
error item keyed by the shard path. A parquet row whose bytes cell is null is one error item.
"""
from __future__ import annotations

import collections
import glob as _glob
import itertools
import os
import re
import tarfile
import time
import zlib
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
                path = os.path.join(dirpath, name)
                yield Item(path, FileRef(path, max_bytes))
            elif ignored is not None and not name.startswith("."):
                ignored(os.path.join(dirpath, name))
    for e in errors:
        yield Item(e.filename or root, SourceError(f"cannot read folder: {e.strerror or e}"))


_TAR_READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


def _read_member(tf: tarfile.TarFile, member: tarfile.TarInfo, prefix: str, max_bytes: int,
                 present: int | None = None, read: bool = True) -> Item | None:
    """The item of one tar member: None for a member that is no input (a directory, a sidecar),
    an error item for one over the read cap or cut short (``present``: its data bytes left in the
    file, when known), else its bytes (None when not ``read``: a count). A failed read raises
    (:data:`_TAR_READ_ERRORS`): the caller knows what is lost with it."""
    if not member.isfile() or _ext(member.name) not in IMAGE_EXTENSIONS:
        return None
    key = f"{prefix}/{member.name}"
    if member.size > max_bytes:
        return Item(key, SourceError(too_big(member.size, max_bytes)))
    if present is not None and member.size > present:
        return Item(key, SourceError(f"tar member is truncated: {max(0, present)} of {member.size} bytes "
                                     f"present (the shard was cut short)"))
    if not read:
        return Item(key, None)
    data = tf.extractfile(member).read()
    if len(data) != member.size:
        raise EOFError(f"tar member is truncated: {len(data)} of {member.size} bytes")
    return Item(key, data)


def _nonzero(fh, n: int | None = None) -> bool:
    """Whether the next ``n`` bytes of ``fh`` (all that is left when None) hold a non-zero byte."""
    while n is None or n > 0:
        chunk = fh.read(1 << 20 if n is None else min(n, 1 << 20))
        if not chunk:
            return False
        if chunk.count(0) != len(chunk):
            return True
        n = None if n is None else n - len(chunk)
    return False


def iter_tar(path: str, key_prefix: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Item]:
    """Image members of a webdataset-style tar shard, in archive order; key ``shard.tar/member``.

    Non-image members (``.json``, ``.txt``, ``.cls`` sidecars) and directories are skipped. A
    member whose data is cut short is an error item; a damaged header is skipped over (the
    archive is scanned block by block for the next valid header) and the damaged stretch becomes
    one error item ``shard.tar/@<offset>`` (its byte offset); the members after it are still read.
    A gzip-compressed shard (``.tar.gz``, ``.tgz``) is read as one stream: see :func:`_iter_tar_gz`.
    """
    prefix = path if key_prefix is None else key_prefix
    if path.lower().endswith(GZ_TAR_EXTENSIONS):
        return _iter_tar_gz(path, prefix, max_bytes)
    return _iter_plain_tar(path, prefix, max_bytes)


def _iter_plain_tar(path: str, prefix: str, max_bytes: int, read: bool = True) -> Iterator[Item]:
    """:func:`iter_tar` of an uncompressed shard; ``read=False``: the same items, every payload
    that would be the member's bytes None (headers only: a count)."""
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
                fh.seek(expected)
                damaged = _nonzero(fh, member.offset - expected)
                fh.seek(pos)
                if damaged:
                    yield Item(f"{prefix}/@{expected}", SourceError(
                        f"tar shard has damaged data at bytes {expected}-{member.offset} (a member "
                        f"header was corrupt; that member is lost, reading resumed at "
                        f"{member.name!r})"))
            expected = member.offset_data + ((member.size + 511) // 512) * 512 if member.isfile() \
                else member.offset_data
            try:
                item = _read_member(tf, member, prefix, max_bytes, size - member.offset_data, read)
            except _TAR_READ_ERRORS as e:
                item = Item(f"{prefix}/{member.name}", SourceError(f"cannot read tar member: {e}"))
            if item is not None:
                yield item
        fh.seek(expected)
        if expected < size and _nonzero(fh):
            # trailing bytes that hold no valid header: a damaged last member, or garbage
            yield Item(f"{prefix}/@{expected}", SourceError(
                f"tar shard has unreadable data after byte {expected} (a damaged or truncated "
                f"member header; the member is lost)"))


def _iter_tar_gz(path: str, prefix: str, max_bytes: int) -> Iterator[Item]:
    """Image members of a gzip-compressed tar shard (``.tar.gz`` / ``.tgz``, as webdataset writes
    them), read as one stream: a member over ``max_bytes`` is an error item and is not read. Damage
    is one error item and the rest of the shard is lost (a stream cannot resync): keyed by the
    member when its data is damaged, else ``shard.tar.gz/@<offset>``, the byte offset in the
    decompressed tar where the damage starts (``gzip -dc shard.tar.gz | tail -c +<offset+1>``)."""
    try:
        tf = tarfile.open(path, mode="r|gz")
    except _TAR_READ_ERRORS as e:
        yield Item(prefix, SourceError(f"not a readable gzip tar shard: {e}"))
        return
    last, member = None, None
    with tf:
        try:
            for member in tf:
                item = _read_member(tf, member, prefix, max_bytes)
                if item is not None:
                    yield item
                last, member = member.name, None
            # the stream stops at the end-of-archive blocks, and at a damaged header (the members after it are lost)
            damaged = "a damaged member header" if _nonzero(tf.fileobj) else None
        except _TAR_READ_ERRORS as e:
            damaged = str(e)
    if damaged is None:
        return
    after = f"after member {last!r}" if last else "at its start"
    if member is not None:  # its data is damaged
        yield Item(f"{prefix}/{member.name}", SourceError(
            f"gzip tar shard is damaged in this member ({damaged}); the rest of the shard is lost"))
    else:
        yield Item(f"{prefix}/@{tf.offset}", SourceError(
            f"gzip tar shard is damaged at byte {tf.offset} of its tar ({after}): {damaged}; "
            f"the rest of the shard is lost"))


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


def _open_parquet(path: str, column: str | None, key_column: str | None):
    """``(ParquetFile, bytes column, key column or None, struct?)``, an error item for a file that
    cannot be read, or :class:`SourceSpecError` for one without a usable bytes column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        return Item(path, SourceError(f"not a readable parquet file: {e}"))
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
    return pf, col, kcol, types[col] == "struct"


def iter_parquet(path: str, column: str | None = None, key_column: str | None = None,
                 batch_rows: int = 256, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Item]:
    """Rows of a parquet file with an image-bytes column; key = the key column's value, else
    ``file.parquet#row``. A struct column with a ``bytes`` field (Hugging Face ``Image``) works.
    A null cell is an error item."""
    import pyarrow as pa

    opened = _open_parquet(path, column, key_column)
    if isinstance(opened, Item):
        yield opened
        return
    pf, col, kcol, struct = opened
    cols = [col] + ([kcol] if kcol and kcol != col else [])
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=cols):
            data = batch.column(0)
            if struct:
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


# ---------------------------------------------------------------------------- sources -> inputs
class _Shard(NamedTuple):
    """A tar shard or parquet file a source names: its inputs are read when the stream gets to it."""
    path: str


def _path_entries(path: str, max_bytes: int, ignored: Callable[[str], None] | None) -> Iterator[Item | _Shard]:
    """One existing-or-not literal path: a folder's image files, a shard, the file, or its error."""
    if os.path.isdir(path):
        yield from iter_folder(path, max_bytes, ignored)
    elif path.lower().endswith(TAR_EXTENSIONS):
        yield _Shard(path)  # a missing one is an error item keyed by its path (iter_tar)
    elif not os.path.exists(path):
        yield Item(path, SourceError("no such file"))
    elif path.lower().endswith(PARQUET_EXTENSIONS):
        yield _Shard(path)
    else:
        yield Item(path, FileRef(path, max_bytes))


def _source_entries(source: str, max_bytes: int, ignored: Callable[[str], None] | None) -> Iterator[Item | _Shard]:
    """One source argument (the module docstring) as files, error items and shards, in order: the
    one expansion of sources that both the stream and the count use."""
    if source.startswith("@") and not os.path.exists(source):
        try:
            fh = open(source[1:], encoding="utf-8")
        except OSError as e:
            raise SourceSpecError(f"cannot read list file {source[1:]!r}: {e.strerror or e}") from None
        with fh:
            for line in fh:
                p = line.rstrip("\r\n")
                if p.strip() and not p.lstrip().startswith("#"):
                    yield from _path_entries(p, max_bytes, ignored)
        return
    if os.path.exists(source):
        yield from _path_entries(source, max_bytes, ignored)
        return
    patterns = expand_braces(source)
    if len(patterns) == 1 and not _has_glob(source):
        yield Item(source, SourceError("no such file or folder"))
        return
    for pat in patterns:
        if not _has_glob(pat):
            yield from _path_entries(pat, max_bytes, ignored)
            continue
        matches = sorted(_glob.glob(pat, recursive=True))
        if not matches:
            raise SourceSpecError(f"no files match {pat!r}")
        for m in matches:
            if not (os.path.isdir(m) and "**" in pat):  # '**' also matches folders; their files match it as well
                yield from _path_entries(m, max_bytes, ignored)


def _entries(sources: Iterable[str] | str, max_bytes: int, ignored: Callable[[str], None] | None):
    for s in [sources] if isinstance(sources, str) else sources:
        yield from _source_entries(s, max_bytes, ignored)


def _items(entries: Iterable[Item | _Shard], column: str | None, key_column: str | None,
           max_bytes: int) -> Iterator[Item]:
    for e in entries:
        if isinstance(e, Item):
            yield e
        elif e.path.lower().endswith(TAR_EXTENSIONS):
            yield from iter_tar(e.path, max_bytes=max_bytes)
        else:
            yield from iter_parquet(e.path, column, key_column, max_bytes=max_bytes)


def iter_source(source: str, column: str | None = None, key_column: str | None = None,
                max_bytes: int = DEFAULT_MAX_BYTES, ignored: Callable[[str], None] | None = None) -> Iterator[Item]:
    """Items of one source argument (see the module docstring); ``max_bytes``: the read cap of
    every input; ``ignored``: called with each folder entry that is not an image."""
    return iter_sources([source], column, key_column, max_bytes, ignored)


def iter_sources(sources: Iterable[str] | str, column: str | None = None, key_column: str | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES, ignored: Callable[[str], None] | None = None) -> Iterator[Item]:
    """Items of every source, in order; see the module docstring and :func:`iter_source`."""
    return _items(_entries(sources, max_bytes, ignored), column, key_column, max_bytes)


class _Uncountable(Exception):
    pass


def _shard_count(shard: _Shard, column: str | None, key_column: str | None, max_bytes: int,
                 tick: Callable[[], None]) -> int:
    """Items of a shard, from its tar headers or parquet metadata, without reading an image."""
    low = shard.path.lower()
    if low.endswith(GZ_TAR_EXTENSIONS):
        raise _Uncountable  # its headers are spread over the compressed stream
    if low.endswith(TAR_EXTENSIONS):
        n = 0
        for n, _ in enumerate(_iter_plain_tar(shard.path, shard.path, max_bytes, read=False), 1):
            if n % 1000 == 0:
                tick()
        return n
    opened = _open_parquet(shard.path, column, key_column)
    return 1 if isinstance(opened, Item) else opened[0].metadata.num_rows


def _raising(e: BaseException) -> Iterator:
    raise e
    yield  # noqa: unreachable - makes this a generator


def _drain(taken: collections.deque) -> Iterator:
    while taken:
        yield taken.popleft()


def counted_sources(sources: Iterable[str] | str, column: str | None = None, key_column: str | None = None,
                    max_bytes: int = DEFAULT_MAX_BYTES, ignored: Callable[[str], None] | None = None,
                    budget_s: float = 2.0) -> tuple[Iterator[Item], int | None]:
    """``(items, total)``: :func:`iter_sources`'s items and how many there are, error items
    included, without reading an image (for a progress bar): folder walks, list lines, tar
    headers, parquet metadata. ``total`` is None when that is not cheap to know (a gzip tar
    shard, more than ``budget_s`` seconds of counting) or a source cannot be expanded (the items
    raise its error where the stream gets to it). Sources are expanded once: the files and shards
    met while counting are kept (at most ``budget_s`` seconds' worth) and the items start from
    them. A damaged tar or parquet file can hold other items than its headers say."""
    deadline = time.monotonic() + budget_s

    def tick() -> None:
        if time.monotonic() > deadline:
            raise _Uncountable

    entries = _entries(sources, max_bytes, ignored)
    taken: collections.deque = collections.deque()
    rest: Iterator = entries
    total: int | None = 0
    while total is not None:
        try:
            e = next(entries)
        except StopIteration:
            break
        except Exception as err:  # noqa: BLE001 - raised where the stream gets to it
            rest, total = _raising(err), None
            break
        taken.append(e)
        try:
            total += 1 if isinstance(e, Item) else _shard_count(e, column, key_column, max_bytes, tick)
            tick()
        except Exception:  # noqa: BLE001 - a count is a nicety; the stream reports the real problem
            total = None
    return _items(itertools.chain(_drain(taken), rest), column, key_column, max_bytes), total


def count_inputs(sources: Iterable[str] | str, column: str | None = None, budget_s: float = 2.0) -> int | None:
    """How many items :func:`iter_sources` yields for ``sources`` (see :func:`counted_sources`)."""
    return counted_sources(sources, column, budget_s=budget_s)[1]


def require_inputs(items: Iterator[Item], sources, ignored: list[str]) -> Iterator[Item]:
    """``items`` unchanged, or :class:`SourceSpecError` at once when there is none at all (an
    empty folder, a list of nothing): one clear error wherever sources are read."""
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
