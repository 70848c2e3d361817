"""Issue 19: progress on and off a terminal, stage timing, the terminal confusion matrix, search's
machine-readable output, and messages that point the right way."""
import io
import json
import os
import re
import select
import shutil
import subprocess

import numpy as np
import pytest

from cli_helpers import MODELS, ROOT, build_gallery, fpfast_cmd, invoke, sub_env


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    return build_gallery(tmp_path_factory)


def _run_on_pty(cmd, env) -> tuple[int, str]:
    """Run ``cmd`` with its stderr on a pseudo-terminal; (exit code, what the terminal got)."""
    import fcntl
    import struct
    import termios
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 24 x 120, as a terminal has
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    got = b""
    try:
        while True:
            r, _, _ = select.select([master], [], [], 120)
            if not r:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            got += chunk
    finally:
        os.close(master)
    return p.wait(timeout=120), got.decode("utf-8", "replace")


def test_attribute_bar_on_a_terminal_and_status_line_off_one(g, tmp_path):
    n = g["n_test"]
    env = sub_env()
    rc, tty = _run_on_pty(fpfast_cmd("attribute", g["test"], "--gallery", g["gallery"], "--out",
                                     tmp_path / "a.parquet"), env)
    print(tty)
    assert rc == 0, tty
    assert f"{n}/{n}" in tty and "100%|" in tty and "img/s" in tty  # a bar with its total (counted up front)
    assert re.search(r"Stages: read [\d.]+s, decode [\d.]+s, .* map [\d.]+s, write [\d.]+s", tty), tty  # the run's stages
    env["FPFAST_STATUS_INTERVAL"] = "0"  # a status line at every update, so that a short run shows one
    r = subprocess.run(fpfast_cmd("attribute", g["test"], "--gallery", g["gallery"], "--out",
                                  tmp_path / "b.parquet"), cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    print(r.stderr)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("images: ")]
    assert lines and f"{n}/{n} img (100%)" in lines[-1] and "img/s" in lines[-1], r.stderr
    assert "\r" not in r.stderr and "|" not in r.stderr  # no bar drawn into a log
    q = subprocess.run(fpfast_cmd("attribute", g["test"], "--gallery", g["gallery"], "--out",
                                  tmp_path / "c.parquet", "--quiet"), cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert q.returncode == 0 and q.stderr == "", q.stderr


def test_status_line_of_training_has_epochs_loss_and_eta(monkeypatch):
    from fpfast.progress import Progress, Stages
    monkeypatch.setenv("FPFAST_STATUS_INTERVAL", "0")
    buf = io.StringIO()  # not a terminal
    with Progress("training", 4, unit="epoch", stream=buf) as bar:
        for loss in (2.0, 1.5, 1.0, 0.5):
            bar.update(1, loss=loss)
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("training: 1/4 epoch (25%)") and "ETA" in lines[0] and "loss 2" in lines[0]
    assert "4/4 epoch (100%)" in lines[-1] and "loss 0.5" in lines[-1]
    quiet = io.StringIO()
    with Progress("training", 4, stream=quiet, quiet=True) as bar:
        bar.update(4)
    assert quiet.getvalue() == ""
    monkeypatch.setenv("FPFAST_STATUS_INTERVAL", "10")
    short = io.StringIO()
    with Progress("x", 4, stream=short) as bar:  # a run shorter than the interval: silent
        bar.update(4)
    assert short.getvalue() == ""
    st = Stages()
    with st("read"):
        pass
    with st("read"):
        pass
    st.add("train", 2.0)
    assert st.line().startswith("timing: read 0.0s, train 2.0s; total ")


def test_enroll_and_eval_end_with_stage_timing(g, tmp_path):
    r = invoke("enroll", tmp_path / "g2", "--from-folders", g["train"], "--spec", "default")
    assert r.exit_code == 0 and "timing: fingerprint" in r.output and "calibrate" in r.output, r.output
    r = invoke("eval", g["gallery"], "--from-folders", g["test"], "--out", tmp_path / "ev")
    assert r.exit_code == 0 and "timing: fingerprint" in r.output and "metrics" in r.output, r.output
    for name in MODELS:  # full names in the matrix
        assert f"\n{name} " in r.output


TIMING = re.compile(r"^timing: (.+); total [\d.]+s$", re.M)


def timing_stages(output: str) -> list[str]:
    """The stage names of the one ``timing:`` line that ends a command."""
    lines = TIMING.findall(output)
    assert len(lines) == 1, output
    return [part.rsplit(" ", 1)[0] for part in lines[0].split(", ")]


def test_train_zoo_build_and_manifold_build_end_with_a_timing_line(g, tmp_path, monkeypatch):
    """The ``timing:`` line of issue 19 (enroll and eval above, demo in test_cli_demo.py), and not
    with --quiet."""
    gallery = tmp_path / "g"
    shutil.copytree(g["gallery"], gallery)
    r = invoke("train", gallery, "--from-folders", g["train"], "--epochs", "1", "--dim", "8", "--patch", "16",
               "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert timing_stages(r.output) == ["read", "train", "re-enroll"]

    import fpfast.zoo

    def fake_build(out, stages=None, **kw):  # the zoo's own stages, without training its models here
        stages.add("photos", 0.5)
        stages.add("gan", 1.5)
        return {"preset": "tiny", "seed": 0, "build_seconds": 1.75}
    monkeypatch.setattr(fpfast.zoo, "build_zoo", fake_build)
    r = invoke("zoo", "build", tmp_path / "zoo")
    assert r.exit_code == 0, r.output
    assert timing_stages(r.output) == ["photos", "gan"] and "photos 0.5s, gan 1.5s" in r.output
    assert "timing:" not in invoke("zoo", "build", tmp_path / "zoo", "--quiet").output

    r = invoke("manifold", "build", os.path.join(g["train"], "alpha"), "--out", tmp_path / "ref", "--size", "32")
    assert r.exit_code == 0, r.output
    stages = timing_stages(r.output)
    assert stages[0] == "read" and len(stages) > 1 and all(s.startswith("index ") for s in stages[1:])


def test_confusion_matrix_keeps_full_model_names():
    from fpfast.cli.evaluate import format_confusion
    labels = ["ae_tcon_nearest", "ae_tcon_bilinear", "ae_tcon_pixelshuffle", "gan_dcgan", "unknown"]
    cm = np.arange(25).reshape(5, 5) * 7
    wide = format_confusion(labels, cm, width=200)
    print("\n".join(wide))
    header = wide[1]
    assert all(name in header for name in labels)  # every full name as a column header
    assert [ln.split()[0] for ln in wide[2:]] == labels
    narrow = format_confusion(labels, cm, width=60)
    print("\n".join(narrow))
    assert narrow[1].split() == ["1", "2", "3", "4", "5"]  # numbered columns ...
    for i, name in enumerate(labels, 1):  # ... and the rows are the legend, with the full names
        assert narrow[i + 1].split()[:2] == [str(i), name]
        assert [int(v) for v in narrow[i + 1].split()[2:]] == list(cm[i - 1])
    assert max(len(ln) for ln in narrow[1:]) <= 60


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_search_formats_in_input_order_with_errors_in_place(g, tmp_path, fmt):
    import csv
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    a, b = (os.path.join(g["test"], m, "000.png") for m in ("beta", "alpha"))
    out = tmp_path / f"hits.{fmt}"
    r = invoke("search", a, bad, b, "-g", g["gallery"], "-k", "2", "--format", fmt, "--out", out)
    assert r.exit_code == 3, r.output  # a query could not be read
    text = out.read_text(encoding="utf-8")
    if fmt == "json":
        recs = json.loads(text)
        assert [x["path"] for x in recs] == [a, str(bad), b]
        assert recs[0]["error"] is None and recs[2]["error"] is None and "not an image" in recs[1]["error"]
        assert len(recs[0]["neighbors"]) == 2 and recs[0]["models"][0]["model"] == "beta"
        assert recs[1]["neighbors"] == []
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [x["path"] for x in rows] == [a, a, str(bad), b, b]
        assert [x["rank"] for x in rows] == ["1", "2", "", "1", "2"] and rows[2]["error"]
    else:
        assert text.index(a) < text.index(str(bad)) < text.index(b)
    r = invoke("search", a, "-g", g["gallery"], "--format", fmt, "--out", out)
    assert r.exit_code == 2 and "--overwrite" in r.output  # an existing file is not replaced silently
    r = invoke("search", a, "-g", g["gallery"], "--format", "json", "-q")
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["error"] is None


def test_manifold_build_on_small_photos_names_size(tmp_path):
    from PIL import Image
    from fpfast.projectors.refset import ProjectorError, ReferenceSet, read_images
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    with pytest.raises(ProjectorError, match="--size"):
        read_images([str(tmp_path)], 64)
    with pytest.raises(ProjectorError, match="`fpfast manifold build`"):
        ReferenceSet(tmp_path)


def test_bench_markdown_names_its_csv(tmp_path):
    from fpfast import bench
    text = bench.render_markdown([], source="my_bench.csv")
    assert "`my_bench.csv`" in text and "kernels.csv" not in text
    assert "kernels.csv" not in bench.render_markdown([])


def test_demo_time_is_stated_identically():
    from fpfast.cli.demo import DEMO_TIME
    norm = lambda s: " ".join(s.split())
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    assert DEMO_TIME in readme.splitlines()[3]  # the comment above the first command
    assert DEMO_TIME in norm(invoke("--help").output)
    assert DEMO_TIME in norm(invoke("demo", "--help").output)


def test_status_line_while_a_long_step_runs(monkeypatch):
    """Off a terminal a step that gives no update for a while is not silent: the heartbeat prints
    the status line (elapsed time, what is being worked on)."""
    import time
    from fpfast.progress import Progress
    monkeypatch.setenv("FPFAST_STATUS_INTERVAL", "0.1")
    buf = io.StringIO()
    with Progress("zoo", 3, unit="model", stream=buf) as bar:
        bar.update(0, model="dcgan")
        for _ in range(3000):  # wait for a heartbeat line (without asserting on how long it took)
            if buf.getvalue():
                break
            time.sleep(0.01)
    first = buf.getvalue().splitlines()[0]
    assert first.startswith("zoo: 0/3 model (0%)") and "model dcgan" in first
    n = len(buf.getvalue())
    time.sleep(0.3)
    assert len(buf.getvalue()) == n  # closed: the heartbeat has stopped
