"""Sharded, atomic, resumable output.

The pipeline cuts its inputs into shards of ``shard_size`` consecutive inputs and hands each
finished shard to a writer at once (``write_shard(index, rows)``, rows in input order). Every file
is written as a hidden ``.NAME.tmp`` beside its final name, fsynced, then ``os.replace``-d into
place; then a line is appended to the manifest ``_manifest.jsonl``. The manifest is the truth:
a shard is finished when it is listed there and its files exist, so a crash at any instant
leaves either a finished shard or one that is redone in full - never half a shard, never a row
twice. Only full shards are skipped on resume (the last, shorter shard of a run is always redone:
the inputs may have grown since). The manifest's first line holds the run's ``shard_size`` and a
``config`` dict (spec id, sources, ...); resuming with different ones is refused. Each shard's
line holds the sha256 of its inputs' keys in order: a resumed run whose sources now expand to
other inputs for a finished shard (or to fewer inputs) is refused, naming the first difference.
An output directory holds a lock (``.fpfast.lock``, :mod:`fpfast.io.lock`) while a run writes
it: a second run is refused. A non-empty directory that holds no manifest is never written into;
``overwrite`` removes only the files the manifest lists.

Layouts (files whose names start with ``_`` or ``.`` are skipped by pyarrow/pandas readers):

* ``OUT/`` (a directory, :class:`ParquetShardWriter`): ``part-000000.parquet``, ... -
  ``pandas.read_parquet(OUT)`` reads them all in order. Pass ``schema`` so that every shard has
  the same columns (a shard holding only error rows otherwise lacks the result columns);
  :func:`read_rows` reads any of these layouts, unifying columns.
* ``OUT.parquet`` / ``OUT.csv`` / ``OUT.jsonl`` (:class:`SingleFileWriter`): shards go to a hidden
  ``.OUT.parts/`` directory beside it (that is what resume continues), and ``close()`` writes the
  single file atomically from them and removes the parts. In CSV, list/dict values are JSON text.
* ``extract`` (:class:`NpyShardWriter`): ``OUT/embeddings/part-000000.npy`` (float32 [n, D], the
  rows that have a vector, in input order), ``OUT/metadata/part-000000.parquet`` (one row per
  vector, same order: the layout autofaiss and ``pandas.read_parquet`` read) and
  ``OUT/errors/part-000000.parquet`` (the rows without a vector, with their ``error``).
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Iterable

import numpy as np

from ..errors import UsageError
from .lock import LOCK_NAME, exclusive, lock_path
from .paths import ESCAPED_NOTE, path_text

MANIFEST = "_manifest.jsonl"
MANIFEST_VERSION = 1
SINGLE_FILE_FORMATS = (".parquet", ".csv", ".jsonl")


class OutputError(UsageError):
    """The output cannot be used as asked (exists without resume, config differs): a usage error."""


def _plain(v: Any, keep_arrays: bool = False) -> Any:
    if isinstance(v, np.ndarray):
        return v if keep_arrays and v.ndim == 1 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def rows_to_table(rows: list[dict], schema=None, metadata: dict | None = None):
    """A pyarrow table of ``rows`` (columns: ``schema``'s, else the union of the rows' keys);
    ``metadata`` (str -> str) goes into the schema metadata of the parquet file."""
    t = _rows_to_table(rows, schema)
    if metadata:
        t = t.replace_schema_metadata({**(t.schema.metadata or {}), **{k: str(v) for k, v in metadata.items()}})
    return t


def _text_safe(row: dict) -> dict:
    """``row`` with a path that is not UTF-8 stored losslessly (:mod:`fpfast.io.paths`) and any
    other such text escaped: parquet and JSON hold UTF-8 only."""
    out = {}
    for k, v in row.items():
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                if k == "path":
                    v = path_text(v)[0]
                    out["note"] = "; ".join(x for x in (row.get("note"), ESCAPED_NOTE) if x)
                else:
                    v = v.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        out.setdefault(k, v)
    return out


def _rows_to_table(rows: list[dict], schema=None):
    import pyarrow as pa
    # 1-d numpy arrays stay arrays: pyarrow keeps their dtype (float32 vectors stay float32)
    plain = [{k: _plain(v, keep_arrays=True) for k, v in _text_safe(r).items()} for r in rows]
    if schema is not None:
        return pa.Table.from_pylist(plain, schema=schema)
    # from_pylist takes its columns from the first row alone: name the union, in first-seen order
    cols: dict[str, None] = {}
    for r in plain:
        cols.update(dict.fromkeys(r))
    return pa.table({c: pa.array([r.get(c) for r in plain]) for c in cols})


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_name(final: str) -> str:
    d, name = os.path.split(final)
    return os.path.join(d, f".{name}.tmp")


def atomic_write(final: str, write_fn) -> None:
    """``write_fn(tmp_path)`` then fsync and ``os.replace(tmp, final)``."""
    tmp = _tmp_name(final)
    try:
        write_fn(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException as e:  # a full disk, a kill: no half-written file stays behind
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError) and e.filename is None:  # pyarrow's errors name no file
            raise OSError(e.errno, e.strerror or str(e), final) from None
        raise


class ShardStore:
    """A directory of shards and its manifest: which shards are finished, and atomic commits."""

    def __init__(self, root: str, shard_size: int, resume: bool = False, overwrite: bool = False,
                 config: dict | None = None):
        if shard_size < 1:
            raise OutputError(f"shard_size must be >= 1, got {shard_size}")
        self.root, self.shard_size = root, int(shard_size)
        self.config = json.loads(json.dumps(config or {}, default=str))
        self.manifest_path = os.path.join(root, MANIFEST)
        self.finished: dict[int, dict] = {}
        self._skipped: dict[int, list[str]] = {}
        self._verified: set[int] = set()
        self._written: set[int] = set()
        if os.path.exists(root) and not os.path.isdir(root):
            raise OutputError(f"output {root!r} exists and is not a directory")
        exists = os.path.exists(self.manifest_path)
        if not exists and os.path.isdir(root) and set(os.listdir(root)) - {LOCK_NAME}:
            raise OutputError(f"output {root!r} is a directory that is not empty and not an fpfast output; "
                              "choose a new or empty directory")
        os.makedirs(root, exist_ok=True)
        self._lock = contextlib.ExitStack()  # one run at a time into one output
        self._lock.enter_context(exclusive(lock_path(root), f"output {root!r}", wait=False))
        if exists and resume:
            self._load()
        elif exists and not overwrite:
            n = sum(1 for _ in self._entries())
            raise OutputError(f"output {root!r} already holds a run ({n} finished shards); "
                              f"resume it (--resume) or replace it (overwrite)")
        elif exists:
            self._remove_previous()
        self._clean_tmp()
        if not self.finished:
            with open(self.manifest_path, "w", encoding="utf-8") as fh:
                fh.write(json.dumps({"fpfast_manifest": MANIFEST_VERSION, "shard_size": self.shard_size,
                                     "config": self.config}) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    # ---------------------------------------------------------------- manifest
    def _entries(self) -> Iterable[dict]:
        with open(self.manifest_path, encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                try:
                    d = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash: its shard is not finished
                if i > 0 and isinstance(d, dict) and "shard" in d:
                    yield d

    def _header(self) -> dict:
        with open(self.manifest_path, encoding="utf-8") as fh:
            try:
                return json.loads(fh.readline())
            except json.JSONDecodeError:
                raise OutputError(f"{self.manifest_path} is not an fpfast manifest") from None

    def _load(self) -> None:
        head = self._header()
        if head.get("fpfast_manifest") != MANIFEST_VERSION:
            raise OutputError(f"{self.manifest_path} is not an fpfast manifest of version {MANIFEST_VERSION}")
        if head.get("shard_size") != self.shard_size:
            raise OutputError(f"cannot resume {self.root!r}: it was written with shard_size "
                              f"{head.get('shard_size')}, this run uses {self.shard_size}")
        old = head.get("config", {})
        diff = [f"{k}: {old.get(k)!r} != {self.config.get(k)!r}"
                for k in sorted(set(old) | set(self.config)) if old.get(k) != self.config.get(k)]
        if diff:
            raise OutputError(f"cannot resume {self.root!r}: the run differs from the one that wrote it ("
                              + "; ".join(diff) + ")")
        for e in self._entries():
            if all(os.path.exists(os.path.join(self.root, f)) for f in e.get("files", [])):
                self.finished[int(e["shard"])] = e
        if not self.finished:  # nothing to keep: start the manifest afresh
            os.remove(self.manifest_path)

    def _remove_previous(self) -> None:
        for e in self._entries():
            for f in e.get("files", []):
                try:
                    os.remove(os.path.join(self.root, f))
                except FileNotFoundError:
                    pass
        os.remove(self.manifest_path)

    def _clean_tmp(self) -> None:
        for dirpath, _, files in os.walk(self.root):
            for f in files:
                if f.startswith(".") and f.endswith(".tmp"):
                    os.remove(os.path.join(dirpath, f))

    # ---------------------------------------------------------------- use
    def is_done(self, shard: int) -> bool:
        """True for a finished, full shard (skipped on resume)."""
        e = self.finished.get(shard)
        return e is not None and e.get("inputs") == self.shard_size

    # ---------------------------------------------------------------- resume: the same inputs?
    def note_skipped(self, shard: int, key: str) -> None:
        """One input key of a finished shard that a resumed run skips, in input order: when the
        shard's keys are all there they must be the ones that wrote it (else :class:`OutputError`
        naming the first difference)."""
        keys = self._skipped.setdefault(shard, [])
        keys.append(key)
        if len(keys) == self.shard_size:
            self._check_keys(shard, keys)
            self._verified.add(shard)

    def check_resumed(self) -> None:
        """After the last input: every finished shard skipped was checked (none lost its inputs)."""
        for shard in sorted(self.finished):
            if self.is_done(shard) and shard not in self._verified and shard not in self._written:
                self._check_keys(shard, self._skipped.get(shard, []))

    def _check_keys(self, shard: int, keys: list[str]) -> None:
        e = self.finished[shard]
        if "keys_sha256" not in e:
            raise OutputError(f"cannot resume {self.root!r}: it was written by an fpfast that did not record "
                              "its inputs, so a changed input set would go unnoticed; use --overwrite")
        if keys_digest(keys) == e["keys_sha256"]:
            return
        old = self._old_keys(e)
        new = [path_text(k)[0] for k in keys]
        first = f"inputs {shard * self.shard_size}-{(shard + 1) * self.shard_size - 1}"
        added = [k for k in new if k not in set(old)]
        gone = [k for k in old if k not in set(new)]
        if added:
            what = f"{added[0]!r} is new among {first}"
        elif gone:
            what = f"{gone[0]!r} of {first} is no longer an input"
        else:
            what = f"{first} come in another order"
        raise OutputError(f"cannot resume {self.root!r}: the inputs changed since the earlier run ({what}); "
                          "rerun with --overwrite, or write to another output")

    def _old_keys(self, entry: dict) -> list[str]:
        import pyarrow.parquet as pq
        keys: list[str] = []
        for f in entry.get("files", []):
            if f.endswith(".parquet"):
                keys += pq.read_table(os.path.join(self.root, f), columns=["path"]).column(0).to_pylist()
        return keys

    def commit(self, shard: int, files: list[str], inputs: int, rows: int, errors: int,
               keys: list[str] | None = None) -> None:
        """Record a shard whose files are all in place (paths relative to the root); ``keys``:
        its inputs' keys in order (their hash is what :meth:`note_skipped` checks on resume)."""
        _fsync_dir(self.root)
        old = self.finished.get(shard)
        if old is not None:  # a redone shard: files of its last version that this one lacks go
            for f in set(old.get("files", [])) - set(files):
                try:
                    os.remove(os.path.join(self.root, f))
                except FileNotFoundError:
                    pass
        entry = {"shard": shard, "inputs": inputs, "rows": rows, "errors": errors, "files": files}
        if keys is not None:
            entry["keys_sha256"] = keys_digest(keys)
        self._written.add(shard)
        with open(self.manifest_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.finished[shard] = entry

    def remove(self) -> None:
        """Delete this store's own files (the manifest's shards, the manifest, the lock) and its
        directory if that leaves it empty."""
        self._remove_previous()
        with contextlib.suppress(OSError):
            os.remove(lock_path(self.root))
        self.release()
        with contextlib.suppress(OSError):
            os.rmdir(self.root)

    def release(self) -> None:
        """Drop the output's lock (the run is over)."""
        self._lock.close()

    def shard_files(self) -> list[list[str]]:
        return [self.finished[s]["files"] for s in sorted(self.finished)]


def keys_digest(keys: list[str]) -> str:
    """sha256 of an ordered key list (the inputs of a shard)."""
    import hashlib
    h = hashlib.sha256()
    for k in keys:
        h.update(k.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


def parts_dir(path: str) -> str:
    """Where a single-file output's shards wait: ``.NAME.parts`` beside it."""
    d, name = os.path.split(os.path.abspath(path))
    return os.path.join(d, f".{name}.parts")


def holds_run(out: str) -> bool:
    """True when ``out`` holds an fpfast output (a finished file, a run's shards, or an
    interrupted single-file run's parts): replacing it needs resume or overwrite."""
    return (os.path.isfile(out) or os.path.exists(os.path.join(out, MANIFEST))
            or os.path.isdir(parts_dir(out)))


def shard_name(shard: int, ext: str) -> str:
    return f"part-{shard:06d}{ext}"


class _StoreBacked:
    """Writers whose shards live in a :class:`ShardStore` (``self.store``)."""

    store: ShardStore

    @property
    def shard_size(self) -> int:
        return self.store.shard_size

    def is_done(self, shard: int) -> bool:
        return self.store.is_done(shard)

    def note_skipped(self, shard: int, key: str) -> None:
        self.store.note_skipped(shard, key)


class ParquetShardWriter(_StoreBacked):
    """``OUT/part-000000.parquet``, ... (see the module docstring).

    Every shard gets the same columns: ``schema`` when given, else the columns of the first shard
    holding a successful row (learnt again from the finished shards on resume). A shard of error
    rows only that comes before any success waits in memory (its rows are tiny) until the columns
    are known, so ``pandas.read_parquet(OUT)`` never loses a column to an all-error first shard.
    """

    def __init__(self, root: str, shard_size: int, resume: bool = False, overwrite: bool = False,
                 config: dict | None = None, schema=None, metadata: dict | None = None):
        self.store = ShardStore(root, shard_size, resume, overwrite, config)
        self.root, self.schema, self.metadata = root, schema, metadata
        self._deferred: list[tuple[int, list[dict], int | None]] = []
        if self.schema is None and self.store.finished:
            self.schema = self._learn_schema()

    def _learn_schema(self):
        import pyarrow.parquet as pq
        best = None
        for files in self.store.shard_files():
            for f in files:
                sch = pq.read_schema(os.path.join(self.root, f)).remove_metadata()
                if best is None or len(sch) > len(best):
                    best = sch
        return best

    def write_shard(self, shard: int, rows: list[dict], inputs: int | None = None) -> None:
        if self.schema is None:
            if all(r.get("error") for r in rows):
                self._deferred.append((shard, rows, inputs))
                return
            self.schema = _text_columns_as_strings(rows_to_table(rows).schema)
        self._write(shard, rows, inputs)
        self._write_deferred()

    def _write_deferred(self) -> None:
        while self._deferred:
            self._write(*self._deferred.pop(0))

    def _write(self, shard: int, rows: list[dict], inputs: int | None) -> None:
        import pyarrow.parquet as pq
        table = rows_to_table(rows, self.schema, self.metadata)
        name = shard_name(shard, ".parquet")
        atomic_write(os.path.join(self.root, name), lambda p: pq.write_table(table, p))
        self.store.commit(shard, [name], len(rows) if inputs is None else inputs, len(rows),
                          sum(1 for r in rows if r.get("error")), [r["path"] for r in rows])

    def close(self) -> None:
        self.store.check_resumed()
        self._write_deferred()  # all errors: the error columns are all there is
        self.store.release()


def _text_columns_as_strings(schema):
    """``error`` / ``note`` as strings even when a shard of fine rows holds only nulls there (a
    fine row's error is null), so that the later shards' messages fit the learned schema."""
    import pyarrow as pa
    for name in ("error", "note"):
        i = schema.get_field_index(name)
        if i >= 0 and pa.types.is_null(schema.field(i).type):
            schema = schema.set(i, pa.field(name, pa.string()))
    return schema


def _read_tables(paths: list[str]):
    import pyarrow as pa
    import pyarrow.parquet as pq
    tables = [pq.read_table(p) for p in paths]
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")


class SingleFileWriter:
    """``OUT.parquet|.csv|.jsonl``: shards in ``.OUT.parts/``, one file written at ``close()``."""

    def __init__(self, path: str, shard_size: int, resume: bool = False, overwrite: bool = False,
                 config: dict | None = None, schema=None, metadata: dict | None = None):
        ext = os.path.splitext(path)[1].lower()
        if ext not in SINGLE_FILE_FORMATS:
            raise OutputError(f"output file {path!r}: expected one of {SINGLE_FILE_FORMATS} "
                              f"(or a directory for parquet shards)")
        if os.path.isdir(path):
            raise OutputError(f"output {path!r} is a directory, expected a file")
        if os.path.exists(path) and not (resume or overwrite):
            raise OutputError(f"output {path!r} exists; replace it (overwrite) or choose another name")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path, self.ext = path, ext
        self.parts = ParquetShardWriter(parts_dir(path), shard_size, resume,
                                        overwrite, config, schema, metadata)
        self.shard_size = shard_size

    def is_done(self, shard: int) -> bool:
        return self.parts.is_done(shard)

    def note_skipped(self, shard: int, key: str) -> None:
        self.parts.note_skipped(shard, key)

    def write_shard(self, shard: int, rows: list[dict], inputs: int | None = None) -> None:
        self.parts.write_shard(shard, rows, inputs)

    def close(self) -> None:
        self.parts.close()
        store = self.parts.store
        paths = [os.path.join(store.root, f) for files in store.shard_files() for f in files]
        table = _read_tables(paths)
        if self.parts.schema is not None and table.num_columns == 0:
            table = self.parts.schema.empty_table()
        atomic_write(self.path, lambda p: write_table_as(table, p, self.ext))
        store.remove()


def write_table_as(table, path: str, ext: str) -> None:
    if ext == ".parquet":
        import pyarrow.parquet as pq
        pq.write_table(table, path)
        return
    rows = table.to_pylist()
    if ext == ".jsonl":
        with open(path, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
        return
    import csv
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        cols = table.column_names
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r[c] is None else json.dumps(r[c], ensure_ascii=False)
                        if isinstance(r[c], (list, dict)) else r[c] for c in cols])


class NpyShardWriter(_StoreBacked):
    """``extract`` output: ``embeddings/`` .npy + ``metadata/`` parquet aligned row for row, and
    ``errors/`` parquet for rows without a vector (see the module docstring)."""

    def __init__(self, root: str, shard_size: int, resume: bool = False, overwrite: bool = False,
                 config: dict | None = None, vector_column: str = "vector", schema=None,
                 metadata: dict | None = None):
        self.store = ShardStore(root, shard_size, resume, overwrite, config)
        self.root, self.vector_column, self.schema = root, vector_column, schema
        self.metadata = metadata
        for sub in ("embeddings", "metadata", "errors"):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        if metadata and "fpfast.spec" in metadata:  # the spec beside the vectors, for any reader
            atomic_write(os.path.join(root, "spec.json"),
                         lambda p: _write_text(p, metadata["fpfast.spec"]))

    def write_shard(self, shard: int, rows: list[dict], inputs: int | None = None) -> None:
        import pyarrow.parquet as pq
        vc = self.vector_column
        good = [r for r in rows if not r.get("error") and r.get(vc) is not None]
        bad = [{k: v for k, v in r.items() if k != vc} for r in rows if r.get("error") or r.get(vc) is None]
        files = []
        if good:
            vecs = np.stack([np.asarray(r[vc], dtype=np.float32) for r in good])
            meta = rows_to_table([{k: v for k, v in r.items() if k != vc} for r in good], self.schema, self.metadata)
            emb_name = os.path.join("embeddings", shard_name(shard, ".npy"))
            meta_name = os.path.join("metadata", shard_name(shard, ".parquet"))
            atomic_write(os.path.join(self.root, emb_name), lambda p: _save_npy(p, vecs))
            atomic_write(os.path.join(self.root, meta_name), lambda p: pq.write_table(meta, p))
            files += [emb_name, meta_name]
        if bad:
            err_name = os.path.join("errors", shard_name(shard, ".parquet"))
            table = rows_to_table(bad, None, self.metadata)
            atomic_write(os.path.join(self.root, err_name), lambda p: pq.write_table(table, p))
            files.append(err_name)
        for sub in ("embeddings", "metadata", "errors"):
            _fsync_dir(os.path.join(self.root, sub))
        self.store.commit(shard, files, len(rows) if inputs is None else inputs, len(rows), len(bad),
                          [r["path"] for r in rows])

    def close(self) -> None:
        self.store.check_resumed()
        self.store.release()


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def _save_npy(path: str, arr: np.ndarray) -> None:
    with open(path, "wb") as fh:  # np.save on a name would append '.npy' to the tmp name
        np.save(fh, arr)


def open_writer(out: str, shard_size: int = 10_000, resume: bool = False, overwrite: bool = False,
                config: dict | None = None, schema=None, kind: str = "rows",
                metadata: dict | None = None):
    """The writer for ``out``: ``kind='rows'`` -> a single .parquet/.csv/.jsonl file when ``out``
    has one of those extensions, else a directory of parquet shards; ``kind='npy'`` -> the
    extract layout in directory ``out``. ``metadata`` (str -> str, e.g. ``{"fpfast.spec":
    spec.to_json()}``) is stored in every parquet file's schema metadata (and as ``spec.json`` in
    the extract layout)."""
    if kind == "npy":
        return NpyShardWriter(out, shard_size, resume, overwrite, config, schema=schema, metadata=metadata)
    if kind != "rows":
        raise OutputError(f"unknown writer kind {kind!r}; expected 'rows' or 'npy'")
    if os.path.splitext(out)[1].lower() in SINGLE_FILE_FORMATS and not os.path.isdir(out):
        return SingleFileWriter(out, shard_size, resume, overwrite, config, schema, metadata)
    return ParquetShardWriter(out, shard_size, resume, overwrite, config, schema, metadata)


def read_rows(out: str) -> list[dict]:
    """Every row of an output written by these writers, in shard order (for tests and tools).
    For the npy layout: metadata rows with their ``vector`` plus the error rows, by shard."""
    ext = os.path.splitext(out)[1].lower()
    if os.path.isfile(out):
        if ext == ".parquet":
            return _read_tables([out]).to_pylist()
        if ext == ".jsonl":
            with open(out, encoding="utf-8") as fh:
                return [json.loads(line) for line in fh if line.strip()]
        if ext == ".csv":
            import csv
            with open(out, encoding="utf-8", newline="") as fh:  # csv has no null: an empty error is one
                return [{**r, "error": r.get("error") or None} for r in csv.DictReader(fh)]
        raise OutputError(f"cannot read {out!r}")
    store_entries = []
    with open(os.path.join(out, MANIFEST), encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            if i > 0 and "shard" in d:
                store_entries.append(d)
    latest = {int(d["shard"]): d for d in store_entries}  # a redone shard: its last line wins
    entries = [latest[s] for s in sorted(latest)]
    if not any(f.endswith(".npy") or f.startswith("errors") for e in entries for f in e["files"]):
        return _read_tables([os.path.join(out, f) for e in entries for f in e["files"]]).to_pylist()
    rows: list[dict] = []
    for e in entries:
        files = e["files"]
        npys = [f for f in files if f.endswith(".npy")]
        if npys:
            vecs = np.load(os.path.join(out, npys[0]))
            meta = [f for f in files if f.startswith("metadata")]
            for r, v in zip(_read_tables([os.path.join(out, meta[0])]).to_pylist(), vecs):
                r["vector"] = v
                rows.append(r)
        for f in files:
            if f.endswith(".parquet") and not f.startswith("metadata"):
                rows.extend(_read_tables([os.path.join(out, f)]).to_pylist())
    return rows
