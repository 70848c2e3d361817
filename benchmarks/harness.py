"""The benchmark harness, importable as ``benchmarks.harness``; the code lives in :mod:`fpfast.bench`
so that the ``fpfast bench`` CLI can use it from an installed package."""
from fpfast.bench import (COLUMNS, CPU_BATCHES, DEFAULT_SIZES, FLOOR, GPU_BATCHES, append_csv, backends_for,
                          cpp_stage_rows, device_name, make_inputs, make_runner, read_csv, render_markdown, run,
                          time_fn, write_markdown)

__all__ = ["COLUMNS", "CPU_BATCHES", "DEFAULT_SIZES", "FLOOR", "GPU_BATCHES", "append_csv", "backends_for",
           "cpp_stage_rows", "device_name", "make_inputs", "make_runner", "read_csv", "render_markdown", "run",
           "time_fn", "write_markdown"]
