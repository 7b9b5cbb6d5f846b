#pragma once
// Attention on the GPU: the float kernel (CUDA cores, online softmax over shared-memory tiles of
// 64 keys) and the 16-bit kernel (WMMA tensor cores) for layers whose weights are bf16 / f16,
// with their launchers (shared-memory opt-in above 48 KiB). Launched by
// dit::backend<ddm::cuda_space>::attention (dit/backend_cuda.cuh); include from CUDA translation
// units.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <mma.h>

#include <array>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstddef>
#include <mutex>
#include <type_traits>

#include <ddm/core/config.hpp>
#include <ddm/cuda/context.hpp>
#include <ddm/cuda/error.hpp>

#include "dit/cuda/launch.cuh"

namespace dit::gpu {

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
static_assert(256 / 32 * (attention_rows / 8) == attention_rows,
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

}  // namespace dit::gpu
