// pybind11 module fpfast._C_cuda: launches the CUDA kernels on buffers that torch allocated.
// No torch C++ ABI: tensors arrive as raw device pointers (ints), shapes and element strides;
// the stream as an int (torch.cuda.current_stream(dev).cuda_stream). Importing the module makes
// no CUDA call (static cudart); only feature_sums, device_info and kernel_attributes touch the GPU.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "contract_py.h"
#include "cuda/features.h"

namespace py = pybind11;
using namespace fpfast::cuda;
namespace contract = fpfast::contract;

#ifndef FPFAST_VERSION
#define FPFAST_VERSION "0.0.0"
#endif

namespace {

void check(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess)
    throw std::runtime_error("fpfast._C_cuda: " + what + " failed: " + cudaGetErrorName(e) + " (" +
                             cudaGetErrorString(e) + ")");
}

Op parse_op(const std::string& name) {
  for (int k = 0; k < contract::kNumOps; ++k)
    if (name == contract::kOpNames[k]) return static_cast<Op>(k);
  throw std::invalid_argument("feature_sums: unknown residual operator '" + name +
                              "'; expected denoise, median3, npr, highpass or none");
}

// Makes `device` current for the scope (our static runtime keeps its own notion of it).
struct DeviceGuard {
  int prev = -1;
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&prev), "cudaGetDevice");
    if (prev != device) check(cudaSetDevice(device), "cudaSetDevice(" + std::to_string(device) + ")");
  }
  ~DeviceGuard() {
    int cur = -1;
    if (cudaGetDevice(&cur) == cudaSuccess && cur != prev && prev >= 0) cudaSetDevice(prev);
  }
};

std::string s(int64_t v) { return std::to_string(v); }

// x_ptr:        [B, 3, H, W] uint8 or float32 on `device`, element strides (sb, sc, sh, sw) >= 0
// partials_ptr: [B, n_part, n_sums] float32 contiguous (every element written)
// gray_ptr:     [B, H, W] float32 contiguous, or 0
// residual_ptr: [B, 3, H, W] float32 contiguous, or 0
void feature_sums(int device, uintptr_t x_ptr, bool is_u8, int64_t B, int64_t H, int64_t W,
                  int64_t sb, int64_t sc, int64_t sh, int64_t sw, const std::string& op_name, float sigma,
                  const std::vector<int>& periods, int tiles_per_block, uintptr_t partials_ptr,
                  int64_t n_part, int64_t n_sums, uintptr_t gray_ptr, uintptr_t residual_ptr,
                  uintptr_t stream) {
  const Op op = parse_op(op_name);
  if (op == kNone && is_u8)
    throw std::invalid_argument("feature_sums: op 'none' takes a float32 residual, got uint8 input");
  if (B < 0 || B > (1 << 24)) throw std::invalid_argument("feature_sums: batch size must lie in [0, 2^24], got " + s(B));
  if (H < 16 || W < 16 || H > (1 << 20) || W > (1 << 20))
    throw std::invalid_argument("feature_sums: images must be 16..2^20 px a side, got " + s(W) + "x" + s(H));
  if (sb < 0 || sc < 0 || sh < 0 || sw < 0)
    throw std::invalid_argument("feature_sums: strides must be >= 0, got (" + s(sb) + ", " + s(sc) + ", " + s(sh) + ", " + s(sw) + ")");
  if (periods.empty() || periods.size() > static_cast<size_t>(kMaxPeriods))
    throw std::invalid_argument("feature_sums: expected 1.." + s(kMaxPeriods) + " periods, got " + s(periods.size()));
  if (tiles_per_block < 1) throw std::invalid_argument("feature_sums: tiles_per_block must be >= 1, got " + s(tiles_per_block));

  FeatureParams p{};
  p.n_periods = static_cast<int>(periods.size());
  for (int q = 0; q < p.n_periods; ++q) {
    const int per = periods[q];
    if (per < contract::kMinPeriod || per > contract::kMaxPeriod)
      throw std::invalid_argument("feature_sums: periods must lie in [" + s(contract::kMinPeriod) + ", " +
                                  s(contract::kMaxPeriod) + "], got " + s(per));
    p.period[q] = per;
    p.cum_p[q + 1] = p.cum_p[q] + per;
    p.cum_p2[q + 1] = p.cum_p2[q] + per * per;
  }
  if (p.cum_p2[p.n_periods] > kMaxPhaseBins)
    throw std::invalid_argument("feature_sums: the periods' p^2 sum to " + s(p.cum_p2[p.n_periods]) +
                                ", above the kernel's limit of " + s(kMaxPhaseBins));
  const int64_t want_sums = contract::n_sums(p.cum_p2[p.n_periods]);
  if (n_sums != want_sums)
    throw std::invalid_argument("feature_sums: n_sums " + s(n_sums) + " does not match the periods (expected " + s(want_sums) + ")");
  const int want_part = n_partials(static_cast<int>(H), static_cast<int>(W), tiles_per_block);
  if (n_part != want_part)
    throw std::invalid_argument("feature_sums: partials buffer has " + s(n_part) + " rows per image, expected " +
                                s(want_part) + " for " + s(W) + "x" + s(H) + " and tiles_per_block " + s(tiles_per_block));
  if (B * n_part > 0x7fffffffLL) throw std::invalid_argument("feature_sums: too many blocks (" + s(B * n_part) + ")");
  if (B == 0) return;
  if (x_ptr == 0 || partials_ptr == 0) throw std::invalid_argument("feature_sums: null input or partials pointer");

  p.x = reinterpret_cast<const void*>(x_ptr);
  p.partials = reinterpret_cast<float*>(partials_ptr);
  p.gray = reinterpret_cast<float*>(gray_ptr);
  p.residual = reinterpret_cast<float*>(residual_ptr);
  p.sb = sb; p.sc = sc; p.sh = sh; p.sw = sw;
  p.B = static_cast<int>(B); p.H = static_cast<int>(H); p.W = static_cast<int>(W);
  p.tiles_x = static_cast<int>((W + kTile - 1) / kTile);
  p.tiles_y = static_cast<int>((H + kTile - 1) / kTile);
  p.tiles_per_block = tiles_per_block;
  p.n_part = static_cast<int>(n_part);
  p.n_sums = static_cast<int>(n_sums);
  p.channels_last = sc < sw ? 1 : 0;
  contract::gaussian_taps(sigma, p.taps);

  py::gil_scoped_release release;
  DeviceGuard guard(device);
  check(launch_feature_sums(p, op, is_u8, reinterpret_cast<cudaStream_t>(stream)),
        "feature_sums kernel launch (op " + op_name + ", " + (is_u8 ? "uint8" : "float32") + ", B " + s(B) +
            ", " + s(W) + "x" + s(H) + ")");
}

