// Fused CPU feature sums (see feature_sums.h and fpfast/ops/sums.py for the contract).
//
// Work unit: one band of kBand rows of one image (OpenMP over all bands of all images, so one
// large image still uses every core). Inside a band, row by row: the residual rows of the three
// channels come out of PlaneRows (source rows in an L1-resident ring), then every sum is taken
// from those rows while they are hot: moments and cross sums, the phase accumulators, and, every
// 8th row, the block DCT of the 8 gray rows just made. Per-pixel math is float; sums over up to
// kChunk columns are float and then go to double accumulators.
#include "feature_sums.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "residual.h"

namespace fpfast {
namespace {

constexpr int64_t kBand = 32;    // rows per task; a multiple of 8, so DCT block rows never straddle bands
constexpr int64_t kChunk = 256;  // columns summed in float before going to double
constexpr int64_t kBlockChunk = 64;  // 8x8 blocks summed in float before going to double

typedef float v8 __attribute__((vector_size(32)));  // GCC/Clang vector extension: 8 floats

struct Dct8 {
  float D[8][8];          // D[u][k]: orthonormal DCT-II, rows = frequencies
  alignas(32) v8 DT[8];   // DT[k][v] = D[v][k]
  Dct8() {
    for (int u = 0; u < 8; ++u)
      for (int k = 0; k < 8; ++k) {
        double d = std::cos(M_PI * (2 * k + 1) * u / 16.0) * std::sqrt(2.0 / 8.0);
        if (u == 0) d /= std::sqrt(2.0);
        D[u][k] = static_cast<float>(d);
      }
    for (int k = 0; k < 8; ++k)
      for (int v = 0; v < 8; ++v) DT[k][v] = D[v][k];
  }
};

// Per-thread scratch, sized for width W.
struct Scratch {
  std::vector<PlaneRows> rows;  // one per channel
  std::vector<float> r;         // [3, W] residual rows (when not written to the output)
  std::vector<float> e;         // [W]    e' = r0^2 + r1^2 + r2^2 (3 e)
  std::vector<float> G;         // [8, W] g' = r0 + r1 + r2 (3 g), rows i & 7 of the current block row
  std::vector<float> T;         // [8, W] vertical DCT pass of G
  std::vector<float> C;         // per accumulated period q: [q, W] column sums of e' by row phase
  Scratch(int64_t W, ResidualOp op, const float taps[contract::kGaussTaps], int64_t phase_rows)
      : r(3 * W), e(W), G(8 * W), T(8 * W), C(phase_rows * W) {
    for (int c = 0; c < 3; ++c) rows.emplace_back(W, op, taps);
  }
};

// Moments, cross sums, e' and g' of one row of the three residual channels.
// rc: 3 x [W] float32 residual rows; acc: [kMomentSums] float64 (+=); e, g: [W] float32 (written).
inline void stats_row(const float* const rc[3], int64_t W, double* acc, float* e, float* g) {
  for (int64_t j0 = 0; j0 < W; j0 += kChunk) {
    const int64_t n = std::min(kChunk, W - j0);
    for (int c = 0; c < 3; ++c) {
      const float* v = rc[c] + j0;
      float a1 = 0, a2 = 0, a3 = 0, a4 = 0;
#pragma omp simd reduction(+ : a1, a2, a3, a4)
      for (int64_t j = 0; j < n; ++j) {
        const float t = v[j], t2 = t * t;
        a1 += t; a2 += t2; a3 += t2 * t; a4 += t2 * t2;
      }
      acc[contract::kOffS1 + c] += a1; acc[contract::kOffS2 + c] += a2;
      acc[contract::kOffS3 + c] += a3; acc[contract::kOffS4 + c] += a4;
    }
    const float *p = rc[0] + j0, *q = rc[1] + j0, *s = rc[2] + j0;
    float* ej = e + j0;
    float* gj = g + j0;
    float x01 = 0, x02 = 0, x12 = 0;
#pragma omp simd reduction(+ : x01, x02, x12)
    for (int64_t j = 0; j < n; ++j) {
      const float a = p[j], b = q[j], c = s[j];
      x01 += a * b; x02 += a * c; x12 += b * c;
      ej[j] = a * a + b * b + c * c;
      gj[j] = a + b + c;
    }
    acc[contract::kOffX] += x01; acc[contract::kOffX + 1] += x02; acc[contract::kOffX + 2] += x12;
  }
}

// DCT energies of the whole blocks of one 8-row block row into dsum (+=).
// G: [8, W] float32; T: [8, W] float32 scratch; dsum: [kDctCoefs] float64.
static_assert(contract::kDctBlock == 8, "the CPU DCT is written for 8x8 blocks");
inline void dct_block_row(const Dct8& dct, const float* G, float* T, int64_t W, double* dsum) {
  const int64_t wb = W / 8, w8 = wb * 8;
  for (int u = 0; u < 8; ++u) {  // vertical: T[u][j] = sum_k D[u][k] G[k][j]
    const float d0 = dct.D[u][0], d1 = dct.D[u][1], d2 = dct.D[u][2], d3 = dct.D[u][3], d4 = dct.D[u][4],
                d5 = dct.D[u][5], d6 = dct.D[u][6], d7 = dct.D[u][7];
    const float *g0 = G, *g1 = G + W, *g2 = G + 2 * W, *g3 = G + 3 * W, *g4 = G + 4 * W, *g5 = G + 5 * W,
                *g6 = G + 6 * W, *g7 = G + 7 * W;
    float* t = T + u * W;
    for (int64_t j = 0; j < w8; ++j)
      t[j] = d0 * g0[j] + d1 * g1[j] + d2 * g2[j] + d3 * g3[j] + d4 * g4[j] + d5 * g5[j] + d6 * g6[j] + d7 * g7[j];
  }
  const v8 dt0 = dct.DT[0], dt1 = dct.DT[1], dt2 = dct.DT[2], dt3 = dct.DT[3], dt4 = dct.DT[4], dt5 = dct.DT[5],
           dt6 = dct.DT[6], dt7 = dct.DT[7];
  for (int u = 0; u < 8; ++u) {  // horizontal, 8 coefficients v at once: c[v] = sum_k T[u][8bj+k] D[v][k]
    const float* tu = T + u * W;
    for (int64_t b0 = 0; b0 < wb; b0 += kBlockChunk) {
      const int64_t b1 = std::min(wb, b0 + kBlockChunk);
      v8 eu = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t bj = b0; bj < b1; ++bj) {
        const float* t = tu + 8 * bj;
        const v8 c = t[0] * dt0 + t[1] * dt1 + t[2] * dt2 + t[3] * dt3 + t[4] * dt4 + t[5] * dt5 + t[6] * dt6 +
                     t[7] * dt7;
        eu += c * c;
      }
      for (int v = 0; v < 8; ++v) dsum[u * 8 + v] += eu[v];
    }
  }
}

// All partial sums of rows [i0, i1) of image b into acc (zeroed here).
// x: [B, 3, H, W] uint8 or float32 view; acc: [L.n] float64; gray: [B, H, W] float32 or nullptr;
// residual: [B, 3, H, W] float32 or nullptr.
void band_sums(const ImageView& x, int64_t b, int64_t i0, int64_t i1, const SumsLayout& L, const Dct8& dct,
               const std::vector<int64_t>& c_off, Scratch& s, double* acc, float* gray, float* residual) {
  const int64_t H = x.H, W = x.W, hb8 = (H / 8) * 8;
  std::fill(acc, acc + L.n, 0.0);
  std::fill(s.C.begin(), s.C.end(), 0.0f);
  for (int c = 0; c < 3; ++c) s.rows[c].start(x, b, c, i0);
  for (int64_t i = i0; i < i1; ++i) {
    float* rc[3];
    for (int c = 0; c < 3; ++c) {
      rc[c] = residual ? residual + ((b * 3 + c) * H + i) * W : s.r.data() + c * W;
      s.rows[c].row(i, rc[c]);
    }
    float* g = s.G.data() + (i & 7) * W;
    stats_row(rc, W, acc, s.e.data(), g);
    for (size_t k = 0; k < L.periods.size(); ++k) {
      if (L.phase_src[k] != static_cast<int>(k)) continue;
      float* cr = s.C.data() + (c_off[k] + i % L.periods[k]) * W;
      const float* e = s.e.data();
#pragma omp simd
      for (int64_t j = 0; j < W; ++j) cr[j] += e[j];
    }
    if (gray) {
      float* go = gray + (b * H + i) * W;
      for (int64_t j = 0; j < W; ++j) go[j] = g[j] / 3.0f;
    }
    if ((i & 7) == 7 && i < hb8) dct_block_row(dct, s.G.data(), s.T.data(), W, acc + L.dct_off);
  }
  for (size_t k = 0; k < L.periods.size(); ++k) {  // fold the columns by phase: E[p][a*p + b'] (of e')
    if (L.phase_src[k] != static_cast<int>(k)) continue;
    const int p = L.periods[k];
    for (int a = 0; a < p; ++a) {
      const float* cr = s.C.data() + (c_off[k] + a) * W;
      for (int bb = 0; bb < p; ++bb) {
        double t = 0.0;
        for (int64_t j = bb; j < W; j += p) t += cr[j];
        acc[L.phase_off[k] + a * p + bb] += t;
      }
    }
  }
}

}  // namespace

