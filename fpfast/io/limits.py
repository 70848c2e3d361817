"""The read cap: no input is read past ``--max-bytes`` (a FIFO, ``/dev/zero`` or a huge file must
not hang a run or fill memory), and only regular files are opened."""
from __future__ import annotations

import os
import stat

DEFAULT_MAX_BYTES = 256 * 1024 * 1024


def too_big(size: int | None, max_bytes: int) -> str:
    """The error of an input over the cap (``size`` None: not known, only that it is over)."""
    what = "over --max-bytes" if size is None else f"{size} bytes, more than --max-bytes"
    return f"input is {what} {max_bytes}: not read (raise --max-bytes to read it)"


def read_file(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` of them; ValueError for a
    FIFO, device, socket or directory (never opened) or a longer file, OSError if unreadable."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file")
        raise ValueError(f"not a regular file ({kind}): not read")
    if st.st_size > max_bytes:
        raise ValueError(too_big(st.st_size, max_bytes))
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)   # the file may have grown since the stat
    if len(data) > max_bytes:
        raise ValueError(too_big(None, max_bytes))
    return data
