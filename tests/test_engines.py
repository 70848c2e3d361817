"""The engines without a Ray (issue 17): ``--engine ray`` without Ray is a usage error that says how
to install it, nothing but ``--engine ray`` imports Ray, and the Ray engine's bookkeeping (blocks,
each input's row once) on fakes. These run whether or not the ray extra is installed."""
from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

from cli_helpers import ROOT, invoke, sub_env

NO_RAY = "import sys; sys.modules['ray'] = None  # as if Ray were not installed\n"


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=sub_env(), capture_output=True,
                          text=True, timeout=300)


def test_engine_ray_without_ray_is_a_usage_error_saying_how_to_install(tmp_path):
    gallery = tmp_path / "g"
    gallery.mkdir()  # exists, so that click's own check passes and the engine check is what fails
    out = tmp_path / "out"
    r = python(NO_RAY + "from fpfast.cli import main\n"
               f"sys.argv = ['fpfast', 'attribute', {str(tmp_path)!r}, '-g', {str(gallery)!r}, "
               f"'-o', {str(out)!r}, '--engine', 'ray']\nmain()")
    assert r.returncode == 2, r.stderr
    assert "pip install 'fpfast[ray]'" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_importing_fpfast_and_running_the_cli_does_not_import_ray(tmp_path):
    img = tmp_path / "a.png"
    from PIL import Image
    Image.new("RGB", (32, 32), (10, 200, 30)).save(img)
    r = python("import sys, fpfast, fpfast.cli, fpfast.engines\n"
               "from click.testing import CliRunner\n"
               f"res = CliRunner().invoke(fpfast.cli.cli, ['extract', {str(img)!r}, '-o', {str(tmp_path / 'o')!r}, "
               "'--spec', 'default', '--quiet'])\n"
               "assert res.exit_code == 0, res.output\n"
               "assert CliRunner().invoke(fpfast.cli.cli, ['attribute', '--help']).exit_code == 0\n"
               "print('ray' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


@pytest.mark.parametrize("flags", [["--ray-address", "auto"], ["--verbose"], ["--ray-block-rows", "256"],
                                   ["--ray-actors", "2", "--verbose"]])
def test_ray_options_without_engine_ray_are_a_usage_error(tmp_path, flags):
    """Even ``--verbose`` and a block size equal to the default: they would do nothing."""
    r = invoke("extract", str(tmp_path), "-o", str(tmp_path / "o"), *flags)
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "--engine ray" in lines[0], r.output
    assert all(f in lines[0] for f in flags if f.startswith("--")), r.output  # names each one given
    assert not (tmp_path / "o").exists()


def test_the_driver_leaves_decode_cuda_to_the_actors():
    """A head node without a GPU can drive GPU actors: ``--decode cuda`` is not checked on the
    driver (this machine may have no GPU), the actor checks it where it runs."""
    from fpfast.engines import EngineOptions, ray_run_kw
    from fpfast.engines.ray_engine import MapActor
    from fpfast.jobs.options import StreamOptions
    from fpfast.jobs.recipes import vector_recipe
    from fpfast.spec import load_spec
    spec, opts = load_spec(None), StreamOptions(decode="cuda")
    kw = ray_run_kw(EngineOptions(engine="ray"), vector_recipe(spec, opts), spec, opts)
    assert "decode_device" not in kw and kw["decode_stage"] is not None
    try:
        from fpfast.jobs.options import resolve_decode
        resolve_decode("cuda")
    except Exception as e:  # noqa: BLE001 - no GPU or no nvJPEG here: the actor refuses as the driver used to
        with pytest.raises(type(e), match="--decode cuda"):
            MapActor(vector_recipe(spec, opts), spec, 4, 10**7, "cuda")


# ---------------------------------------------------------------------------- the Ray engine's bookkeeping
def test_blocks_hold_at_most_block_rows_consecutive_inputs_of_one_shard():
    from fpfast.engines.ray_engine import _blocks
    items = [(i, f"k{i}", b"") for i in range(23)]
    blocks = list(_blocks(iter(items), lambda i: i // 10, 4))
    assert [b[0][0] for b in blocks] == [0, 4, 8, 10, 14, 18, 20]
    assert [x for b in blocks for x in b] == items
    assert all(len({i // 10 for i, _, _ in b}) == 1 and len(b) <= 4 for b in blocks)


class FakeDataset:
    """What :func:`_collect` reads of a Ray dataset: batches of packets."""

    def __init__(self, packets):
        self.packets = packets

    def iter_batches(self, batch_size=None, batch_format="numpy"):
        for p in self.packets:
            yield {"packet": np.array([p], dtype=object)}


def _packet(*results):
    from fpfast.pipeline import STAGES
    return list(results), {s: 1.0 for s in STAGES}


def test_collect_keeps_the_first_packet_of_a_retried_block_and_counts_every_input():
    from fpfast.engines.ray_engine import _collect
    from fpfast.pipeline import STAGES, Batch, Failed
    a = _packet(Batch([0, 1], ["a", "b"], ["", ""], {"v": np.ones((2, 3))}), Failed(2, "c", "broken"))
    b = _packet(Batch([3], ["d"], [""], {"v": np.zeros((1, 3))}))
    timings = {s: 0.0 for s in STAGES}
    out = list(_collect(FakeDataset([a, b, a]), timings, 4))  # the block of a retried after a worker died
    assert [i for x in out for i in (x.indices if isinstance(x, Batch) else [x.index])] == [0, 1, 2, 3]
    assert timings["map"] == 2.0  # the duplicate's seconds are not counted either
    with pytest.raises(RuntimeError, match="3 of 5 inputs"):
        list(_collect(FakeDataset([a]), dict(timings), 5))
    overlap = _packet(Batch([1, 4], ["b", "e"], ["", ""], {"v": np.ones((2, 3))}))
    with pytest.raises(RuntimeError, match="done already"):
        list(_collect(FakeDataset([a, overlap]), dict(timings), 5))


def test_actor_packets_hold_the_results_unpickled(tmp_path):
    """One block through :class:`MapActor` in this process: the packet is ``(results, timings)``
    as objects (Ray pickles them once on the way back), columns on the host, errors as rows."""
    from io_helpers import encode, rand_rgb
    from fpfast.engines.ray_engine import MapActor
    from fpfast.io.sources import FileRef
    from fpfast.jobs.options import StreamOptions
    from fpfast.jobs.recipes import vector_recipe
    from fpfast.pipeline import Batch, Failed
    from fpfast.spec import load_spec
    (tmp_path / "a.png").write_bytes(encode(rand_rgb(40, 40, seed=1)))
    block = [(10, "a", FileRef(str(tmp_path / "a.png"))), (11, "b", encode(rand_rgb(40, 40, seed=2))),
             (12, "c", b"not an image")]
    spec = load_spec(None)
    actor = MapActor(vector_recipe(spec, StreamOptions(device="cpu")), spec, 4, 10**7, "cpu")
    out = actor({"block": np.array([pickle.dumps(block), pickle.dumps(block[:1])], dtype=object)})["packet"]
    assert out.shape == (2,) and all(isinstance(p, tuple) for p in out)
    results, timings = out[0]
    batches = [x for x in results if isinstance(x, Batch)]
    assert [x.index for x in results if isinstance(x, Failed)] == [12]
    assert sorted(i for b in batches for i in b.indices) == [10, 11]
    assert all(isinstance(v, np.ndarray) for b in batches for v in b.images.values())
    assert timings["map"] > 0
