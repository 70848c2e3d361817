"""Advisory locks on galleries and output directories (``fcntl.flock`` on a lock file).

The lock file is ``.fpfast.lock`` inside the gallery or output directory. A gallery save swaps
in a new directory and moves the lock file into it (a rename keeps the file) while the old one
is renamed away, so whenever the directory exists it holds the one lock file: no locker creates
a second one mid-swap, and a locker that finds the directory missing waits for the swap to end.
A locker checks after locking that the path still names the file it locked (else it locks
again), so the lock holds across swaps. The kernel drops a ``flock`` when its holder dies, so a
lock left by a killed run is never stale; the file keeps the holder's pid only for the message.
Lock files are tiny and stay in place (only a first enrollment that failed removes the
directory it made, lock file and all).

* :func:`exclusive` - writers (enroll, train, an output run). ``wait=False`` fails at once with
  :class:`LockedError` naming the holder; ``wait=True`` says it is waiting, then waits.
* :func:`shared` - readers (``Gallery.load``): many at once, never during a writer's swap. Where
  no lock file can be created (a read-only directory) the read goes on unlocked: nobody can be
  writing there either.
"""
from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from typing import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking
    fcntl = None


_HELD: dict[str, int] = {}   # lock paths this process holds exclusively -> depth (re-entry)


class LockedError(OSError):
    """Another process holds the lock (its pid is in the message)."""


LOCK_NAME = ".fpfast.lock"


def lock_path(directory: str) -> str:
    """The lock file of a gallery or output directory."""
    return os.path.join(os.path.abspath(directory), LOCK_NAME)


SWAP_WAIT_S = 2.0   # the longest a locker waits for a gallery's directory swap (microseconds when alive)


def swap_prefix(name: str, kind: str) -> str:
    """The name prefix of the sibling directories a save of directory ``name`` makes
    (:func:`fpfast.gallery.store.save_dir`): ``kind`` "tmp", the new version; "old", the previous."""
    return f".{name}.{kind}-"


def _swapping(path: str) -> bool:
    """True while a save swaps the directory of lock file ``path``: its temp sibling exists."""
    parent, name = os.path.split(os.path.dirname(path))
    try:
        return any(e.startswith(swap_prefix(name, "tmp")) for e in os.listdir(parent))
    except OSError:
        return False


def _lock(path: str, mode: int, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """An fd of ``path`` locked with ``mode``, re-locking when the path was swapped meanwhile.

    A save renames the directory away and its successor into place, the lock file moving between
    the two renames (:func:`fpfast.gallery.store.save_dir`), so the lock file is at ``path``
    whenever its directory is. While the directory is missing and a swap is under way this waits
    for it (at most :data:`SWAP_WAIT_S`); a directory missing otherwise raises FileNotFoundError."""
    deadline = None
    while True:
        try:
            fd = os.open(path, flags, 0o666)
        except FileNotFoundError:
            if not _swapping(path) or deadline is not None and time.monotonic() > deadline:
                raise
            deadline = deadline or time.monotonic() + SWAP_WAIT_S
            time.sleep(0.002)
            continue
        try:
            fcntl.flock(fd, mode)
            try:
                st, held = os.stat(path), os.fstat(fd)
                if (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino):
                    return fd
            except FileNotFoundError:
                pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _lock_made(path: str, mode: int) -> int:
    """:func:`_lock`, making the directory where it is missing and no swap is under way (a new
    gallery or output; or a failed first enrollment removed the directory it made while another
    process waited on its lock). Making it mid-swap would put a second lock file in its place."""
    while True:
        try:
            return _lock(path, mode)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)


@contextlib.contextmanager
def exclusive(path: str, what: str, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block."""
    path = os.path.abspath(path)
    if fcntl is None or path in _HELD:  # held by this process already: re-entry
        _HELD[path] = _HELD.get(path, 0) + 1
        try:
            yield
        finally:
            _HELD[path] -= 1
            if not _HELD[path]:
                del _HELD[path]
        return
    try:
        fd = _lock_made(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        with open(path, "rb") as fh:
            holder = fh.read(32).decode("ascii", "replace").strip()
        msg = f"{what} is in use by " + (f"pid {holder}" if holder.isdigit() else "another process")
        if not wait:
            raise LockedError(errno.EWOULDBLOCK, f"{msg}; wait for it to finish or use another path") from None
        print(f"fpfast: {msg}; waiting for it to finish", file=sys.stderr, flush=True)
        fd = _lock_made(path, fcntl.LOCK_EX)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD[path] = 1
        try:
            yield
        finally:
            del _HELD[path]
    finally:
        os.close(fd)  # closing drops the lock


@contextlib.contextmanager
def shared(path: str) -> Iterator[None]:
    """Hold a shared lock on ``path`` for the block (unlocked where it cannot be created)."""
    path = os.path.abspath(path)
    if fcntl is None or path in _HELD:
        yield
        return
    try:
        fd = _lock(path, fcntl.LOCK_SH)
    except FileNotFoundError:  # no directory (nor a swap under way): nothing to read, nobody writes
        yield
        return
    except OSError:
        try:
            fd = _lock(path, fcntl.LOCK_SH, os.O_RDONLY)
        except OSError:  # no lock file and none can be made (read-only): nobody writes here
            yield
            return
    try:
        yield
    finally:
        os.close(fd)
