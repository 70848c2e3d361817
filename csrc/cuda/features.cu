// Fused residual + raw feature sums (contract: fpfast/ops/sums.py). See features.h.
//
// Block = 256 threads, one vertical strip of 32x32 output tiles (tiles anchored at (0, 0), so the
// 8x8 DCT grid never straddles a tile). Per tile:
//   1. load the 36x36x3 tile + halo (reflect borders) into shared memory, each element once,
//      consecutive threads on consecutive addresses (HWC or CHW order picked from the strides);
//   2. (denoise) horizontal 5-tap pass into shared memory;
//   3. residual of 4 pixels per thread (one column, rows ty, ty+8, ty+16, ty+24) in registers:
//      moments and cross sums accumulate in registers over the whole strip; g and e go to smem;
//   4. DCT row pass (g D^T) and phase row sums; 5. DCT column pass (c^2 into one register per
//      thread: thread t always owns coefficient (u, v) = ((t%64)/8, t%8)) and phase bins.
// Pixels outside the image have r = 0 (they add nothing); partial 8x8 blocks are skipped.
// At the end of the strip: warp-shuffle + shared-memory reductions in a fixed order, one float32
// row of n_sums partials per block. Nothing is atomic; results are bitwise reproducible.
//
// Resources (nvcc 13.0.88, setup.py flags + `-Xptxas -v`), all 9 instances (4 ops x u8/f32 + none/f32):
//   sm_90: 64 registers, 0 B stack, 0 B spills; sm_80: 56-64 registers, 0 B stack, 0 B spills;
//   38,544 B static smem + dynamic 4 * (sum p^2 + 32 * sum p) B (2,128 B for periods 2, 4, 8).
// __launch_bounds__(256, 4) caps registers at 64: 4 blocks (1024 threads) per SM. Without the cap
// nvcc took 128 registers (2 blocks/SM); unrolling the 4-pixel loop or the load loop by 4 under
// the cap spilled 60-230 B, hence `unroll 1` / `unroll 2` below. device_info() reports the same
// numbers from cudaFuncGetAttributes on the GPU at hand.
#include <cuda_runtime.h>

#include "cuda/features.h"

