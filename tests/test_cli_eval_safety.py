"""eval writes beside the gallery, never into the data, replaces an earlier eval only with
--overwrite (issue 13, item 9); a folder that matches a model only up to case is refused unless
--open-set-folders, and metrics.json is strict JSON (item 13)."""
import json
import os
import shutil

import pytest

from cli_helpers import build_gallery, run_here


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    return build_gallery(tmp_path_factory, n_train=6, n_test=2)


def test_the_default_output_is_beside_the_gallery_and_not_overwritten(g, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(g["test"], data / "test")
    gal = tmp_path / "gal"
    shutil.copytree(g["gallery"], gal)
    r = run_here("eval", gal, "--from-folders", data / "test")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(data)) == ["test"], "eval wrote into the data"
    assert (tmp_path / "gal-eval" / "metrics.json").exists()
    r = run_here("eval", gal, "--from-folders", data / "test")
    assert r.returncode == 2 and "--overwrite" in r.stderr, r.stderr
    assert run_here("eval", gal, "--from-folders", data / "test", "--overwrite").returncode == 0
    r = run_here("eval", gal, "--from-folders", data / "test", "-o", data / "test" / "ev")
    assert r.returncode == 2 and "inside" in r.stderr, r.stderr


def test_a_folder_differing_from_a_model_in_case_is_refused_and_json_is_strict(g, tmp_path):
    root = tmp_path / "t"
    shutil.copytree(os.path.join(g["test"], "alpha"), root / "ALPHA")
    r = run_here("eval", g["gallery"], "--from-folders", root, "-o", tmp_path / "ev")
    assert r.returncode == 2 and "'ALPHA' vs model 'alpha'" in r.stderr, r.stderr
    r = run_here("eval", g["gallery"], "--from-folders", root, "-o", tmp_path / "ev", "--open-set-folders")
    assert r.returncode == 0, r.stderr
    assert "open set" in r.stderr and "ALPHA" in r.stderr
    text = (tmp_path / "ev" / "metrics.json").read_text()
    m = json.loads(text, parse_constant=lambda c: pytest.fail(f"metrics.json holds {c}"))
    assert m["closed_set"]["accuracy"] is None
