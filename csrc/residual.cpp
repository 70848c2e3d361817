#include "residual.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace fpfast {

void gaussian_taps(float sigma, float taps[5]) {
  double w[5], s = 0.0;
  for (int i = -2; i <= 2; ++i) s += (w[i + 2] = std::exp(-(i * i) / (2.0 * sigma * sigma)));
  for (int i = 0; i < 5; ++i) taps[i] = static_cast<float>(w[i] / s);
}

// Median of 9 by a fixed exchange network (19 compare-exchanges).
static inline float med9(float p[9]) {
#define FP_SORT(a, b) { float lo = std::min(p[a], p[b]), hi = std::max(p[a], p[b]); p[a] = lo; p[b] = hi; }
  FP_SORT(1, 2); FP_SORT(4, 5); FP_SORT(7, 8); FP_SORT(0, 1); FP_SORT(3, 4); FP_SORT(6, 7);
  FP_SORT(1, 2); FP_SORT(4, 5); FP_SORT(7, 8); FP_SORT(0, 3); FP_SORT(5, 8); FP_SORT(4, 7);
  FP_SORT(3, 6); FP_SORT(1, 4); FP_SORT(2, 5); FP_SORT(4, 7); FP_SORT(4, 2); FP_SORT(6, 4);
  FP_SORT(4, 2);
#undef FP_SORT
  return p[4];
}

void residual_plane(const ImageView& x, int64_t b, int64_t c, ResidualOp op, const float taps[5],
                    float* out, float* scratch) {
  const int H = static_cast<int>(x.H), W = static_cast<int>(x.W);
  const int PW = W + 4;
  float* P = scratch;  // padded plane [(H+4) x (W+4)], origin at (2, 2)
  for (int i = -2; i < H + 2; ++i) {
    const int si = reflect(i, H);
    float* row = P + (i + 2) * PW;
    for (int j = 0; j < W; ++j) row[j + 2] = x.at(b, c, si, j);
    row[0] = row[2 + 2]; row[1] = row[2 + 1];
    row[W + 2] = row[W]; row[W + 3] = row[W - 1];
  }
  auto px = [&](int i, int j) { return P[(i + 2) * PW + (j + 2)]; };

  switch (op) {
    case ResidualOp::Denoise: {
      float* T = scratch + (H + 4) * PW;  // horizontal pass [(H+4) x W]
      for (int i = 0; i < H + 4; ++i) {
        const float* row = P + i * PW;
        float* t = T + i * W;
        for (int j = 0; j < W; ++j)
          t[j] = taps[0] * row[j] + taps[1] * row[j + 1] + taps[2] * row[j + 2] + taps[3] * row[j + 3] +
                 taps[4] * row[j + 4];
      }
      for (int i = 0; i < H; ++i) {
        const float *t0 = T + i * W, *t1 = t0 + W, *t2 = t1 + W, *t3 = t2 + W, *t4 = t3 + W;
        const float* xr = P + (i + 2) * PW + 2;
        float* o = out + static_cast<int64_t>(i) * W;
        for (int j = 0; j < W; ++j)
          o[j] = xr[j] - (taps[0] * t0[j] + taps[1] * t1[j] + taps[2] * t2[j] + taps[3] * t3[j] + taps[4] * t4[j]);
      }
      break;
    }
    case ResidualOp::Median3: {
      for (int i = 0; i < H; ++i)
        for (int j = 0; j < W; ++j) {
          float p[9] = {px(i - 1, j - 1), px(i - 1, j), px(i - 1, j + 1), px(i, j - 1), px(i, j),
                        px(i, j + 1),     px(i + 1, j - 1), px(i + 1, j), px(i + 1, j + 1)};
          out[static_cast<int64_t>(i) * W + j] = px(i, j) - med9(p);
        }
      break;
    }
    case ResidualOp::Npr: {
      for (int i = 0; i < H; ++i)
        for (int j = 0; j < W; ++j) out[static_cast<int64_t>(i) * W + j] = px(i, j) - px(i & ~1, j & ~1);
      break;
    }
    case ResidualOp::Highpass: {
      for (int i = 0; i < H; ++i) {
        const float *u = P + (i + 1) * PW + 2, *m = u + PW, *d = m + PW;
        float* o = out + static_cast<int64_t>(i) * W;
        for (int j = 0; j < W; ++j) o[j] = m[j] - 0.25f * (u[j] + d[j] + m[j - 1] + m[j + 1]);
      }
      break;
    }
  }
}

void residual_batch(const ImageView& x, ResidualOp op, float sigma, float* out) {
  float taps[5];
  gaussian_taps(sigma, taps);
  const int64_t planes = x.B * x.C, HW = x.H * x.W;
#pragma omp parallel
  {
    std::vector<float> scratch(residual_scratch_size(x.H, x.W));
#pragma omp for schedule(dynamic, 1)
    for (int64_t p = 0; p < planes; ++p)
      residual_plane(x, p / x.C, p % x.C, op, taps, out + p * HW, scratch.data());
  }
}

}  // namespace fpfast
