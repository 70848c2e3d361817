"""bench_causal's ``subsample``: a seeded sub-zoo that keeps contents paired across generators
and keeps its ``val`` contents apart from ``train``'s (benchmarks/results/causal.md, standard zoo)."""
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.bench_causal import subsample


def _zoo(root):
    rows = []
    for split, n in (("train", 10), ("test", 6)):
        for model in ("real", "ae", "gan"):
            os.makedirs(root / split / model)
            for i in range(n):
                f = f"{split}/{model}/{i:05d}.png"
                (root / f).write_bytes(f"{split}{model}{i}".encode())
                rows.append({"split": split, "model": model, "label": model, "file": f,
                             "content_id": None if model == "gan" else f"{split[0]}{i}"})
    pq.write_table(pa.Table.from_pylist(rows), root / "content.parquet")


def test_subsample_pairs_contents_and_keeps_val_apart(tmp_path):
    src, dst = tmp_path / "zoo", tmp_path / "sub"
    _zoo(src)
    n = subsample(str(src), str(dst), {"train": 4, "val": 3, "test": 2}, seed=0)
    rows = pq.read_table(dst / "content.parquet").to_pylist()
    assert n == len(rows) == 3 * (4 + 3 + 2)
    by = {}
    for r in rows:
        assert (dst / r["file"]).read_bytes() == (src / r["file"].replace("val/", "train/")).read_bytes()
        by.setdefault((r["split"], r["model"]), set()).add(os.path.basename(r["file"]))
    for split, k in (("train", 4), ("val", 3), ("test", 2)):
        assert len(by[split, "real"]) == k
        assert by[split, "real"] == by[split, "ae"] == by[split, "gan"]  # the same indices: paired contents
    assert not by["train", "real"] & by["val", "real"]
    ids = {r["content_id"] for r in rows if r["split"] == "val" and r["model"] == "ae"}
    assert ids == {r["content_id"] for r in rows if r["split"] == "val" and r["model"] == "real"}
    # the same seed draws the same files
    subsample(str(src), str(tmp_path / "again"), {"train": 4, "val": 3, "test": 2}, seed=0)
    assert sorted(os.listdir(tmp_path / "again" / "train" / "ae")) == sorted(by["train", "ae"])
    with pytest.raises(SystemExit, match="exists"):
        subsample(str(src), str(dst), {"train": 1})
    with pytest.raises(SystemExit, match="too few"):
        subsample(str(src), str(tmp_path / "big"), {"train": 8, "val": 3})
