"""Decode workers and their forkserver die with the run: after `kill -9` of `attribute
--workers 2` no process of the run is left (issue 13, item 5)."""
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from cli_helpers import ROOT, build_gallery, fpfast_cmd, make_folders, sub_env


def tagged(tag: str) -> list[int]:
    """Pids of the processes whose environment holds ``tag``."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if tag.encode() in fh.read():
                    with open(f"/proc/{pid}/stat", "rb") as st:
                        if st.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                            out.append(int(pid))
        except OSError:
            pass
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_and_forkserver_die_with_a_killed_run(tmp_path_factory, tmp_path):
    g = build_gallery(tmp_path_factory, n_train=6, n_test=1)
    src = make_folders(tmp_path / "many", 60, seed=3)
    tag = f"FPFAST_TEST_TAG={uuid.uuid4().hex}"
    env = dict(sub_env(), FPFAST_TEST_TAG=tag.split("=", 1)[1])
    proc = subprocess.Popen(fpfast_cmd("attribute", src, "-g", g["gallery"], "-o", tmp_path / "o", "--workers", "2",
                                       "--batch-size", "1", "--shard-size", "5", "-q"),
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(tagged(tag)) < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the run, the forkserver and two workers (and the resource tracker)
        assert proc.poll() is None and len(tagged(tag)) >= 4, "the workers never started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 20
        while tagged(tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = tagged(tag)
    finally:
        for pid in tagged(tag):  # a failing run must not leave them behind either
            os.kill(pid, signal.SIGKILL)
    assert left == [], f"processes of the killed run still running: {left}"
