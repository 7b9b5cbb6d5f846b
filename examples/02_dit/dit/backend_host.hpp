#pragma once
// The host backend of the DiT models.
//
// Requires a CBLAS (CMake: find_package(BLAS), OpenBLAS on Debian) for the matrix products;
// uses OpenMP, when the compiler has it, for the threads. More than 96% of a DiT forward is
// dense GEMM. One thread pool does all the work: the OpenMP team splits each matrix product into
// row (or column) blocks, each computed by a single-threaded BLAS call, and runs attention,
// normalization and the element-wise work as parallel loops. With OpenBLAS the backend sets
// OpenBLAS's own threads to 1: two pools of spinning threads (OpenBLAS's pthreads and OpenMP's)
// fight over the cores between calls, which measured 2-5x slower than one pool on a busy
// machine. (With another BLAS, make it single-threaded yourself, e.g. MKL_NUM_THREADS=1.)
// Threads: OMP_NUM_THREADS, or dit::set_host_threads(n).

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <cblas.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <ddm/core/batch.hpp>
#include <ddm/core/error.hpp>
#include <ddm/core/memory_space.hpp>

#include "dit/backend.hpp"
#include "dit/host_isa.hpp"

#if defined(DDM_DIT_OPENBLAS)
extern "C" void openblas_set_num_threads(int num_threads);
extern "C" char* openblas_get_corename(void);
#endif

namespace dit {

/// Sets the threads of the host backend (its OpenMP team; the BLAS runs one thread per call).
inline void set_host_threads(int n) {
  if (n < 1) ddm::fail_argument("dit::set_host_threads", "n", n, ">= 1");
#if defined(_OPENMP)
  omp_set_num_threads(n);
#endif
}

/// The BLAS in use, for reports: "OpenBLAS (SkylakeX kernels)" or "CBLAS".
[[nodiscard]] inline std::string host_blas_name() {
#if defined(DDM_DIT_OPENBLAS)
  return std::string("OpenBLAS (") + openblas_get_corename() + " kernels)";
#else
  return "CBLAS";
#endif
}

// The host backend's building blocks (threads, the vectorizable exp, attention's kernel), named
// and tested on their own (tests/dit/backend_test.cpp).
namespace host {
// Debian's OpenBLAS is built with DYNAMIC_ARCH and picks its kernels from the CPU model. On CPUs
// it does not know (new models, many virtual machines) it falls back to the SSE3 "Prescott"
// kernels, 3-5x slower than the AVX2 / AVX-512 ones, without a word. AVX2 kernels ("Haswell",
// "Zen") on a CPU with AVX-512 are slow too: on a Zen 5, where OpenBLAS 0.3.21 itself picks its
// AVX-512 "Cooperlake" kernels, an OPENBLAS_CORETYPE=Haswell left in the environment made a DiT
// forward's GEMMs 1.3-2x slower than SkylakeX (docs/performance.md). Say so once, with the fix.
inline void warn_if_blas_kernels_are_generic() {
#if defined(DDM_DIT_OPENBLAS) && defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool warned = [] {
    const std::string core = openblas_get_corename();
    auto is = [&](const char* a, const char* b) { return core == a || core == b; };
    const bool old_core = is("Prescott", "prescott") || is("Core2", "core2") || is("Penryn", "penryn") ||
                          is("Nehalem", "nehalem") || is("Atom", "atom") || is("Dunnington", "dunnington");
    const bool avx2_core = is("Haswell", "haswell") || is("Zen", "zen");
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    if ((old_core && __builtin_cpu_supports("avx2")) || (avx2_core && avx512)) {
      const char* suggestion = avx512 ? "SkylakeX" : "Haswell";
      std::fprintf(stderr,
                   "dit: OpenBLAS chose its '%s' kernels on a CPU with %s; matrix products run up to several "
                   "times slower. Set OPENBLAS_CORETYPE=%s before starting the program.\n",
                   core.c_str(), avx512 ? "AVX-512" : "AVX2", suggestion);
    }
    return true;
  }();
  (void)warned;
#endif
}
}  // namespace host

