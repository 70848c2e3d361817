"""`--help`, `info`, and usage/config errors: exit 2 with a message that says what to do."""
import json
import os

import pytest

from cli_helpers import build_gallery, invoke

COMMANDS = [["demo"], ["enroll"], ["attribute"], ["extract"], ["search"], ["eval"], ["info"], ["bench"],
            ["zoo", "build"], ["manifold", "build"]]


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    return build_gallery(tmp_path_factory, n_train=6, n_test=2)


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_help_exits_0_and_shows_an_example(cmd):
    r = invoke(*cmd, "--help")
    assert r.exit_code == 0, r.output
    assert "Example" in r.output
    assert r.output.startswith("Usage: ")


def test_top_level_help_and_version():
    r = invoke("--help")
    assert r.exit_code == 0 and "fpfast demo" in r.output
    for name in ("demo", "enroll", "attribute", "extract", "search", "eval", "info", "bench", "zoo", "manifold"):
        assert name in r.output
    r = invoke("--version")
    assert r.exit_code == 0 and "fpfast" in r.output


def test_info_text_and_json():
    r = invoke("info")
    assert r.exit_code == 0 and r.output.strip()
    r = invoke("info", "--json")
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    assert isinstance(d, dict) and d
    import fpfast
    assert fpfast.__version__ in r.stdout


def assert_usage(r, *needles):
    assert r.exit_code == 2, (r.exit_code, r.output)
    for n in needles:
        assert n in r.output, (n, r.output)


def test_unknown_backend(g, tmp_path):
    r = invoke("attribute", g["test"], "-g", g["gallery"], "-o", tmp_path / "o.csv", "--backend", "nope")
    assert_usage(r, "--backend", "auto")
    assert not os.path.exists(tmp_path / "o.csv")


@pytest.mark.parametrize("cmd", ["attribute", "extract", "search", "enroll", "eval"])
def test_backend_cuda_without_a_gpu_is_a_usage_error_and_leaves_nothing(g, tmp_path, cmd):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "o.csv"
    args = {"attribute": ["attribute", g["test"], "-g", g["gallery"], "-o", out],
            "extract": ["extract", g["test"], "-o", tmp_path / "ex"],
            "search": ["search", os.path.join(g["test"], "alpha", "000.png"), "-g", g["gallery"]],
            "enroll": ["enroll", tmp_path / "newg", "--from-folders", g["train"]],
            "eval": ["eval", g["gallery"], "--from-folders", g["test"], "-o", tmp_path / "ev"]}[cmd]
    r = invoke(*args, "--backend", "cuda")
    assert_usage(r, "cuda backend unavailable", "fpfast info", "--backend auto")
    # nothing was opened: the same command with a usable backend runs without --overwrite/--resume
    assert sorted(os.listdir(tmp_path)) == ([] if cmd != "enroll" else sorted(os.listdir(tmp_path)))
    if cmd == "attribute":
        r = invoke(*args, "--quiet")
        assert r.exit_code == 0, r.output


