#pragma once
// The CUDA backend of the DiT models: dit::backend<ddm::cuda_space>, the operations of
// dit/backend.hpp on device views, so that dit_model, paris_expert and dit_router_model (and
// their wrappers) run on a GPU unchanged.
//
// Requires the CUDA toolkit, cuBLAS and cuBLASLt (CMake target ddm_dit_cuda); include from CUDA
// translation units (.cu). See docs/dit.md, "The CUDA backend".
//
// What runs where (all on the context's stream; nothing in a forward pass waits for the device):
//   linear              cuBLASLt matmul y = x w^T + bias, the bias added by the matmul's epilogue;
//                       float weights: FP32 math (CUBLAS_COMPUTE_32F; TF32 only after
//                       dit::set_cuda_tf32(true)); bf16 / f16 weights: x is rounded to the same
//                       16-bit type by one kernel, then a tensor-core product with float
//                       accumulation and float output. A shape cuBLASLt has no algorithm for
//                       (unusual alignments) goes through cublasGemmEx and a bias kernel.
//   attention           our kernels: one block per (sample, head, 64 queries), keys and values in
//                       shared-memory tiles of 64, an online softmax in float; any head size up to
//                       256 (64 and 72 included). Float weights: float products on CUDA cores.
//                       bf16 / f16 weights: q, k, v and the softmax weights rounded to that type,
//                       products on tensor cores (WMMA) with float accumulation.
//   the rest            our kernels: LayerNorm (one warp per row, two passes over the row, float
//                       sums), modulation, gated residuals, SiLU, tanh-GELU, patchify /
//                       unpatchify, gathers and the timestep embedding. Timesteps and indices are
//                       passed to the kernels by value, so that no host array is copied and no
//                       call waits for the device.
//
// Scratch (the 16-bit copy of a product's input, cuBLASLt's workspace) is kept per thread,
// device and stream and grows as needed: concurrent forwards on different streams do not share
// it; a forward on one stream reuses it in stream order. cuBLASLt handles and matmul plans are
// kept per thread and device for the life of the process, like ddm::cuda::blas_for's handles.
//
// Every CUDA and cuBLAS status is checked (ddm::device_error naming the call).

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <mma.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cmath>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include <ddm/core/batch.hpp>
#include <ddm/core/config.hpp>
#include <ddm/core/error.hpp>
// The whole CUDA layer: the models use the device algebra (copy, lincomb), and their wrappers the
// device routed field, guidance and diagnostics.
#include <ddm/cuda.hpp>

#include "dit/backend.hpp"

