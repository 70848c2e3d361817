#include "residual.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace fpfast {

void load_row(const ImageView& x, int64_t b, int64_t c, int64_t si, float* dst) {
  const int64_t W = x.W, sw = x.sw, off = b * x.sb + c * x.sc + si * x.sh;
  if (x.is_u8) {
    // division, not a multiply by 1/255: bit-equal to the reference's x.float() / 255
    const uint8_t* p = static_cast<const uint8_t*>(x.data) + off;
    if (sw == 1)
      for (int64_t j = 0; j < W; ++j) dst[j] = static_cast<float>(p[j]) / 255.0f;
    else
      for (int64_t j = 0; j < W; ++j) dst[j] = static_cast<float>(p[j * sw]) / 255.0f;
  } else {
    const float* p = static_cast<const float*>(x.data) + off;
    if (sw == 1)
      std::memcpy(dst, p, W * sizeof(float));
    else
      for (int64_t j = 0; j < W; ++j) dst[j] = p[j * sw];
  }
}

PlaneRows::PlaneRows(int64_t W, ResidualOp op, const float taps[contract::kGaussTaps]) : W_(W), PW_(W + 4), op_(op) {
  P_.assign(kRing * PW_, 0.0f);
  if (op == ResidualOp::Denoise) {
    std::copy(taps, taps + contract::kGaussTaps, taps_);
    T_.assign(kRing * W, 0.0f);
  }
  if (op == ResidualOp::Median3) {
    lo_.assign(W + 2, 0.0f); mid_.assign(W + 2, 0.0f); hi_.assign(W + 2, 0.0f);
  }
  switch (op) {
    case ResidualOp::Denoise: halo_ = 2; break;
    case ResidualOp::Median3: case ResidualOp::Highpass: halo_ = 1; break;
    default: halo_ = 0;  // Npr reads rows i and i & ~1 (>= i - 1); Identity reads row i
  }
}

void PlaneRows::start(const ImageView& x, int64_t b, int64_t c, int64_t i0) {
  x_ = &x; b_ = b; c_ = c;
  const int64_t above = (op_ == ResidualOp::Npr) ? 1 : halo_;
  next_ = i0 - above;
  if (next_ < -2) next_ = -2;
}

void PlaneRows::load(int64_t k) {
  const int64_t H = x_->H, W = W_;
  float* row = padded(k);
  load_row(*x_, b_, c_, reflect(static_cast<int>(k), static_cast<int>(H)), row + 2);
  row[0] = row[4]; row[1] = row[3];  // reflect: x[2], x[1] | x[W-2], x[W-3]
  row[W + 2] = row[W]; row[W + 3] = row[W - 1];
  if (op_ == ResidualOp::Denoise) {
    const float t0 = taps_[0], t1 = taps_[1], t2 = taps_[2], t3 = taps_[3], t4 = taps_[4];
    float* t = hpass(k);
    for (int64_t j = 0; j < W; ++j)
      t[j] = t0 * row[j] + t1 * row[j + 1] + t2 * row[j + 2] + t3 * row[j + 3] + t4 * row[j + 4];
  }
}

static inline float med3(float a, float b, float c) {
  return std::max(std::min(a, b), std::min(std::max(a, b), c));
}

void PlaneRows::row(int64_t i, float* out) {
  while (next_ <= i + halo_) load(next_++);
  const int64_t W = W_;
  const float* m = padded(i) + 2;
  switch (op_) {
    case ResidualOp::Denoise: {
      const float *a = hpass(i - 2), *b = hpass(i - 1), *c = hpass(i), *d = hpass(i + 1), *e = hpass(i + 2);
      const float t0 = taps_[0], t1 = taps_[1], t2 = taps_[2], t3 = taps_[3], t4 = taps_[4];
      for (int64_t j = 0; j < W; ++j) out[j] = m[j] - (t0 * a[j] + t1 * b[j] + t2 * c[j] + t3 * d[j] + t4 * e[j]);
      break;
    }
    case ResidualOp::Median3: {
      // Sort every 3-row column once; the 3x3 median is then
      // med3(max of the lows, med3 of the middles, min of the highs) (exact for 3x3).
      const float *u = padded(i - 1) + 1, *mm = padded(i) + 1, *d = padded(i + 1) + 1;  // column -1
      float *lo = lo_.data(), *mid = mid_.data(), *hi = hi_.data();
      for (int64_t j = 0; j < W + 2; ++j) {
        const float p = u[j], q = mm[j], r = d[j];
        const float l1 = std::min(p, q), h1 = std::max(p, q);
        lo[j] = std::min(l1, r);
        const float h2 = std::max(l1, r);
        hi[j] = std::max(h1, h2);
        mid[j] = std::min(h1, h2);
      }
      for (int64_t j = 0; j < W; ++j) {
        const float l = std::max(std::max(lo[j], lo[j + 1]), lo[j + 2]);
        const float h = std::min(std::min(hi[j], hi[j + 1]), hi[j + 2]);
        const float md = med3(mid[j], mid[j + 1], mid[j + 2]);
        out[j] = m[j] - med3(l, md, h);
      }
      break;
    }
    case ResidualOp::Npr: {
      const float* a = padded(i & ~int64_t(1)) + 2;
      int64_t j = 0;
      for (; j + 1 < W; j += 2) { out[j] = m[j] - a[j]; out[j + 1] = m[j + 1] - a[j]; }
      if (j < W) out[j] = m[j] - a[j];
      break;
    }
    case ResidualOp::Highpass: {
      const float *u = padded(i - 1) + 2, *d = padded(i + 1) + 2;
      for (int64_t j = 0; j < W; ++j) out[j] = m[j] - 0.25f * (u[j] + d[j] + m[j - 1] + m[j + 1]);
      break;
    }
    case ResidualOp::Identity:
      std::memcpy(out, m, W * sizeof(float));
  }
}

void residual_batch(const ImageView& x, ResidualOp op, float sigma, float* out) {
  float taps[contract::kGaussTaps];
  contract::gaussian_taps(sigma, taps);
  const int64_t planes = x.B * x.C, HW = x.H * x.W;
#pragma omp parallel
  {
    PlaneRows rows(x.W, op, taps);
#pragma omp for schedule(dynamic, 1)
    for (int64_t p = 0; p < planes; ++p) {
      rows.start(x, p / x.C, p % x.C, 0);
      for (int64_t i = 0; i < x.H; ++i) rows.row(i, out + p * HW + i * x.W);
    }
  }
}

}  // namespace fpfast