def test_device_cuda_without_a_gpu(g, tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = invoke("attribute", g["test"], "-g", g["gallery"], "-o", tmp_path / "o.csv", "--device", "cuda")
    assert_usage(r, "--device cuda", "--device cpu")


def test_attribute_missing_gallery(g, tmp_path):
    r = invoke("attribute", g["test"], "-g", tmp_path / "no_such_gallery", "-o", tmp_path / "o.csv")
    assert_usage(r, "--gallery", "does not exist")


def test_attribute_folder_that_is_not_a_gallery(g, tmp_path):
    (tmp_path / "empty").mkdir()
    r = invoke("attribute", g["test"], "-g", tmp_path / "empty", "-o", tmp_path / "o.csv")
    assert_usage(r, "fpfast: error:", "gallery")


@pytest.mark.parametrize("tamper", ["not json", "wrong count", "truncated vectors"])
def test_tampered_gallery(g, tmp_path, tamper):
    import shutil
    bad = tmp_path / "g"
    shutil.copytree(g["gallery"], bad)
    meta = bad / "gallery.json"
    if tamper == "not json":
        meta.write_text('{"models": ', encoding="utf-8")
    elif tamper == "wrong count":
        d = json.loads(meta.read_text(encoding="utf-8"))
        d["count"] = int(d["count"]) + 7
        meta.write_text(json.dumps(d), encoding="utf-8")
    else:
        v = bad / "vectors.npy"
        v.write_bytes(v.read_bytes()[:200])
    r = invoke("attribute", g["test"], "-g", bad, "-o", tmp_path / "o.csv")
    assert_usage(r, "fpfast: error:")
    assert "Traceback" not in r.output


@pytest.mark.parametrize("args", [[], ["--model", "x", "--from-folders", "TRAIN"]], ids=["neither", "both"])
def test_enroll_needs_exactly_one_of_model_and_from_folders(g, tmp_path, args):
    args = [g["train"] if a == "TRAIN" else a for a in args]
    r = invoke("enroll", tmp_path / "g", *args)
    assert_usage(r, "--model", "--from-folders")
    assert not os.path.exists(tmp_path / "g")


def test_enroll_model_without_sources_and_from_folders_with_sources(g, tmp_path):
    assert_usage(invoke("enroll", tmp_path / "g", "--model", "x"), "SOURCE")
    assert_usage(invoke("enroll", tmp_path / "g", "--from-folders", g["train"], g["test"]), "no SOURCE")


@pytest.mark.parametrize("out", ["o.parquet", "o.csv", "dir"])
def test_output_exists_without_resume_or_overwrite(g, tmp_path, out):
    out = tmp_path / out
    assert invoke("attribute", g["test"], "-g", g["gallery"], "-o", out, "-q").exit_code == 0
    r = invoke("attribute", g["test"], "-g", g["gallery"], "-o", out, "-q")
    assert_usage(r, "exists", "--resume", "--overwrite")
    assert invoke("attribute", g["test"], "-g", g["gallery"], "-o", out, "-q", "--overwrite").exit_code == 0
    assert_usage(invoke("attribute", g["test"], "-g", g["gallery"], "-o", out, "--resume", "--overwrite"),
                 "--resume", "--overwrite")


def test_extract_output_exists(g, tmp_path):
    out = tmp_path / "ex"
    assert invoke("extract", g["test"], "-o", out, "-q").exit_code == 0
    assert_usage(invoke("extract", g["test"], "-o", out, "-q"), "--resume", "--overwrite")


def test_glob_matching_nothing(g, tmp_path):
    r = invoke("attribute", str(tmp_path / "nothing" / "*.png"), "-g", g["gallery"], "-o", tmp_path / "o.csv")
    assert_usage(r, "fpfast: error:")


def test_bad_option_values(g, tmp_path):
    for opt in (["--batch-size", "0"], ["--max-pixels", "0"], ["-k", "0"], ["--shard-size", "0"]):
        r = invoke("attribute", g["test"], "-g", g["gallery"], "-o", tmp_path / "o.csv", *opt)
        assert_usage(r, opt[0])


def test_eval_and_search_with_a_missing_gallery(g, tmp_path):
    assert_usage(invoke("eval", tmp_path / "nope", "--from-folders", g["test"]), "does not exist")
    assert_usage(invoke("search", g["test"], "-g", tmp_path / "nope"), "does not exist")


def test_eval_root_without_model_folders(g, tmp_path):
    (tmp_path / "flat").mkdir()
    assert_usage(invoke("eval", g["gallery"], "--from-folders", tmp_path / "flat"), "sub-folders")


def test_enroll_failure_leaves_no_new_gallery_and_an_existing_one_untouched(g, tmp_path):
    import shutil
    root = tmp_path / "models"
    shutil.copytree(os.path.join(g["train"], "alpha"), root / "alpha")
    (root / "broken").mkdir()
    (root / "broken" / "x.png").write_bytes(b"x")
    r = invoke("enroll", tmp_path / "new", "--from-folders", root)
    assert_usage(r, "model 'broken'", "x.png", "fix or remove")
    assert not os.path.exists(tmp_path / "new")
    assert_usage(invoke("enroll", tmp_path / "new", "--model", "m", str(tmp_path / "none" / "*.png")), "no files match")
    assert not os.path.exists(tmp_path / "new")
    existing = tmp_path / "copy"
    shutil.copytree(g["gallery"], existing)
    before = (existing / "gallery.json").read_bytes()
    assert invoke("enroll", existing, "--from-folders", root).exit_code == 2
    assert (existing / "gallery.json").read_bytes() == before