namespace host {
// Once per process: the BLAS computes each block on the calling thread (see the top of the file),
// and a warning if OpenBLAS picked generic kernels.
inline void prepare_blas() {
  static const bool done = [] {
#if defined(DDM_DIT_OPENBLAS)
    openblas_set_num_threads(1);
#endif
    warn_if_blas_kernels_are_generic();
    return true;
  }();
  (void)done;
}
}  // namespace host

/// The number of threads the host backend's own loops use.
[[nodiscard]] inline int host_threads() noexcept {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

namespace host {

// Runs body(i) for i in [0, n), in parallel when the total work is large enough to pay for
// waking the thread team (about 256k scalar operations, some 0.1 ms on one core): smaller loops
// run serially, since a parallel region costs microseconds even on an idle machine and far more
// when its threads are descheduled.
template <class Body>
void parallel_for(index_t n, index_t work_per_item, Body&& body) {
#if defined(_OPENMP)
  if (n > 1 && n * work_per_item >= (index_t{1} << 18) && omp_get_max_threads() > 1) {
#pragma omp parallel for schedule(static)
    for (index_t i = 0; i < n; ++i) body(i);
    return;
  }
#else
  (void)work_per_item;
#endif
  for (index_t i = 0; i < n; ++i) body(i);
}

// exp(x) for float, branch-free so that loops over it vectorize (glibc's expf does not without
// -ffast-math, and GELU / softmax would otherwise cost as much as the GEMMs). x = k ln2 + r with
// |r| <= ln2 / 2; e^r by its degree-6 Taylor polynomial (relative error below 2e-7); 2^k built in
// the exponent bits. Arguments are clamped to [-87, 88]: the result stays a normal float
// (underflow to ~1.6e-38 instead of 0, which a softmax or a sigmoid cannot tell apart).
inline float exp_approx(float x) noexcept {
  x = std::min(88.0f, std::max(-87.0f, x));
  constexpr float log2e = 1.44269504088896341f;
  constexpr float round_shift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float k = (x * log2e + round_shift) - round_shift;
  const float r = (x - k * 0.693145751953125f) - k * 1.428606765330187e-06f;  // ln2 split hi + lo
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const auto bits = static_cast<std::uint32_t>(static_cast<std::int32_t>(k) + 127) << 23;
  return p * std::bit_cast<float>(bits);
}

inline void require(bool ok, const char* where, const char* what) {
  if (!ok) throw ddm::shape_error(ddm::concat(where, ": ", what));
}

// Attention: one task = one sample, one head, one block of queries. Its two products go to the
// BLAS, like every other GEMM of the model: scores S (nq, Tk) = scale Q K^T, then out (nq, hd) =
// softmax(S) V. Between them, the softmax of each score row. The query block bounds S to
// attention_score_floats (64k floats, 256 KiB: an L2 cache's worth) whatever Tk, and gives the
// thread team enough tasks. (A hand-written kernel in 8 x 16 register tiles ran at ~40 GFLOP/s
// on one AVX-512 core, a fifth of what OpenBLAS's sgemm reaches there: 32-35% of a DiT-S/2
// forward at batch 4; measured by bench/dit_forward_split.cpp, docs/performance.md.)
inline constexpr index_t attention_score_floats = index_t{1} << 16;

// The query block for Tk keys: as many queries as fit S in attention_score_floats, at least 16,
// at most 256 (rounded to a multiple of 16).
[[nodiscard]] inline index_t attention_query_block(index_t tk) noexcept {
  const index_t fit = attention_score_floats / std::max<index_t>(tk, 1);
  return std::clamp<index_t>(fit / 16 * 16, 16, 256);
}

// One score row in place: s = exp(s - max s) / sum. Written once and compiled per instruction
// set (below): exp_approx is most of it, and a build without -march would run it in SSE2. The
// max and the sum run over 16 partial lanes: a float sum in one accumulator does not vectorize
// (its order is fixed), and with 16 lanes in code the order, and so the result, is the same for
// every register width.
inline void softmax_row(float* s, index_t n) {
  constexpr index_t lanes = 16;
  const index_t full = n / lanes * lanes;
  float m = s[0];
  if (full > 0) {
    float part[lanes];
    for (index_t u = 0; u < lanes; ++u) part[u] = s[u];
    for (index_t j = lanes; j < full; j += lanes)
      for (index_t u = 0; u < lanes; ++u) part[u] = std::max(part[u], s[j + u]);
    for (index_t u = 0; u < lanes; ++u) m = std::max(m, part[u]);
  }
  for (index_t j = full; j < n; ++j) m = std::max(m, s[j]);
  for (index_t j = 0; j < n; ++j) s[j] = exp_approx(s[j] - m);
  float part[lanes] = {};
  for (index_t j = 0; j < full; j += lanes)
    for (index_t u = 0; u < lanes; ++u) part[u] += s[j + u];
  float sum = 0.0f;
  for (index_t u = 0; u < lanes; ++u) sum += part[u];
  for (index_t j = full; j < n; ++j) sum += s[j];
  const float inv = 1.0f / sum;
  for (index_t j = 0; j < n; ++j) s[j] *= inv;
}

using softmax_row_fn = void (*)(float*, index_t);

[[gnu::flatten]] inline void softmax_row_portable(float* s, index_t n) { softmax_row(s, n); }
#if DDM_DIT_X86_DISPATCH
[[gnu::flatten, gnu::target("avx2,fma")]] inline void softmax_row_avx2(float* s, index_t n) { softmax_row(s, n); }
[[gnu::flatten, gnu::target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]] inline void softmax_row_avx512(
    float* s, index_t n) {
  softmax_row(s, n);
}
#endif

/// The softmax row for `i` (which the CPU must support: see active_isa()).
[[nodiscard]] inline softmax_row_fn softmax_kernel(isa i) noexcept {
#if DDM_DIT_X86_DISPATCH
  if (i == isa::avx512) return softmax_row_avx512;
  if (i == isa::avx2) return softmax_row_avx2;
#else
  (void)i;
#endif
  return softmax_row_portable;
}

struct attention_args {
  batch_view<const float, ddm::host_space> q, k, v;
  batch_view<float, ddm::host_space> out;
  index_t tq, tk, hd, heads, blocks, query_block;
  float scale;
  softmax_row_fn softmax;
};

inline void attention_task(const attention_args& a, index_t task) {
  const index_t b = task / (a.heads * a.blocks);
  const index_t h = (task / a.blocks) % a.heads;
  const index_t q_begin = (task % a.blocks) * a.query_block;
  const index_t nq = std::min(a.query_block, a.tq - q_begin);
  thread_local std::vector<float> scores;
  scores.resize(static_cast<std::size_t>(nq * a.tk));
  const int n_q = static_cast<int>(nq), n_k = static_cast<int>(a.tk), n_d = static_cast<int>(a.hd);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_q, n_k, n_d, a.scale, a.q.row(b * a.tq + q_begin) + h * a.hd,
              static_cast<int>(a.q.stride()), a.k.row(b * a.tk) + h * a.hd, static_cast<int>(a.k.stride()), 0.0f,
              scores.data(), n_k);
  for (index_t i = 0; i < nq; ++i) a.softmax(scores.data() + i * a.tk, a.tk);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n_q, n_d, n_k, 1.0f, scores.data(), n_k,
              a.v.row(b * a.tk) + h * a.hd, static_cast<int>(a.v.stride()), 0.0f,
              a.out.row(b * a.tq + q_begin) + h * a.hd, static_cast<int>(a.out.stride()));
}