namespace fpfast {
namespace cuda {

namespace {

static_assert(contract::kDctBlock == 8 && contract::kDctCoefs == 64, "the kernel's DCT threads are laid out for 8x8");
constexpr int NT = 256;                 // threads per block
#ifndef FP_MIN_BLOCKS
#define FP_MIN_BLOCKS 4
#endif
constexpr int MIN_BLOCKS = FP_MIN_BLOCKS;  // blocks per SM the register budget must allow (64 regs at 4)
constexpr int HALO = 2;
constexpr int IN = kTile + 2 * HALO;    // 36: tile + halo
constexpr int INP = IN + 1;             // padded row (bank spread)
constexpr int TP = kTile + 1;           // padded 32-row

// Orthonormal 8x8 DCT-II matrix, D[k][n] = s_k cos(pi (2n+1) k / 16), s_0 = sqrt(1/8), s_k = 1/2
// (= fpfast.reference.features.dct_matrix(8), printed with 10 significant digits).
__constant__ float c_dct[8][8] = {
    {3.535533906e-01f, 3.535533906e-01f, 3.535533906e-01f, 3.535533906e-01f, 3.535533906e-01f, 3.535533906e-01f, 3.535533906e-01f, 3.535533906e-01f},
    {4.903926402e-01f, 4.157348062e-01f, 2.777851165e-01f, 9.754516101e-02f, -9.754516101e-02f, -2.777851165e-01f, -4.157348062e-01f, -4.903926402e-01f},
    {4.619397663e-01f, 1.913417162e-01f, -1.913417162e-01f, -4.619397663e-01f, -4.619397663e-01f, -1.913417162e-01f, 1.913417162e-01f, 4.619397663e-01f},
    {4.157348062e-01f, -9.754516101e-02f, -4.903926402e-01f, -2.777851165e-01f, 2.777851165e-01f, 4.903926402e-01f, 9.754516101e-02f, -4.157348062e-01f},
    {3.535533906e-01f, -3.535533906e-01f, -3.535533906e-01f, 3.535533906e-01f, 3.535533906e-01f, -3.535533906e-01f, -3.535533906e-01f, 3.535533906e-01f},
    {2.777851165e-01f, -4.903926402e-01f, 9.754516101e-02f, 4.157348062e-01f, -4.157348062e-01f, -9.754516101e-02f, 4.903926402e-01f, -2.777851165e-01f},
    {1.913417162e-01f, -4.619397663e-01f, 4.619397663e-01f, -1.913417162e-01f, -1.913417162e-01f, 4.619397663e-01f, -4.619397663e-01f, 1.913417162e-01f},
    {9.754516101e-02f, -2.777851165e-01f, 4.157348062e-01f, -4.903926402e-01f, 4.903926402e-01f, -4.157348062e-01f, 2.777851165e-01f, -9.754516101e-02f},
};

// Shared memory of one block (static part). `work` holds the denoise horizontal pass, then the
// DCT row pass, then the final reductions.
struct Smem {
  float xin[3][IN][INP];     // tile + halo, float values of the input
  float work[3 * IN * kTile];
  float g[kTile][TP];        // gray residual of the tile
  float e[kTile][TP];        // channel-mean squared residual of the tile
  float dct[8][9];           // c_dct, rows padded (conflict-free when 8 threads read 8 rows)
};

// Reflect (-i for i < 0, 2n-2-i for i >= n), then clamped: rows/columns further than 2 past
// the image only feed pixels outside it, whose results are discarded.
__device__ __forceinline__ int reflect_clamp(int i, int n) {
  i = i < 0 ? -i : i;
  i = i >= n ? 2 * n - 2 - i : i;
  return min(max(i, 0), n - 1);
}

__device__ __forceinline__ float to_float(uint8_t v) { return __fdiv_rn(static_cast<float>(v), 255.0f); }  // = torch x.float() / 255
__device__ __forceinline__ float to_float(float v) { return v; }

template <typename T>
__device__ __forceinline__ void load_tile(const FeatureParams& p, const T* __restrict__ img, int y0, int x0, Smem& s) {
  constexpr int N = 3 * IN * IN;
  if (p.channels_last) {  // address order (row, col, c)
#pragma unroll 2
    for (int f = threadIdx.x; f < N; f += NT) {
      const int c = f % 3, pix = f / 3, col = pix % IN, row = pix / IN;
      const int gi = reflect_clamp(y0 - HALO + row, p.H), gj = reflect_clamp(x0 - HALO + col, p.W);
      s.xin[c][row][col] = to_float(__ldg(img + c * p.sc + gi * p.sh + gj * p.sw));
    }
  } else {  // address order (c, row, col)
#pragma unroll 2
    for (int f = threadIdx.x; f < N; f += NT) {
      const int col = f % IN, rest = f / IN, row = rest % IN, c = rest / IN;
      const int gi = reflect_clamp(y0 - HALO + row, p.H), gj = reflect_clamp(x0 - HALO + col, p.W);
      s.xin[c][row][col] = to_float(__ldg(img + c * p.sc + gi * p.sh + gj * p.sw));
    }
  }
}

// Residual of channel c at tile pixel (li, lj) (xin coordinates li+2, lj+2).
template <int OP>
__device__ __forceinline__ float residual_at(const FeatureParams& p, const Smem& s, int c, int li, int lj) {
  const float x = s.xin[c][li + HALO][lj + HALO];
  if constexpr (OP == kNone) {
    return x;
  } else if constexpr (OP == kDenoise) {
    const float* t = s.work + (c * IN + li) * kTile + lj;  // horizontal pass, rows li..li+4
    const float blur = p.taps[0] * t[0] + p.taps[1] * t[kTile] + p.taps[2] * t[2 * kTile] +
                       p.taps[3] * t[3 * kTile] + p.taps[4] * t[4 * kTile];
    return x - blur;
  } else if constexpr (OP == kNpr) {
    return x - s.xin[c][(li & ~1) + HALO][(lj & ~1) + HALO];  // y0, x0 are even
  } else if constexpr (OP == kHighpass) {
    const float nb = s.xin[c][li + 1][lj + 2] + s.xin[c][li + 3][lj + 2] + s.xin[c][li + 2][lj + 1] + s.xin[c][li + 2][lj + 3];
    return x - 0.25f * nb;  // same summation order as the reference
  } else {  // kMedian3: median of 9, the exchange network of csrc/residual.cpp (19 compare-exchanges)
  float v[9];
#pragma unroll
  for (int a = 0; a < 3; ++a)
#pragma unroll
    for (int b = 0; b < 3; ++b) v[a * 3 + b] = s.xin[c][li + 1 + a][lj + 1 + b];
#define FP_CE(a, b) { const float lo = fminf(v[a], v[b]), hi = fmaxf(v[a], v[b]); v[a] = lo; v[b] = hi; }
  FP_CE(1, 2); FP_CE(4, 5); FP_CE(7, 8); FP_CE(0, 1); FP_CE(3, 4); FP_CE(6, 7);
  FP_CE(1, 2); FP_CE(4, 5); FP_CE(7, 8); FP_CE(0, 3); FP_CE(5, 8); FP_CE(4, 7);
  FP_CE(3, 6); FP_CE(1, 4); FP_CE(2, 5); FP_CE(4, 7); FP_CE(4, 2); FP_CE(6, 4);
  FP_CE(4, 2);
#undef FP_CE
    return x - v[4];
  }
}

template <int OP, typename T>
__global__ void __launch_bounds__(NT, MIN_BLOCKS) feature_sums_kernel(const FeatureParams p) {
  __shared__ Smem s;
  extern __shared__ float dyn[];
  const int n_bins = p.cum_p2[p.n_periods];
  float* bins = dyn;              // [sum p^2] phase sums of the strip, global phase order
  float* rowsum = dyn + n_bins;   // [32 * sum p] per tile row, per column phase

  const int t = threadIdx.x, tx = t & 31, ty = t >> 5;
  const int b = blockIdx.x / p.n_part, part = blockIdx.x % p.n_part;
  const int x0 = (part % p.tiles_x) * kTile;
  const int tile_y_begin = (part / p.tiles_x) * p.tiles_per_block;
  const int tile_y_end = min(tile_y_begin + p.tiles_per_block, p.tiles_y);
  const T* __restrict__ img = static_cast<const T*>(p.x) + b * p.sb;

  for (int i = t; i < n_bins; i += NT) bins[i] = 0.0f;
  constexpr int NM = contract::kMomentSums;
  float m[NM];  // S1[3], S2[3], S3[3], S4[3], X[3] at the contract's offsets
#pragma unroll
  for (int k = 0; k < NM; ++k) m[k] = 0.0f;
  float dacc = 0.0f;              // sum of c^2 for coefficient (du, dv)
  const int dv = t & 7, du = (t & 63) >> 3, dby = t >> 6;
  if (t < 64) s.dct[t >> 3][t & 7] = c_dct[t >> 3][t & 7];  // first read after the loop's barriers
  const float* Dv = s.dct[dv];
  const float* Du = s.dct[du];

  for (int tyi = tile_y_begin; tyi < tile_y_end; ++tyi) {
    const int y0 = tyi * kTile;
    __syncthreads();  // the previous tile is done with smem
    load_tile<T>(p, img, y0, x0, s);
    __syncthreads();
    if (OP == kDenoise) {
      for (int f = t; f < 3 * IN * kTile; f += NT) {
        const int col = f % kTile, rc = f / kTile;  // rc = c * IN + row
        const float* r = &s.xin[0][0][0] + rc * INP + col;
        s.work[f] = p.taps[0] * r[0] + p.taps[1] * r[1] + p.taps[2] * r[2] + p.taps[3] * r[3] + p.taps[4] * r[4];
      }
      __syncthreads();
    }
#pragma unroll 1  // unrolled, the 4 pixels spill at the 64-register budget
    for (int k = 0; k < 4; ++k) {
      const int li = ty + 8 * k, gi = y0 + li, gj = x0 + tx;
      const bool valid = gi < p.H && gj < p.W;
      float r[3];
#pragma unroll
      for (int c = 0; c < 3; ++c) r[c] = valid ? residual_at<OP>(p, s, c, li, tx) : 0.0f;
#pragma unroll
      for (int c = 0; c < 3; ++c) {
        const float r2 = r[c] * r[c];
        m[contract::kOffS1 + c] += r[c]; m[contract::kOffS2 + c] += r2;
        m[contract::kOffS3 + c] += r2 * r[c]; m[contract::kOffS4 + c] += r2 * r2;
      }
      m[contract::kOffX] += r[0] * r[1]; m[contract::kOffX + 1] += r[0] * r[2]; m[contract::kOffX + 2] += r[1] * r[2];
      const float g = __fdiv_rn(r[0] + r[1] + r[2], 3.0f);  // = torch mean over channels
      s.g[li][tx] = g;
      s.e[li][tx] = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]) * (1.0f / 3.0f);
      if (valid && p.gray) p.gray[(static_cast<int64_t>(b) * p.H + gi) * p.W + gj] = g;
      if (valid && p.residual) {
#pragma unroll
        for (int c = 0; c < 3; ++c) p.residual[((static_cast<int64_t>(b) * 3 + c) * p.H + gi) * p.W + gj] = r[c];
      }
    }
    __syncthreads();
    // DCT row pass: work[li][col] = sum_k g[li][8*(col/8) + k] * D[col%8][k]  (g D^T per block)
    float* dt = s.work;  // [32][TP]
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int li = ty + 8 * k;
      const float* gr = &s.g[li][tx & ~7];
      float acc = 0.0f;
#pragma unroll
      for (int q = 0; q < 8; ++q) acc += gr[q] * Dv[q];
      dt[li * TP + tx] = acc;
    }
    // phase, step 1: rowsum[period q][row i][column phase bb] = sum_{j = bb mod p} e[i][j]
    const int n_rows = 32 * p.cum_p[p.n_periods];
    for (int idx = t; idx < n_rows; idx += NT) {
      int q = 0;
      while (idx >= 32 * p.cum_p[q + 1]) ++q;
      const int per = p.period[q], local = idx - 32 * p.cum_p[q], i = local / per, bb = local % per;
      float acc = 0.0f;
      for (int j = bb; j < kTile; j += per) acc += s.e[i][j];
      rowsum[idx] = acc;
    }
    __syncthreads();
    // DCT column pass: c[u][v] = sum_k D[u][k] work[8*by + k][8*bx + v]; whole blocks only
    {
      const int yb = 8 * dby;
      if (y0 + yb + 8 <= p.H) {
#pragma unroll
        for (int bx = 0; bx < 4; ++bx) {
          if (x0 + 8 * bx + 8 <= p.W) {
            float c = 0.0f;
#pragma unroll
            for (int q = 0; q < 8; ++q) c += Du[q] * dt[(yb + q) * TP + 8 * bx + dv];
            dacc += c * c;
          }
        }
      }
    }
    // phase, step 2: bin (a, bb) in tile coordinates -> global phase ((y0+a)%p, (x0+bb)%p)
    for (int idx = t; idx < n_bins; idx += NT) {
      int q = 0;
      while (idx >= p.cum_p2[q + 1]) ++q;
      const int per = p.period[q], local = idx - p.cum_p2[q], a = local / per, bb = local % per;
      const float* rs = rowsum + 32 * p.cum_p[q] + bb;
      float acc = 0.0f;
      for (int i = a; i < kTile; i += per) acc += rs[i * per];
      bins[p.cum_p2[q] + ((y0 + a) % per) * per + (x0 + bb) % per] += acc;  // one writer per bin per tile
    }
  }

