"""The stream itself: bounded read-ahead, geometry in the batcher, exit codes, worker crashes."""
import os

import numpy as np
import pytest
import torch

from fpfast import pipeline
from fpfast.io.sources import SourceSpecError
from fpfast.io.writers import read_rows
from fpfast.errors import EXIT_OK, EXIT_ROW_ERRORS, EXIT_USAGE, exit_code_for
from fpfast.jobs.mappers import fingerprint_mapper
from fpfast.pipeline import Batcher, decode_stream, run
from fpfast.spec import FingerprintSpec
from io_helpers import encode, rand_rgb



def png_dir(d, names):
    """A folder of random 20x20 PNGs, image i (seed i) saved under names[i]."""
    d.mkdir()
    for i, name in enumerate(names):
        (d / name).write_bytes(encode(rand_rgb(20, 20, seed=i)))
    return d

def test_read_ahead_is_bounded():
    consumed = [0]
    data = encode(rand_rgb(20, 20))

    def items():
        for i in range(10_000):
            consumed[0] = i + 1
            yield i, f"k{i}", data

    it = decode_stream(items(), FingerprintSpec(), workers=1, chunksize=4)
    next(it)
    assert consumed[0] <= (2 * 1 + 1) * 4 + 4  # in-flight chunks plus the one being cut
    it.close()


def test_batcher_groups_by_shape_and_resizes():
    b = Batcher(2, FingerprintSpec(size=32, geometry="resize", min_size=16))
    out = b.add(0, "a", "", rand_rgb(40, 50))
    out += b.add(1, "b", "", rand_rgb(20, 70))
    assert len(out) == 1
    batch = out[0].images
    assert batch.shape == (2, 32, 32, 3) and batch.dtype == torch.float32
    assert 0.0 <= batch.min() and batch.max() <= 1.0


def test_batcher_flushes_when_too_many_wait():
    b = Batcher(4, FingerprintSpec(geometry="none"), max_waiting=5)
    out = []
    for i in range(6):
        out += b.add(i, str(i), "", rand_rgb(20 + i, 20))  # all shapes differ
    assert sum(len(x.indices) for x in out) >= 1 and b.waiting <= 5


def test_uint16_batches_reach_the_mapper(tmp_path):
    from test_io_16bit import png16
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.png").write_bytes(png16(np.random.default_rng(0).integers(0, 65536, (20, 20, 3), dtype=np.uint16)))
    (d / "b.png").write_bytes(encode(rand_rgb(20, 20)))
    seen = []

    def mapper(batch, keys):
        seen.append(batch.dtype)
        return fingerprint_mapper()(batch, keys)
    s = run([str(d)], mapper, str(tmp_path / "o"), quiet=True)
    assert set(seen) == {torch.uint16, torch.uint8} and s.exit_code == EXIT_OK


def test_exit_codes_and_summary(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.png").write_bytes(encode(rand_rgb(20, 20)))
    s = run([str(d)], fingerprint_mapper(), str(tmp_path / "o1"), quiet=True)
    assert s.exit_code == EXIT_OK and "1 ok, 0 errors" in s.format()
    (d / "b.png").write_bytes(b"")
    s = run([str(d)], fingerprint_mapper(), str(tmp_path / "o2"), quiet=True)
    assert s.exit_code == EXIT_ROW_ERRORS == 3
    with pytest.raises(SourceSpecError) as e:
        run([str(d), str(d / "*.gif")], fingerprint_mapper(), str(tmp_path / "o3"), quiet=True)
    assert exit_code_for(e.value) == EXIT_USAGE == 2
    assert not os.path.exists(tmp_path / "o3")  # refused before anything was written
    assert exit_code_for(RuntimeError("x")) == 1


def test_mapper_errors_as_rows(tmp_path):
    d = png_dir(tmp_path / "in", [f"{i}.png" for i in range(3)])

    def bad(batch, keys):
        raise RuntimeError("kernel exploded")
    with pytest.raises(RuntimeError):
        run([str(d)], bad, str(tmp_path / "o"), quiet=True)
    s = run([str(d)], bad, str(tmp_path / "p"), quiet=True, on_mapper_error="rows")
    rows = read_rows(str(tmp_path / "p"))
    assert len(rows) == 3 and all("kernel exploded" in r["error"] for r in rows) and s.exit_code == 3


def _dying_chunk(chunk, spec, max_pixels, *decode_fn):
    if any(key.endswith("boom.png") for _, key, _ in chunk):
        os._exit(1)
    return _real_chunk(chunk, spec, max_pixels, *decode_fn)


_real_chunk = pipeline._decode_chunk


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(), reason="needs fork")
def test_a_dying_worker_costs_its_chunk_not_the_run(tmp_path, monkeypatch):
    import multiprocessing
    monkeypatch.setattr(pipeline, "_decode_chunk", _dying_chunk)
    d = png_dir(tmp_path / "in", [f"{i:02d}{'boom' if i == 7 else ''}.png" for i in range(12)])
    s = run([str(d)], fingerprint_mapper(), str(tmp_path / "o"), quiet=True, workers=1, chunksize=2,
            mp_context=multiprocessing.get_context("fork"))
    rows = read_rows(str(tmp_path / "o"))
    assert len(rows) == 12
    bad = [os.path.basename(r["path"]) for r in rows if r["error"]]
    assert bad == ["07boom.png"]  # its neighbours in flight were decoded again
    assert "worker process died" in rows[7]["error"] and s.exit_code == 3


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(), reason="needs fork")
def test_workers_that_always_die_stop_the_run(tmp_path, monkeypatch):
    import multiprocessing
    monkeypatch.setattr(pipeline, "_decode_chunk", _always_dying)
    d = png_dir(tmp_path / "in", [f"{i}.png" for i in range(8)])
    with pytest.raises(RuntimeError, match="workers=0"):
        run([str(d)], fingerprint_mapper(), str(tmp_path / "o"), quiet=True, workers=1, chunksize=2,
            mp_context=multiprocessing.get_context("fork"))


def _always_dying(chunk, spec, max_pixels, *decode_fn):
    os._exit(1)
