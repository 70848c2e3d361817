"""``--engine ray`` (issue 17): the same rows as the local engine, every input once, through a
killed Ray worker and a killed driver. One local Ray (2 CPUs, a 200 MB object store) serves the
module; the inputs are a few dozen 32 px images."""
from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

from cli_helpers import ROOT, build_gallery, invoke, model_image  # noqa: E402
from fpfast.io.writers import MANIFEST, read_rows  # noqa: E402

TESTS = os.path.join(ROOT, "tests")
SHARD = 5


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray for this module; its workers import fpfast and tests/_ray_faults.py."""
    if shutil.disk_usage(tempfile.gettempdir()).free < 2 * 2**30:
        pytest.skip("Ray needs ~2 GB free in the temp directory for its session and object spill files")
    os.environ["PYTHONPATH"] = os.pathsep.join([ROOT, TESTS, os.environ.get("PYTHONPATH", "")])
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A gallery, a folder of test images, a folder of broken inputs and a tar shard of images."""
    d = build_gallery(tmp_path_factory, n_train=8, n_test=4)
    bad = d["base"] / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    (bad / "text.jpg").write_bytes(b"not an image at all")
    buf = io.BytesIO()
    Image.fromarray(model_image(3, 77)).save(buf, format="JPEG", quality=90)
    (bad / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    tar = d["base"] / "shard.tar"
    with tarfile.open(tar, "w") as tf:
        for i, period in enumerate((2, 3, 5, 2, 3)):
            b = io.BytesIO()
            Image.fromarray(model_image(period, 500 + i)).save(b, format="PNG")
            info = tarfile.TarInfo(f"{i:03d}.png")
            info.size = len(b.getvalue())
            tf.addfile(info, io.BytesIO(b.getvalue()))
    d["sources"] = [d["test"], str(bad), str(tar)]
    d["n_inputs"] = d["n_test"] + 3 + 5
    return d


def assert_same_rows(a: list[dict], b: list[dict]) -> None:
    """Same inputs in the same order, same errors and models; floats within 1e-5 relative (the
    same code on the same machine: they should agree to the bit, the margin is for BLAS threads)."""
    assert [r["path"] for r in a] == [r["path"] for r in b]
    for x, y in zip(a, b):
        assert set(x) == set(y)
        for k, v in x.items():
            if isinstance(v, float) and not (math.isnan(v) and math.isnan(y[k])):
                assert math.isclose(v, y[k], rel_tol=1e-5, abs_tol=1e-6), (x["path"], k, v, y[k])
            elif isinstance(v, np.ndarray):
                np.testing.assert_allclose(v, y[k], rtol=1e-5, atol=1e-6)
            elif not isinstance(v, float):
                assert v == y[k], (x["path"], k, v, y[k])


def attribute(data, out, *extra):
    return invoke("attribute", *data["sources"], "-g", data["gallery"], "-o", out, "--shard-size", SHARD,
                  "--quiet", *extra)


@pytest.fixture(scope="module")
def local_rows(data):
    out = str(data["base"] / "local")
    r = attribute(data, out)
    assert r.exit_code == 3, r.output  # the broken inputs are error rows
    return read_rows(out)


def test_ray_attribute_rows_equal_local_engine(ray_address, data, local_rows, tmp_path):
    out = str(tmp_path / "ray")
    r = attribute(data, out, "--engine", "ray")
    assert r.exit_code == 3, r.output
    rows = read_rows(out)
    assert_same_rows(local_rows, rows)
    paths = [x["path"] for x in rows]
    assert len(paths) == len(set(paths)) == data["n_inputs"]      # every input exactly once
    errors = {os.path.basename(x["path"]) for x in rows if x["error"]}
    assert errors == {"empty.png", "text.jpg", "truncated.jpg"}
    def manifest(d):  # header, then one line per shard in the order shards completed (Ray: any order)
        lines = open(os.path.join(d, MANIFEST)).read().splitlines()
        return lines[0], sorted(lines[1:])
    assert manifest(out) == manifest(data["base"] / "local")  # same shards, keys, counts


def test_ray_extract_rows_equal_local_engine(ray_address, data, tmp_path):
    args = ("extract", data["test"], "--spec", "default", "--shard-size", SHARD, "--quiet")
    assert invoke(*args, "-o", tmp_path / "local").exit_code == 0
    r = invoke(*args, "-o", tmp_path / "ray", "--engine", "ray", "--ray-actors", "1")
    assert r.exit_code == 0, r.output
    assert_same_rows(read_rows(str(tmp_path / "local")), read_rows(str(tmp_path / "ray")))


def test_ray_worker_killed_mid_run_loses_and_duplicates_nothing(ray_address, data, local_rows, tmp_path):
    from _ray_faults import dying_recipe
    from fpfast.engines.ray_engine import RayOptions, precomputed, ray_decode_stage
    from fpfast.gallery import Gallery
    from fpfast.jobs.options import StreamOptions
    from fpfast.jobs.recipes import attribute_recipe
    from fpfast.jobs.schema import attribute_schema
    from fpfast.pipeline import run
    g = Gallery.load(data["gallery"])
    marker = str(tmp_path / "died")
    victim = sorted(os.listdir(os.path.join(data["test"], "gamma")))[1]
    recipe = dying_recipe(attribute_recipe(g.path, StreamOptions()), marker,
                          os.path.join(data["test"], "gamma", victim))
    stage = ray_decode_stage(recipe, g.spec, RayOptions(block_rows=2))
    out = str(tmp_path / "out")
    summary = run(data["sources"], precomputed, out, spec=g.spec, shard_size=SHARD, schema=attribute_schema(3),
                  decode_stage=stage, quiet=True)
    assert os.path.exists(marker), "the worker was not killed: the test proves nothing"
    assert (summary.ok, summary.errors) == (data["n_inputs"] - 3, 3)
    assert_same_rows(local_rows, read_rows(out))


def test_ray_driver_killed_then_resume_equals_uninterrupted_run(ray_address, data, local_rows, tmp_path):
    out = str(tmp_path / "out")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, os.path.join(TESTS, "_ray_faults.py"), out, data["gallery"],
                             ray_address, str(SHARD), *data["sources"]], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest = os.path.join(out, MANIFEST)
    deadline = time.monotonic() + 240
    done = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if os.path.exists(manifest):
                done = sum(1 for line in open(manifest) if '"shard"' in line)
                if done >= 1:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, f"the driver ended before it could be killed: {proc.stderr.read()[-2000:]}"
        assert done >= 1, "no shard was written in time"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    shards = -(-data["n_inputs"] // SHARD)
    finished = [json.loads(line)["shard"] for line in open(manifest) if '"shard"' in line]
    assert 1 <= len(finished) < shards, "killed after every shard was written: the test proves nothing"
    r = invoke("attribute", *data["sources"], "-g", data["gallery"], "-o", out, "--shard-size", SHARD,
               "--resume", "--engine", "ray")
    assert r.exit_code == 3, r.output
    assert f"{len(finished) * SHARD} skipped" in r.stderr
    assert_same_rows(local_rows, read_rows(out))


def test_ray_decode_cuda_without_gpu_actors_is_one_clear_line(ray_address, data, tmp_path):
    """``--decode cuda`` is checked for the actors, not on the driver: on a cluster whose actors get
    no GPU (this one) it is a usage error (exit 2) saying so, before any actor starts."""
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine's Ray has GPUs: the actors get one")
    r = invoke("extract", data["test"], "--spec", "default", "-o", tmp_path / "x", "--quiet", "--engine", "ray",
               "--decode", "cuda")
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "fpfast: error: --decode cuda: the Ray actors get no GPU (the cluster has none); use --decode cpu"), r.output
