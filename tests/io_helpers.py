"""Shared helpers of the tests/test_io_*.py files: tiny images in memory and one pipeline run."""
from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from fpfast.io.writers import read_rows
from fpfast.jobs.mappers import fingerprint_mapper
from fpfast.pipeline import run


def rand_rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def encode(a, fmt: str = "PNG", **kw) -> bytes:
    img = a if isinstance(a, Image.Image) else Image.fromarray(a)
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def run_folder(tmp_path, files: dict, n_good: int = 3, **kw):
    """Write ``files`` (name -> bytes) and ``n_good`` valid PNGs into a folder, run the stream with
    the fingerprint mapper, check the invariant (one row per input, good rows fine) and return
    ``(rows by file name, summary)``."""
    src = tmp_path / "in"
    src.mkdir(exist_ok=True)
    for name, data in files.items():
        (src / name).write_bytes(data)
    for i in range(n_good):
        (src / f"good{i}.png").write_bytes(encode(rand_rgb(20 + i, 24, seed=100 + i)))
    kw.setdefault("shard_size", 2)
    kw.setdefault("batch_size", 2)
    out = str(tmp_path / "out")
    summary = run([str(src)], fingerprint_mapper(), out, quiet=True, **kw)
    rows = read_rows(out)
    n_inputs = len(os.listdir(src))
    assert len(rows) == n_inputs == summary.inputs
    names = [os.path.basename(r["path"]) for r in rows]
    assert sorted(names) == sorted(os.listdir(src))
    by_name = dict(zip(names, rows))
    for i in range(n_good):
        g = by_name[f"good{i}.png"]
        assert g["error"] is None and g["vector"] is not None and np.isfinite(g["vector"]).all()
    return by_name, summary


def assert_error_row(tmp_path, name: str, data: bytes, *needles: str, **kw):
    rows, summary = run_folder(tmp_path, {name: data}, **kw)
    err = rows[name]["error"]
    assert err, f"{name} should be an error row"
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"
    assert summary.errors == 1 and summary.exit_code == 3
    return err


def assert_fine_row(tmp_path, name: str, data: bytes, note: str | None = None, **kw):
    rows, summary = run_folder(tmp_path, {name: data}, **kw)
    r = rows[name]
    assert r["error"] is None, r["error"]
    if note is not None:
        assert note in r["note"], r["note"]
    assert summary.exit_code == 0
    return r
