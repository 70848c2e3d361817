"""Decode worker processes die with the process that started them.

Workers fork from a forkserver, so their parent is the forkserver, not the run; and each holds
the forkserver's "alive" pipe and the task queue's write end, so neither the forkserver nor the
workers see an EOF when the run is killed with SIGKILL: they would wait forever (issue 13, item
5). :func:`new_pool` starts every worker with :func:`watch_parent`: a daemon thread that ends the
worker within ``POLL_S`` seconds of the run's death (its pid gone, a zombie, or reused by another
process), and, on Linux, ``PR_SET_PDEATHSIG`` (SIGKILL when the forkserver dies). Once the workers
are gone the forkserver and the resource tracker see their pipes close and exit on their own.
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import sys
import threading
import time

POLL_S = 0.5
PR_SET_PDEATHSIG = 1


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), to tell it from a later process of the same pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return None if fields[0] == b"Z" else fields[19].decode()  # state, starttime (field 22)
    except (OSError, IndexError):
        return None


def alive(pid: int, start_time: str | None = None) -> bool:
    """True while ``pid`` runs (not a zombie; still the process that had ``start_time``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if sys.platform.startswith("linux"):
        now = _start_time(pid)
        return now is not None and (start_time is None or now == start_time)
    return True


def set_pdeathsig(sig: int = signal.SIGKILL) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def watch_parent(run_pid: int, run_start: str | None) -> None:
    """Pool initializer: end this worker when the run ``run_pid`` is gone."""
    set_pdeathsig()

    def watch() -> None:
        while alive(run_pid, run_start):
            time.sleep(POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="fpfast-parent-watch", daemon=True).start()


def new_pool(workers: int, mp_context) -> cf.ProcessPoolExecutor:
    """A process pool of ``workers`` whose workers die with this process."""
    pid = os.getpid()
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp_context, initializer=watch_parent,
                                  initargs=(pid, _start_time(pid)))