namespace dit {

namespace cuda_detail {
inline std::atomic<bool>& tf32_flag() noexcept {
  static std::atomic<bool> flag{false};
  return flag;
}
}  // namespace cuda_detail

/// Lets float-weight matrix products run on TF32 tensor cores (10-bit mantissas in the products,
/// float accumulation), for every later call on any thread. Off by default: float weights get
/// FP32 products, as PyTorch's default (torch.backends.cuda.matmul.allow_tf32 = False).
inline void set_cuda_tf32(bool on) noexcept { cuda_detail::tf32_flag().store(on); }
[[nodiscard]] inline bool cuda_tf32() noexcept { return cuda_detail::tf32_flag().load(); }

namespace cuda_detail {

using ddm::index_t;

inline constexpr int block_threads = 256;
inline constexpr index_t max_grid_x = index_t{1} << 20;
inline constexpr index_t max_grid_y = 65535;

inline void require(bool ok, const char* where, const char* what) {
  if (!ok) throw ddm::shape_error(ddm::concat(where, ": ", what));
}

inline int current_device() {
  int device = 0;
  DDM_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

// Rows on grid.y (grid-stride beyond 65535), columns on grid.x * 256 threads (grid-stride).
inline dim3 rows_grid(index_t rows, index_t cols) {
  const index_t bx = std::clamp<index_t>((cols + block_threads - 1) / block_threads, 1, max_grid_x);
  const index_t by = std::clamp<index_t>(rows, 1, max_grid_y);
  return {static_cast<unsigned>(bx), static_cast<unsigned>(by), 1U};
}

#define DDM_DIT_ROWS_LOOP(r, rows) for (index_t r = blockIdx.y; r < (rows); r += gridDim.y)
#define DDM_DIT_COLS_LOOP(c, cols)                                                                        \
  for (index_t c = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; c < (cols);          \
       c += static_cast<index_t>(gridDim.x) * blockDim.x)

__device__ inline float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// Stores a float result as the element type of an output: float, or a 16-bit operand of the
// next matrix product (rounded to nearest even).
__device__ inline void put(float* p, float v) { *p = v; }
__device__ inline void put(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ inline void put(__half* p, float v) { *p = __float2half_rn(v); }

__device__ inline float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// ---------------------------------------------------------------------------------------------
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
__global__ void __launch_bounds__(block_threads)
    map_kernel(const float* x, index_t sx, Out* y, index_t sy, index_t rows, index_t cols, Op op) {
  DDM_DIT_ROWS_LOOP(r, rows) {
    const float* in = x + r * sx;
    Out* out = y + r * sy;
    DDM_DIT_COLS_LOOP(c, cols) put(out + c, op(in[c]));
  }
}

// y(r, :) = x(r, :) + v(:)
__global__ void __launch_bounds__(block_threads)
    add_row_kernel(const float* x, index_t sx, const float* v, float* y, index_t sy, index_t rows, index_t cols) {
  DDM_DIT_ROWS_LOOP(r, rows) {
    const float* in = x + r * sx;
    float* out = y + r * sy;
    DDM_DIT_COLS_LOOP(c, cols) out[c] = in[c] + v[c];
  }
}

// x(r, :) += gate(r / per_sample, :) * y(r, :), or x += y without a gate.
__global__ void __launch_bounds__(block_threads)
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
__global__ void __launch_bounds__(block_threads)
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
__global__ void __launch_bounds__(block_threads)
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
__global__ void __launch_bounds__(block_threads)
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
__global__ void __launch_bounds__(block_threads)
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
__global__ void __launch_bounds__(block_threads)
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
__global__ void __launch_bounds__(block_threads)
    gather_kernel(const float* table, index_t st, index_chunk rows, index_t n, float* out, index_t so, index_t cols) {
  DDM_DIT_ROWS_LOOP(r, n) {
    const float* in = table + static_cast<index_t>(rows.v[r]) * st;
    float* o = out + r * so;
    DDM_DIT_COLS_LOOP(c, cols) o[c] = in[c];
  }
}

// ---------------------------------------------------------------------------------------------
// Attention: softmax(q k^T / sqrt(hd)) v for one (sample, head, 64 queries) per block of 256
// threads (16 x 16: tx = thread % 16, ty = thread / 16). The block keeps its queries (scaled) in
// shared memory and walks the keys in tiles of 64:
//   1. keys and values of the tile into shared memory (rows past the end as zeros);
//   2. scores S (64 x 64): thread (tx, ty) computes rows ty + 16 i and columns tx + 16 j
//      (i, j < 4); columns past the last key are -inf;
//   3. online softmax, one warp per 8 rows: the new row maximum m', p = exp(s - m'), the running
//      sum l = l exp(m - m') + sum p and the factor exp(m - m') for the accumulator;
//   4. O = O exp(m - m') + P V: thread (tx, ty) owns rows ty + 16 i and columns tx + 16 j,
//      j < NJ (head size <= 16 NJ), in registers.
// Finally O / l. Shared rows of q and k have an odd stride (hd + 1), so that the 16 different
// rows a warp reads at one column fall in 16 different banks. All arithmetic is float; the
// exponentials are expf (not the fast intrinsic), so scores and weights round like the host's.
inline constexpr int attention_rows = 64;
inline constexpr int attention_keys = 64;

[[nodiscard]] constexpr std::size_t attention_smem_bytes(index_t hd) noexcept {
  const auto h = static_cast<std::size_t>(hd);
  return sizeof(float) * (2 * attention_rows * (h + 1)                 // q, k
                          + attention_keys * h                         // v
                          + attention_rows * (attention_keys + 1)      // scores / weights
                          + 3 * attention_rows);                       // m, l, correction
}

template <int NJ>
__global__ void __launch_bounds__(256)
    attention_kernel(const float* q, index_t sq, const float* k, index_t sk, const float* v, index_t sv, float* out,
                     index_t so, int tq, int tk, int hd, float scale) {
  extern __shared__ float smem[];
  const int ld = hd + 1;
  float* qs = smem;                                  // (64, ld)
  float* ks = qs + attention_rows * ld;              // (64, ld)
  float* vs = ks + attention_keys * ld;              // (64, hd)
  float* ps = vs + attention_keys * hd;              // (64, 65)
  float* row_m = ps + attention_rows * (attention_keys + 1);
  float* row_l = row_m + attention_rows;
  float* row_a = row_l + attention_rows;
  constexpr int lp = attention_keys + 1;

  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid & 15;
  const int ty = tid >> 4;
  const index_t b = blockIdx.z;
  const index_t h = blockIdx.y;
  const int q0 = static_cast<int>(blockIdx.x) * attention_rows;
  const float* qb = q + b * tq * sq + h * hd;
  const float* kb = k + b * tk * sk + h * hd;
  const float* vb = v + b * tk * sv + h * hd;

  for (int e = tid; e < attention_rows * hd; e += 256) {
    const int r = e / hd;
    const int c = e - r * hd;
    qs[r * ld + c] = q0 + r < tq ? qb[static_cast<index_t>(q0 + r) * sq + c] * scale : 0.0f;
  }
  if (tid < attention_rows) {
    row_m[tid] = -INFINITY;
    row_l[tid] = 0.0f;
  }
  float acc[4][NJ];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < NJ; ++j) acc[i][j] = 0.0f;

  const int warp = tid >> 5;
  const int lane = tid & 31;
  for (int k0 = 0; k0 < tk; k0 += attention_keys) {
    __syncthreads();  // the previous tile's readers are done (and, at first, q and m, l are in place)
    for (int e = tid; e < attention_keys * hd; e += 256) {
      const int r = e / hd;
      const int c = e - r * hd;
      const bool in = k0 + r < tk;
      ks[r * ld + c] = in ? kb[static_cast<index_t>(k0 + r) * sk + c] : 0.0f;
      vs[r * hd + c] = in ? vb[static_cast<index_t>(k0 + r) * sv + c] : 0.0f;
    }
    __syncthreads();

    float s[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) s[i][j] = 0.0f;
    for (int d = 0; d < hd; ++d) {
      float a[4];
      float bk[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = qs[(ty + 16 * i) * ld + d];
#pragma unroll
      for (int j = 0; j < 4; ++j) bk[j] = ks[(tx + 16 * j) * ld + d];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) s[i][j] = fmaf(a[i], bk[j], s[i][j]);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int col = tx + 16 * j;
        ps[(ty + 16 * i) * lp + col] = k0 + col < tk ? s[i][j] : -INFINITY;
      }
    __syncthreads();

    // Every tile holds at least one key (k0 < tk), so each row's new maximum is finite.
    for (int rr = 0; rr < attention_rows / 8; ++rr) {
      const int r = warp * (attention_rows / 8) + rr;
      float* row = ps + r * lp;
      const float x0 = row[lane];
      const float x1 = row[lane + 32];
      const float m_old = row_m[r];
      const float m_new = fmaxf(m_old, warp_max(fmaxf(x0, x1)));
      const float p0 = expf(x0 - m_new);
      const float p1 = expf(x1 - m_new);
      row[lane] = p0;
      row[lane + 32] = p1;
      const float sum = warp_sum(p0 + p1);  // also orders every lane's read of row_m before the write below
      if (lane == 0) {
        const float correction = expf(m_old - m_new);  // 0 for the first tile (m_old = -inf)
        row_a[r] = correction;
        row_l[r] = row_l[r] * correction + sum;
        row_m[r] = m_new;
      }
    }
    __syncthreads();

    const int keys = min(attention_keys, tk - k0);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float correction = row_a[ty + 16 * i];
#pragma unroll
      for (int j = 0; j < NJ; ++j) acc[i][j] *= correction;
    }
    for (int kk = 0; kk < keys; ++kk) {
      float p[4];
      float vv[NJ];
#pragma unroll
      for (int i = 0; i < 4; ++i) p[i] = ps[(ty + 16 * i) * lp + kk];
#pragma unroll
      for (int j = 0; j < NJ; ++j) {
        const int c = tx + 16 * j;
        vv[j] = c < hd ? vs[kk * hd + c] : 0.0f;
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < NJ; ++j) acc[i][j] = fmaf(p[i], vv[j], acc[i][j]);
    }
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = ty + 16 * i;
    if (q0 + r >= tq) continue;
    const float inv = 1.0f / row_l[r];
    float* o = out + (b * tq + q0 + r) * so + h * hd;
#pragma unroll
    for (int j = 0; j < NJ; ++j) {
      const int c = tx + 16 * j;
      if (c < hd) o[c] = acc[i][j] * inv;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Attention on tensor cores, for layers whose weights are stored in 16 bits (bf16 / f16: H):
// q, k, v rounded to H as the matrix products' operands are, scores and the value sums as 16x16x16
// WMMA products with float accumulation. One block of 4 warps per (sample, head, 64 queries);
// warp w owns queries 16 w .. 16 w + 15 and everything computed for them (scores, weights,
// accumulator, m, l), so the warps synchronize only around the shared key / value tiles:
//   1. k, v of the tile into shared memory as H (rows past the end and columns past hd zero);
//   2. S_w (16 x 64) = Q_w K^T, stored as float;
//   3. online softmax in float on the scaled scores (masked past the last key): m', the weights
//      p = exp(s - m') rounded to H, l = l exp(m - m') + sum p (of the unrounded p), and the
//      warp's rows of the float accumulator O_w (in shared memory) scaled by exp(m - m');
//   4. O_w += P_w V.
// Finally O / l. The rounding of p to H moves the output by at most 2^-8 max |v| (bf16; 2^-11
// for f16) from float attention on the same rounded q, k, v.
template <class H>
__device__ inline H to_16bit(float v);
template <>
__device__ inline __nv_bfloat16 to_16bit<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ inline __half to_16bit<__half>(float v) {
  return __float2half_rn(v);
}

inline constexpr int mma_attention_threads = 128;

// Shared memory of the 16-bit kernel for a head size padded to hp (a multiple of 16): q, k, v
// (64 x (hp + 8)) as 16-bit values, scores (64 x 68) float, weights (64 x 72) 16-bit, the
// accumulator (64 x (hp + 4)) float, m and l. Every array starts on a 32-byte boundary and every
// row pitch keeps 16-row fragments 32-byte aligned, as WMMA loads and stores require.
[[nodiscard]] constexpr std::size_t mma_attention_smem_bytes(index_t hp) noexcept {
  const auto h = static_cast<std::size_t>(hp);
  return 2 * 3 * 64 * (h + 8) + 4 * 64 * 68 + 2 * 64 * 72 + 4 * 64 * (h + 4) + 4 * 2 * 64;
}

// The thread maps of the two kernels, and the head sizes the header promises: up to 256 fits the
// 227 KiB a block may opt into on compute capability 9.0 (attention_ still checks the device's
// own limit); head size 72 already needs the opt-in (opt_into_smem).
static_assert(attention_rows == 4 * 16 && attention_keys == 4 * 16,
              "attention_kernel: 16 x 16 threads, each 4 rows and 4 key columns of a 64 x 64 tile");
static_assert(block_threads / 32 * (attention_rows / 8) == attention_rows,
              "attention_kernel: 8 warps of 256 threads, 8 softmax rows each");
static_assert(mma_attention_threads / 32 * 16 == 64, "attention_mma_kernel: 4 warps, 16 query rows each");
static_assert(attention_smem_bytes(256) <= 227 * 1024 && mma_attention_smem_bytes(256) <= 227 * 1024);
static_assert(attention_smem_bytes(72) > 48 * 1024 && mma_attention_smem_bytes(80) > 48 * 1024);

// Out: float, or H (the 16-bit operand of the output projection that follows).
template <class H, class Out>
__global__ void __launch_bounds__(mma_attention_threads)
    attention_mma_kernel(const float* q, index_t sq, const float* k, index_t sk, const float* v, index_t sv,
                         Out* out, index_t so, int tq, int tk, int hd, int hp, float scale) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  extern __shared__ __align__(128) unsigned char smem_bytes[];
  const int ldh = hp + 8;      // 16-bit rows of q, k, v
  constexpr int lds = 64 + 4;  // float scores
  constexpr int ldp = 64 + 8;  // 16-bit weights
  const int ldo = hp + 4;      // float accumulator
  H* qs = reinterpret_cast<H*>(smem_bytes);
  H* ks = qs + 64 * ldh;
  H* vs = ks + 64 * ldh;
  float* ss = reinterpret_cast<float*>(vs + 64 * ldh);
  H* ps = reinterpret_cast<H*>(ss + 64 * lds);
  float* os = reinterpret_cast<float*>(ps + 64 * ldp);
  float* row_m = os + 64 * ldo;
  float* row_l = row_m + 64;

  const int tid = static_cast<int>(threadIdx.x);
  const int warp = tid >> 5;
  const int lane = tid & 31;
  const index_t b = blockIdx.z;
  const index_t h = blockIdx.y;
  const int q0 = static_cast<int>(blockIdx.x) * 64;
  const float* qb = q + b * tq * sq + h * hd;
  const float* kb = k + b * tk * sk + h * hd;
  const float* vb = v + b * tk * sv + h * hd;

  for (int e = tid; e < 64 * hp; e += mma_attention_threads) {
    const int r = e / hp;
    const int c = e - r * hp;
    qs[r * ldh + c] = to_16bit<H>(c < hd && q0 + r < tq ? qb[static_cast<index_t>(q0 + r) * sq + c] : 0.0f);
  }
  for (int e = tid; e < 64 * ldo; e += mma_attention_threads) os[e] = 0.0f;
  if (tid < 64) {
    row_m[tid] = -INFINITY;
    row_l[tid] = 0.0f;
  }
  const int row0 = warp * 16;
  for (int k0 = 0; k0 < tk; k0 += 64) {
    __syncthreads();  // every warp is done with the previous tile (and, at first, q, O, m, l are set)
    for (int e = tid; e < 64 * hp; e += mma_attention_threads) {
      const int r = e / hp;
      const int c = e - r * hp;
      const bool in = c < hd && k0 + r < tk;
      ks[r * ldh + c] = to_16bit<H>(in ? kb[static_cast<index_t>(k0 + r) * sk + c] : 0.0f);
      vs[r * ldh + c] = to_16bit<H>(in ? vb[static_cast<index_t>(k0 + r) * sv + c] : 0.0f);
    }
    __syncthreads();

    for (int j = 0; j < 4; ++j) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int kk = 0; kk < hp / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, H, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, H, wmma::col_major> kt;  // K^T: its column j is key j
        wmma::load_matrix_sync(a, qs + row0 * ldh + kk * 16, ldh);
        wmma::load_matrix_sync(kt, ks + (j * 16) * ldh + kk * 16, ldh);
        wmma::mma_sync(acc, a, kt, acc);
      }
      wmma::store_matrix_sync(ss + row0 * lds + j * 16, acc, lds, wmma::mem_row_major);
    }
    __syncwarp();

    for (int rr = 0; rr < 16; ++rr) {
      const int r = row0 + rr;
      const float* srow = ss + r * lds;
      const float x0 = k0 + lane < tk ? srow[lane] * scale : -INFINITY;
      const float x1 = k0 + lane + 32 < tk ? srow[lane + 32] * scale : -INFINITY;
      const float m_old = row_m[r];
      const float m_new = fmaxf(m_old, warp_max(fmaxf(x0, x1)));  // finite: the tile holds a key
      const float p0 = expf(x0 - m_new);
      const float p1 = expf(x1 - m_new);
      ps[r * ldp + lane] = to_16bit<H>(p0);
      ps[r * ldp + lane + 32] = to_16bit<H>(p1);
      const float sum = warp_sum(p0 + p1);  // also orders every lane's read of row_m before the write
      const float correction = expf(m_old - m_new);
      for (int c = lane; c < hp; c += 32) os[r * ldo + c] *= correction;
      if (lane == 0) {
        row_l[r] = row_l[r] * correction + sum;
        row_m[r] = m_new;
      }
    }
    __syncwarp();

    for (int j = 0; j < hp / 16; ++j) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, os + row0 * ldo + j * 16, ldo, wmma::mem_row_major);
      for (int kk = 0; kk < 4; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, H, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, H, wmma::row_major> vt;
        wmma::load_matrix_sync(a, ps + row0 * ldp + kk * 16, ldp);
        wmma::load_matrix_sync(vt, vs + (kk * 16) * ldh + j * 16, ldh);
        wmma::mma_sync(acc, a, vt, acc);
      }
      wmma::store_matrix_sync(os + row0 * ldo + j * 16, acc, ldo, wmma::mem_row_major);
    }
  }
  __syncwarp();
  for (int rr = 0; rr < 16; ++rr) {
    const int r = row0 + rr;
    if (q0 + r >= tq) break;
    const float inv = 1.0f / row_l[r];
    Out* o = out + (b * tq + q0 + r) * so + h * hd;
    for (int c = lane; c < hd; c += 32) put(o + c, os[r * ldo + c] * inv);
  }
#elif defined(__CUDA_ARCH__)
  __trap();  // never launched: below compute capability 8.0 the host picks the float kernel
#endif
}