py::dict kernel_info(Op op, bool is_u8) {
  int regs = 0, local = 0, smem = 0, threads = 0;
  py::dict d;
  const cudaError_t e = kernel_attributes(op, is_u8, &regs, &local, &smem, &threads);
  if (e != cudaSuccess) {
    d["error"] = std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
    cudaGetLastError();  // clear it
    return d;
  }
  d["registers"] = regs; d["local_bytes"] = local; d["static_smem_bytes"] = smem; d["max_threads"] = threads;
  return d;
}

py::dict device_info(int device) {
  DeviceGuard guard(device);
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties(" + std::to_string(device) + ")");
  int driver = 0, runtime = 0;
  check(cudaDriverGetVersion(&driver), "cudaDriverGetVersion");
  check(cudaRuntimeGetVersion(&runtime), "cudaRuntimeGetVersion");
  py::dict d;
  d["name"] = std::string(prop.name);
  d["compute_capability"] = std::to_string(prop.major) + "." + std::to_string(prop.minor);
  d["multiprocessors"] = prop.multiProcessorCount;
  d["l2_bytes"] = prop.l2CacheSize;
  d["smem_per_block_optin"] = static_cast<int64_t>(prop.sharedMemPerBlockOptin);
  d["driver_version"] = driver;
  d["runtime_version"] = runtime;
  py::dict k;
  for (int op = 0; op < contract::kNumOps; ++op) {
    const std::string name = contract::kOpNames[op];
    k[py::str(name + "/float32")] = kernel_info(static_cast<Op>(op), false);
    if (op != kNone) k[py::str(name + "/uint8")] = kernel_info(static_cast<Op>(op), true);
  }
  d["kernels"] = k;
  return d;
}

py::dict build_config() {
  py::dict d;
  d["version"] = FPFAST_VERSION;
  d["cudart_version"] = CUDART_VERSION;  // compile time; no CUDA call
  d["cudart"] = "static";
  d["nvcc"] = nvcc_version();
  d["archs"] = compiled_archs();
  d["tile"] = kTile;
  d["max_periods"] = kMaxPeriods;
  d["max_phase_bins"] = kMaxPhaseBins;
  d["static_smem_bytes"] = static_smem_bytes();
  d["contract"] = fpfast::contract_dict();
  py::list kernels;
  kernels.append("feature_sums");
  d["kernels"] = kernels;
  return d;
}

}  // namespace

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "fpfast CUDA kernels (raw device pointers; no CUDA call at import)";
  m.def("build_config", &build_config, "What was compiled in (no CUDA call): cudart version, nvcc, archs.");
  m.def("device_info", &device_info, py::arg("device") = 0,
        "Properties of a device and the registers/local memory/smem of every kernel instance on it.");
  m.def("n_partials", &n_partials, py::arg("H"), py::arg("W"), py::arg("tiles_per_block"),
        "Rows of partial sums per image: ceil(W/32) * ceil(ceil(H/32) / tiles_per_block).");
  m.def("feature_sums", &feature_sums, py::arg("device"), py::arg("x_ptr"), py::arg("is_u8"), py::arg("B"),
        py::arg("H"), py::arg("W"), py::arg("sb"), py::arg("sc"), py::arg("sh"), py::arg("sw"), py::arg("op"),
        py::arg("sigma"), py::arg("periods"), py::arg("tiles_per_block"), py::arg("partials_ptr"),
        py::arg("n_part"), py::arg("n_sums"), py::arg("gray_ptr") = 0, py::arg("residual_ptr") = 0,
        py::arg("stream") = 0,
        "Fused residual + raw sums of x [B,3,H,W] (uint8 or float32 at x_ptr, element strides) into\n"
        "partials [B, n_part, n_sums] float32; optionally gray [B,H,W] and residual [B,3,H,W] float32\n"
        "(contiguous). Asynchronous on `stream`; launch errors raise RuntimeError.");
}
