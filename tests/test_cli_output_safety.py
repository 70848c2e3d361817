"""Where an output may go, and file-system faults as one clear line (issue 13, items 8 and 12):
an unrelated non-empty directory, an input folder, the gallery, `-` and unknown suffixes are
refused before anything is written; a read-only or full file system, a file where a directory
should be and /sys end with exit 2 and one line naming the path and the cause, nothing
half-written left behind."""
import os
import shutil
import subprocess

import pytest

from cli_helpers import ROOT, build_gallery, fpfast_cmd, invoke, run_cli, run_here, sub_env


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    return build_gallery(tmp_path_factory, n_train=6, n_test=2)


def one_line_error(r, *words):
    err = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("warning:")]
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(err) == 1, r.stderr
    for w in words:
        assert w in err[0], err[0]


def test_an_unrelated_non_empty_directory_is_refused(g, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = invoke("attribute", g["test"], "-g", g["gallery"], "-o", out, "-q")
    assert r.exit_code == 2 and "not an fpfast output" in r.output
    assert os.listdir(out) == ["notes.txt"]


@pytest.mark.parametrize("where", ["input", "inside_input", "gallery"])
def test_an_output_inside_an_input_or_the_gallery_is_refused(g, where):
    out = {"input": g["test"], "inside_input": os.path.join(g["test"], "alpha", "res"),
           "gallery": os.path.join(g["gallery"], "res.parquet")}[where]
    before = sorted(os.listdir(os.path.dirname(out)))
    r = invoke("attribute", g["test"], "-g", g["gallery"], "-o", out, "-q")
    assert r.exit_code == 2 and "inside" in r.output, r.output
    assert sorted(os.listdir(os.path.dirname(out))) == before


@pytest.mark.parametrize("out", ["-", "res.txt", "res.json"])
def test_unknown_output_suffixes_are_usage_errors_listing_the_accepted_ones(g, tmp_path, out):
    r = invoke("attribute", g["test"], "-g", g["gallery"], "-o", out if out == "-" else tmp_path / out, "-q")
    assert r.exit_code == 2, r.output
    assert ".parquet" in r.output and ".jsonl" in r.output
    assert os.listdir(tmp_path) == []


def test_a_second_run_into_the_same_output_is_refused_while_the_first_runs(g, tmp_path):
    from fpfast.io.lock import exclusive, lock_path
    out = tmp_path / "o"
    out.mkdir()
    proc = subprocess.Popen(["python3", "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
                             "from fpfast.io.lock import exclusive, lock_path\n"
                             "with exclusive(lock_path(sys.argv[2]), 'x'):\n print('held', flush=True); time.sleep(60)",
                             ROOT, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        r = run_here("attribute", g["test"], "-g", g["gallery"], "-o", out, "-q")
        one_line_error(r, str(out), "in use by pid")
    finally:
        proc.kill()
        proc.wait()
    with exclusive(lock_path(out), "x", wait=False):  # the holder died: the lock is free
        pass


def test_a_file_where_a_folder_should_be_and_sys_are_one_line_errors(g, tmp_path):
    (tmp_path / "afile").write_text("x")
    r = run_here("attribute", g["test"], "-g", g["gallery"], "-o", tmp_path / "afile" / "res.parquet", "-q")
    one_line_error(r, "afile")
    r = run_here("attribute", g["test"], "-g", g["gallery"], "-o", "/sys/fpfast-res.parquet", "-q")
    one_line_error(r, "/sys")
    r = run_here("enroll", tmp_path / "afile" / "g", "--model", "a", os.path.join(g["test"], "alpha"), "-q")
    one_line_error(r, "afile")


def test_zoo_build_into_a_folder_that_is_not_a_zoo_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    r = run_here("zoo", "build", tmp_path, "-q")
    one_line_error(r, str(tmp_path), "not a zoo")


def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"],
                       capture_output=True)
    return r.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="cannot mount a tmpfs in a private namespace here")


def in_tmpfs(mount_opts: str, d, *args) -> tuple[subprocess.CompletedProcess, list[str]]:
    """``fpfast ARGS`` with a fresh tmpfs (``mount_opts``) mounted at ``d`` in a private mount
    namespace; returns the run and what the tmpfs held afterwards."""
    cmd = " ".join(f"'{a}'" for a in fpfast_cmd(*args))
    script = (f"mount -t tmpfs -o {mount_opts} tmpfs '{d}' || exit 99; cd '{ROOT}'; {cmd}; rc=$?; "
              f"echo '@@'; find '{d}' -mindepth 1 -printf '%P\\n'; exit $rc")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], env=sub_env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 99, r.stderr
    r.stdout, _, listing = r.stdout.partition("@@\n")
    return r, sorted(listing.split())


@needs_mount
def test_read_only_file_system_is_one_line(g, tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    r, left = in_tmpfs("ro,size=64k", d, "attribute", g["test"], "-g", g["gallery"], "-o", d / "res.parquet", "-q")
    one_line_error(r, str(d), "read-only")
    assert left == []


@needs_mount
def test_full_disk_is_one_line_and_leaves_nothing_half_written(g, tmp_path):
    d = tmp_path / "full"
    d.mkdir()
    r, left = in_tmpfs("size=4k", d, "attribute", g["test"], "-g", g["gallery"], "-o", d / "res.parquet", "-q")
    one_line_error(r, "disk is full")
    assert not [f for f in left if f.endswith(".tmp")], left


@needs_mount
def test_enroll_on_a_full_disk_is_one_line_and_leaves_no_gallery(g, tmp_path):
    d = tmp_path / "full"
    d.mkdir()
    r, left = in_tmpfs("size=4k", d, "enroll", d / "g", "--model", "alpha", os.path.join(g["test"], "alpha"), "-q")
    one_line_error(r, str(d / "g"), "disk is full")
    assert left == [], left
