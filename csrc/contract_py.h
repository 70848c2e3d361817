// contract.h as a Python dict, exported by both compiled modules (build_config()["contract"]) so
// that tests/test_contract.py can check each build against fpfast/contract.py.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "contract.h"

namespace fpfast {

inline pybind11::dict contract_dict() {
  namespace c = contract;
  pybind11::dict d;
  std::vector<std::string> ops(c::kOpNames, c::kOpNames + c::kNumOps);
  d["ops"] = ops;  // code = index
  d["off_s1"] = c::kOffS1; d["off_s2"] = c::kOffS2; d["off_s3"] = c::kOffS3; d["off_s4"] = c::kOffS4;
  d["off_x"] = c::kOffX;
  d["moment_sums"] = c::kMomentSums;
  d["dct_block"] = c::kDctBlock;
  d["dct_coefs"] = c::kDctCoefs;
  d["min_period"] = c::kMinPeriod; d["max_period"] = c::kMaxPeriod; d["max_periods"] = c::kMaxPeriods;
  d["gauss_taps"] = c::kGaussTaps;
  pybind11::dict taps;  // taps of a few sigmas, as the kernels compute them
  for (double sigma : {0.5, 1.0, 2.0}) {
    float t[c::kGaussTaps];
    c::gaussian_taps(sigma, t);
    taps[pybind11::float_(sigma)] = std::vector<float>(t, t + c::kGaussTaps);
  }
  d["taps"] = taps;
  return d;
}

}  // namespace fpfast