// ---------------------------------------------------------------------------------------------
// Per-thread, per-device, per-stream scratch; cuBLASLt handles and plans.

struct stream_scratch {
  std::uint16_t* operand = nullptr;  // 16-bit copy of a matrix product's input
  std::size_t operand_words = 0;
  void* workspace = nullptr;  // cuBLASLt workspace
  std::size_t workspace_bytes = 0;
};

// 32 MiB: what cuBLAS itself reserves on Hopper; enough for every algorithm the heuristic offers.
inline constexpr std::size_t lt_workspace_bytes = std::size_t{32} << 20;

inline stream_scratch& scratch_for(const ddm::cuda_context& ctx) {
  // Leaked on purpose, as blas_for's handles are: freeing device memory from a thread_local
  // destructor at process exit can fail once the runtime is torn down.
  thread_local std::map<std::pair<int, cudaStream_t>, stream_scratch*> table;
  auto& entry = table[{current_device(), ctx.stream()}];
  if (entry == nullptr) entry = new stream_scratch();  // NOLINT: kept for the life of the thread
  return *entry;
}

inline std::uint16_t* operand_buffer(const ddm::cuda_context& ctx, std::size_t words) {
  auto& s = scratch_for(ctx);
  if (s.operand_words < words) {
    if (s.operand != nullptr) DDM_CUDA_CHECK(cudaFreeAsync(s.operand, ctx.stream()));
    s.operand = nullptr;
    s.operand_words = 0;
    void* p = nullptr;
    ddm::cuda::check(cudaMallocAsync(&p, words * sizeof(std::uint16_t), ctx.stream()),
                     ddm::concat("cudaMallocAsync(", words * sizeof(std::uint16_t),
                                         " bytes) for dit::linear's 16-bit operand"));
    s.operand = static_cast<std::uint16_t*>(p);
    s.operand_words = words;
  }
  return s.operand;
}

