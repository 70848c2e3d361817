"""Advisory locks on galleries and output directories (``fcntl.flock`` on a lock file).

The lock file is ``.fpfast.lock`` inside the gallery or output directory. A gallery save swaps
in a new directory but moves the lock file into it (a rename keeps the file), and a locker
checks after locking that the path still names the file it locked (else it locks again), so
the lock holds across swaps. The kernel drops a ``flock`` when its holder dies, so a lock left
by a killed run is never stale; the file keeps the holder's pid only for the message. Lock
files are tiny and stay in place (removing one while another process waits on it would let
two holders in).

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


def _lock(path: str, mode: int, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """An fd of ``path`` locked with ``mode``, re-locking when the path was swapped meanwhile."""
    while True:
        fd = os.open(path, flags, 0o666)
        try:
            fcntl.flock(fd, mode)
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


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
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        fd = _lock(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        with open(path, "rb") as fh:
            holder = fh.read(32).decode("ascii", "replace").strip()
        msg = f"{what} is in use by " + (f"pid {holder}" if holder.isdigit() else "another process")
        if not wait:
            raise LockedError(errno.EWOULDBLOCK, f"{msg}; wait for it to finish or use another path") from None
        print(f"fpfast: {msg}; waiting for it to finish", file=sys.stderr, flush=True)
        fd = _lock(path, fcntl.LOCK_EX)
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
