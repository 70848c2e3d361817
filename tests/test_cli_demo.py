"""`fpfast demo`: offline, end to end, as a real process (the README's first command).

About 2-4 minutes on 2 shared cores (the tiny GM-zoo is trained here), hence slow."""
import os
import time

import pyarrow.parquet as pq
import pytest
from PIL import Image

from cli_helpers import run_cli


@pytest.mark.slow
def test_demo_runs_offline_end_to_end(tmp_path):
    out = tmp_path / "demo out"
    t0 = time.perf_counter()
    r = run_cli("demo", "--out", out, timeout=900)
    wall = time.perf_counter() - t0
    print(f"fpfast demo: {wall:.1f}s wall, load average {os.getloadavg()[0]:.1f} (not asserted)")
    assert r.returncode == 0, r.stderr[-3000:]
    # stderr is not a terminal here: every stage still shows, and a timing summary ends the run
    assert "timing: zoo" in r.stderr and "train" in r.stderr and "attribute" in r.stderr, r.stderr[-3000:]
    # the short summary: accuracy, the confusion-matrix picture, three example rows
    summary = r.stdout[r.stdout.index("== summary"):].splitlines()
    assert summary[1].startswith("closed-set accuracy: ") and summary[2].endswith("confusion.png")
    assert len([ln for ln in summary if "made by" in ln and "answer" in ln]) == 3
    assert "accuracy" in r.stdout and "macro-F1" in r.stdout
    assert "confusion matrix" in r.stdout
    for step in ("[1/6]", "[2/6]", "[3/6]", "[4/6]", "[5/6]", "[6/6]"):
        assert step in r.stderr
    assert "-- learned embedding" in r.stdout and "-- handcrafted fingerprint" in r.stdout
    assert "-- fpfast enroll's default" in r.stdout and (out / "attributions-default.parquet").is_file()
    att = out / "attributions-embedding.parquet"
    assert att.is_file() and (out / "attributions.parquet").is_file()
    rows = pq.read_table(att).to_pylist()
    assert rows and {"path", "model", "score", "distance", "error"} <= set(rows[0])
    assert f"({len(rows)} rows)" in r.stdout
    n_images = sum(1 for split in ("test", "open_set")
                   for _, _, fs in os.walk(out / "zoo" / split) for f in fs
                   if f.lower().endswith((".png", ".jpg", ".jpeg", ".webp")))
    assert len(rows) == n_images  # every held-out image attributed exactly once
    png = out / "eval-embedding" / "confusion.png"
    assert png.is_file()
    with Image.open(png) as im:
        assert min(im.size) > 50
    # the tiny preset separates its models well above chance (7 models: chance is 1/7), with both
    import json
    for d in ("eval", "eval-embedding", "eval-default"):
        assert json.load(open(out / d / "metrics.json"))["closed_set"]["accuracy"] > 0.5


def test_demo_result_is_plain_data(tmp_path, monkeypatch):
    """``run_demo``'s result is JSON (the stages' seconds, not a timer object; no cycle) and the
    caller's :class:`Stages` gets each stage's time. On a stand-in zoo of three 32 px models
    (a fourth kept out as the open set) and the handcrafted fingerprint only: seconds, not minutes."""
    import json

    import fpfast.zoo
    from cli_helpers import make_folders
    from fpfast.demo import run_demo
    from fpfast.jobs.options import StreamOptions
    from fpfast.progress import Stages

    def fake_zoo(out, **kw):
        for split, n in (("train", 8), ("test", 3)):
            make_folders(os.path.join(out, split), n, seed=1 if split == "test" else 0)
        make_folders(os.path.join(out, "open_set"), 3, models={"delta": 7})
        return {"image_size": 32}
    monkeypatch.setattr(fpfast.zoo, "build_zoo", fake_zoo)
    stages = Stages()
    res = run_demo(str(tmp_path / "d"), opts=StreamOptions(device="cpu", quiet=True), embedding_epochs=0,
                   echo=lambda s: None, stages=stages)
    again = json.loads(json.dumps(res))
    assert again["stages"] == res["stages"] and list(res["stages"]) == ["zoo", "enroll", "attribute", "eval"]
    # without training, the default gallery is the final one and the handcrafted one the other
    assert res["stages"] == stages.seconds and res["default"] is None and res["rows"] == 12
    assert res["vectors"] == "universal ⊕ handcrafted" and res["handcrafted"]["rows"] == 12
    from fpfast.cli.demo import demo_summary
    from fpfast.cli.evaluate import format_metrics
    summary = demo_summary(res)
    assert "(universal ⊕ handcrafted)" in summary and "(handcrafted fingerprint)" in summary
    assert "fpfast enroll's default" not in summary  # named once, as the final gallery
    assert "confusion" in format_metrics(res)