inline void* lt_workspace(const ddm::cuda_context& ctx) {
  auto& s = scratch_for(ctx);
  if (s.workspace == nullptr) {
    ddm::cuda::check(cudaMallocAsync(&s.workspace, lt_workspace_bytes, ctx.stream()),
                     ddm::concat("cudaMallocAsync(", lt_workspace_bytes, " bytes) for cuBLASLt's workspace"));
    s.workspace_bytes = lt_workspace_bytes;
  }
  return s.workspace;
}

inline cublasLtHandle_t lt_handle() {
  constexpr int max_devices = 64;
  thread_local std::array<cublasLtHandle_t, max_devices> handles{};
  const int device = current_device();
  if (device < 0 || device >= max_devices)
    throw ddm::device_error(ddm::concat("dit::backend<cuda_space>: device ", device, ", expected fewer than ",
                                                max_devices, " devices"));
  auto& h = handles[static_cast<std::size_t>(device)];
  if (h == nullptr) ddm::cuda::check_blas(cublasLtCreate(&h), "cublasLtCreate");
  return h;
}

// The largest power of two (<= 256) dividing the address and the row pitch in bytes: the
// alignment of every row of a matrix, which cuBLASLt's heuristic needs to be told.
[[nodiscard]] inline std::uint32_t alignment_of(const void* p, std::size_t pitch_bytes) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(p) | static_cast<std::uintptr_t>(pitch_bytes);
  std::uint32_t align = 256;
  while (align > 1 && (a % align) != 0) align >>= 1;
  return align;
}

struct gemm_key {
  int device;
  int ab_type;
  int compute;
  index_t m, n, k, lda, ldb, ldc;
  bool bias;
  std::uint32_t align_a, align_b, align_c, align_bias;
  auto operator<=>(const gemm_key&) const = default;
};

struct gemm_plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr;
  cublasLtMatrixLayout_t b = nullptr;
  cublasLtMatrixLayout_t c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool usable = false;  // false: cuBLASLt offered no algorithm; use cublasGemmEx
};

// The descriptors and the heuristic's algorithm for one shape, made once per thread. The plans
// (host objects) are never destroyed, like the handles.
inline const gemm_plan& plan_for(const gemm_key& key, const float* bias) {
  thread_local std::map<gemm_key, gemm_plan> plans;
  if (const auto it = plans.find(key); it != plans.end()) return it->second;
  gemm_plan plan;
  const auto ab = static_cast<cudaDataType_t>(key.ab_type);
  using ddm::cuda::check_blas;
  check_blas(cublasLtMatmulDescCreate(&plan.desc, static_cast<cublasComputeType_t>(key.compute), CUDA_R_32F),
             "cublasLtMatmulDescCreate");
  const cublasOperation_t op_t = CUBLAS_OP_T;
  const cublasOperation_t op_n = CUBLAS_OP_N;
  check_blas(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof(op_t)),
             "cublasLtMatmulDescSetAttribute(TRANSA)");
  check_blas(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof(op_n)),
             "cublasLtMatmulDescSetAttribute(TRANSB)");
  if (key.bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    check_blas(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)),
               "cublasLtMatmulDescSetAttribute(EPILOGUE)");
    // The heuristic reads the bias pointer's alignment (not its values).
    check_blas(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)),
               "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
  }
  // Column-major: A = w seen as (k, m), transposed; B = x seen as (k, n); C = y seen as (m, n).
  check_blas(cublasLtMatrixLayoutCreate(&plan.a, ab, static_cast<std::uint64_t>(key.k),
                                        static_cast<std::uint64_t>(key.m), key.lda),
             "cublasLtMatrixLayoutCreate(A)");
  check_blas(cublasLtMatrixLayoutCreate(&plan.b, ab, static_cast<std::uint64_t>(key.k),
                                        static_cast<std::uint64_t>(key.n), key.ldb),
             "cublasLtMatrixLayoutCreate(B)");
  check_blas(cublasLtMatrixLayoutCreate(&plan.c, CUDA_R_32F, static_cast<std::uint64_t>(key.m),
                                        static_cast<std::uint64_t>(key.n), key.ldc),
             "cublasLtMatrixLayoutCreate(C)");
  cublasLtMatmulPreference_t pref = nullptr;
  check_blas(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  const std::uint64_t workspace = lt_workspace_bytes;
  const std::array<std::pair<cublasLtMatmulPreferenceAttributes_t, std::uint32_t>, 4> aligns{
      {{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_a},
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_b},
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_c},
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_c}}};
  cublasStatus_t status =
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace));
  for (const auto& [attr, value] : aligns)
    if (status == CUBLAS_STATUS_SUCCESS) status = cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value));
  if (status != CUBLAS_STATUS_SUCCESS) {
    (void)cublasLtMatmulPreferenceDestroy(pref);  // the first failure is the one reported
    check_blas(status, "cublasLtMatmulPreferenceSetAttribute");
  }
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  status = cublasLtMatmulAlgoGetHeuristic(lt_handle(), plan.desc, plan.a, plan.b, plan.c, plan.c, pref, 1, &result,
                                          &found);
  check_blas(cublasLtMatmulPreferenceDestroy(pref), "cublasLtMatmulPreferenceDestroy");
  // No algorithm (CUBLAS_STATUS_NOT_SUPPORTED or none found) is not an error: cublasGemmEx takes it.
  plan.usable = status == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS;
  if (plan.usable) plan.algo = result.algo;
  return plans.emplace(key, plan).first->second;
}

inline void launch_bias(const ddm::cuda_context& ctx, float* y, index_t ldy, const float* bias, bool keep,
                        index_t rows, index_t cols) {
  bias_kernel<<<rows_grid(rows, cols), block_threads, 0, ctx.stream()>>>(y, ldy, bias, keep, rows, cols);
  ddm::cuda::check_launch("dit::linear (bias_kernel)");
}