SumsLayout::SumsLayout(const std::vector<int>& ps) : periods(ps) {
  int off = contract::kMomentSums;
  for (size_t k = 0; k < ps.size(); ++k) {
    phase_off.push_back(off);
    off += ps[k] * ps[k];
    // Fold E[p] from the largest period q that p divides (itself when none): one accumulator per pixel
    // for the spec's (2, 4, 8) instead of three.
    size_t best = k;
    for (size_t q = 0; q < ps.size(); ++q)
      if (ps[q] % ps[k] == 0 && (ps[q] > ps[best] || (ps[q] == ps[best] && q < best))) best = q;
    phase_src.push_back(static_cast<int>(best));
  }
  dct_off = off;
  n = off + contract::kDctCoefs;
}

void feature_sums(const ImageView& x, ResidualOp op, float sigma, const SumsLayout& L, double* sums, float* gray,
                  float* residual) {
  const int64_t B = x.B, H = x.H, W = x.W, n = L.n;
  if (B == 0) return;
  float taps[contract::kGaussTaps];
  contract::gaussian_taps(sigma, taps);
  static const Dct8 dct;
  std::vector<int64_t> c_off(L.periods.size(), 0);
  int64_t phase_rows = 0;
  for (size_t k = 0; k < L.periods.size(); ++k)
    if (L.phase_src[k] == static_cast<int>(k)) { c_off[k] = phase_rows; phase_rows += L.periods[k]; }

  const int64_t nbands = (H + kBand - 1) / kBand, ntasks = B * nbands;
  std::vector<double> part(ntasks * n);
#pragma omp parallel
  {
    Scratch s(W, op, taps, phase_rows);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < ntasks; ++t) {
      const int64_t b = t / nbands, i0 = (t % nbands) * kBand;
      band_sums(x, b, i0, std::min(H, i0 + kBand), L, dct, c_off, s, part.data() + t * n, gray, residual);
    }
  }
  // Reduce the bands of each image in band order (deterministic), undo the 3 in e' and g',
  // and fold the periods that were not accumulated from the one that was.
  for (int64_t b = 0; b < B; ++b) {
    double* out = sums + b * n;
    std::fill(out, out + n, 0.0);
    for (int64_t k = 0; k < nbands; ++k) {
      const double* pk = part.data() + (b * nbands + k) * n;
      for (int64_t q = 0; q < n; ++q) out[q] += pk[q];
    }
    for (size_t k = 0; k < L.periods.size(); ++k) {
      if (L.phase_src[k] != static_cast<int>(k)) continue;
      const int p = L.periods[k];
      for (int q = 0; q < p * p; ++q) out[L.phase_off[k] + q] /= 3.0;
    }
    for (int q = 0; q < contract::kDctCoefs; ++q) out[L.dct_off + q] /= 9.0;
    for (size_t k = 0; k < L.periods.size(); ++k) {
      const int src = L.phase_src[k];
      if (src == static_cast<int>(k)) continue;
      const int p = L.periods[k], q = L.periods[src];
      double* ep = out + L.phase_off[k];
      const double* eq = out + L.phase_off[src];
      std::fill(ep, ep + p * p, 0.0);
      for (int a = 0; a < q; ++a)
        for (int bb = 0; bb < q; ++bb) ep[(a % p) * p + bb % p] += eq[a * q + bb];
    }
  }
}

}  // namespace fpfast
