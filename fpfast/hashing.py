"""sha256 of files, shared by the gallery store and the projectors' reference sets."""
from __future__ import annotations

import hashlib
import os


def sha256_file(path: "str | os.PathLike") -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
