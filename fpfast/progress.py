"""The one progress facility: bars, status lines and per-stage timing for every long command.

* :class:`Progress` - on a terminal, a tqdm bar (total and ETA when the count is known, rate, an
  optional postfix such as the loss); off a terminal (a log file, a pipe, CI), a status line
  every :data:`STATUS_INTERVAL` seconds while the work goes on (from a heartbeat thread, so a
  long step between two updates is not silent) and a last one at the end when any was printed;
  nothing when ``quiet``.
* :class:`Stages` - wall time per named stage of a command, printed as one ``timing:`` line at
  its end.

Both write to stderr, so that a command's stdout stays parseable.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

STATUS_INTERVAL = 10.0  # seconds between status lines when stderr is not a terminal


def _interval() -> float:
    # FPFAST_STATUS_INTERVAL: for tests (and impatient logs); the default is STATUS_INTERVAL
    try:
        return float(os.environ.get("FPFAST_STATUS_INTERVAL", STATUS_INTERVAL))
    except ValueError:
        return STATUS_INTERVAL


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


class Progress:
    """Progress of ``desc`` over ``total`` units (None: unknown). ``update(n, **postfix)``;
    ``close()`` (or use it as a context manager). ``leave=False`` removes a finished bar."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "img", quiet: bool = False,
                 leave: bool = True, stream=None):
        self.desc, self.total, self.unit = desc, total, unit
        self.stream = stream or sys.stderr
        self.n, self.postfix = 0, {}
        self.t0 = self.last = time.monotonic()
        self.lines, self.printed_n = 0, 0
        self.bar = None
        self.quiet = quiet
        self.tty = not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = _interval()  # seconds between status lines off a terminal (read once)
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.beat = None
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=leave, smoothing=0.1,
                            mininterval=0.5, dynamic_ncols=True)
        elif not quiet:
            self.beat = threading.Thread(target=self._heartbeat, name="fpfast-progress", daemon=True)
            self.beat.start()

    def _heartbeat(self) -> None:
        interval = max(self.interval, 0.1)
        while not self.stop.wait(interval):
            if time.monotonic() - self.last >= interval:
                self._status()

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def update(self, n: int = 1, **postfix) -> None:
        self.n += n
        if postfix:
            self.postfix.update(postfix)
        if self.quiet:
            return
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix({k: _short(v) for k, v in self.postfix.items()}, refresh=False)
            self.bar.update(n)
        elif time.monotonic() - self.last >= self.interval:
            self._status()

    def status_line(self) -> str:
        el = time.monotonic() - self.t0
        rate = self.n / el if el > 0 else 0.0
        done = f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        eta = ""
        if self.total and rate > 0 and self.n < self.total:
            eta = f", ETA {_fmt_seconds((self.total - self.n) / rate)}"
        extra = "".join(f", {k} {_short(v)}" for k, v in self.postfix.items())
        speed = f"{rate:.1f} {self.unit}/s" if rate >= 1 or not self.n else f"{el / self.n:.1f} s/{self.unit}"
        return f"{self.desc}: {done}{pct}, {speed}, elapsed {_fmt_seconds(el)}{eta}{extra}"

    def _status(self) -> None:
        with self.lock:
            print(self.status_line(), file=self.stream, flush=True)
            self.last = time.monotonic()
            self.lines += 1
            self.printed_n = self.n

    def close(self) -> None:
        self.stop.set()
        if self.beat is not None:
            self.beat.join()
            self.beat = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif not self.quiet and self.lines and self.n != self.printed_n:  # the end, for a log that saw the run go on
            self._status()
        self.quiet = True  # closed: later updates are ignored

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class Stages:
    """Wall time per stage: ``with stages("enroll"): ...``; ``stages.line()`` -> ``timing: enroll
    2.1s, train 30.4s; total 32.5s``. A stage entered twice adds up."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def line(self) -> str:
        parts = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        return f"timing: {parts}; total {time.perf_counter() - self.t0:.1f}s"

    def report(self, quiet: bool, stream=None) -> None:
        if not quiet:
            print(self.line(), file=stream or sys.stderr, flush=True)
