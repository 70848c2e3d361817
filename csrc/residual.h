// Residual operators r = x - P(x) on the CPU (reflect borders), one row at a time.
//
// PlaneRows keeps a small ring of padded source rows of one image plane, so that the residual of
// row i can be produced while the rows it reads are still in L1: the fused feature kernel and the
// plain residual kernel both walk a plane (or a band of it) top to bottom with it.
#pragma once
#include <vector>

#include "common.h"

namespace fpfast {

// Source row `si` of plane (b, c) as floats (uint8 / 255, like the torch reference) into dst[0, W).
// x: [B, 3, H, W] uint8 or float32 view; dst: [W] float32.
void load_row(const ImageView& x, int64_t b, int64_t c, int64_t si, float* dst);

class PlaneRows {
 public:
  // Scratch for planes of width W under `op`; `taps` is read for Denoise only.
  PlaneRows(int64_t W, ResidualOp op, const float taps[contract::kGaussTaps]);

  // Walk plane (b, c) of x from row i0: the next row() call must be row(i0), then i0+1, ...
  void start(const ImageView& x, int64_t b, int64_t c, int64_t i0);

  // Residual of row i (the row after the previous one) into out[0, W); Identity copies row i.
  void row(int64_t i, float* out);  // out: [W] float32

 private:
  static constexpr int kRing = 8;  // >= the 5 rows a 5x5 window reads; a power of 2
  float* padded(int64_t k) { return P_.data() + (k & (kRing - 1)) * PW_; }  // k may be negative
  float* hpass(int64_t k) { return T_.data() + (k & (kRing - 1)) * W_; }
  void load(int64_t k);  // source row reflect(k) into its ring slot (+ its horizontal pass)

  const ImageView* x_ = nullptr;
  int64_t b_ = 0, c_ = 0, W_ = 0, PW_ = 0, next_ = 0;
  int halo_ = 0;  // rows read below the current one
  ResidualOp op_;
  float taps_[contract::kGaussTaps] = {0, 0, 0, 0, 0};
  std::vector<float> P_;       // [kRing, W+4] padded source rows, origin at column 2
  std::vector<float> T_;       // [kRing, W] horizontal Gaussian pass (Denoise)
  std::vector<float> lo_, mid_, hi_;  // [W+2] sorted 3-row columns (Median3)
};

// Residual of a whole batch, OpenMP over planes.
// x: [B, 3, H, W] uint8 or float32 view (any strides); out: [B, 3, H, W] float32 contiguous.
void residual_batch(const ImageView& x, ResidualOp op, float sigma, float* out);

}  // namespace fpfast