// GELU and SiLU over a row, compiled per instruction set like the softmax: their exp is most of
// the element-wise work, and a build without -march would run it in SSE2.
enum class activation { silu, gelu_tanh };

template <activation A>
inline void activate_row(const float* in, float* out, index_t n) {
  for (index_t j = 0; j < n; ++j) {
    const float v = in[j];
    if constexpr (A == activation::silu) {
      out[j] = v / (1.0f + exp_approx(-v));
    } else {
      // tanh(u) = 1 - 2 / (e^(2u) + 1): exact at both tails, absolute error ~1e-7 near 0.
      constexpr float k = 0.7978845608028654f;  // sqrt(2 / pi)
      const float u = k * (v + 0.044715f * v * v * v);
      const float tanh_u = 1.0f - 2.0f / (exp_approx(2.0f * u) + 1.0f);
      out[j] = 0.5f * v * (1.0f + tanh_u);
    }
  }
}

using activation_row_fn = void (*)(const float*, float*, index_t);

template <activation A>
[[gnu::flatten]] inline void activate_row_portable(const float* in, float* out, index_t n) {
  activate_row<A>(in, out, n);
}
#if DDM_DIT_X86_DISPATCH
template <activation A>
[[gnu::flatten, gnu::target("avx2,fma")]] inline void activate_row_avx2(const float* in, float* out, index_t n) {
  activate_row<A>(in, out, n);
}
template <activation A>
[[gnu::flatten, gnu::target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]] inline void activate_row_avx512(
    const float* in, float* out, index_t n) {
  activate_row<A>(in, out, n);
}
#endif