// Y (rows n, cols m, row stride ldc) = X (n, k; ldb) W (m, k; lda)^T + bias (+ Y when beta = 1),
// with A/B of type ab_type and float C.
inline void gemm(const ddm::cuda_context& ctx, index_t m, index_t n, index_t k, const void* w, index_t lda,
                 const void* x, index_t ldb, float* y, index_t ldc, cudaDataType_t ab_type, cublasComputeType_t compute,
                 const float* bias, float beta) {
  const std::size_t ab_bytes = ab_type == CUDA_R_32F ? 4 : 2;
  const std::uint32_t align_bias = bias != nullptr ? alignment_of(bias, 0) : 256;
  // The epilogue takes the bias when it is 16-byte aligned (every bias of a checkpoint is; a
  // sub-range of a fused in_proj bias may not be), a separate kernel otherwise.
  const bool epilogue_bias = bias != nullptr && align_bias >= 16;
  const gemm_key key{current_device(),
                     static_cast<int>(ab_type),
                     static_cast<int>(compute),
                     m,
                     n,
                     k,
                     lda,
                     ldb,
                     ldc,
                     epilogue_bias,
                     alignment_of(w, static_cast<std::size_t>(lda) * ab_bytes),
                     alignment_of(x, static_cast<std::size_t>(ldb) * ab_bytes),
                     alignment_of(y, static_cast<std::size_t>(ldc) * sizeof(float)),
                     epilogue_bias ? align_bias : 0U};
  const gemm_plan& plan = plan_for(key, epilogue_bias ? bias : nullptr);
  const float alpha = 1.0f;
  if (plan.usable) {
    if (epilogue_bias)
      ddm::cuda::check_blas(
          cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)),
          "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
    void* workspace = lt_workspace(ctx);
    ddm::cuda::check_blas(cublasLtMatmul(lt_handle(), plan.desc, &alpha, w, plan.a, x, plan.b, &beta, y, plan.c, y,
                                         plan.c, &plan.algo, workspace, lt_workspace_bytes, ctx.stream()),
                          ddm::concat("cublasLtMatmul (dit::linear, m = ", m, ", n = ", n, ", k = ", k, ")"));
    if (bias != nullptr && !epilogue_bias) launch_bias(ctx, y, ldc, bias, true, n, m);
    return;
  }
  if (std::max({m, n, k, lda, ldb, ldc}) > INT_MAX)
    throw ddm::argument_error(ddm::concat("dit::linear: a product of (", n, ", ", k, ") by (", k, ", ", m,
                                                  ") exceeds cublasGemmEx's 32-bit sizes"));
  ddm::cuda::check_blas(
      cublasGemmEx(ddm::cuda::blas_for(ctx), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(m), static_cast<int>(n),
                   static_cast<int>(k), &alpha, w, ab_type, static_cast<int>(lda), x, ab_type, static_cast<int>(ldb),
                   &beta, y, CUDA_R_32F, static_cast<int>(ldc), compute, CUBLAS_GEMM_DEFAULT),
      ddm::concat("cublasGemmEx (dit::linear, m = ", m, ", n = ", n, ", k = ", k, ")"));
  if (bias != nullptr) launch_bias(ctx, y, ldc, bias, true, n, m);
}

// Above 48 KiB, dynamic shared memory must be opted into (once per kernel, device and size).
// The limit only ever grows, and it is raised under a lock: two threads raising it without one
// could set it in the opposite order to their checks (80 KiB after 100 KiB), and the thread that
// needs the larger size would then launch above the limit (cudaErrorInvalidValue).
inline std::mutex& smem_opt_in_mutex() {
  static std::mutex m;
  return m;
}
template <class Kernel>
void opt_into_smem(Kernel kernel, std::size_t smem, std::array<std::atomic<std::size_t>, 64>& opted) {
  if (smem <= 48 * 1024) return;
  auto& o = opted[static_cast<std::size_t>(current_device()) % opted.size()];
  if (o.load() >= smem) return;
  const std::lock_guard<std::mutex> lock(smem_opt_in_mutex());
  if (o.load() >= smem) return;  // another thread raised it meanwhile
  DDM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  o.store(smem);
}

template <int NJ>
void launch_attention(const ddm::cuda_context& ctx, dim3 grid, std::size_t smem, const float* q, index_t sq,
                      const float* k, index_t sk, const float* v, index_t sv, float* out, index_t so, int tq, int tk,
                      int hd, float scale) {
  static std::array<std::atomic<std::size_t>, 64> opted{};
  opt_into_smem(attention_kernel<NJ>, smem, opted);
  attention_kernel<NJ><<<grid, 256, smem, ctx.stream()>>>(q, sq, k, sk, v, sv, out, so, tq, tk, hd, scale);
  ddm::cuda::check_launch("dit::attention (attention_kernel)");
}

template <class H, class Out>
void launch_mma_attention(const ddm::cuda_context& ctx, dim3 grid, std::size_t smem, const float* q, index_t sq,
                          const float* k, index_t sk, const float* v, index_t sv, Out* out, index_t so, int tq,
                          int tk, int hd, int hp, float scale) {
  static std::array<std::atomic<std::size_t>, 64> opted{};
  opt_into_smem(attention_mma_kernel<H, Out>, smem, opted);
  attention_mma_kernel<H, Out><<<grid, mma_attention_threads, smem, ctx.stream()>>>(q, sq, k, sk, v, sv, out, so, tq,
                                                                                     tk, hd, hp, scale);
  ddm::cuda::check_launch("dit::attention (attention_mma_kernel)");
}

// f(H{}) with H the 16-bit type of a storage (bf16 or f16).
template <class F>
void with_16bit(weight_storage storage, F&& f) {
  if (storage == weight_storage::bf16) {
    f(__nv_bfloat16{});
  } else {
    f(__half{});
  }
}

}  // namespace cuda_detail

template <>
struct backend<ddm::cuda_space> {
  using space = ddm::cuda_space;
  using context = ddm::cuda_context;
  template <class T>
  using view = batch_view<T, space>;

  /// y = x w^T (+ bias) (+ y when accumulate): x (M, K), w (N, K), y (M, N), any row strides.
  static void linear(const context& ctx, view<const float> x, weight_view<space> w, const float* bias, view<float> y,
                     bool accumulate = false) {
    namespace cd = cuda_detail;
    cd::require(x.cols() == w.cols && y.rows() == x.rows() && y.cols() == w.rows, "dit::linear",
                "shapes must be x (M, K), w (N, K), y (M, N)");
    const index_t m = w.rows;
    const index_t n = x.rows();
    const index_t k = x.cols();
    if (m == 0 || n == 0) return;
    if (k == 0) {
      cd::launch_bias(ctx, y.data(), y.stride(), bias, accumulate, n, m);
      return;
    }
    if (w.storage == weight_storage::f32) {
      cd::gemm(ctx, m, n, k, w.data, w.stride, x.data(), x.stride(), y.data(), y.stride(), CUDA_R_32F,
               cuda_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, bias, accumulate ? 1.0f : 0.0f);
      return;
    }
    // 16-bit weights: x rounded to the same type by one kernel, then the tensor-core product.
    std::uint16_t* words = cd::operand_buffer(ctx, static_cast<std::size_t>(n * k));
    cd::with_16bit(w.storage, [&](auto h) {
      using H = decltype(h);
      cd::map_kernel<<<cd::rows_grid(n, k), cd::block_threads, 0, ctx.stream()>>>(
          x.data(), x.stride(), reinterpret_cast<H*>(words), k, n, k, cd::identity_op{});
    });
    ddm::cuda::check_launch("dit::linear (map_kernel to 16 bits)");
    product_16_(ctx, words, n, w, bias, y, accumulate);
  }