  // Reductions of the strip, fixed order.
  __syncthreads();
  float* red_m = s.work;            // [8 warps][NM]
  float* red_d = s.work + 8 * NM;   // [256]
#pragma unroll
  for (int k = 0; k < NM; ++k) {
    float v = m[k];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    m[k] = v;
  }
  if (tx == 0) {
#pragma unroll
    for (int k = 0; k < NM; ++k) red_m[ty * NM + k] = m[k];
  }
  red_d[t] = dacc;
  __syncthreads();
  float* out = p.partials + (static_cast<int64_t>(b) * p.n_part + part) * p.n_sums;
  if (t < NM) {
    float v = 0.0f;
    for (int w = 0; w < NT / 32; ++w) v += red_m[w * NM + t];
    out[t] = v;
  }
  if (t < contract::kDctCoefs)
    out[NM + n_bins + t] = (red_d[t] + red_d[t + 64]) + (red_d[t + 128] + red_d[t + 192]);
  for (int i = t; i < n_bins; i += NT) out[NM + i] = bins[i];
}

template <int OP, typename T>
cudaError_t launch_one(const FeatureParams& p, cudaStream_t stream) {
  const int dyn = dynamic_smem_bytes(p);
  auto kernel = feature_sums_kernel<OP, T>;
  if (dyn + static_smem_bytes() > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, dyn);
    if (e != cudaSuccess) return e;
  }
  const long long blocks = static_cast<long long>(p.B) * p.n_part;
  kernel<<<static_cast<unsigned>(blocks), NT, dyn, stream>>>(p);
  return cudaGetLastError();
}

