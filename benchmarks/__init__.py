"""Benchmarks of fpfast (run from the repository root: ``python -m benchmarks.bench_kernels``)."""
