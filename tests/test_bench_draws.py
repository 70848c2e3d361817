"""bench_unknown's ``--draws``: disjoint galleries per draw, the mean row with its spread, and the
paired differences' 95 % intervals (against numpy / scipy on made-up rows)."""
import os

import numpy as np
import pytest
from scipy import stats

from benchmarks.bench_unknown import first_images, mean_row, paired


def _train(root, n=7):
    for m in ("a", "b"):
        os.makedirs(root / m)
        (root / m / "model.json").write_text("{}")
        for i in range(n):
            (root / m / f"{i:05d}.png").write_bytes(b"x")


def test_draws_enroll_disjoint_images_and_refuse_too_few(tmp_path):
    _train(tmp_path / "train")
    seen = []
    for d in range(2):
        dst = first_images(str(tmp_path / "train"), str(tmp_path / f"d{d}"), 3, offset=3 * d)
        files = sorted(os.listdir(os.path.join(dst, "a")))
        assert files == [f"{i:05d}.png" for i in range(3 * d, 3 * d + 3)]
        seen += files
    assert len(set(seen)) == 6
    with pytest.raises(SystemExit, match="has 7 training images; the draw needs 9"):
        first_images(str(tmp_path / "train"), str(tmp_path / "d2"), 3, offset=6)


def _rows(acc, auroc):
    return [{"enroll_s": 1.0, "k": 1, "test": {"accuracy": a, "unknown": 0.0, "called_clean": None},
             "seed_pair": {"accuracy": 1 - a, "unknown": 0.0, "called_clean": None},
             "auroc": u, "oscr": u / 2} for a, u in zip(acc, auroc)]


def test_mean_row_and_paired_intervals():
    acc_a, acc_b = [0.5, 0.7, 0.6, 0.9], [0.4, 0.5, 0.7, 0.6]
    ra, rb = _rows(acc_a, [0.8, 0.7, 0.9, 0.6]), _rows(acc_b, [0.6, 0.6, 0.6, 0.6])
    m = mean_row(ra)
    assert m["test"]["accuracy"] == pytest.approx(np.mean(acc_a))
    assert m["test"]["called_clean"] is None
    assert m["sd"]["test"] == pytest.approx(np.std(acc_a, ddof=1))
    assert mean_row(ra[:1])["sd"] == {"test": None, "seed_pair": None, "auroc": None, "oscr": None}
    assert m["seed_pair"]["accuracy"] == pytest.approx(1 - np.mean(acc_a))
    assert m["auroc"] == pytest.approx(0.75) and m["sd"]["auroc"] == pytest.approx(np.std([.8, .7, .9, .6], ddof=1))
    text = paired({"per_draw": {"a": ra, "b": rb}})
    assert "minus `b` (4 draws)" in text.splitlines()[0]
    diff = np.subtract(acc_a, acc_b)
    half = stats.t.ppf(0.975, 3) * diff.std(ddof=1) / 2
    cells = text.splitlines()[2].split("|")
    assert cells[1].strip() == "a"
    assert cells[2].strip() == f"{diff.mean():+.3f} ± {half:.3f}"
    assert cells[3].strip() == f"{-diff.mean():+.3f} ± {half:.3f}"   # the seed pair's column, after clean
    assert cells[4].strip() == "+0.150 ± " + f"{stats.t.ppf(0.975, 3) * np.std([.2, .1, .3, 0], ddof=1) / 2:.3f}"


def test_family_strips_the_seed_suffix_only():
    from benchmarks.bench_unknown import family
    assert family("ae_nearest_seed1") == family("ae_nearest_seed2") == family("ae_nearest") == "ae_nearest"
    assert family("dcgan_seed10") == "dcgan" and family("unknown") == "unknown"
    assert family("ae_seedling") == "ae_seedling" and family("ae_seed1_silu") == "ae_seed1_silu"
