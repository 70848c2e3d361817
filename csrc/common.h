// Shared helpers for the CPU kernels: strided image views and reflect indexing.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

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

// Identity: op "none", the input already is the residual (accepted by the fused feature kernel).
enum class ResidualOp { Denoise = 0, Median3 = 1, Npr = 2, Highpass = 3, Identity = 4 };

inline ResidualOp parse_residual(const std::string& name) {
  if (name == "denoise") return ResidualOp::Denoise;
  if (name == "median3") return ResidualOp::Median3;
  if (name == "npr") return ResidualOp::Npr;
  if (name == "highpass") return ResidualOp::Highpass;
  throw std::invalid_argument("unknown residual operator '" + name +
                              "'; expected denoise, median3, npr or highpass");
}

}  // namespace fpfast
