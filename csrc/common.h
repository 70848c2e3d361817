// Shared helpers for the CPU kernels: strided image views and reflect indexing.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include "contract.h"

namespace fpfast {

// Reflect (scipy 'mirror', torch 'reflect') index for i in [-n+1, 2n-2].
inline int reflect(int i, int n) {
  if (i < 0) return -i;
  if (i >= n) return 2 * n - 2 - i;
  return i;
}

// A read-only view of a [B, 3, H, W] batch with arbitrary element strides; uint8 values are
// scaled to [0, 1] so that every kernel sees the same float image as the torch reference.
struct ImageView {
  const void* data = nullptr;
  bool is_u8 = false;
  int64_t B = 0, C = 3, H = 0, W = 0;
  int64_t sb = 0, sc = 0, sh = 0, sw = 0;  // strides in elements

  inline float at(int64_t b, int64_t c, int64_t i, int64_t j) const {
    const int64_t off = b * sb + c * sc + i * sh + j * sw;
    if (is_u8) return static_cast<const uint8_t*>(data)[off] * (1.0f / 255.0f);
    return static_cast<const float*>(data)[off];
  }
};

// Codes from contract.h. Identity: op "none", the input already is the residual (accepted by the
// fused feature kernel only).
enum class ResidualOp {
  Denoise = contract::kDenoise, Median3 = contract::kMedian3, Npr = contract::kNpr,
  Highpass = contract::kHighpass, Identity = contract::kNone
};

// One of the spec's residual operators by name ("none" is not one: callers map it to Identity).
inline ResidualOp parse_residual(const std::string& name) {
  for (int k = 0; k < contract::kNumOps; ++k)
    if (k != contract::kNone && name == contract::kOpNames[k]) return static_cast<ResidualOp>(k);
  throw std::invalid_argument("unknown residual operator '" + name +
                              "'; expected denoise, median3, npr or highpass");
}

}  // namespace fpfast