template <int OP, typename T>
cudaError_t attrs_one(int* regs, int* local_bytes, int* smem_bytes, int* max_threads) {
  cudaFuncAttributes a{};
  const cudaError_t e = cudaFuncGetAttributes(&a, feature_sums_kernel<OP, T>);
  if (e != cudaSuccess) return e;
  *regs = a.numRegs; *local_bytes = static_cast<int>(a.localSizeBytes);
  *smem_bytes = static_cast<int>(a.sharedSizeBytes); *max_threads = a.maxThreadsPerBlock;
  return cudaSuccess;
}

#define FP_DISPATCH(FN, ...)                                                              \
  switch (op) {                                                                           \
    case kDenoise: return is_u8 ? FN<kDenoise, uint8_t>(__VA_ARGS__) : FN<kDenoise, float>(__VA_ARGS__);   \
    case kMedian3: return is_u8 ? FN<kMedian3, uint8_t>(__VA_ARGS__) : FN<kMedian3, float>(__VA_ARGS__);   \
    case kNpr: return is_u8 ? FN<kNpr, uint8_t>(__VA_ARGS__) : FN<kNpr, float>(__VA_ARGS__);               \
    case kHighpass: return is_u8 ? FN<kHighpass, uint8_t>(__VA_ARGS__) : FN<kHighpass, float>(__VA_ARGS__); \
    case kNone: return is_u8 ? cudaErrorInvalidValue : FN<kNone, float>(__VA_ARGS__);    \
  }                                                                                       \
  return cudaErrorInvalidValue;

}  // namespace

