"""The kernel contract is written once: csrc/contract.h, mirrored by fpfast/contract.py. This
parses the header and checks the Python table, both compiled modules (when built) and every
Python user of the numbers against it."""
import pathlib
import re

import pytest

import fpfast
from fpfast import backends
from fpfast import contract as C
from fpfast.ops.sums import n_sums
from fpfast.spec import RESIDUALS, FingerprintSpec

HEADER = pathlib.Path(__file__).resolve().parents[1] / "csrc" / "contract.h"


def _header():
    text = HEADER.read_text()
    ints = {m.group(1): m.group(2) for m in re.finditer(r"\b(k\w+) = ([\w\s*+()-]+?)\s*[,;}]", text)}
    vals = {}
    for name, expr in ints.items():  # constants may refer to earlier ones (kDctCoefs = kDctBlock * kDctBlock)
        vals[name] = eval(expr, {}, dict(vals))  # noqa: S307 - our own header, ints only
    names = re.search(r"kOpNames\[kNumOps\] = \{([^}]*)\}", text).group(1)
    vals["ops"] = tuple(re.findall(r'"(\w+)"', names))
    return vals


def test_header_and_python_table_agree():
    h = _header()
    assert h["ops"] == C.RESIDUAL_OPS
    assert [h[k] for k in ("kDenoise", "kMedian3", "kNpr", "kHighpass", "kNone")] == \
        [C.OP_CODES[n] for n in ("denoise", "median3", "npr", "highpass", "none")]
    assert h["kNumOps"] == len(C.RESIDUAL_OPS)
    assert (h["kOffS1"], h["kOffS2"], h["kOffS3"], h["kOffS4"], h["kOffX"]) == \
        (C.OFF_S1, C.OFF_S2, C.OFF_S3, C.OFF_S4, C.OFF_X)
    assert (h["kMomentSums"], h["kDctBlock"], h["kDctCoefs"]) == (C.MOMENT_SUMS, C.DCT_BLOCK, C.DCT_COEFS)
    assert (h["kMinPeriod"], h["kMaxPeriod"], h["kMaxPeriods"]) == (C.MIN_PERIOD, C.MAX_PERIOD, C.MAX_PERIODS)
    assert (h["kGaussRadius"], h["kGaussTaps"]) == (C.GAUSS_RADIUS, C.GAUSS_TAPS)


def _compiled():
    cfg = backends.build_config()
    out = []
    if cfg.get("cpp") and "contract" in cfg:
        out.append(("cpp", cfg["contract"]))
    if "cuda_build" in cfg:
        out.append(("cuda", cfg["cuda_build"]["contract"]))
    return out


@pytest.mark.parametrize("name,got", _compiled() or [pytest.param("none", None, marks=pytest.mark.skip("no compiled module"))])
def test_compiled_modules_export_the_same_contract(name, got):
    assert tuple(got["ops"]) == C.RESIDUAL_OPS, name
    for key, want in (("off_s1", C.OFF_S1), ("off_s2", C.OFF_S2), ("off_s3", C.OFF_S3), ("off_s4", C.OFF_S4),
                      ("off_x", C.OFF_X), ("moment_sums", C.MOMENT_SUMS), ("dct_block", C.DCT_BLOCK),
                      ("dct_coefs", C.DCT_COEFS), ("min_period", C.MIN_PERIOD), ("max_period", C.MAX_PERIOD),
                      ("max_periods", C.MAX_PERIODS), ("gauss_taps", C.GAUSS_TAPS)):
        assert got[key] == want, (name, key)
    for sigma, taps in got["taps"].items():
        # the kernels round the float64 taps to float32: equal to 1 float32 ulp
        assert taps == pytest.approx(C.gaussian_taps(sigma), rel=1e-7, abs=0), (name, sigma)


def test_python_users_read_the_contract():
    spec = FingerprintSpec(periods=(3, 5, 16))
    assert n_sums(spec) == C.MOMENT_SUMS + 9 + 25 + 256 + C.DCT_COEFS
    assert C.phase_offsets(spec.periods) == [15, 24, 49]
    assert C.dct_offset(spec.periods) == 15 + 9 + 25 + 256
    assert RESIDUALS == C.RESIDUAL_OPS[:4] and "none" not in RESIDUALS
    assert spec.family_size("dct") == C.DCT_COEFS
    from fpfast.reference.residual import gaussian_taps
    assert gaussian_taps is C.gaussian_taps
    assert sum(C.gaussian_taps(1.3)) == pytest.approx(1.0, abs=1e-15)


def test_triton_op_codes_are_the_contract():
    if not backends.triton_installed():
        pytest.skip("triton is not installed")
    import importlib
    k = importlib.import_module("fpfast.ops.triton.kernels")
    for name in C.RESIDUAL_OPS:
        assert getattr(k, f"OP_{name.upper()}").value == C.OP_CODES[name]


def test_no_literal_op_codes_left_in_kernel_sources():
    """The old per-file enums are gone: op codes appear in csrc/contract.h only."""
    root = pathlib.Path(fpfast.__file__).resolve().parents[1]
    for path in list((root / "csrc").rglob("*.h")) + list((root / "csrc").rglob("*.cu")) + list((root / "csrc").rglob("*.cpp")):
        if path.name == "contract.h":
            continue
        assert not re.search(r"k?Denoise\s*=\s*\d", path.read_text()), path
