// The fused feature kernel on the CPU: residual on the fly + the raw per-image sums of the
// contract in fpfast/ops/sums.py, in one pass over the pixels.
// (Not named features.h: with -Icsrc that name would shadow glibc's <features.h>.)
#pragma once
#include <vector>

#include "common.h"

namespace fpfast {

// Where each group of sums lives in a row of the [B, n_sums] output.
struct SumsLayout {
  std::vector<int> periods;      // spec order
  std::vector<int> phase_off;    // offset of E[p] for each period
  std::vector<int> phase_src;    // index of the period whose sums E[p] is folded from (itself: accumulated)
  int dct_off = 0, n = 0;
  explicit SumsLayout(const std::vector<int>& periods);
};

// x:        [B, 3, H, W] uint8 or float32 view (any strides). op: a residual operator, or Identity
//           when x already is the residual.
// sums:     [B, layout.n] float64, written
// gray:     [B, H, W] float32 contiguous, g = mean of the residual channels, or nullptr
// residual: [B, 3, H, W] float32 contiguous, or nullptr
// Deterministic: the image is cut into fixed row bands (independent of the thread count) whose
// partial sums are added in band order.
void feature_sums(const ImageView& x, ResidualOp op, float sigma, const SumsLayout& layout, double* sums,
                  float* gray, float* residual);

}  // namespace fpfast
