// pybind11 module fpfast._C: CPU kernels over numpy buffers (no link to torch's C++ ABI).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "contract_py.h"
#include "feature_sums.h"
#include "residual.h"

namespace py = pybind11;
using namespace fpfast;

#ifndef FPFAST_VERSION
#define FPFAST_VERSION "0.0.0"
#endif

namespace fpfast {
// A [B, 3, H, W] view of a numpy array of uint8 or float32, any strides.
ImageView image_view(const py::array& a, const char* name) {
  if (a.ndim() != 4)
    throw std::invalid_argument(std::string(name) + ": expected a 4-d [B, 3, H, W] array, got " +
                                std::to_string(a.ndim()) + " dims");
  if (a.shape(1) != 3)
    throw std::invalid_argument(std::string(name) + ": expected 3 channels, got " + std::to_string(a.shape(1)));
  ImageView v;
  if (a.dtype().is(py::dtype::of<uint8_t>())) v.is_u8 = true;
  else if (!a.dtype().is(py::dtype::of<float>()))
    throw std::invalid_argument(std::string(name) + ": expected uint8 or float32, got dtype " +
                                std::string(py::str(a.dtype())));
  const int64_t item = a.itemsize();
  v.data = a.data();
  v.B = a.shape(0); v.C = 3; v.H = a.shape(2); v.W = a.shape(3);
  v.sb = a.strides(0) / item; v.sc = a.strides(1) / item; v.sh = a.strides(2) / item; v.sw = a.strides(3) / item;
  if (v.B > 0 && (v.H < 16 || v.W < 16))
    throw std::invalid_argument(std::string(name) + ": images must be at least 16x16, got " +
                                std::to_string(v.W) + "x" + std::to_string(v.H));
  return v;
}
}  // namespace fpfast

// x: [B, 3, H, W] uint8 or float32 (any strides) -> [B, 3, H, W] float32.
static py::array_t<float> residual_py(const py::array& x, const std::string& op, float sigma) {
  ImageView v = image_view(x, "residual");
  ResidualOp rop = parse_residual(op);
  py::array_t<float> out({v.B, int64_t(3), v.H, v.W});
  float* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    residual_batch(v, rop, sigma, o);
  }
  return out;
}

// x: [B, 3, H, W] uint8 or float32 numpy array (any strides) ->
// sums [B, n] float64, gray [B, H, W] float32 or None, residual [B, 3, H, W] float32 or None.
static py::tuple feature_sums_py(const py::array& x, const std::string& op, float sigma,
                                 const std::vector<int>& periods, bool want_gray, bool want_residual) {
  ImageView v = image_view(x, "feature_sums");
  const ResidualOp rop = (op == "none") ? ResidualOp::Identity : parse_residual(op);
  if (rop == ResidualOp::Identity && v.is_u8)
    throw std::invalid_argument("feature_sums: op 'none' takes a float32 residual, got dtype uint8");
  if (periods.empty()) throw std::invalid_argument("feature_sums: expected at least one period, got none");
  for (int p : periods)
    if (p < 2 || p > 16)
      throw std::invalid_argument("feature_sums: periods must lie in [2, 16], got " + std::to_string(p));
  if (!(sigma > 0.0f))
    throw std::invalid_argument("feature_sums: sigma must be > 0, got " + std::to_string(sigma));
  const SumsLayout layout(periods);
  py::array_t<double> sums({v.B, int64_t(layout.n)});
  py::object gray = py::none(), res = py::none();
  float *g = nullptr, *r = nullptr;
  if (want_gray) {
    py::array_t<float> a({v.B, v.H, v.W});
    g = a.mutable_data();
    gray = a;
  }
  if (want_residual) {
    py::array_t<float> a({v.B, int64_t(3), v.H, v.W});
    r = a.mutable_data();
    res = a;
  }
  double* s = sums.mutable_data();
  {
    py::gil_scoped_release release;
    feature_sums(v, rop, sigma, layout, s, g, r);
  }
  return py::make_tuple(sums, gray, res);
}

static py::dict build_config() {
  py::dict d;
  d["version"] = FPFAST_VERSION;
#ifdef _OPENMP
  d["openmp"] = true;
  d["omp_max_threads"] = omp_get_max_threads();
#else
  d["openmp"] = false;
  d["omp_max_threads"] = 1;
#endif
#ifdef FPFAST_WITH_CUDA
  d["cuda"] = true;
#else
  d["cuda"] = false;
#endif
#if defined(__AVX2__)
  d["simd"] = "avx2";
#elif defined(__SSE4_2__)
  d["simd"] = "sse4.2";
#else
  d["simd"] = "baseline";
#endif
#if defined(__clang__)
  d["compiler"] = "clang " __clang_version__;
#elif defined(__GNUC__)
  d["compiler"] = "gcc " __VERSION__;
#else
  d["compiler"] = "unknown";
#endif
  py::list kernels;
  kernels.append("residual");
  kernels.append("feature_sums");
  d["cpu_kernels"] = kernels;
  d["contract"] = contract_dict();
  return d;
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "fpfast CPU kernels (C++17, OpenMP)";
  m.def("build_config", &build_config, "What was compiled in: version, OpenMP, CUDA, SIMD level, kernels.");
  m.def("residual", &residual_py, py::arg("x"), py::arg("op"), py::arg("sigma") = 1.0f,
        "Residual r = x - P(x) of a [B,3,H,W] uint8 or float32 array (any strides) -> float32 [B,3,H,W].");
  m.def("feature_sums", &feature_sums_py, py::arg("x"), py::arg("op"), py::arg("sigma"), py::arg("periods"),
        py::arg("want_gray") = false, py::arg("want_residual") = false,
        "Fused residual + raw feature sums (fpfast/ops/sums.py) of a [B,3,H,W] uint8 or float32 array "
        "(any strides; op 'none': x is the residual) -> (sums float64 [B, n], gray float32 [B,H,W] or None, "
        "residual float32 [B,3,H,W] or None).");
}
