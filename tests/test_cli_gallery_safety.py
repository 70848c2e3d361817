"""A gallery is the user's: enroll keeps their files, locks out a concurrent enroll, leaves the
gallery as it was when it fails, respects the umask, warns about thin models and skips images
enrolled already (issue 13, items 1, 2, 11, 15)."""
import json
import os
import shutil
import stat
import subprocess

import pytest

from cli_helpers import ROOT, fpfast_cmd, invoke, make_folders, run_cli, run_here, sub_env


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("gsafe")
    return {"train": make_folders(base / "train", 6, seed=0), "base": base}


def _models(gallery):
    with open(os.path.join(gallery, "gallery.json"), encoding="utf-8") as fh:
        return {m["name"]: m["count"] for m in json.load(fh)["models"]}


def test_enroll_keeps_the_users_files_in_the_gallery_folder(data, tmp_path):
    g = tmp_path / "g"
    r = invoke("enroll", g, "--model", "alpha", os.path.join(data["train"], "alpha"), "-q")
    assert r.exit_code == 0, r.output
    (g / "README.txt").write_text("my notes")
    (g / "results").mkdir()
    (g / "results" / "run1.csv").write_text("a,b\n")
    r = invoke("enroll", g, "--model", "beta", os.path.join(data["train"], "beta"), "-q")
    assert r.exit_code == 0, r.output
    assert (g / "README.txt").read_text() == "my notes"
    assert (g / "results" / "run1.csv").read_text() == "a,b\n"
    assert set(_models(g)) == {"alpha", "beta"}
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".g.")], "a temporary was left beside"


def test_zoo_build_refuses_to_replace_a_zoo_without_overwrite(tmp_path):
    out = tmp_path / "zoo"
    (out / "train" / "real").mkdir(parents=True)
    (out / "train" / "real" / "00000.png").write_bytes(b"png")
    (out / "zoo.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    r = run_cli("zoo", "build", out, "--preset", "tiny", "--device", "cpu", "-q")
    assert r.returncode == 2, r.stderr
    assert "--overwrite" in r.stderr and "Traceback" not in r.stderr
    assert (out / "notes.txt").read_text() == "mine" and (out / "train" / "real" / "00000.png").exists()


def test_zoo_overwrite_removes_only_the_zoos_files(tmp_path):
    from fpfast.zoo.build import prepare_out
    out = tmp_path / "zoo"
    (out / "train" / "real").mkdir(parents=True)
    (out / "train" / "real" / "00000.png").write_bytes(b"png")
    (out / "train" / "real" / "model.json").write_text("{}")
    (out / "train" / "real" / "mine.txt").write_text("mine")
    (out / "zoo.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    prepare_out(out, overwrite=True)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "notes.txt", "train", "train/real", "train/real/mine.txt"]


def test_concurrent_enrolls_lose_no_model(data, tmp_path):
    g = tmp_path / "g"
    r = invoke("enroll", g, "--model", "alpha", os.path.join(data["train"], "alpha"), "-q")
    assert r.exit_code == 0, r.output
    procs = [subprocess.Popen(fpfast_cmd("enroll", g, "--model", m, os.path.join(data["train"], m), "-q"),
                              cwd=ROOT, env=sub_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for m in ("beta", "gamma")]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert set(_models(g)) == {"alpha", "beta", "gamma"}


def test_a_failed_enroll_leaves_no_gallery_and_an_old_one_as_it_was(data, tmp_path):
    g = tmp_path / "g"
    one = tmp_path / "one"  # a single image: the normaliser's fit fails after fingerprinting
    one.mkdir()
    first = sorted(os.listdir(os.path.join(data["train"], "alpha")))[0]
    shutil.copy(os.path.join(data["train"], "alpha", first), one / first)
    r = run_here("enroll", g, "--model", "alpha", one, "-q")
    assert r.returncode == 2 and "at least 2 vectors" in r.stderr, r.stderr
    assert not g.exists(), os.listdir(g)
    r = invoke("enroll", g, "--model", "alpha", os.path.join(data["train"], "alpha"), "-q")
    assert r.exit_code == 0, r.output
    before = {f: (g / f).read_bytes() for f in os.listdir(g) if f != ".fpfast.lock"}
    r = run_here("enroll", g, "--model", "beta", os.path.join(data["train"], "beta"), "--normalize", "lda",
                "--spec", "npr", "-q")  # another spec: refused
    assert r.returncode == 2, r.stderr
    assert {f: (g / f).read_bytes() for f in os.listdir(g) if f != ".fpfast.lock"} == before


def test_gallery_files_follow_the_umask(data, tmp_path):
    g = tmp_path / "g"
    old = os.umask(0o022)
    try:
        r = run_here("enroll", g, "--model", "alpha", os.path.join(data["train"], "alpha"), "-q")
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(g).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(g / "vectors.npy").st_mode) == 0o644


def test_enroll_warns_below_the_minimum_and_skips_images_enrolled_already(data, tmp_path):
    g = tmp_path / "g"
    two = [os.path.join(data["train"], "alpha", f"00{i}.png") for i in (0, 1)]
    r = run_here("enroll", g, "--model", "alpha", *two)
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr and "calibration" in r.stderr
    folder = os.path.join(data["train"], "beta")
    assert run_here("enroll", g, "--model", "beta", folder).returncode == 0
    n = _models(g)["beta"]
    r = run_here("enroll", g, "--model", "beta", folder)
    assert r.returncode == 0, r.stderr
    assert _models(g)["beta"] == n
    assert "6 image(s) skipped, already enrolled" in r.stderr


@pytest.mark.parametrize("name", ["../evil", "a/b", ".."])
def test_model_names_that_are_paths_are_refused(data, tmp_path, name):
    r = invoke("enroll", tmp_path / "g", "--model", name, os.path.join(data["train"], "alpha"), "-q")
    assert r.exit_code == 2 and "model name" in r.output
