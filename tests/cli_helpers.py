"""Shared helpers of the tests/test_cli_*.py files: a synthetic 3-model folder set, a gallery
enrolled from it through the CLI, and CLI invocations (CliRunner or a real subprocess)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from click.testing import CliRunner
from PIL import Image

from fpfast.cli import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {"alpha": 2, "beta": 3, "gamma": 5}  # model name -> period of its grid pattern
SIZE = 32


def model_image(period: int, seed: int) -> np.ndarray:
    """A 32 px image of a 'model': noise plus a periodic grid whose period identifies the model."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    grid = ((xx % period == 0) | (yy % period == 0)) * 120.0
    base = rng.integers(0, 256, (SIZE, SIZE, 3)).astype(np.float32) * 0.3
    return np.clip(base + grid[..., None], 0, 255).astype(np.uint8)


def make_folders(root, n: int, seed: int = 0, models=MODELS) -> str:
    """root/<model>/<i>.png for every model; returns str(root)."""
    for m, period in models.items():
        d = os.path.join(root, m)
        os.makedirs(d, exist_ok=True)
        for i in range(n):
            Image.fromarray(model_image(period, seed * 100_000 + period * 1000 + i)).save(os.path.join(d, f"{i:03d}.png"))
    return str(root)


def invoke(*args, **kw):
    """Run the CLI in-process; ``catch_exceptions=False`` so a crash fails the test with its traceback."""
    kw.setdefault("catch_exceptions", False)
    return CliRunner().invoke(cli, [str(a) for a in args], **kw)


def fpfast_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "fpfast", *[str(a) for a in args]]


def sub_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """The CLI as a user runs it: a real process (``python -m fpfast``) from the repository root."""
    return subprocess.run(fpfast_cmd(*args), cwd=ROOT, env=sub_env(), capture_output=True, text=True,
                          timeout=timeout)


def build_gallery(tmp_path_factory, n_train: int = 12, n_test: int = 4) -> dict:
    """Train/test folders of the three models and a gallery enrolled from train via the CLI."""
    base = tmp_path_factory.mktemp("cli")
    train = make_folders(base / "train", n_train, seed=0)
    test = make_folders(base / "test", n_test, seed=1)
    gallery = str(base / "gallery")
    r = invoke("enroll", gallery, "--from-folders", train, "--spec", "default", "--quiet")  # handcrafted
    assert r.exit_code == 0, r.output
    return {"base": base, "train": train, "test": test, "gallery": gallery,
            "n_test": n_test * len(MODELS)}


def run_here(*args) -> subprocess.CompletedProcess:
    """The CLI in this process with :func:`run_cli`'s result (returncode, stdout, stderr): for
    tests whose fault needs no process of its own (faster: torch is imported once)."""
    r = invoke(*args)
    return subprocess.CompletedProcess([str(a) for a in args], r.exit_code, r.stdout, r.stderr)
