"""pytest-benchmark view of the kernel harness at small shapes:

    python -m pytest benchmarks/test_bench_kernels.py --benchmark-enable

(the project's addopts disable benchmarking, so a plain run just executes each case once).
"""
from __future__ import annotations

import pytest
import torch

from benchmarks import harness

SIZE, BATCH = 64, 8
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BACKENDS = ["torch", harness.FLOOR] + harness.backends_for(DEVICE)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fingerprint_features(benchmark, backend):
    from fpfast.spec import FingerprintSpec

    spec = FingerprintSpec(size=SIZE)
    fn = harness.make_runner(backend, spec)
    x = harness.make_inputs(SIZE, BATCH, DEVICE)[0]
    benchmark.extra_info.update({"size": SIZE, "batch": BATCH, "device": harness.device_name(DEVICE)})
    sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)
    benchmark(lambda: (fn(x), sync()))


def test_harness_rows_and_markdown(tmp_path):
    rows = harness.run([16], DEVICE, batches={16: 2}, repeats=1, warmup=0, compile=False, log=lambda s: None)
    assert {r["backend"] for r in rows} >= {"torch", harness.FLOOR}
    assert all(set(harness.COLUMNS) <= set(r) for r in rows)
    csv_path, md_path = tmp_path / "k.csv", tmp_path / "k.md"
    harness.append_csv(rows, str(csv_path))
    harness.append_csv(rows, str(csv_path))  # appends, one header
    assert len(harness.read_csv(str(csv_path))) == 2 * len(rows)
    harness.write_markdown(str(csv_path), str(md_path))
    assert "| fingerprint_features | torch | 16² | 2 |" in md_path.read_text()
