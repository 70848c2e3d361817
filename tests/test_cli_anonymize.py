"""`fpfast train --causal`, `fpfast leakage` and `fpfast anonymize` as a user runs them (issue 15)."""
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cli_helpers import build_gallery, invoke, model_image
from fpfast.embed import Embedder  # noqa: F401  (the gallery's embedder type)
from fpfast.gallery import Gallery


def _content_table(base, folders) -> None:
    """A zoo-like content.parquet: the i-th image of every model shows content i."""
    rows = []
    for split, root in folders.items():
        for m in sorted(os.listdir(root)):
            for f in sorted(os.listdir(os.path.join(root, m))):
                rows.append(dict(split=split, model=m, label=m, file=f"{split}/{m}/{f}", content_id=f"c{f[:3]}",
                                 photo="synthetic", top=0, left=0, flip=False))
    pq.write_table(pa.Table.from_pylist(rows), os.path.join(base, "content.parquet"))


@pytest.fixture(scope="module")
def causal_gallery(tmp_path_factory):
    env = build_gallery(tmp_path_factory, n_train=10, n_test=3)
    _content_table(env["base"], {"train": env["train"], "test": env["test"]})
    r = invoke("train", env["gallery"], "--from-folders", env["train"], "--causal", "--epochs", "2", "--dim", "8",
               "--train-batch-size", "12", "--quiet")
    assert r.exit_code == 0, r.output
    return env


def test_train_causal_records_its_objective_and_leakage_reports(causal_gallery):
    emb = Gallery.load(causal_gallery["gallery"]).embedder()
    assert emb.config["training"]["objective"]["kind"] == "causal"
    assert emb.config["training"]["objective"]["with_content"] > 0
    r = invoke("leakage", causal_gallery["gallery"], "--zoo", causal_gallery["base"], "--split", "test")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["n"] == causal_gallery["n_test"] and rep["probe"]["n_contents"] == 3
    assert set(rep["fdr"]["per_class"]) == {"alpha", "beta", "gamma"}
    # 3 models told apart by their periodic artifact (chance: 1/3): the causal fingerprint still
    # attributes well above chance (1.0 here; 2/3 leaves room for another seed or BLAS)
    assert rep["accuracy_centroid"] >= 2 / 3 and rep["accuracy_knn"] >= 2 / 3, rep


def test_causal_needs_a_content_table(causal_gallery, tmp_path):
    from cli_helpers import make_folders
    train = make_folders(tmp_path / "nozoo" / "train", 4)
    r = invoke("train", causal_gallery["gallery"], "--from-folders", train, "--causal", "--epochs", "1")
    assert r.exit_code == 2 and "content" in r.output


def test_anonymize_keeps_size_reports_psnr_and_turns_corrupt_input_into_an_error_row(causal_gallery, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    odd = model_image(2, 7)[:28, :]                      # 28 x 32: not square
    Image.fromarray(odd).save(src / "odd.png")
    Image.fromarray(model_image(3, 8)).save(src / "b.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    out = tmp_path / "anon"
    r = invoke("anonymize", src, "--gallery", causal_gallery["gallery"], "--out", out, "--target", "alpha",
               "--steps", "3", "--eps", "4", "--quiet")
    assert r.exit_code == 3, r.output                      # one row carries an error
    after = sorted(str(p) for p in tmp_path.rglob("*"))
    assert [p for p in after if p not in before and not p.startswith(str(out))] == []  # nothing outside --out
    rows = pq.read_table(out / "report").to_pylist()
    assert len(rows) == 3
    by = {os.path.basename(r["path"]): r for r in rows}
    assert by["broken.png"]["error"] and not by["odd.png"]["error"] and not by["b.png"]["error"]
    for name in ("odd.png", "b.png"):
        row = by[name]
        orig = np.asarray(Image.open(src / name).convert("RGB"))
        with Image.open(out / row["output"]) as im:
            assert im.mode == "RGB"
            new = np.asarray(im)
        assert new.shape == orig.shape and new.dtype == np.uint8
        mse = np.mean((new.astype(np.float64) - orig) ** 2)
        want = np.inf if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
        assert row["psnr"] == pytest.approx(want, rel=1e-9)
        if row["source_before"] != "alpha":
            assert 0 < np.abs(new.astype(int) - orig).max() <= 4   # within --eps
    # resume: nothing is added
    r = invoke("anonymize", src, "--gallery", causal_gallery["gallery"], "--out", out, "--target", "alpha",
               "--steps", "3", "--eps", "4", "--resume", "--quiet")
    assert r.exit_code == 3, r.output  # its one shard is not full, so it is redone: the broken input again
    assert len(pq.read_table(out / "report").to_pylist()) == 3


def test_anonymize_refuses_a_foreign_directory_and_an_unknown_target(causal_gallery, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    r = invoke("anonymize", causal_gallery["test"], "--gallery", causal_gallery["gallery"], "--out", foreign,
               "--target", "alpha")
    assert r.exit_code == 2 and (foreign / "notes.txt").read_text() == "keep"
    assert sorted(os.listdir(foreign)) == ["notes.txt"]
    r = invoke("anonymize", causal_gallery["test"], "--gallery", causal_gallery["gallery"], "--out",
               tmp_path / "x", "--target", "nobody")
    assert r.exit_code == 2 and "nobody" in r.output


def test_causal_weights_without_causal_are_refused(causal_gallery):
    r = invoke("train", causal_gallery["gallery"], "--from-folders", causal_gallery["train"], "--hsic", "2")
    assert r.exit_code == 2 and "--causal" in r.output
