// The kernel contract, in one place for every C++/CUDA kernel (cpp and cuda backends).
// Python mirror: fpfast/contract.py; tests/test_contract.py parses this file and checks that both
// compiled modules (build_config()["contract"]) and the Python table agree with it.
//
// Raw sums of one image (float64 [n_sums] per image, fpfast/ops/sums.py finalises them):
//   [kOffS1 + c] sum r_c      [kOffS2 + c] sum r_c^2   [kOffS3 + c] sum r_c^3   [kOffS4 + c] sum r_c^4
//   [kOffX + k]  sum r_0 r_1, sum r_0 r_2, sum r_1 r_2                (k = 0, 1, 2)
//   [kMomentSums, kMomentSums + P)  phase energies, periods in spec order, p^2 each (P = sum p^2)
//   [kMomentSums + P, + kDctCoefs)   sums of squared 8x8 DCT-II coefficients, u * 8 + v
// Plain constexpr values and one inline host function: usable from host C++ and CUDA device code.
#pragma once
#include <cmath>

namespace fpfast {
namespace contract {

// Residual operator codes. The same numbers in fpfast/contract.py (RESIDUAL_OPS[i] has code i).
enum Op : int { kDenoise = 0, kMedian3 = 1, kNpr = 2, kHighpass = 3, kNone = 4 };
constexpr int kNumOps = 5;
constexpr const char* kOpNames[kNumOps] = {"denoise", "median3", "npr", "highpass", "none"};

// Sums layout.
constexpr int kOffS1 = 0, kOffS2 = 3, kOffS3 = 6, kOffS4 = 9, kOffX = 12;
constexpr int kMomentSums = 15;      // S1..S4 (3 each) + 3 cross sums
constexpr int kDctBlock = 8;         // block DCT side; blocks anchored at (0, 0)
constexpr int kDctCoefs = kDctBlock * kDctBlock;  // 64
constexpr int kMinPeriod = 2, kMaxPeriod = 16;    // phase periods, each in [kMinPeriod, kMaxPeriod]
constexpr int kMaxPeriods = 16;                   // periods per spec

// Denoise: separable (2 * kGaussRadius + 1)-tap Gaussian, normalised to sum 1.
constexpr int kGaussRadius = 2;
constexpr int kGaussTaps = 2 * kGaussRadius + 1;  // 5

// taps[kGaussTaps] of sigma, computed in double then rounded to float (as fpfast.contract.gaussian_taps).
inline void gaussian_taps(double sigma, float taps[kGaussTaps]) {
  double w[kGaussTaps], s = 0.0;
  for (int i = -kGaussRadius; i <= kGaussRadius; ++i)
    s += (w[i + kGaussRadius] = std::exp(-(i * i) / (2.0 * sigma * sigma)));
  for (int i = 0; i < kGaussTaps; ++i) taps[i] = static_cast<float>(w[i] / s);
}

// Sums per image for periods whose squares add to `phase_bins`.
constexpr int n_sums(int phase_bins) { return kMomentSums + phase_bins + kDctCoefs; }

}  // namespace contract
}  // namespace fpfast
