// Residual operators r = x - P(x) on the CPU (reflect borders), one image plane at a time.
#pragma once
#include "common.h"

namespace fpfast {

// Normalised 5-tap Gaussian of sigma (the separable 5x5 denoiser).
void gaussian_taps(float sigma, float taps[5]);

// Residual of plane (b, c) of `x` into `out` (H*W floats, row-major).
// `scratch` must hold at least (H + 4) * (W + 4) + (H + 4) * W floats.
void residual_plane(const ImageView& x, int64_t b, int64_t c, ResidualOp op, const float taps[5],
                    float* out, float* scratch);

inline int64_t residual_scratch_size(int64_t H, int64_t W) { return (H + 4) * (W + 4) + (H + 4) * W; }

// Residual of a whole batch into out [B, 3, H, W] float32 contiguous; OpenMP over planes.
void residual_batch(const ImageView& x, ResidualOp op, float sigma, float* out);

}  // namespace fpfast
