"""--resume checks what the sources expand to, not the source strings (issue 13, item 3), and a
file name that is not UTF-8 is a row of its own with its path kept losslessly (item 4)."""
import os
import shutil

import pyarrow.parquet as pq
import pytest
from PIL import Image

from cli_helpers import build_gallery, model_image, run_here


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    return build_gallery(tmp_path_factory, n_train=6, n_test=1)


def _folder(d, names):
    d.mkdir()
    for i, n in enumerate(names):
        Image.fromarray(model_image(2 + i % 3, i)).save(d / n)
    return d


def test_resume_after_the_inputs_changed_names_the_first_difference(g, tmp_path):
    src = _folder(tmp_path / "in", [f"{i:03d}.png" for i in range(6)])
    out = tmp_path / "out"
    args = ["attribute", src, "-g", g["gallery"], "-o", out, "--shard-size", "2", "-q"]
    assert run_here(*args).returncode == 0
    r = run_here(*args, "--resume")  # same inputs: nothing to redo, same rows
    assert r.returncode == 0, r.stderr
    shutil.copy(src / "000.png", src / "000b.png")  # an input between the first two
    os.remove(src / "004.png")
    r = run_here(*args, "--resume")
    assert r.returncode == 2, r.stderr
    assert "inputs changed" in r.stderr and "000b.png" in r.stderr, r.stderr
    paths = pq.read_table(out).column("path").to_pylist()
    assert len(paths) == len(set(paths)) == 6


def test_resume_after_inputs_were_removed_at_the_end_is_refused(g, tmp_path):
    src = _folder(tmp_path / "in", [f"{i:03d}.png" for i in range(6)])
    out = tmp_path / "out"
    args = ["attribute", src, "-g", g["gallery"], "-o", out, "--shard-size", "2", "-q"]
    assert run_here(*args).returncode == 0
    os.remove(src / "004.png")
    os.remove(src / "005.png")
    r = run_here(*args, "--resume")  # the last finished shard's inputs are gone
    assert r.returncode == 2, r.stderr
    assert "inputs changed" in r.stderr and "004.png" in r.stderr, r.stderr


def test_a_file_name_that_is_not_utf8_is_its_own_row(g, tmp_path):
    from fpfast.io.paths import ESCAPED_NOTE, path_key
    src = _folder(tmp_path / "in", ["a.png"])
    raw = os.path.join(os.fsencode(src), b"caf\xe9 \\x41.png")
    shutil.copy(src / "a.png", os.fsdecode(raw))
    out = tmp_path / "out.parquet"
    r = run_here("attribute", src, "-g", g["gallery"], "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 2 and all(row["model"] for row in rows)
    odd = [row for row in rows if ESCAPED_NOTE in row["note"]]
    assert len(odd) == 1 and os.fsencode(path_key(odd[0]["path"])) == raw
    assert not (tmp_path / ".out.parquet.parts").exists()
