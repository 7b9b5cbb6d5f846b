#pragma once
// The DiT's element-wise and row kernels on the GPU: activations, row-vector adds, gated
// residuals, the bias of a product, LayerNorm (plain and modulated), patchify / unpatchify with
// their host-callable index maps, the timestep embedding and row gathers. Launched by
// dit::backend<ddm::cuda_space> (dit/backend_cuda.cuh); include from CUDA translation units.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include <ddm/core/config.hpp>

#include "dit/cuda/launch.cuh"

// Grid-stride loops of the kernels below: rows on grid.y, columns on grid.x * blockDim.x.
#define DDM_DIT_ROWS_LOOP(r, rows) for (index_t r = blockIdx.y; r < (rows); r += gridDim.y)
#define DDM_DIT_COLS_LOOP(c, cols)                                                                        \
  for (index_t c = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; c < (cols);          \
       c += static_cast<index_t>(gridDim.x) * blockDim.x)

namespace dit::gpu {

// Element-wise kernels. In-place calls (y == x) are allowed: every value is read and then
// written by the same thread, so plain (coherent) loads are used throughout.

struct identity_op {
  __device__ float operator()(float v) const { return v; }
};
struct silu_op {
  __device__ float operator()(float v) const { return v / (1.0f + expf(-v)); }
};
struct gelu_tanh_op {
  __device__ float operator()(float v) const {
    constexpr float k = 0.7978845608028654f;  // sqrt(2 / pi)
    const float u = k * (v + 0.044715f * v * v * v);
    return 0.5f * v * (1.0f + tanhf(u));
  }
};

// y = op(x), y float (in place allowed) or the 16-bit operand of a matrix product.
template <class Op, class Out>
__global__ void __launch_bounds__(elementwise_block)
    map_kernel(const float* x, index_t sx, Out* y, index_t sy, index_t rows, index_t cols, Op op) {
  DDM_DIT_ROWS_LOOP(r, rows) {
    const float* in = x + r * sx;
    Out* out = y + r * sy;
    DDM_DIT_COLS_LOOP(c, cols) put(out + c, op(in[c]));
  }
}

// y(r, :) = x(r, :) + v(:)
__global__ void __launch_bounds__(elementwise_block)
    add_row_kernel(const float* x, index_t sx, const float* v, float* y, index_t sy, index_t rows, index_t cols) {
  DDM_DIT_ROWS_LOOP(r, rows) {
    const float* in = x + r * sx;
    float* out = y + r * sy;
    DDM_DIT_COLS_LOOP(c, cols) out[c] = in[c] + v[c];
  }
}

// x(r, :) += gate(r / per_sample, :) * y(r, :), or x += y without a gate.
__global__ void __launch_bounds__(elementwise_block)
    gated_residual_kernel(float* x, index_t sx, const float* gate, index_t sg, index_t per_sample, const float* y,
                          index_t sy, index_t rows, index_t cols) {
  DDM_DIT_ROWS_LOOP(r, rows) {
    float* out = x + r * sx;
    const float* in = y + r * sy;
    if (gate != nullptr) {
      const float* g = gate + (r / per_sample) * sg;
      DDM_DIT_COLS_LOOP(c, cols) out[c] += g[c] * in[c];
    } else {
      DDM_DIT_COLS_LOOP(c, cols) out[c] += in[c];
    }
  }
}

// y(r, :) = (keep ? y(r, :) : 0) + bias(:)  (bias may be null)
__global__ void __launch_bounds__(elementwise_block)
    bias_kernel(float* y, index_t sy, const float* bias, bool keep, index_t rows, index_t cols) {
  DDM_DIT_ROWS_LOOP(r, rows) {
    float* out = y + r * sy;
    DDM_DIT_COLS_LOOP(c, cols) out[c] = (keep ? out[c] : 0.0f) + (bias != nullptr ? bias[c] : 0.0f);
  }
}

// LayerNorm per row, one warp per row: the mean, then the mean square of the centred values
// (two passes over the row, float partial sums per lane and a fixed shuffle tree), then
//   y = (x - mean) / sqrt(var + eps)                     * gamma + beta     (affine when given)
//   y = (x - mean) / sqrt(var + eps) * (1 + scale_b) + shift_b              (Modulate)
// where b = row / per_sample. y may be x: a lane writes only values it alone has read. Out: float,
// or the 16-bit operand of the matrix product that follows.
template <bool Modulate, class Out>
__global__ void __launch_bounds__(elementwise_block)
    layer_norm_kernel(const float* x, index_t sx, Out* y, index_t sy, index_t rows, index_t d, float eps,
                      const float* gamma, const float* beta, const float* shift, index_t s_shift, const float* scale,
                      index_t s_scale, index_t per_sample) {
  const int lane = static_cast<int>(threadIdx.x & 31U);
  const index_t warps = blockDim.x / 32;
  for (index_t r = blockIdx.x * warps + threadIdx.x / 32; r < rows; r += static_cast<index_t>(gridDim.x) * warps) {
    const float* in = x + r * sx;
    float s = 0.0f;
    for (index_t j = lane; j < d; j += 32) s += in[j];
    const float mean = warp_sum(s) / static_cast<float>(d);
    float ss = 0.0f;
    for (index_t j = lane; j < d; j += 32) {
      const float c = in[j] - mean;
      ss += c * c;
    }
    const float inv = 1.0f / sqrtf(warp_sum(ss) / static_cast<float>(d) + eps);
    Out* out = y + r * sy;
    if constexpr (Modulate) {
      const float* sh = shift + (r / per_sample) * s_shift;
      const float* sc = scale + (r / per_sample) * s_scale;
      for (index_t j = lane; j < d; j += 32) put(out + j, (in[j] - mean) * inv * (1.0f + sc[j]) + sh[j]);
    } else {
      for (index_t j = lane; j < d; j += 32) {
        float v = (in[j] - mean) * inv;
        if (gamma != nullptr) v *= gamma[j];
        if (beta != nullptr) v += beta[j];
        put(out + j, v);
      }
    }
  }
}

// The index maps of the two kernels below, host-callable so that a test without a GPU can hold
// them against the host backend (tests/dit/cuda_test.cu, DitCudaIndexMath).
//
// patchify: value `col` of token row r (r = b*T + i*Gw + j: patch-row i, patch-column j; col as
// (c, py, px)) comes from this offset into sample b's NCHW image.
DDM_HOST_DEVICE constexpr index_t patchify_source(index_t r, index_t col, index_t t, index_t gw, index_t p, index_t h,
                                                  index_t w) noexcept {
  const index_t i = (r % t) / gw;
  const index_t j = (r % t) % gw;
  const index_t c = col / (p * p);
  const index_t py = (col / p) % p;
  const index_t px = col % p;
  return (c * h + i * p + py) * w + j * p + px;
}
// unpatchify: value e of sample b's NCHW output (e = (c*H + y)*W + x) comes from token row `row`,
// column `col` (tokens flattened as (py, px, c)). In range only when H and W are multiples of p
// (the host checks that before the launch).
struct token_value {
  index_t row;
  index_t col;
};
DDM_HOST_DEVICE constexpr token_value unpatchify_source(index_t b, index_t e, index_t t, index_t gw, index_t p,
                                                        index_t h, index_t w, index_t c_out) noexcept {
  const index_t c = e / (h * w);
  const index_t yy = (e / w) % h;
  const index_t xx = e % w;
  return {b * t + (yy / p) * gw + (xx / p), ((yy % p) * p + (xx % p)) * c_out + c};
}

// tokens (B*T, C*p*p) from NCHW x (B, C*H*W): token row r = b*T + i*Gw + j holds the patch at
// patch-row i, patch-column j, as (c, py, px).
__global__ void __launch_bounds__(elementwise_block)
    patchify_kernel(const float* x, index_t sx, float* tokens, index_t st, index_t rows, index_t cols, index_t t,
                    index_t gw, index_t p, index_t h, index_t w) {
  DDM_DIT_ROWS_LOOP(r, rows) {
    const float* img = x + (r / t) * sx;
    float* out = tokens + r * st;
    DDM_DIT_COLS_LOOP(col, cols) out[col] = img[patchify_source(r, col, t, gw, p, h, w)];
  }
}

// NCHW x (B, keep*H*W) from tokens (B*T, p*p*C_out) flattened as (py, px, c); one thread per
// output value, so that the writes are contiguous.
__global__ void __launch_bounds__(elementwise_block)
    unpatchify_kernel(const float* tokens, index_t st, float* x, index_t sx, index_t batch, index_t values, index_t t,
                      index_t gw, index_t p, index_t h, index_t w, index_t c_out) {
  DDM_DIT_ROWS_LOOP(b, batch) {
    float* img = x + b * sx;
    DDM_DIT_COLS_LOOP(e, values) {
      const token_value src = unpatchify_source(b, e, t, gw, p, h, w, c_out);
      img[e] = tokens[src.row * st + src.col];
    }
  }
}

// Per-call host values passed by value: up to `chunk` timesteps or row indices per launch.
inline constexpr int chunk = 256;
struct float_chunk {
  float v[chunk];
};
struct index_chunk {
  std::int32_t v[chunk];
};

// out(r, :) = [cos(t_r f) | sin(t_r f)] for r < n: the product in float (one rounding, as on the
// host), cosine and sine in double, rounded to float.
__global__ void __launch_bounds__(elementwise_block)
    timestep_kernel(float_chunk t, index_t n, const float* freqs, index_t half, float* out, index_t so) {
  DDM_DIT_ROWS_LOOP(r, n) {
    float* row = out + r * so;
    DDM_DIT_COLS_LOOP(k, half) {
      const float arg = __fmul_rn(t.v[r], freqs[k]);
      row[k] = static_cast<float>(cos(static_cast<double>(arg)));
      row[half + k] = static_cast<float>(sin(static_cast<double>(arg)));
    }
  }
}

// out(r, :) = table(rows[r], :) for r < n.
__global__ void __launch_bounds__(elementwise_block)
    gather_kernel(const float* table, index_t st, index_chunk rows, index_t n, float* out, index_t so, index_t cols) {
  DDM_DIT_ROWS_LOOP(r, n) {
    const float* in = table + static_cast<index_t>(rows.v[r]) * st;
    float* o = out + r * so;
    DDM_DIT_COLS_LOOP(c, cols) o[c] = in[c];
  }
}

}  // namespace dit::gpu

#undef DDM_DIT_ROWS_LOOP
#undef DDM_DIT_COLS_LOOP
