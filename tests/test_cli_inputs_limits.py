"""Inputs that would hang or exhaust memory are error rows, entries that are not images are
reported, and "no inputs at all" is one clear error everywhere (issue 13, items 6 and 7)."""
import os

import pyarrow.parquet as pq
import pytest
from PIL import Image

from cli_helpers import build_gallery, model_image, run_cli, run_here


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    return build_gallery(tmp_path_factory, n_train=6, n_test=1)


def _rows(out):
    return {os.path.basename(r["path"]): r for r in pq.read_table(out).to_pylist()}


def test_a_fifo_and_dev_zero_are_error_rows_not_a_hang(g, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(model_image(2, 0)).save(d / "good.png")
    os.mkfifo(d / "x.png")
    out = tmp_path / "o.parquet"
    r = run_cli("attribute", d, "/dev/zero", "-g", g["gallery"], "-o", out, "-q", "--workers", "1", timeout=120)
    assert r.returncode == 3, r.stderr
    rows = _rows(out)
    assert rows["good.png"]["error"] is None
    assert "not a regular file" in rows["x.png"]["error"] and "FIFO" in rows["x.png"]["error"]
    assert "not a regular file" in rows["zero"]["error"]


def test_every_read_is_capped_and_the_error_names_the_flag(g, tmp_path):
    out = tmp_path / "o.parquet"
    r = run_here("attribute", g["test"], "-g", g["gallery"], "-o", out, "-q", "--max-bytes", "100")
    assert r.returncode == 3, r.stderr
    assert all("--max-bytes 100" in row["error"] for row in _rows(out).values())


def test_entries_that_are_not_images_are_reported(g, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(model_image(2, 0)).save(d / "good.png")
    (d / "notes.txt").write_text("x")
    r = run_here("attribute", d, "-g", g["gallery"], "-o", tmp_path / "o.parquet")
    assert r.returncode == 0, r.stderr
    assert "1 folder entries ignored (not image files)" in r.stderr


@pytest.mark.parametrize("cmd", ["attribute", "extract", "enroll"])
def test_no_inputs_at_all_is_one_clear_error(g, tmp_path, cmd):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    out = tmp_path / "o"
    args = {"attribute": ["attribute", empty, "-g", g["gallery"], "-o", out],
            "extract": ["extract", empty, "-o", out],
            "enroll": ["enroll", tmp_path / "g", "--model", "m", empty]}[cmd]
    r = run_here(*args, "-q")
    assert r.returncode == 2, r.stderr
    assert "no inputs" in r.stderr and "notes.txt" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() and not (tmp_path / "g").exists()
