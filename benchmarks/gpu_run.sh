#!/usr/bin/env bash
# One lease on a lent GPU machine (no network there): build in place, run the suite and the GPU
# benchmarks, copy logs and result files to $OUT. Usage: bash benchmarks/gpu_run.sh test|kernels|embed|bench
# Wheels missing there (faiss-cpu, diffusers) travel in .whl/ (see the device tool's notes).
set -uo pipefail
OUT=${OUT:-/tmp/fpfast-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
if ! python3 -c "import fpfast._C_cuda" 2>/dev/null; then
  FPFAST_BUILD_CUDA=1 python3 -m pip install -q --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1 \
    || { tail -40 "$OUT/build.log"; exit 1; }
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import torch, triton, fpfast; print('torch', torch.__version__, 'triton', triton.__version__); print(fpfast.build_config())" | tee -a "$OUT/device.txt"
case "${1:-test}" in
  test)
    python3 -m pytest -q -ra -p no:cacheprovider tests 2>&1 | tee "$OUT/tests.log" | tail -60
    ;;
  kernels)
    # the kernel layer: build in place (fresh: csrc/ changed), GPU tests, per-stage check, benchmark (~3 min)
    FPFAST_BUILD_CUDA=1 python3 setup.py build_ext --inplace > "$OUT/build_kernels.log" 2>&1 \
      || { tail -40 "$OUT/build_kernels.log"; exit 1; }
    grep -i "warning" "$OUT/build_kernels.log" | grep -v -i setuptools | head -20
    python3 -m pytest -q -ra -p no:cacheprovider tests/test_contract.py tests/test_backend_conformance.py \
      tests/test_backend_cuda.py tests/test_backend_triton.py 2>&1 | tee "$OUT/tests_kernels.log" | tail -25
    timeout 240 python3 benchmarks/cuda_check.py --reps 20 --ops denoise 2>&1 | tee "$OUT/cuda_check.txt" | tail -30
    timeout 300 python3 benchmarks/bench_kernels.py --device cuda --repeats 10 --compile-sizes 256 \
      --note "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) lease" 2>&1 | tee "$OUT/bench_kernels.txt" | tail -40
    cp benchmarks/results/kernels.csv benchmarks/results/kernels.md "$OUT/" 2>/dev/null
    ;;
  embed)
    python3 -m pytest -q -ra -p no:cacheprovider tests/test_embed_inference.py tests/test_embed.py 2>&1 | tail -5
    python3 benchmarks/bench_embedding_speed.py --device cuda --note "GPU lease" 2>&1 | tee "$OUT/embedding_speed.txt" | tail -20
    cp benchmarks/results/embedding_speed.csv benchmarks/results/embedding_speed.md "$OUT/" 2>/dev/null
    ;;
  bench)
    python3 benchmarks/cuda_check.py --reps 30 2>&1 | tee "$OUT/cuda_check.txt" | tail -40
    python3 benchmarks/triton_check.py 2>&1 | tee "$OUT/triton_check.txt" | tail -25
    python3 benchmarks/bench_kernels.py --device cuda --note "H100 lease" 2>&1 | tee "$OUT/bench_kernels.txt" | tail -30
    cp benchmarks/results/kernels.csv benchmarks/results/kernels.md "$OUT/" 2>/dev/null
    python3 benchmarks/bench_gallery.py --device cuda --methods torch,flat --n 1000000 --note "H100 lease; flat = faiss-cpu on 16 host cores" 2>&1 | tail -12
    cp benchmarks/results/gallery.csv benchmarks/results/gallery.md "$OUT/" 2>/dev/null
    ;;
esac