/// The row activation for `i` (which the CPU must support: see active_isa()).
template <activation A>
[[nodiscard]] inline activation_row_fn activation_kernel(isa i) noexcept {
#if DDM_DIT_X86_DISPATCH
  if (i == isa::avx512) return activate_row_avx512<A>;
  if (i == isa::avx2) return activate_row_avx2<A>;
#else
  (void)i;
#endif
  return activate_row_portable<A>;
}

}  // namespace host

template <>
struct backend<ddm::host_space> {
  using space = ddm::host_space;
  using context = ddm::host_context;
  template <class T>
  using view = batch_view<T, space>;

  /// y = x w^T (+ bias) (+ y when accumulate): x (M, K), w (N, K) as PyTorch stores Linear
  /// weights, y (M, N). Any row strides.
  static void linear(const context& /*ctx*/, view<const float> x, view<const float> w, const float* bias,
                     view<float> y, bool accumulate = false) {
    host::require(x.cols() == w.cols() && y.rows() == x.rows() && y.cols() == w.rows(), "dit::linear",
                    "shapes must be x (M, K), w (N, K), y (M, N)");
    const index_t m = x.rows();
    const index_t n = w.rows();
    const index_t k = x.cols();
    if (m == 0 || n == 0) return;
    host::prepare_blas();
    float beta = accumulate ? 1.0f : 0.0f;
    if (bias != nullptr) {
      host::parallel_for(m, n, [&](index_t r) {
        float* row = y.row(r);
        if (accumulate) {
          for (index_t j = 0; j < n; ++j) row[j] += bias[j];
        } else {
          std::memcpy(row, bias, static_cast<std::size_t>(n) * sizeof(float));
        }
      });
      beta = 1.0f;
    }
    if (k == 0) {
      if (beta == 0.0f)
        for (index_t r = 0; r < m; ++r) std::fill_n(y.row(r), n, 0.0f);
      return;
    }
    // Split the product into blocks of output rows (or of output columns when there are few
    // rows, as in the per-sample adaLN products), one single-threaded BLAS call per block. One
    // row (the adaLN products at batch 1) is a matrix-vector product: sgemv reads the weights
    // once, where sgemm also packs them (the product is bound by reading the weights).
    const int threads = std::max(1, host_threads());
    const bool split_rows = m > 1 && (m >= n || m >= 64 * threads);
    const index_t extent = split_rows ? m : n;
    const index_t parts = m * n * k >= (index_t{1} << 20) ? std::min<index_t>(threads, (extent + 15) / 16) : 1;
    const index_t step = (extent + parts - 1) / parts;
    host::parallel_for(parts, index_t{1} << 18, [&](index_t part) {
      const index_t first = part * step;
      const index_t count = std::min(step, extent - first);
      if (count <= 0) return;
      if (split_rows) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(count), static_cast<int>(n),
                    static_cast<int>(k), 1.0f, x.row(first), static_cast<int>(x.stride()), w.data(),
                    static_cast<int>(w.stride()), beta, y.row(first), static_cast<int>(y.stride()));
      } else if (m == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(count), static_cast<int>(k), 1.0f, w.row(first),
                    static_cast<int>(w.stride()), x.data(), 1, beta, y.data() + first, 1);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(count),
                    static_cast<int>(k), 1.0f, x.data(), static_cast<int>(x.stride()), w.row(first),
                    static_cast<int>(w.stride()), beta, y.data() + first, static_cast<int>(y.stride()));
      }
    });
  }

  /// The same with a weight_view, which must hold float weights on the host.
  static void linear(const context& ctx, view<const float> x, weight_view<space> w, const float* bias, view<float> y,
                     bool accumulate = false) {
    linear(ctx, x, w.as_f32("dit::linear"), bias, y, accumulate);
  }

  /// y = (x - mean) / sqrt(var + eps) per row, then * gamma + beta when given (each (1, D) or
  /// null). Statistics accumulate in double. y may be x.
  static void layer_norm(const context& /*ctx*/, view<const float> x, double eps, const float* gamma,
                         const float* beta, view<float> y) {
    host::require(ddm::same_shape(x, y), "dit::layer_norm", "x and y must have the same shape");
    const index_t d = x.cols();
    host::parallel_for(x.rows(), 4 * d, [&](index_t r) {
      float mean;
      float inv;
      moments_(x.row(r), d, eps, mean, inv);
      const float* in = x.row(r);
      float* out = y.row(r);
      for (index_t j = 0; j < d; ++j) {
        float v = (in[j] - mean) * inv;
        if (gamma != nullptr) v *= gamma[j];
        if (beta != nullptr) v += beta[j];
        out[j] = v;
      }
    });
  }

  /// y = LN(x) * (1 + scale_b) + shift_b, where b = row / (rows / batch) is the sample of the
  /// row; shift and scale are (B, D) (any stride). y may be x.
  static void layer_norm_modulate(const context& /*ctx*/, view<const float> x, double eps, view<const float> shift,
                                  view<const float> scale, view<float> y) {
    host::require(ddm::same_shape(x, y) && shift.cols() == x.cols() && ddm::same_shape(shift, scale) &&
                        shift.rows() > 0 && x.rows() % shift.rows() == 0,
                    "dit::layer_norm_modulate", "x, y (B*T, D); shift, scale (B, D)");
    const index_t d = x.cols();
    const index_t per_sample = x.rows() / shift.rows();
    host::parallel_for(x.rows(), 4 * d, [&](index_t r) {
      float mean;
      float inv;
      moments_(x.row(r), d, eps, mean, inv);
      const float* in = x.row(r);
      const float* sh = shift.row(r / per_sample);
      const float* sc = scale.row(r / per_sample);
      float* out = y.row(r);
      for (index_t j = 0; j < d; ++j) out[j] = (in[j] - mean) * inv * (1.0f + sc[j]) + sh[j];
    });
  }

  /// x += gate_b * y (gate (B, D), any stride), or x += y when gate is empty.
  static void gated_residual(const context& /*ctx*/, view<float> x, view<const float> gate, view<const float> y) {
    host::require(ddm::same_shape(x, y), "dit::gated_residual", "x and y must have the same shape");
    const bool gated = !gate.empty();
    host::require(!gated || (gate.cols() == x.cols() && x.rows() % gate.rows() == 0), "dit::gated_residual",
                    "gate must be (B, D) with B dividing the rows of x");
    const index_t d = x.cols();
    const index_t per_sample = gated ? x.rows() / gate.rows() : 1;
    host::parallel_for(x.rows(), d, [&](index_t r) {
      float* out = x.row(r);
      const float* in = y.row(r);
      if (gated) {
        const float* g = gate.row(r / per_sample);
        for (index_t j = 0; j < d; ++j) out[j] += g[j] * in[j];
      } else {
        for (index_t j = 0; j < d; ++j) out[j] += in[j];
      }
    });
  }

  /// y(r, :) = x(r, :) + v(0, :). y may be x.
  static void add_row_vector(const context& /*ctx*/, view<const float> x, view<const float> v, view<float> y) {
    host::require(ddm::same_shape(x, y) && v.rows() == 1 && v.cols() == x.cols(), "dit::add_row_vector",
                    "x, y (M, N) and v (1, N)");
    const float* add = v.row(0);
    const index_t n = x.cols();
    host::parallel_for(x.rows(), n, [&](index_t r) {
      const float* in = x.row(r);
      float* out = y.row(r);
      for (index_t j = 0; j < n; ++j) out[j] = in[j] + add[j];
    });
  }

  /// y = x * sigmoid(x).
  static void silu(const context& /*ctx*/, view<const float> x, view<float> y) {
    activation_(x, y, host::activation_kernel<host::activation::silu>(host::active_isa()));
  }

  /// y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), PyTorch's GELU(approximate="tanh").
  static void gelu_tanh(const context& /*ctx*/, view<const float> x, view<float> y) {
    activation_(x, y, host::activation_kernel<host::activation::gelu_tanh>(host::active_isa()));
  }

  /// Multi-head scaled dot-product attention without mask. q (B*Tq, H*hd), k and v (B*Tk, H*hd),
  /// out (B*Tq, H*hd); any row strides (q, k, v are usually column blocks of one fused matrix).
  /// Head h uses columns [h*hd, (h+1)*hd). Any head size. The host computes in float whatever
  /// the layer's weight storage (`operands`, which device backends follow).
  static void attention(const context& /*ctx*/, view<const float> q, view<const float> k, view<const float> v,
                        index_t batch, index_t heads, view<float> out,
                        weight_storage /*operands*/ = weight_storage::f32) {
    host::require(batch > 0 && heads > 0 && q.rows() % batch == 0 && k.rows() % batch == 0 &&
                        ddm::same_shape(k, v) && q.cols() == k.cols() && q.cols() % heads == 0 &&
                        ddm::same_shape(q, out),
                    "dit::attention", "q, out (B*Tq, D); k, v (B*Tk, D); D divisible by heads");
    const index_t tq = q.rows() / batch;
    const index_t tk = k.rows() / batch;
    const index_t hd = q.cols() / heads;
    if (tq == 0) return;
    if (tk == 0)
      throw ddm::shape_error(ddm::concat("dit::attention: ", tq, " queries per sample and no keys, expected >= 1 key"));
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
    const index_t query_block = host::attention_query_block(tk);
    const index_t blocks = (tq + query_block - 1) / query_block;
    const host::attention_args args{q,  k,      v,           out,   tq,
                                    tk, hd,     heads,       blocks, query_block,
                                    scale, host::softmax_kernel(host::active_isa())};
    host::parallel_for(batch * heads * blocks, query_block * tk * hd * 4,
                       [&](index_t t) { host::attention_task(args, t); });
  }

  /// y = linear(layer_norm_modulate(x)), the normalized rows in h (B*T, D). (A device backend
  /// may write them straight into the product's 16-bit operand instead.)
  static void modulated_linear(const context& ctx, view<const float> x, double eps, view<const float> shift,
                               view<const float> scale, weight_view<space> w, const float* bias, view<float> y,
                               view<float> h) {
    layer_norm_modulate(ctx, x, eps, shift, scale, h);
    linear(ctx, h.as_const(), w, bias, y);
  }

  /// y = linear(gelu_tanh(f)); f is overwritten with gelu_tanh(f).
  static void gelu_linear(const context& ctx, view<float> f, weight_view<space> w, const float* bias, view<float> y) {
    gelu_tanh(ctx, f.as_const(), f);
    linear(ctx, f.as_const(), w, bias, y);
  }

  /// y = linear(attention(q, k, v)), the attention output in a (B*Tq, D).
  static void attention_linear(const context& ctx, view<const float> q, view<const float> k, view<const float> v,
                               index_t batch, index_t heads, weight_storage operands, weight_view<space> w,
                               const float* bias, view<float> y, view<float> a) {
    attention(ctx, q, k, v, batch, heads, a, operands);
    linear(ctx, a.as_const(), w, bias, y);
  }

  /// NCHW latents x (B, C*H*W) -> tokens (B*T, C*p*p): token i*Gw + j of sample b holds the patch
  /// at patch-row i, patch-column j, flattened as (c, py, px), the layout of a Conv2d weight.
  static void patchify(const context& /*ctx*/, view<const float> x, const patch_geometry& g, view<float> tokens) {
    const index_t c_in = g.channels;
    const index_t p = g.patch;
    host::require(x.cols() == c_in * g.height * g.width && tokens.rows() == x.rows() * g.tokens() &&
                        tokens.cols() == g.patch_values(c_in),
                    "dit::patchify", "x (B, C*H*W), tokens (B*T, C*p*p)");
    const index_t t = g.tokens();
    host::parallel_for(tokens.rows(), tokens.cols(), [&](index_t r) {
      const index_t b = r / t;
      const index_t i = (r % t) / g.grid_w();
      const index_t j = (r % t) % g.grid_w();
      const float* img = x.row(b);
      float* out = tokens.row(r);
      for (index_t c = 0; c < c_in; ++c)
        for (index_t py = 0; py < p; ++py)
          for (index_t px = 0; px < p; ++px)
            *out++ = img[(c * g.height + i * p + py) * g.width + j * p + px];
    });
  }

  /// tokens (B*T, p*p*C_out), each flattened as (py, px, c) -- channel fastest, the order of the
  /// reference unpatchify -- into NCHW x (B, keep*H*W), keeping channels [0, keep).
  static void unpatchify(const context& /*ctx*/, view<const float> tokens, const patch_geometry& g, index_t keep,
                         view<float> x) {
    const index_t p = g.patch;
    const index_t c_out = tokens.cols() / (p * p);
    host::require(tokens.cols() == p * p * c_out && keep <= c_out && tokens.rows() == x.rows() * g.tokens() &&
                        x.cols() == keep * g.height * g.width,
                    "dit::unpatchify", "tokens (B*T, p*p*C_out), x (B, keep*H*W), keep <= C_out");
    const index_t t = g.tokens();
    host::parallel_for(tokens.rows(), tokens.cols(), [&](index_t r) {
      const index_t b = r / t;
      const index_t i = (r % t) / g.grid_w();
      const index_t j = (r % t) % g.grid_w();
      const float* in = tokens.row(r);
      float* img = x.row(b);
      for (index_t py = 0; py < p; ++py)
        for (index_t px = 0; px < p; ++px)
          for (index_t c = 0; c < keep; ++c)
            img[(c * g.height + i * p + py) * g.width + j * p + px] = in[(py * p + px) * c_out + c];
    });
  }

  /// out (B, 2 half) = [cos(t_r freqs) | sin(t_r freqs)] for freqs (1, half) (timestep_frequencies):
  /// the product in float, cosine and sine in double, rounded to float (embeddings.hpp).
  static void timestep_embedding(const context& /*ctx*/, std::span<const float> t, view<const float> freqs,
                                 view<float> out) {
    const index_t half = freqs.cols();
    host::require(freqs.rows() == 1 && out.rows() == static_cast<index_t>(t.size()) && out.cols() == 2 * half,
                    "dit::timestep_embedding", "freqs (1, half), out (B, 2 half) for B timesteps");
    for (index_t r = 0; r < out.rows(); ++r) {
      float* row = out.row(r);
      for (index_t k = 0; k < half; ++k) {
        const float arg = t[static_cast<std::size_t>(r)] * freqs.row(0)[k];
        row[k] = static_cast<float>(std::cos(static_cast<double>(arg)));
        row[half + k] = static_cast<float>(std::sin(static_cast<double>(arg)));
      }
    }
  }

  /// out(r, :) = table(rows[r], :). Indices are checked.
  static void gather_rows(const context& /*ctx*/, view<const float> table, std::span<const std::int32_t> rows,
                          view<float> out) {
    host::require(out.rows() == static_cast<index_t>(rows.size()) && out.cols() == table.cols(),
                    "dit::gather_rows", "out (n, D) for n indices into table (R, D)");
    for (std::size_t r = 0; r < rows.size(); ++r) {
      if (rows[r] < 0 || rows[r] >= table.rows())
        throw ddm::argument_error(ddm::concat("dit::gather_rows: index ", rows[r], " at position ", r,
                                                      ", expected a row of the table in [0, ", table.rows(), ")"));
      std::memcpy(out.row(static_cast<index_t>(r)), table.row(rows[r]),
                  static_cast<std::size_t>(table.cols()) * sizeof(float));
    }
  }

  static void upload(const context& /*ctx*/, std::span<const float> values, view<float> dst) { upload_(values, dst); }
  static void upload(const context& /*ctx*/, std::span<const std::uint16_t> values, view<std::uint16_t> dst) {
    upload_(values, dst);
  }

  static void download(const context& /*ctx*/, view<const float> src, std::span<float> values) {
    host::require(static_cast<index_t>(values.size()) == src.size(), "dit::download", "sizes must agree");
    for (index_t r = 0; r < src.rows(); ++r)
      std::memcpy(values.data() + r * src.cols(), src.row(r), static_cast<std::size_t>(src.cols()) * sizeof(float));
  }

  /// The (n, 1) row indices into a host vector.
  static std::vector<std::int32_t> download_indices(const context& /*ctx*/, view<const std::int32_t> rows) {
    std::vector<std::int32_t> out(static_cast<std::size_t>(rows.rows()));
    for (index_t i = 0; i < rows.rows(); ++i) out[static_cast<std::size_t>(i)] = rows.row(i)[0];
    return out;
  }

 private:
  template <class U>
  static void upload_(std::span<const U> values, view<U> dst) {
    host::require(static_cast<index_t>(values.size()) == dst.size(), "dit::upload", "sizes must agree");
    for (index_t r = 0; r < dst.rows(); ++r)
      std::memcpy(dst.row(r), values.data() + r * dst.cols(), static_cast<std::size_t>(dst.cols()) * sizeof(U));
  }

  // In 8 partial sums: one accumulator fixes the order of the sum and does not vectorize.
  static void moments_(const float* x, index_t d, double eps, float& mean, float& inv) {
    constexpr index_t lanes = 8;
    const index_t full = d / lanes * lanes;
    double part[lanes] = {};
    for (index_t j = 0; j < full; j += lanes)
      for (index_t u = 0; u < lanes; ++u) part[u] += x[j + u];
    double s = 0;
    for (index_t u = 0; u < lanes; ++u) s += part[u];
    for (index_t j = full; j < d; ++j) s += x[j];
    const double mu = s / static_cast<double>(d);
    double sq[lanes] = {};
    for (index_t j = 0; j < full; j += lanes)
      for (index_t u = 0; u < lanes; ++u) {
        const double c = x[j + u] - mu;
        sq[u] += c * c;
      }
    double ss = 0;
    for (index_t u = 0; u < lanes; ++u) ss += sq[u];
    for (index_t j = full; j < d; ++j) {
      const double c = x[j] - mu;
      ss += c * c;
    }
    mean = static_cast<float>(mu);
    inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
  }

  static void activation_(view<const float> x, view<float> y, host::activation_row_fn row) {
    host::require(ddm::same_shape(x, y), "dit::elementwise", "x and y must have the same shape");
    const index_t n = x.cols();
    host::parallel_for(x.rows(), n * 8, [&](index_t r) { row(x.row(r), y.row(r), n); });
  }
};

}  // namespace dit
