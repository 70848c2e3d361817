// Fused residual + feature sums on the GPU (the `cuda` backend of fingerprint_features).
// Contract: fpfast/ops/sums.py. One block walks a vertical strip of `tiles_per_block` 32x32
// tiles, reads each tile + a 2-pixel reflect halo into shared memory once, computes the residual
// in registers and accumulates the raw sums; it writes one row of float32 partial sums, which
// Python reduces in float64 (deterministic: fixed order everywhere, no atomics).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "contract.h"

namespace fpfast {
namespace cuda {

constexpr int kTile = 32;        // output pixels per tile side (a multiple of 8: DCT blocks never straddle)
constexpr int kMaxPeriods = contract::kMaxPeriods;  // periods per spec
constexpr int kMaxPhaseBins = 1024;  // sum of p^2 over the periods

using Op = contract::Op;  // residual operator codes (contract.h)
using contract::kDenoise;
using contract::kMedian3;
using contract::kNpr;
using contract::kHighpass;
using contract::kNone;

struct FeatureParams {
  const void* x;     // [B, 3, H, W] uint8 or float32, element strides sb, sc, sh, sw (any, >= 0)
  float* partials;   // [B, n_part, n_sums] float32, contiguous (every element written)
  float* gray;       // [B, H, W] float32 contiguous, or nullptr: g = (r0 + r1 + r2) / 3
  float* residual;   // [B, 3, H, W] float32 contiguous, or nullptr
  int64_t sb, sc, sh, sw;
  int B, H, W;
  int tiles_x, tiles_y, tiles_per_block, n_part, n_sums;
  int channels_last;  // load order only (coalescing): 1 when |sc| < |sw|
  float taps[contract::kGaussTaps];  // normalised Gaussian taps (denoise)
  int n_periods;
  int period[kMaxPeriods];
  int cum_p[kMaxPeriods + 1];   // prefix sums of p   (row-sum scratch offsets / 32)
  int cum_p2[kMaxPeriods + 1];  // prefix sums of p^2 (phase-bin offsets)
};

// Partial rows per image for a given strip height: tiles_x * ceil(tiles_y / tiles_per_block).
inline int n_partials(int H, int W, int tiles_per_block) {
  const int tx = (W + kTile - 1) / kTile, ty = (H + kTile - 1) / kTile;
  return tx * ((ty + tiles_per_block - 1) / tiles_per_block);
}

// Launches the kernel for (op, dtype) on `stream` (the current device must be the data's).
// Returns cudaGetLastError() after the launch (or the error of the attribute call before it).
cudaError_t launch_feature_sums(const FeatureParams& p, Op op, bool is_u8, cudaStream_t stream);

// Static shared memory per block (bytes) and dynamic shared memory for the spec's periods.
int static_smem_bytes();
int dynamic_smem_bytes(const FeatureParams& p);

// Per-kernel resources on the current device: fills regs/local/static smem/max threads of the
// instance (op, is_u8); returns the cudaFuncGetAttributes error (e.g. no kernel image for the GPU).
cudaError_t kernel_attributes(Op op, bool is_u8, int* regs, int* local_bytes, int* smem_bytes, int* max_threads);

// Compile-time facts: "800,900"-style list of the device archs, and nvcc's version.
const char* compiled_archs();
const char* nvcc_version();

}  // namespace cuda
}  // namespace fpfast
