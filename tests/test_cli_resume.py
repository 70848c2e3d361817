"""A real `python -m fpfast attribute` killed with SIGKILL mid-run, then `--resume`: the rows
equal those of an uninterrupted run (same paths, each exactly once, same answers)."""
import json
import os
import signal
import subprocess
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from cli_helpers import ROOT, build_gallery, fpfast_cmd, invoke, make_folders, run_cli, sub_env

N_PER_MODEL = 50  # 150 inputs, 30 shards of 5: a few seconds at --batch-size 1


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    g = build_gallery(tmp_path_factory, n_train=6, n_test=1)
    g["many"] = make_folders(g["base"] / "many", N_PER_MODEL, seed=7)
    g["n_many"] = 3 * N_PER_MODEL
    return g


def finished_shards(out) -> int:
    try:
        with open(os.path.join(out, "_manifest.jsonl"), encoding="utf-8") as fh:
            lines = [ln for ln in fh.read().splitlines() if ln.strip()]
    except FileNotFoundError:
        return 0
    return max(0, len(lines) - 1)  # the first line is the header


def rows_by_path(out) -> dict:
    rows = pq.read_table(str(out)).to_pylist()
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)), "a row was duplicated"
    return {r["path"]: r for r in rows}


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_then_resume_gives_the_rows_of_an_uninterrupted_run(g, tmp_path):
    args = ["attribute", g["many"], "-g", g["gallery"], "--shard-size", "5", "--batch-size", "1", "-q"]
    ref = tmp_path / "ref"
    r = invoke(*args, "-o", ref)
    assert r.exit_code == 0, r.output
    want = rows_by_path(ref)
    assert len(want) == g["n_many"]

    out = tmp_path / "killed"
    proc = subprocess.Popen(fpfast_cmd(*args, "-o", out), cwd=ROOT, env=sub_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while finished_shards(out) < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
        assert finished_shards(out) >= 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = finished_shards(out)
    assert 1 <= done < g["n_many"] // 5, done

    # without --resume the interrupted run is not silently replaced or appended to
    r = invoke(*args, "-o", out)
    assert r.exit_code == 2 and "--resume" in r.output, r.output

    r = run_cli(*[a for a in args if a != "-q"], "-o", out, "--resume")
    assert r.returncode == 0, r.stderr
    assert f"{done * 5} skipped" in r.stderr, r.stderr  # finished shards are not redone
    got = rows_by_path(out)
    assert set(got) == set(want)
    for p, row in want.items():
        assert got[p]["model"] == row["model"] and got[p]["error"] is None
        assert got[p]["top1_model"] == row["top1_model"]
        np.testing.assert_allclose(got[p]["distance"], row["distance"], rtol=1e-4)
    # output order is input order
    assert [r["path"] for r in pq.read_table(str(out)).to_pylist()] == \
           [r["path"] for r in pq.read_table(str(ref)).to_pylist()]
    # the manifest now lists every shard exactly once
    with open(out / "_manifest.jsonl", encoding="utf-8") as fh:
        entries = [json.loads(ln) for ln in fh.read().splitlines()[1:] if ln.strip()]
    assert len(entries) == g["n_many"] // 5


def test_resume_of_a_finished_run_is_a_no_op(g, tmp_path):
    out = tmp_path / "o"
    # shards of 1: all full (a partial last shard is redone on resume, by design: the sources may have grown)
    args = ["attribute", g["test"], "-g", g["gallery"], "-o", out, "--shard-size", "1"]
    assert invoke(*args, "-q").exit_code == 0
    before = pq.read_table(out).to_pylist()
    r = invoke(*args, "--resume")
    assert r.exit_code == 0, r.output
    assert "0 ok" in r.stderr and f"{len(before)} skipped" in r.stderr
    assert repr(pq.read_table(out).to_pylist()) == repr(before)  # repr: nan == nan


def test_resume_with_another_configuration_is_refused(g, tmp_path):
    out = tmp_path / "o"
    assert invoke("attribute", g["test"], "-g", g["gallery"], "-o", out, "-q", "-k", "3").exit_code == 0
    r = invoke("attribute", g["test"], "-g", g["gallery"], "-o", out, "-q", "-k", "5", "--resume")
    assert r.exit_code == 2 and "fpfast: error:" in r.output


def test_resume_with_a_changed_gallery_is_refused(g, tmp_path):
    """The rows already written came from the gallery as it was; a gallery recalibrated (or
    re-enrolled) since would answer the rest differently, so resuming is refused and says why."""
    import shutil
    from fpfast.gallery import Gallery
    gal = tmp_path / "gal"
    shutil.copytree(g["gallery"], gal)
    out = tmp_path / "o"
    args = ["attribute", g["test"], "-g", gal, "-o", out, "-q", "--shard-size", "1"]
    assert invoke(*args).exit_code == 0
    assert invoke(*args, "--resume").exit_code == 0          # unchanged: resumes (a no-op here)
    h = Gallery.load(str(gal))
    h.recalibrate(frr=0.2)
    h.save()
    r = invoke(*args, "--resume")
    assert r.exit_code == 2 and "gallery_digest" in r.output, r.output
