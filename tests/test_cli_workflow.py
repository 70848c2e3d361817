"""enroll --from-folders -> attribute (parquet, csv, jsonl, directory), extract, search, eval."""
import csv
import glob
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cli_helpers import MODELS, build_gallery, invoke, make_folders
from fpfast.io.writers import read_rows

COLUMNS = ["path", "model", "score", "distance", "top1_model", "error"]


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    return build_gallery(tmp_path_factory)


def read_table(out) -> dict:
    """{column: [values]} read with the plain csv/json/pyarrow readers a user would use."""
    out = str(out)
    if out.endswith(".csv"):
        with open(out, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    elif out.endswith(".jsonl"):
        with open(out, encoding="utf-8") as fh:
            rows = [json.loads(ln) for ln in fh if ln.strip()]
    else:
        rows = pq.read_table(out).to_pylist()  # a file or a directory of shards
    return {c: [r.get(c) for r in rows] for c in (rows[0] if rows else {})}


def test_enrolled_gallery(g):
    r = invoke("search", os.path.join(g["test"], "alpha", "000.png"), "-g", g["gallery"])
    assert r.exit_code == 0
    meta = json.load(open(os.path.join(g["gallery"], "gallery.json")))
    assert sorted(m["name"] for m in meta["models"]) == sorted(MODELS)


def test_enroll_prints_per_model_counts_and_calibration(tmp_path):
    train = make_folders(tmp_path / "train", 10)
    r = invoke("enroll", tmp_path / "g", "--from-folders", train)
    assert r.exit_code == 0, r.output
    for m in MODELS:
        assert f"{m}: 8 enrolled, 2 held out" in r.output
    assert "3 models, 24 samples" in r.stdout and "calibrated" in r.stdout
    # --model adds one more model to the same gallery
    extra = make_folders(tmp_path / "extra", 4, models={"delta": 7})
    r = invoke("enroll", tmp_path / "g", "--model", "delta", os.path.join(extra, "delta"))
    assert r.exit_code == 0, r.output
    assert "4 models, 28 samples" in r.stdout


def test_enroll_into_a_non_gallery_folder_refused(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("mine")
    train = make_folders(tmp_path / "train", 3)
    r = invoke("enroll", tmp_path / "busy", "--from-folders", train)
    assert r.exit_code == 2 and "gallery.json" in r.output


@pytest.mark.parametrize("out", ["res.parquet", "res.csv", "res.jsonl", "resdir"])
def test_attribute_formats(g, tmp_path, out):
    out = tmp_path / out
    r = invoke("attribute", g["test"], "-g", g["gallery"], "-o", out, "--shard-size", "5", "-q")
    assert r.exit_code == 0, r.output
    if out.suffix == "":
        assert out.is_dir() and len(glob.glob(str(out / "*.parquet"))) == 3  # 12 inputs, shards of 5
    else:
        assert out.is_file()
        assert not os.path.exists(tmp_path / f".{out.name}.parts")
    df = read_table(out)
    for c in COLUMNS:
        assert c in df, (c, list(df))
    assert len(df["path"]) == g["n_test"]
    assert sorted(df["path"]) == sorted(glob.glob(os.path.join(g["test"], "*", "*.png")))
    # a fine row's error is null (what pandas / duckdb users filter on); csv has no null but an empty cell
    assert all(e == "" if out.suffix == ".csv" else e is None for e in df["error"])
    truth = [os.path.basename(os.path.dirname(p)) for p in df["path"]]
    # the periodic patterns are easy: the nearest model is right; the open-set threshold, calibrated on
    # 2 held-out images per model, may still answer 'unknown'
    assert np.mean([m == t for m, t in zip(df["top1_model"], truth)]) >= 0.9
    assert all(m in (t, "unknown") for m, t in zip(df["model"], truth))
    assert set(df["top1_model"]) <= set(MODELS)
    assert np.isfinite(np.array(df["distance"], float)).all()
    score = np.array(df["score"], float)
    assert ((score >= 0) & (score <= 1)).all()
    # the same rows whatever the format
    assert len(read_rows(str(out))) == g["n_test"]


def test_attribute_rows_are_in_input_order_for_files_and_list(g, tmp_path):
    files = sorted(glob.glob(os.path.join(g["test"], "*", "*.png")))[::-1][:5]
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(files) + "\n", encoding="utf-8")
    out = tmp_path / "o.csv"
    r = invoke("attribute", f"@{lst}", files[0], "-g", g["gallery"], "-o", out, "-q")
    assert r.exit_code == 0, r.output
    df = read_table(out)
    assert list(df["path"]) == files + [files[0]]


def test_attribute_centroid_and_top(g, tmp_path):
    out = tmp_path / "o.parquet"
    r = invoke("attribute", g["test"], "-g", g["gallery"], "-o", out, "--method", "centroid", "--top", "3", "-q")
    assert r.exit_code == 0, r.output
    df = read_table(out)
    assert {"top1_model", "top2_model", "top3_model", "top3_distance"} <= set(df)
    assert all(m in MODELS for m in df["top1_model"] + df["top2_model"] + df["top3_model"])


def test_attribute_prints_a_summary_unless_quiet(g, tmp_path):
    r = invoke("attribute", g["test"], "-g", g["gallery"], "-o", tmp_path / "a.csv")
    assert r.exit_code == 0 and f"{g['n_test']} inputs: {g['n_test']} ok, 0 errors" in r.stderr
    r = invoke("attribute", g["test"], "-g", g["gallery"], "-o", tmp_path / "b.csv", "-q")
    assert r.exit_code == 0 and r.output == ""


def test_extract_npy_and_metadata_counts_match(g, tmp_path):
    out = tmp_path / "fp"
    r = invoke("extract", g["test"], g["train"], "-o", out, "--shard-size", "16", "-q")
    assert r.exit_code == 0, r.output
    npys = sorted(glob.glob(str(out / "embeddings" / "*.npy")))
    metas = sorted(glob.glob(str(out / "metadata" / "*.parquet")))
    n = g["n_test"] + 12 * len(MODELS)
    assert len(npys) == len(metas) == -(-n // 16)
    total = 0
    for e, m in zip(npys, metas):
        assert os.path.basename(e)[:-4] == os.path.basename(m)[:-8]
        v = np.load(e)
        md = pq.read_table(m)
        assert v.ndim == 2 and v.dtype == np.float32 and len(v) == len(md)
        assert np.isfinite(v).all()
        total += len(v)
    assert total == n
    assert os.path.exists(out / "spec.json")
    # the extracted vectors are the gallery's fingerprints: same spec, same dim
    spec = json.load(open(out / "spec.json"))
    gmeta = json.load(open(os.path.join(g["gallery"], "gallery.json")))
    assert v.shape[1] == gmeta["dim"]
    assert spec


def test_search_prints_nearest_models_and_samples(g):
    q = os.path.join(g["test"], "beta", "001.png")
    r = invoke("search", q, "-g", g["gallery"], "-k", "3")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == q
    assert lines[1].strip().startswith("models:") and "beta" in lines[1]
    assert len([ln for ln in lines if ln.strip()[:2] in ("1.", "2.", "3.")]) == 3
    assert os.path.join(g["train"], "beta") in r.stdout  # the neighbours' source keys


def test_search_with_a_bad_query(g, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    q = os.path.join(g["test"], "gamma", "000.png")
    r = invoke("search", q, str(bad), "-g", g["gallery"])
    assert r.exit_code == 3
    assert f"{bad}: error:" in r.stdout and q in r.stdout
    r = invoke("search", str(bad), "-g", g["gallery"])
    assert r.exit_code == 3 and "error" in r.stdout


def test_eval_writes_metrics_and_confusion(g, tmp_path):
    out = tmp_path / "ev"
    r = invoke("eval", g["gallery"], "--from-folders", g["test"], "-o", out)
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.stdout and "macro-F1" in r.stdout and "confusion matrix" in r.stdout
    for f in ("metrics.json", "confusion.csv", "confusion.png"):
        assert (out / f).is_file(), f
    m = json.load(open(out / "metrics.json"))
    assert m["closed_set"]["n"] == g["n_test"]
    assert m["closed_set"]["accuracy"] > 0.4  # 'unknown' answers (tight open-set threshold) count as wrong
    with open(out / "confusion.csv", newline="") as fh:
        cm = list(csv.reader(fh))
    assert sum(int(float(x)) for row in cm[1:] for x in row[1:]) == g["n_test"]
    with Image.open(out / "confusion.png") as im:
        assert im.size[0] > 50 and im.size[1] > 50


def test_eval_open_set(g, tmp_path):
    root = tmp_path / "mixed"
    make_folders(root, 3, seed=5)
    make_folders(root, 4, seed=6, models={"zeta": 7})  # a model the gallery lacks
    out = tmp_path / "ev"
    r = invoke("eval", g["gallery"], "--from-folders", root, "-o", out)
    assert r.exit_code == 0, r.output
    assert "open set: 4 images" in r.stdout and "AUROC" in r.stdout
    m = json.load(open(out / "metrics.json"))
    assert m["n_unknown_queries"] == 4


def test_eval_reports_unreadable_images_and_exits_3(g, tmp_path):
    import shutil
    root = tmp_path / "t"
    shutil.copytree(g["test"], root)
    (root / "beta" / "broken.png").write_bytes(b"")
    r = invoke("eval", g["gallery"], "--from-folders", root, "-o", tmp_path / "ev")
    assert r.exit_code == 3, r.output
    assert "broken.png: error: empty file" in r.stderr and "1 image(s) could not be read" in r.stderr
    assert (tmp_path / "ev" / "metrics.json").is_file()  # the metrics of the readable images are written


def test_extract_error_rows_go_to_errors_and_exit_3(g, tmp_path):
    import shutil
    src = tmp_path / "src"
    shutil.copytree(g["test"], src)
    (src / "alpha" / "zz_empty.png").write_bytes(b"")
    out = tmp_path / "fp"
    r = invoke("extract", src, "-o", out, "-q")
    assert r.exit_code == 3, r.output
    v = np.concatenate([np.load(f) for f in sorted(glob.glob(str(out / "embeddings" / "*.npy")))])
    md = pq.read_table(str(out / "metadata")).to_pylist()
    errs = pq.read_table(str(out / "errors")).to_pylist()
    assert len(v) == len(md) == g["n_test"]
    assert len(errs) == 1 and errs[0]["path"].endswith("zz_empty.png") and "empty file" in errs[0]["error"]
