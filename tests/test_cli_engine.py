"""``--engine`` without Ray (issue 17): a usage error that says how to install it, and nothing but
``--engine ray`` ever imports Ray. These run whether or not the ray extra is installed."""
from __future__ import annotations

import subprocess
import sys

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


def test_ray_options_without_engine_ray_are_a_usage_error(tmp_path):
    r = invoke("extract", str(tmp_path), "-o", str(tmp_path / "o"), "--ray-address", "auto")
    assert r.exit_code == 2
    assert "--engine ray" in r.output