  /// y = linear(LN(x) * (1 + scale_b) + shift_b): layer_norm_modulate then linear, with the
  /// normalized rows written straight into the 16-bit operand of the product when the weights
  /// are 16-bit (h unused then; otherwise h (B*T, D) receives them).
  static void modulated_linear(const context& ctx, view<const float> x, double eps, view<const float> shift,
                               view<const float> scale, weight_view<space> w, const float* bias, view<float> y,
                               view<float> h) {
    namespace cd = cuda_detail;
    if (w.storage == weight_storage::f32 || x.empty() || w.rows == 0 || x.cols() == 0) {
      layer_norm_modulate(ctx, x, eps, shift, scale, h);
      linear(ctx, h.as_const(), w, bias, y);
      return;
    }
    cd::require(shift.cols() == x.cols() && ddm::same_shape(shift, scale) && shift.rows() > 0 &&
                    x.rows() % shift.rows() == 0 && x.cols() == w.cols && y.rows() == x.rows() && y.cols() == w.rows,
                "dit::modulated_linear", "x (B*T, D); shift, scale (B, D); w (N, D); y (B*T, N)");
    const index_t n = x.rows();
    const index_t k = x.cols();
    std::uint16_t* words = cd::operand_buffer(ctx, static_cast<std::size_t>(n * k));
    cd::with_16bit(w.storage, [&](auto half) {
      using H = decltype(half);
      launch_norm_<true>(ctx, x, eps, nullptr, nullptr, shift, scale, reinterpret_cast<H*>(words), k);
    });
    product_16_(ctx, words, n, w, bias, y, false);
  }

  /// y = linear(gelu_tanh(f)); f may be overwritten with gelu_tanh(f). With 16-bit weights the
  /// activations are written straight into the product's 16-bit operand (f left unchanged).
  static void gelu_linear(const context& ctx, view<float> f, weight_view<space> w, const float* bias, view<float> y) {
    namespace cd = cuda_detail;
    if (w.storage == weight_storage::f32 || f.empty() || w.rows == 0 || f.cols() == 0) {
      gelu_tanh(ctx, f.as_const(), f);
      linear(ctx, f.as_const(), w, bias, y);
      return;
    }
    cd::require(f.cols() == w.cols && y.rows() == f.rows() && y.cols() == w.rows, "dit::gelu_linear",
                "f (M, K), w (N, K), y (M, N)");
    const index_t n = f.rows();
    const index_t k = f.cols();
    std::uint16_t* words = cd::operand_buffer(ctx, static_cast<std::size_t>(n * k));
    cd::with_16bit(w.storage, [&](auto half) {
      using H = decltype(half);
      cd::map_kernel<<<cd::rows_grid(n, k), cd::block_threads, 0, ctx.stream()>>>(
          f.data(), f.stride(), reinterpret_cast<H*>(words), k, n, k, cd::gelu_tanh_op{});
    });
    ddm::cuda::check_launch("dit::gelu_linear (map_kernel)");
    product_16_(ctx, words, n, w, bias, y, false);
  }

  /// y = linear(attention(q, k, v)) (the output projection): with 16-bit weights, of the same
  /// type as `operands`, on a device with tensor cores, the attention kernel writes the product's
  /// 16-bit operand directly (a unused); otherwise a (B*Tq, D) receives the attention output.
  static void attention_linear(const context& ctx, view<const float> q, view<const float> k, view<const float> v,
                               index_t batch, index_t heads, weight_storage operands, weight_view<space> w,
                               const float* bias, view<float> y, view<float> a) {
    namespace cd = cuda_detail;
    if (w.storage == weight_storage::f32 || operands != w.storage || q.empty() || w.rows == 0 ||
        !tensor_cores_()) {
      attention(ctx, q, k, v, batch, heads, a, operands);
      linear(ctx, a.as_const(), w, bias, y);
      return;
    }
    cd::require(q.cols() == w.cols && y.rows() == q.rows() && y.cols() == w.rows, "dit::attention_linear",
                "q (B*Tq, D), w (N, D), y (B*Tq, N)");
    const index_t n = q.rows();
    const index_t d = q.cols();
    std::uint16_t* words = cd::operand_buffer(ctx, static_cast<std::size_t>(n * d));
    cd::with_16bit(w.storage, [&](auto half) {
      using H = decltype(half);
      attention_(ctx, q, k, v, batch, heads, reinterpret_cast<H*>(words), d, operands, "dit::attention_linear");
    });
    product_16_(ctx, words, n, w, bias, y, false);
  }

  /// y = (x - mean) / sqrt(var + eps) per row, then * gamma + beta when given (device pointers to
  /// (1, D), or null). y may be x.
  static void layer_norm(const context& ctx, view<const float> x, double eps, const float* gamma, const float* beta,
                         view<float> y) {
    cuda_detail::require(ddm::same_shape(x, y), "dit::layer_norm", "x and y must have the same shape");
    launch_norm_<false>(ctx, x, eps, gamma, beta, {}, {}, y.data(), y.stride());
  }

  /// y = LN(x) * (1 + scale_b) + shift_b, b = row / (rows / batch); shift, scale (B, D), any stride.
  static void layer_norm_modulate(const context& ctx, view<const float> x, double eps, view<const float> shift,
                                  view<const float> scale, view<float> y) {
    cuda_detail::require(ddm::same_shape(x, y) && shift.cols() == x.cols() && ddm::same_shape(shift, scale) &&
                             shift.rows() > 0 && x.rows() % shift.rows() == 0,
                         "dit::layer_norm_modulate", "x, y (B*T, D); shift, scale (B, D)");
    launch_norm_<true>(ctx, x, eps, nullptr, nullptr, shift, scale, y.data(), y.stride());
  }

  /// x += gate_b * y (gate (B, D), any stride), or x += y when gate is empty.
  static void gated_residual(const context& ctx, view<float> x, view<const float> gate, view<const float> y) {
    namespace cd = cuda_detail;
    cd::require(ddm::same_shape(x, y), "dit::gated_residual", "x and y must have the same shape");
    const bool gated = !gate.empty();
    cd::require(!gated || (gate.cols() == x.cols() && x.rows() % gate.rows() == 0), "dit::gated_residual",
                "gate must be (B, D) with B dividing the rows of x");
    if (x.empty()) return;
    cd::gated_residual_kernel<<<cd::rows_grid(x.rows(), x.cols()), cd::block_threads, 0, ctx.stream()>>>(
        x.data(), x.stride(), gated ? gate.data() : nullptr, gate.stride(), gated ? x.rows() / gate.rows() : 1,
        y.data(), y.stride(), x.rows(), x.cols());
    ddm::cuda::check_launch("dit::gated_residual");
  }

