"""The gallery directory: format, atomic save, validated file reads (the gallery-level checks
are in :mod:`.persist`). No pickle anywhere.

Layout of a gallery directory::

    gallery.json        format name + version, the full FingerprintSpec, models and counts,
                        normaliser method/params, index type/params, calibration thresholds,
                        creation info, and the byte size + sha256 of every other file
    vectors.npy         float32 [N, D]  fingerprints as enrolled (before normalisation)
    labels.npy          int32 [N]       index into gallery.json's "models"
    keys.json           [N] strings     source keys of the samples
    normalizer_*.npy    float32         fitted normaliser arrays (mean, scale, projection)
    index.faiss         FAISS's own binary format (absent while the gallery is empty)
    embedding.json      (embedding galleries only) canonical JSON: architecture, the handcrafted
                        spec it was trained on, training options and summary
    embedding.safetensors  (embedding galleries only) the network's weights; the spec's
                        ``embedding.identity`` is sha256(embedding.json + NUL + these bytes)

    holdout_vectors.npy, holdout_labels.npy, holdout_keys.json
                        held-out samples (calibration only, never searched) and their keys
    holdout_condition.npy  (plain learned embeddings) the held-out samples' handcrafted vectors, what
                        the condition detector reads (:mod:`fpfast.gallery.conditions`); NaN rows: none
    view_NAME_vectors.npy, view_NAME_labels.npy, view_NAME_keys.json, view_NAME_normalizer_*.npy
                        (galleries with views) the enrolled images processed as view NAME
                        (:mod:`fpfast.gallery.views`); gallery.json's ``views`` holds their
                        models, counts, normaliser record, thresholds and the router
    .fpfast.lock        the lock file (:mod:`fpfast.io.lock`); not listed in gallery.json

Arrays are read with ``np.load(allow_pickle=False)``, JSON with :mod:`json` and the index with
``faiss.read_index``: a gallery from someone else cannot run code on load. Every file name
gallery.json lists must be a plain name inside the directory. Saving writes a fresh sibling
directory, moves the entries that are not the gallery's own (the user's files, the lock file)
into it and swaps it in with renames, so a crash leaves either the old or the new gallery (plus,
at worst, a ``.<name>.tmp-*`` / ``.<name>.old-*`` directory beside it); of the old version only
the files its gallery.json lists are deleted.
"""
from __future__ import annotations

import datetime
import json
import os
import tempfile
import time
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError
from ..hashing import sha256_file
from ..io.lock import LOCK_NAME, SWAP_WAIT_S, swap_prefix

FORMAT_NAME = "fpfast-gallery"
FORMAT_VERSION = 1
META = "gallery.json"


class GalleryError(ConfigError):
    """A gallery directory is missing, corrupt, foreign, or inconsistent; the message says what."""


# ---------------------------------------------------------------------------------- save
def now() -> str:
    """UTC time stamp of gallery records (ISO 8601, seconds)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _umask() -> int:
    m = os.umask(0o022)
    os.umask(m)
    return m


def _ours(meta: dict | None) -> set[str]:
    """The names a gallery directory's gallery.json says fpfast wrote there (itself included)."""
    files = (meta or {}).get("files")
    names = {f for f in files if isinstance(f, str) and is_plain_name(f)} if isinstance(files, dict) else set()
    return names | {META}


def _refuse_collisions(path: str, old_meta: dict | None, files: dict[str, dict]) -> None:
    """Refuse to write a gallery whose new files would replace entries of ``path`` that the old
    gallery.json does not name as fpfast's (a user's file that happens to carry a gallery file's
    name, or any file when gallery.json is unreadable): replacing them would delete what fpfast
    did not write."""
    if not os.path.isdir(path):
        return
    theirs = sorted((set(os.listdir(path)) & set(files)) - _ours(old_meta))
    if theirs:
        why = ("its gallery.json does not name them as the gallery's own" if old_meta
               else "its gallery.json is unreadable, so fpfast cannot tell its own files from yours")
        raise GalleryError(f"{path}: writing the gallery would replace {', '.join(theirs)}, and {why}; "
                           "move them away or choose another gallery directory")


