#!/usr/bin/env bash
# One lease on a lent GPU machine (no network there): build in place, then the GPU tests and
# benchmarks named, each step's log and result files copied to $OUT.
#   bash benchmarks/gpu_run.sh STEP [STEP ...]     steps: tests suite kernels e2e projectors embed gallery pretrain
#   tests       the GPU tests (cuda backend, triton on GPU, device-resident search, GPU decode, embedding)
#   suite       the whole test suite
#   kernels     cuda_check (per-stage at 256^2 x 512) + bench_kernels (eager / compile / cuda / graph / floor)
#   e2e         benchmarks/bench_e2e_gpu.py: fpfast attribute on E2E_N (default 100000) 256^2 JPEGs
#   projectors  ManiFPT nearest-real at 30,000 references and DIRE vs fpfast's diffusion residual
#   embed       embedding inference speed (precision x compile)
#   gallery     exact search on a 1M-vector gallery (torch on the GPU vs faiss-cpu on the host)
#   pretrain    fpfast pretrain on the GPU (fp16 autocast; PRETRAIN_STEPS, default 3000 = 5x the shipped
#               run's steps, same network and recipe otherwise: on the CPU more random decoders and larger
#               patches transferred worse to the zoos, accuracy.md), its card to $OUT/pretrain/, then,
#               when the small zoo builds in time, bench_universal.py (few-shot rows) with those weights;
#               at most 330 + 150 + 100 s: fits one 10-minute command
# Each step's log is $OUT/STEP.log; the result files it writes are appended to $OUT/results.tar as
# soon as the step ends (what is done survives a run cut short; few files come back).
# Wheels missing there (faiss-cpu, diffusers, simplejpeg) travel in .whl/ (the device tool's notes).
set -uo pipefail
OUT=${OUT:-/tmp/fpfast-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=passive
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
if ! python3 -c "import fpfast._C_cuda, fpfast._C" 2>/dev/null; then
  t0=$(date +%s)
  FPFAST_BUILD_CUDA=1 FPFAST_CUDA_ARCHS="${FPFAST_CUDA_ARCHS:-90}" python3 setup.py build_ext --inplace -j 4 \
    > /tmp/build.log 2>&1 || { tail -40 /tmp/build.log; exit 1; }
  echo "build: $(( $(date +%s) - t0 ))s"; grep -i "warning" /tmp/build.log | grep -v -i setuptools | head -10
fi
keep() { tar -rf "$OUT/results.tar" "$@" 2>/dev/null; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, triton, fpfast; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__); print(fpfast.build_config())"
} | tee "$OUT/device.txt"
pytest() { python3 -m pytest -q -ra -p no:cacheprovider "$@"; }
for step in "${@:-tests}"; do
  echo "=== $step $(date -u +%H:%M:%S)"
  log="$OUT/$step.log"
  case "$step" in
    tests)
      timeout 300 python3 -m pytest -q -ra -p no:cacheprovider tests/test_contract.py \
        tests/test_backend_conformance.py tests/test_backend_cuda.py tests/test_backend_triton.py \
        tests/test_gallery_gpu.py tests/test_jobs_mappers.py tests/test_io_device_decode.py \
        tests/test_device_stage.py tests/test_embed_inference.py tests/test_jpeg_grid.py ${TESTS_EXTRA:-} 2>&1 | tee "$log" | tail -30 ;;
    suite)
      timeout 540 python3 -m pytest -q -ra -p no:cacheprovider tests 2>&1 | tee "$log" | tail -40 ;;
    kernels)
      timeout 150 python3 benchmarks/cuda_check.py --reps 20 --ops denoise 2>&1 | tee "$log" | tail -30
      timeout 240 python3 benchmarks/bench_kernels.py --device cuda --repeats 10 --compile-sizes 256 \
        --note "$gpu lease" 2>&1 | tee -a "$log" | tail -40
      keep benchmarks/results/kernels.csv benchmarks/results/kernels.md ;;
    e2e)
      timeout 360 python3 benchmarks/bench_e2e_gpu.py --n "${E2E_N:-100000}" ${E2E_ARGS:-} 2>&1 \
        | tee "$log" | tail -30
      keep benchmarks/results/e2e_gpu*.md benchmarks/results/e2e_gpu.csv ;;
    projectors)
      timeout 300 python3 benchmarks/bench_projectors.py --device cuda --n-ref 30000 --n-query 256 \
        --baseline-queries 8 --model-size 256 --unet-size 64 --big-unet --note "$gpu lease" 2>&1 \
        | tee "$log" | tail -25
      keep benchmarks/results/projectors_cuda.* ;;
    embed)
      timeout 240 python3 benchmarks/bench_embedding_speed.py --device cuda --note "$gpu lease" 2>&1 \
        | tee "$log" | tail -20
      keep benchmarks/results/embedding_speed.csv benchmarks/results/embedding_speed.md ;;
    gallery)
      timeout 240 python3 benchmarks/bench_gallery.py --device cuda --methods torch,flat --n 1000000 \
        --note "$gpu lease; flat = faiss-cpu on the host cores" 2>&1 | tee "$log" | tail -12
      keep benchmarks/results/gallery.csv benchmarks/results/gallery.md ;;
    pretrain)
      rm -rf /tmp/univ_gpu; mkdir -p "$OUT/pretrain"
      timeout 330 python3 -m fpfast pretrain /tmp/univ_gpu --device cuda --steps "${PRETRAIN_STEPS:-3000}" \
        --classes 256 --batch-classes 12 --per-class 4 --crop 48 --patch 24 --widths 8,16,32 --objective supcon --seed 0 \
        2>&1 | tee "$log" | tail -8
      cp /tmp/univ_gpu/universal.* "$OUT/pretrain/" 2>/dev/null
      [ -d /tmp/zoo_small ] || timeout 150 python3 -m fpfast.zoo build /tmp/zoo_small --preset small \
        --device cuda >> "$log" 2>&1 || rm -rf /tmp/zoo_small
      [ -d /tmp/zoo_small ] && [ -f /tmp/univ_gpu/universal.json ] && timeout 100 python3 \
        benchmarks/bench_universal.py /tmp/zoo_small --weights /tmp/univ_gpu --skip finetune,lda \
        --out "$OUT/pretrain/universal_gpu_small.json" >> "$log" 2>&1; tail -3 "$log" ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac
done