  /// y(r, :) = x(r, :) + v(0, :). y may be x.
  static void add_row_vector(const context& ctx, view<const float> x, view<const float> v, view<float> y) {
    namespace cd = cuda_detail;
    cd::require(ddm::same_shape(x, y) && v.rows() == 1 && v.cols() == x.cols(), "dit::add_row_vector",
                "x, y (M, N) and v (1, N)");
    if (x.empty()) return;
    cd::add_row_kernel<<<cd::rows_grid(x.rows(), x.cols()), cd::block_threads, 0, ctx.stream()>>>(
        x.data(), x.stride(), v.data(), y.data(), y.stride(), x.rows(), x.cols());
    ddm::cuda::check_launch("dit::add_row_vector");
  }

  /// y = x * sigmoid(x). In place allowed.
  static void silu(const context& ctx, view<const float> x, view<float> y) {
    map_(ctx, x, y, cuda_detail::silu_op{}, "dit::silu");
  }

  /// y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). In place allowed.
  static void gelu_tanh(const context& ctx, view<const float> x, view<float> y) {
    map_(ctx, x, y, cuda_detail::gelu_tanh_op{}, "dit::gelu_tanh");
  }

  /// Multi-head attention without mask, as on the host: q, out (B*Tq, H*hd); k, v (B*Tk, H*hd);
  /// any row strides; head h in columns [h hd, (h + 1) hd). Head sizes up to 256. `operands` is
  /// the storage of the layer's weights: f32 runs the float kernel; bf16 / f16 round q, k, v and
  /// the softmax weights to that type for tensor-core products with float accumulation (compute
  /// capability 8.0 and later; the float kernel otherwise).
  static void attention(const context& ctx, view<const float> q, view<const float> k, view<const float> v,
                        index_t batch, index_t heads, view<float> out,
                        weight_storage operands = weight_storage::f32) {
    cuda_detail::require(ddm::same_shape(q, out), "dit::attention", "q and out must have the same shape");
    attention_(ctx, q, k, v, batch, heads, out.data(), out.stride(), operands, "dit::attention");
  }

  /// NCHW latents x (B, C*H*W) -> tokens (B*T, C*p*p), each flattened as (c, py, px).
  static void patchify(const context& ctx, view<const float> x, const patch_geometry& g, view<float> tokens) {
    namespace cd = cuda_detail;
    cd::require(x.cols() == g.channels * g.height * g.width && tokens.rows() == x.rows() * g.tokens() &&
                    tokens.cols() == g.patch_values(g.channels),
                "dit::patchify", "x (B, C*H*W), tokens (B*T, C*p*p)");
    if (tokens.empty()) return;
    cd::patchify_kernel<<<cd::rows_grid(tokens.rows(), tokens.cols()), cd::block_threads, 0, ctx.stream()>>>(
        x.data(), x.stride(), tokens.data(), tokens.stride(), tokens.rows(), tokens.cols(), g.tokens(), g.grid_w(),
        g.patch, g.height, g.width);
    ddm::cuda::check_launch("dit::patchify");
  }

  /// tokens (B*T, p*p*C_out), each (py, px, c), channel fastest -> NCHW x (B, keep*H*W).
  static void unpatchify(const context& ctx, view<const float> tokens, const patch_geometry& g, index_t keep,
                         view<float> x) {
    namespace cd = cuda_detail;
    const index_t p = g.patch;
    // The kernel walks every output pixel: a pixel past the last whole patch (H or W not a
    // multiple of p) would read a token row that does not exist.
    cd::require(p > 0 && g.height % p == 0 && g.width % p == 0, "dit::unpatchify",
                "the image height and width must be multiples of the patch size");
    const index_t c_out = tokens.cols() / (p * p);
    cd::require(tokens.cols() == p * p * c_out && keep <= c_out && tokens.rows() == x.rows() * g.tokens() &&
                    x.cols() == keep * g.height * g.width,
                "dit::unpatchify", "tokens (B*T, p*p*C_out), x (B, keep*H*W), keep <= C_out");
    if (x.empty()) return;
    cd::unpatchify_kernel<<<cd::rows_grid(x.rows(), x.cols()), cd::block_threads, 0, ctx.stream()>>>(
        tokens.data(), tokens.stride(), x.data(), x.stride(), x.rows(), x.cols(), g.tokens(), g.grid_w(), p, g.height,
        g.width, c_out);
    ddm::cuda::check_launch("dit::unpatchify");
  }

  /// out (B, 2 half) = [cos(t_r freqs) | sin(t_r freqs)], freqs (1, half) on the device, the B
  /// timesteps passed to the kernel by value.
  static void timestep_embedding(const context& ctx, std::span<const float> t, view<const float> freqs,
                                 view<float> out) {
    namespace cd = cuda_detail;
    const index_t half = freqs.cols();
    cd::require(freqs.rows() == 1 && out.rows() == static_cast<index_t>(t.size()) && out.cols() == 2 * half,
                "dit::timestep_embedding", "freqs (1, half), out (B, 2 half) for B timesteps");
    for (std::size_t first = 0; first < t.size(); first += cd::chunk) {
      const std::size_t n = std::min<std::size_t>(cd::chunk, t.size() - first);
      cd::float_chunk values{};
      std::copy_n(t.data() + first, n, values.v);
      const auto rows = static_cast<index_t>(n);
      cd::timestep_kernel<<<cd::rows_grid(rows, half), cd::block_threads, 0, ctx.stream()>>>(
          values, rows, freqs.data(), half, out.row(static_cast<index_t>(first)), out.stride());
      ddm::cuda::check_launch("dit::timestep_embedding");
    }
  }

  /// out(r, :) = table(rows[r], :), the indices (host memory) checked on the host and passed to
  /// the kernel by value.
  static void gather_rows(const context& ctx, view<const float> table, std::span<const std::int32_t> rows,
                          view<float> out) {
    namespace cd = cuda_detail;
    cd::require(out.rows() == static_cast<index_t>(rows.size()) && out.cols() == table.cols(), "dit::gather_rows",
                "out (n, D) for n indices into table (R, D)");
    for (std::size_t r = 0; r < rows.size(); ++r)
      if (rows[r] < 0 || rows[r] >= table.rows())
        throw ddm::argument_error(ddm::concat("dit::gather_rows: index ", rows[r], " at position ", r,
                                                      ", expected a row of the table in [0, ", table.rows(), ")"));
    if (out.empty()) return;
    for (std::size_t first = 0; first < rows.size(); first += cd::chunk) {
      const std::size_t n = std::min<std::size_t>(cd::chunk, rows.size() - first);
      cd::index_chunk values{};
      std::copy_n(rows.data() + first, n, values.v);
      const auto count = static_cast<index_t>(n);
      cd::gather_kernel<<<cd::rows_grid(count, table.cols()), cd::block_threads, 0, ctx.stream()>>>(
          table.data(), table.stride(), values, count, out.row(static_cast<index_t>(first)), out.stride(),
          table.cols());
      ddm::cuda::check_launch("dit::gather_rows");
    }
  }

  /// Host values into device memory (blocking: for loading, not inside a forward pass).
  static void upload(const context& ctx, std::span<const float> values, view<float> dst) { upload_(ctx, values, dst); }
  static void upload(const context& ctx, std::span<const std::uint16_t> values, view<std::uint16_t> dst) {
    upload_(ctx, values, dst);
  }

  /// Device values into host memory (blocking).
  static void download(const context& ctx, view<const float> src, std::span<float> values) {
    cuda_detail::require(static_cast<index_t>(values.size()) == src.size(), "dit::download", "sizes must agree");
    ddm::copy(ctx, batch_view<float>(values.data(), src.rows(), src.cols()), src);
  }