int static_smem_bytes() { return static_cast<int>(sizeof(Smem)); }

int dynamic_smem_bytes(const FeatureParams& p) {
  return static_cast<int>(sizeof(float)) * (p.cum_p2[p.n_periods] + 32 * p.cum_p[p.n_periods]);
}

cudaError_t launch_feature_sums(const FeatureParams& p, Op op, bool is_u8, cudaStream_t stream) {
  FP_DISPATCH(launch_one, p, stream)
}

cudaError_t kernel_attributes(Op op, bool is_u8, int* regs, int* local_bytes, int* smem_bytes, int* max_threads) {
  FP_DISPATCH(attrs_one, regs, local_bytes, smem_bytes, max_threads)
}

#define FP_STR2(...) #__VA_ARGS__
#define FP_STR(...) FP_STR2(__VA_ARGS__)
const char* compiled_archs() {
#ifdef __CUDA_ARCH_LIST__
  return FP_STR(__CUDA_ARCH_LIST__);
#else
  return "unknown";
#endif
}
const char* nvcc_version() { return FP_STR(__CUDACC_VER_MAJOR__) "." FP_STR(__CUDACC_VER_MINOR__) "." FP_STR(__CUDACC_VER_BUILD__); }

}  // namespace cuda
}  // namespace fpfast
