"""`fpfast demo`: offline, end to end, as a real process (the README's first command).

About 2-4 minutes on 2 shared cores (the tiny GM-zoo is trained here), hence slow."""
import os

import pyarrow.parquet as pq
import pytest
from PIL import Image

from cli_helpers import run_cli


@pytest.mark.slow
def test_demo_runs_offline_end_to_end(tmp_path):
    out = tmp_path / "demo out"
    r = run_cli("demo", "--out", out, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "accuracy" in r.stdout and "macro-F1" in r.stdout
    assert "confusion matrix" in r.stdout
    for step in ("[1/4]", "[2/4]", "[3/4]", "[4/4]"):
        assert step in r.stderr
    att = out / "attributions.parquet"
    assert att.is_file()
    rows = pq.read_table(att).to_pylist()
    assert rows and {"path", "model", "score", "distance", "error"} <= set(rows[0])
    assert f"({len(rows)} rows)" in r.stdout
    n_images = sum(1 for split in ("test", "open_set")
                   for _, _, fs in os.walk(out / "zoo" / split) for f in fs
                   if f.lower().endswith((".png", ".jpg", ".jpeg", ".webp")))
    assert len(rows) == n_images  # every held-out image attributed exactly once
    png = out / "eval" / "confusion.png"
    assert png.is_file()
    with Image.open(png) as im:
        assert min(im.size) > 50
    assert (out / "eval" / "metrics.json").is_file()
    # the tiny preset separates its models well above chance
    import json
    acc = json.load(open(out / "eval" / "metrics.json"))["closed_set"]["accuracy"]
    assert acc > 0.5