  /// The (n, 1) device row indices into a host vector (blocking).
  static std::vector<std::int32_t> download_indices(const context& ctx, view<const std::int32_t> rows) {
    std::vector<std::int32_t> out(static_cast<std::size_t>(rows.rows()));
    if (!out.empty()) ddm::copy(ctx, batch_view<std::int32_t>(out.data(), rows.rows(), 1), rows);
    return out;
  }

 private:
  // attention into out (B*Tq rows of stride so): float, or the 16-bit operand H of the product
  // that follows (then only through the tensor-core kernel, which the caller has checked).
  template <class Out>
  static void attention_(const context& ctx, view<const float> q, view<const float> k, view<const float> v,
                         index_t batch, index_t heads, Out* out, index_t so, weight_storage operands,
                         const char* where) {
    namespace cd = cuda_detail;
    cd::require(batch > 0 && heads > 0 && q.rows() % batch == 0 && k.rows() % batch == 0 && ddm::same_shape(k, v) &&
                    q.cols() == k.cols() && q.cols() % heads == 0,
                where, "q, out (B*Tq, D); k, v (B*Tk, D); D divisible by heads");
    const index_t tq = q.rows() / batch;
    const index_t tk = k.rows() / batch;
    const index_t hd = q.cols() / heads;
    if (tq == 0) return;
    if (tk == 0)
      throw ddm::argument_error(
          ddm::concat(where, ": no keys (k and v have 0 rows per sample), expected at least one"));
    if (hd > 256) ddm::fail_argument(where, "head size", hd, "<= 256 on the CUDA backend");
    if (heads > cd::max_grid_y || tq > INT_MAX / 2 || tk > INT_MAX / 2)
      throw ddm::argument_error(ddm::concat(where, ": ", heads, " heads, ", tq, " queries, ", tk,
                                                    " keys; expected at most 65535 heads and 2^30 tokens"));
    const int device = cd::current_device();
    int optin = 0;
    DDM_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    const index_t hp = (hd + 15) / 16 * 16;
    const bool mma = operands != weight_storage::f32 && tensor_cores_();
    const std::size_t smem = mma ? cd::mma_attention_smem_bytes(hp) : cd::attention_smem_bytes(hd);
    if (smem > static_cast<std::size_t>(optin))
      throw ddm::argument_error(ddm::concat(where, ": head size ", hd, " needs ", smem,
                                                    " bytes of shared memory per block; this device allows ", optin));
    const auto scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
    const auto blocks = static_cast<unsigned>((tq + cd::attention_rows - 1) / cd::attention_rows);
    for (index_t b0 = 0; b0 < batch; b0 += cd::max_grid_y) {
      const index_t nb = std::min(cd::max_grid_y, batch - b0);
      const dim3 grid(blocks, static_cast<unsigned>(heads), static_cast<unsigned>(nb));
      const float* qp = q.data() + b0 * tq * q.stride();
      const float* kp = k.data() + b0 * tk * k.stride();
      const float* vp = v.data() + b0 * tk * v.stride();
      Out* op = out + b0 * tq * so;
      if (mma) {
        const auto launch_mma = operands == weight_storage::bf16 ? &cd::launch_mma_attention<__nv_bfloat16, Out>
                                                                 : &cd::launch_mma_attention<__half, Out>;
        launch_mma(ctx, grid, smem, qp, q.stride(), kp, k.stride(), vp, v.stride(), op, so, static_cast<int>(tq),
                   static_cast<int>(tk), static_cast<int>(hd), static_cast<int>(hp), scale);
        continue;
      }
      if constexpr (std::is_same_v<Out, float>) {
        using launcher = void (*)(const context&, dim3, std::size_t, const float*, index_t, const float*, index_t,
                                  const float*, index_t, float*, index_t, int, int, int, float);
        const launcher launch = hd <= 16   ? &cd::launch_attention<1>
                                : hd <= 32 ? &cd::launch_attention<2>
                                : hd <= 64 ? &cd::launch_attention<4>
                                : hd <= 80 ? &cd::launch_attention<5>
                                : hd <= 128 ? &cd::launch_attention<8>
                                            : &cd::launch_attention<16>;
        launch(ctx, grid, smem, qp, q.stride(), kp, k.stride(), vp, v.stride(), op, so, static_cast<int>(tq),
               static_cast<int>(tk), static_cast<int>(hd), scale);
      }
    }
  }

  // Tensor cores with bf16 / f16 WMMA: compute capability 8.0 and later.
  static bool tensor_cores_() {
    int major = 0;
    DDM_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, cuda_detail::current_device()));
    return major >= 8;
  }

  // y = words (n, w.cols, contiguous 16-bit operand of w's type) w^T + bias (+ y).
  static void product_16_(const context& ctx, const std::uint16_t* words, index_t n, weight_view<space> w,
                          const float* bias, view<float> y, bool accumulate) {
    cuda_detail::gemm(ctx, w.rows, n, w.cols, w.data, w.stride, words, w.cols, y.data(), y.stride(),
                      w.storage == weight_storage::bf16 ? CUDA_R_16BF : CUDA_R_16F, CUBLAS_COMPUTE_32F, bias,
                      accumulate ? 1.0f : 0.0f);
  }

  template <class U>
  static void upload_(const context& ctx, std::span<const U> values, view<U> dst) {
    cuda_detail::require(static_cast<index_t>(values.size()) == dst.size(), "dit::upload", "sizes must agree");
    if (dst.empty()) return;
    ddm::copy(ctx, dst, batch_view<const U>(values.data(), dst.rows(), dst.cols()));
  }

  template <class Op>
  static void map_(const context& ctx, view<const float> x, view<float> y, Op op, const char* where) {
    namespace cd = cuda_detail;
    cd::require(ddm::same_shape(x, y), where, "x and y must have the same shape");
    if (x.empty()) return;
    cd::map_kernel<<<cd::rows_grid(x.rows(), x.cols()), cd::block_threads, 0, ctx.stream()>>>(
        x.data(), x.stride(), y.data(), y.stride(), x.rows(), x.cols(), op);
    ddm::cuda::check_launch(where);
  }

  template <bool Modulate, class Out>
  static void launch_norm_(const context& ctx, view<const float> x, double eps, const float* gamma, const float* beta,
                           view<const float> shift, view<const float> scale, Out* y, index_t sy) {
    namespace cd = cuda_detail;
    if (x.empty()) return;
    constexpr index_t rows_per_block = cd::block_threads / 32;
    const index_t blocks = std::min<index_t>((x.rows() + rows_per_block - 1) / rows_per_block, cd::max_grid_x);
    cd::layer_norm_kernel<Modulate, Out><<<static_cast<unsigned>(blocks), cd::block_threads, 0, ctx.stream()>>>(
        x.data(), x.stride(), y, sy, x.rows(), x.cols(), static_cast<float>(eps), gamma, beta,
        Modulate ? shift.data() : nullptr, Modulate ? shift.stride() : 0, Modulate ? scale.data() : nullptr,
        Modulate ? scale.stride() : 0, Modulate ? x.rows() / shift.rows() : 1);
    ddm::cuda::check_launch(Modulate ? "dit::layer_norm_modulate" : "dit::layer_norm");
  }
};

#undef DDM_DIT_ROWS_LOOP
#undef DDM_DIT_COLS_LOOP

}  // namespace dit