def save_dir(path: str, meta: dict[str, Any], arrays: dict[str, np.ndarray],
             jsons: dict[str, Any], index_writer: Callable[[str], None] | None,
             index_file: str | None, blobs: dict[str, bytes] | None = None) -> None:
    """Write a whole gallery to ``path`` atomically: a temp sibling directory is filled, the
    entries of ``path`` that are not the gallery's own (a user's notes, results/) are moved into
    it, then it is renamed into place. The old version's own files (those its gallery.json names)
    are deleted, nothing else: a reader sees the old gallery or the new one, and the user's files
    stay; a user's file carrying one of the new version's names is refused, not replaced
    (:func:`_refuse_collisions`). Directory and files get the modes the umask gives. Callers
    hold the gallery's lock (:func:`fpfast.io.lock.exclusive` on :func:`fpfast.io.lock.lock_path`);
    its file moves to the new version between the two renames, while no ``path`` exists (see
    :mod:`fpfast.io.lock`)."""
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(path) and not os.path.isdir(path):
        raise GalleryError(f"{path} exists and is not a directory")
    old_meta = None
    if not is_empty_dir(path):
        if not os.path.exists(os.path.join(path, META)):
            raise GalleryError(f"{path} is a non-empty directory that is not a gallery; "
                               "refusing to replace it")
        try:
            with open(os.path.join(path, META), encoding="utf-8") as fh:
                old_meta = json.load(fh)
        except (OSError, ValueError):
            old_meta = {}
    tmp = tempfile.mkdtemp(prefix=swap_prefix(name, "tmp"), dir=parent)
    moved: list[str] = []
    old, lock_moved = None, False
    try:
        files: dict[str, dict] = {}
        for fname, arr in arrays.items():
            np.save(os.path.join(tmp, fname), arr, allow_pickle=False)
        for fname, obj in jsons.items():
            with open(os.path.join(tmp, fname), "w", encoding="utf-8") as fh:
                json.dump(obj, fh)
        for fname, data in (blobs or {}).items():
            with open(os.path.join(tmp, fname), "wb") as fh:
                fh.write(data)
        if index_writer is not None:
            index_writer(os.path.join(tmp, index_file))
        for fname in sorted(os.listdir(tmp)):
            p = os.path.join(tmp, fname)
            files[fname] = {"bytes": os.path.getsize(p), "sha256": sha256_file(p)}
        _refuse_collisions(path, old_meta, files)
        meta = dict(meta, files=files)
        with open(os.path.join(tmp, META), "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        mask = _umask()
        for fname in os.listdir(tmp):
            os.chmod(os.path.join(tmp, fname), 0o666 & ~mask)
        os.chmod(tmp, 0o777 & ~mask)
        if os.path.isdir(path):
            own = _ours(old_meta) | set(files) | {LOCK_NAME}
            for entry in sorted(os.listdir(path)):   # the user's files travel to the new version
                if entry not in own:
                    os.rename(os.path.join(path, entry), os.path.join(tmp, entry))
                    moved.append(entry)
            old = tempfile.mkdtemp(prefix=swap_prefix(name, "old"), dir=parent)
            os.rmdir(old)
            os.rename(path, old)
            if os.path.lexists(os.path.join(old, LOCK_NAME)):  # moved only while no `path` exists
                os.rename(os.path.join(old, LOCK_NAME), os.path.join(tmp, LOCK_NAME))
                lock_moved = True
        os.rename(tmp, path)
        tmp = None
        if old is not None:  # the old version's own files go, nothing else
            for entry in os.listdir(old):
                if entry in _ours(old_meta) | set(files):
                    os.remove(os.path.join(old, entry))
            try:
                os.rmdir(old)
            except OSError:  # something appeared there meanwhile: not ours to delete
                pass
    except OSError as e:
        if e.filename is None:  # a failed write (full disk) names no file: name the gallery
            raise OSError(e.errno, e.strerror or str(e), path) from None
        raise
    finally:
        if tmp is not None:
            if lock_moved:
                os.rename(os.path.join(tmp, LOCK_NAME), os.path.join(old, LOCK_NAME))
            if old is not None and not os.path.exists(path):
                os.rename(old, path)
            for entry in moved:  # put the user's files back before dropping the new version
                try:
                    os.rename(os.path.join(tmp, entry), os.path.join(path, entry))
                except OSError:
                    pass
            for entry in os.listdir(tmp):
                if entry not in moved:
                    os.remove(os.path.join(tmp, entry))
            try:
                os.rmdir(tmp)
            except OSError:
                pass


def interrupted_save(path: str) -> str | None:
    """Where the gallery ``path`` is missing because a save was killed between its two renames
    (:func:`save_dir`), what to do: the versions its sibling temp directories hold; else None.
    A live save's swap, which takes microseconds, is waited for (at most ``SWAP_WAIT_S``)."""
    parent, name = os.path.split(os.path.abspath(path))
    tmp, old = swap_prefix(name, "tmp"), swap_prefix(name, "old")
    deadline = time.monotonic() + SWAP_WAIT_S
    while True:
        if os.path.exists(path):   # the usual case: nothing to list
            return None
        try:
            left = sorted(e for e in os.listdir(parent) if e.startswith((tmp, old))
                          and os.path.isfile(os.path.join(parent, e, META)))
        except OSError:
            return None
        if not left:
            return None
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    new = [e for e in left if e.startswith(tmp)]
    return (f"a save of gallery {path} was interrupted: " + ", ".join(os.path.join(parent, e) for e in left)
            + (" (.tmp-: the new version, complete; .old-: the previous one)" if new else " (the previous version)")
            + f"; rename the one to keep to {path} and run again")


def is_empty_dir(path: str) -> bool:
    """True for a missing directory or one that holds nothing but fpfast's lock file."""
    return not os.path.isdir(path) or not (set(os.listdir(path)) - {LOCK_NAME})


def is_plain_name(fname: str) -> bool:
    """A file name that stays inside its directory: no separator, not '.', '..' or empty."""
    return (isinstance(fname, str) and fname not in ("", ".", "..") and "/" not in fname
            and "\\" not in fname and "\0" not in fname and os.path.basename(fname) == fname)


# ---------------------------------------------------------------------------------- load
def _need(meta: dict, key: str, types, where: str = META):
    if key not in meta:
        raise GalleryError(f"{where} has no {key!r} field (tampered or not a gallery)")
    v = meta[key]
    if not isinstance(v, types) or isinstance(v, bool) and types is not bool:
        raise GalleryError(f"{where}: field {key!r} has the wrong type "
                           f"({type(v).__name__}); tampered?")
    return v


def read_meta(path: str) -> dict[str, Any]:
    """gallery.json parsed and checked for format name/version and the fields' types."""
    if not os.path.isdir(path):
        raise GalleryError(interrupted_save(path) or f"no gallery at {path}: not a directory")
    mp = os.path.join(path, META)
    if not os.path.exists(mp):
        raise GalleryError(f"{path} is not a gallery: it has no {META}")
    try:
        with open(mp, encoding="utf-8") as fh:
            meta = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GalleryError(f"{mp} is not valid JSON ({e}); the file is corrupt or was edited") from None
    if not isinstance(meta, dict):
        raise GalleryError(f"{mp} must hold a JSON object, got {type(meta).__name__}")
    fmt = meta.get("format")
    if fmt != FORMAT_NAME:
        raise GalleryError(f"{mp} is not an fpfast gallery: format is {fmt!r}, "
                           f"expected {FORMAT_NAME!r}")
    ver = _need(meta, "format_version", int)
    if ver != FORMAT_VERSION:
        raise GalleryError(f"gallery format version {ver} is not supported: this fpfast reads "
                           f"version {FORMAT_VERSION}")
    _need(meta, "spec", dict)
    _need(meta, "count", int)
    models = _need(meta, "models", list)
    for m in models:
        if (not isinstance(m, dict) or not isinstance(m.get("name"), str)
                or not isinstance(m.get("count"), int) or m["count"] < 0):
            raise GalleryError(f"{META}: malformed model entry {m!r}")
    names = [m["name"] for m in models]
    if len(set(names)) != len(names):
        raise GalleryError(f"{META}: duplicate model names in {names}")
    if sum(m["count"] for m in models) != meta["count"]:
        raise GalleryError(f"{META} is inconsistent: model counts sum to "
                           f"{sum(m['count'] for m in models)} but count is {meta['count']}")
    _need(meta, "normalize", dict)
    _need(meta, "index", dict)
    _need(meta, "calibration", dict)
    _need(meta, "files", dict)
    return meta


def check_file(path: str, fname: str, meta: dict, verify: bool) -> str:
    """Path of ``fname`` after checking it exists and matches the size/hash gallery.json records."""
    if not is_plain_name(fname):
        raise GalleryError(f"{META} names the file {fname!r}, which is not a plain name inside the "
                           "gallery directory; refusing to open it (tampered metadata)")
    p = os.path.join(path, fname)
    if os.path.islink(p) or not os.path.realpath(p).startswith(os.path.realpath(path) + os.sep):
        raise GalleryError(f"gallery file {fname} resolves outside {path} (a symbolic link?); refused")
    if not os.path.exists(p):
        raise GalleryError(f"gallery file {fname} is missing from {path}")
    rec = meta["files"].get(fname)
    if not isinstance(rec, dict) or "bytes" not in rec:
        raise GalleryError(f"{fname} is not listed in {META}; foreign file or tampered metadata")
    size = os.path.getsize(p)
    if size != rec["bytes"]:
        how = "truncated" if size < rec["bytes"] else "longer than recorded"
        raise GalleryError(f"{fname} is {size} bytes but {META} records {rec['bytes']}: "
                           f"the file is {how} or was replaced")
    if verify and sha256_file(p) != rec.get("sha256"):
        raise GalleryError(f"{fname} does not match the sha256 recorded in {META}: "
                           "the file was modified or replaced")
    return p


def load_array(path: str, fname: str, meta: dict, verify: bool, dtype,
               shape: tuple[int | None, ...], finite: bool = True) -> np.ndarray:
    """``fname`` as a numpy array of ``dtype`` and ``shape`` (None = any), without pickle;
    ``finite=False``: rows of NaN (an absent value) are allowed, infinities never."""
    p = check_file(path, fname, meta, verify)
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise GalleryError(f"{fname} holds Python objects (pickled data); refused: a gallery "
                               "holds plain numeric arrays only") from None
        raise GalleryError(f"{fname} is truncated or corrupt: {e}") from None
    except (OSError, EOFError) as e:
        raise GalleryError(f"{fname} is truncated or corrupt: {e}") from None
    if not isinstance(arr, np.ndarray):
        raise GalleryError(f"{fname} is not a single .npy array")
    if arr.dtype != np.dtype(dtype):
        raise GalleryError(f"{fname} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
    if arr.ndim != len(shape) or any(s is not None and a != s for a, s in zip(arr.shape, shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise GalleryError(f"{fname} has shape {list(arr.shape)}, expected {want}")
    if arr.dtype.kind == "f":
        nan = np.isnan(arr)
        bad = np.isinf(arr) | (nan & ~nan.all(-1, keepdims=True) if not finite else nan)
        if bad.any():
            raise GalleryError(f"{fname} holds {int(bad.sum())} NaN or inf values; "
                               "the file is corrupt or was edited")
    return arr


def load_bytes(path: str, fname: str, meta: dict, verify: bool) -> bytes:
    p = check_file(path, fname, meta, verify)
    with open(p, "rb") as fh:
        return fh.read()


def load_json(path: str, fname: str, meta: dict, verify: bool):
    p = check_file(path, fname, meta, verify)
    try:
        with open(p, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GalleryError(f"{fname} is not valid JSON ({e})") from None


MAX_AUGMENT = 32  # augmented copies per enrolled sample (fpfast.jobs.augment)


def check_augment(k) -> int:
    """``k`` as an int in [0, :data:`MAX_AUGMENT`] (a bool or a float is refused)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= MAX_AUGMENT:
        raise ValueError(f"augment must be an integer in [0, {MAX_AUGMENT}], got {k!r}")
    return int(k)
