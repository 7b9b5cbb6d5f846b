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
// The kernels, launchers and caches live in dit/cuda/, one file per concern: launch.cuh (launch
// shape, TF32 switch, shared helpers), elementwise.cuh (element-wise and row kernels),
// attention.cuh (the float and tensor-core attention kernels), gemm.cuh (the cuBLASLt plan cache
// and the product) and scratch.cuh (per-stream scratch with an owner that frees it).
//
// Scratch (the 16-bit copy of a product's input, cuBLASLt's workspace) is kept per thread,
// device and stream and grows as needed: concurrent forwards on different streams do not share
// it; a forward on one stream reuses it in stream order. It is freed when its thread ends, or at
// once by dit::release_cuda_scratch(ctx). cuBLASLt handles and matmul plans are kept per thread
// and device for the life of the process, like ddm::cuda::blas_for's handles.
//
// Every CUDA and cuBLAS status is checked (ddm::device_error naming the call).

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include <ddm/core/batch.hpp>
#include <ddm/core/config.hpp>
#include <ddm/core/error.hpp>
// The whole CUDA layer: the models use the device algebra (copy, lincomb), and their wrappers the
// device routed field, guidance and diagnostics.
#include <ddm/cuda.hpp>

#include "dit/backend.hpp"
#include "dit/cuda/attention.cuh"
#include "dit/cuda/elementwise.cuh"
#include "dit/cuda/gemm.cuh"
#include "dit/cuda/launch.cuh"
#include "dit/cuda/scratch.cuh"

namespace dit {

template <>
struct backend<ddm::cuda_space> {
  using space = ddm::cuda_space;
  using context = ddm::cuda_context;
  template <class T>
  using view = batch_view<T, space>;

  /// y = x w^T (+ bias) (+ y when accumulate): x (M, K), w (N, K), y (M, N), any row strides.
  static void linear(const context& ctx, view<const float> x, weight_view<space> w, const float* bias, view<float> y,
                     bool accumulate = false) {
    namespace cd = gpu;
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
      cd::map_kernel<<<cd::elementwise_grid(n, k), cd::elementwise_block, 0, ctx.stream()>>>(
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
    namespace cd = gpu;
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
    namespace cd = gpu;
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
      cd::map_kernel<<<cd::elementwise_grid(n, k), cd::elementwise_block, 0, ctx.stream()>>>(
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
    namespace cd = gpu;
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
    gpu::require(ddm::same_shape(x, y), "dit::layer_norm", "x and y must have the same shape");
    launch_norm_<false>(ctx, x, eps, gamma, beta, {}, {}, y.data(), y.stride());
  }

  /// y = LN(x) * (1 + scale_b) + shift_b, b = row / (rows / batch); shift, scale (B, D), any stride.
  static void layer_norm_modulate(const context& ctx, view<const float> x, double eps, view<const float> shift,
                                  view<const float> scale, view<float> y) {
    gpu::require(ddm::same_shape(x, y) && shift.cols() == x.cols() && ddm::same_shape(shift, scale) &&
                             shift.rows() > 0 && x.rows() % shift.rows() == 0,
                         "dit::layer_norm_modulate", "x, y (B*T, D); shift, scale (B, D)");
    launch_norm_<true>(ctx, x, eps, nullptr, nullptr, shift, scale, y.data(), y.stride());
  }

  /// x += gate_b * y (gate (B, D), any stride), or x += y when gate is empty.
  static void gated_residual(const context& ctx, view<float> x, view<const float> gate, view<const float> y) {
    namespace cd = gpu;
    cd::require(ddm::same_shape(x, y), "dit::gated_residual", "x and y must have the same shape");
    const bool gated = !gate.empty();
    cd::require(!gated || (gate.cols() == x.cols() && x.rows() % gate.rows() == 0), "dit::gated_residual",
                "gate must be (B, D) with B dividing the rows of x");
    if (x.empty()) return;
    cd::gated_residual_kernel<<<cd::elementwise_grid(x.rows(), x.cols()), cd::elementwise_block, 0, ctx.stream()>>>(
        x.data(), x.stride(), gated ? gate.data() : nullptr, gate.stride(), gated ? x.rows() / gate.rows() : 1,
        y.data(), y.stride(), x.rows(), x.cols());
    ddm::cuda::check_launch("dit::gated_residual");
  }

  /// y(r, :) = x(r, :) + v(0, :). y may be x.
  static void add_row_vector(const context& ctx, view<const float> x, view<const float> v, view<float> y) {
    namespace cd = gpu;
    cd::require(ddm::same_shape(x, y) && v.rows() == 1 && v.cols() == x.cols(), "dit::add_row_vector",
                "x, y (M, N) and v (1, N)");
    if (x.empty()) return;
    cd::add_row_kernel<<<cd::elementwise_grid(x.rows(), x.cols()), cd::elementwise_block, 0, ctx.stream()>>>(
        x.data(), x.stride(), v.data(), y.data(), y.stride(), x.rows(), x.cols());
    ddm::cuda::check_launch("dit::add_row_vector");
  }

  /// y = x * sigmoid(x). In place allowed.
  static void silu(const context& ctx, view<const float> x, view<float> y) {
    map_(ctx, x, y, gpu::silu_op{}, "dit::silu");
  }

  /// y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). In place allowed.
  static void gelu_tanh(const context& ctx, view<const float> x, view<float> y) {
    map_(ctx, x, y, gpu::gelu_tanh_op{}, "dit::gelu_tanh");
  }

  /// Multi-head attention without mask, as on the host: q, out (B*Tq, H*hd); k, v (B*Tk, H*hd);
  /// any row strides; head h in columns [h hd, (h + 1) hd). Head sizes up to 256. `operands` is
  /// the storage of the layer's weights: f32 runs the float kernel; bf16 / f16 round q, k, v and
  /// the softmax weights to that type for tensor-core products with float accumulation (compute
  /// capability 8.0 and later; the float kernel otherwise).
  static void attention(const context& ctx, view<const float> q, view<const float> k, view<const float> v,
                        index_t batch, index_t heads, view<float> out,
                        weight_storage operands = weight_storage::f32) {
    gpu::require(ddm::same_shape(q, out), "dit::attention", "q and out must have the same shape");
    attention_(ctx, q, k, v, batch, heads, out.data(), out.stride(), operands, "dit::attention");
  }

  /// NCHW latents x (B, C*H*W) -> tokens (B*T, C*p*p), each flattened as (c, py, px).
  static void patchify(const context& ctx, view<const float> x, const patch_geometry& g, view<float> tokens) {
    namespace cd = gpu;
    cd::require(x.cols() == g.channels * g.height * g.width && tokens.rows() == x.rows() * g.tokens() &&
                    tokens.cols() == g.patch_values(g.channels),
                "dit::patchify", "x (B, C*H*W), tokens (B*T, C*p*p)");
    if (tokens.empty()) return;
    cd::patchify_kernel<<<cd::elementwise_grid(tokens.rows(), tokens.cols()), cd::elementwise_block, 0, ctx.stream()>>>(
        x.data(), x.stride(), tokens.data(), tokens.stride(), tokens.rows(), tokens.cols(), g.tokens(), g.grid_w(),
        g.patch, g.height, g.width);
    ddm::cuda::check_launch("dit::patchify");
  }

  /// tokens (B*T, p*p*C_out), each (py, px, c), channel fastest -> NCHW x (B, keep*H*W).
  static void unpatchify(const context& ctx, view<const float> tokens, const patch_geometry& g, index_t keep,
                         view<float> x) {
    namespace cd = gpu;
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
    cd::unpatchify_kernel<<<cd::elementwise_grid(x.rows(), x.cols()), cd::elementwise_block, 0, ctx.stream()>>>(
        tokens.data(), tokens.stride(), x.data(), x.stride(), x.rows(), x.cols(), g.tokens(), g.grid_w(), p, g.height,
        g.width, c_out);
    ddm::cuda::check_launch("dit::unpatchify");
  }

  /// out (B, 2 half) = [cos(t_r freqs) | sin(t_r freqs)], freqs (1, half) on the device, the B
  /// timesteps passed to the kernel by value.
  static void timestep_embedding(const context& ctx, std::span<const float> t, view<const float> freqs,
                                 view<float> out) {
    namespace cd = gpu;
    const index_t half = freqs.cols();
    cd::require(freqs.rows() == 1 && out.rows() == static_cast<index_t>(t.size()) && out.cols() == 2 * half,
                "dit::timestep_embedding", "freqs (1, half), out (B, 2 half) for B timesteps");
    for (std::size_t first = 0; first < t.size(); first += cd::chunk) {
      const std::size_t n = std::min<std::size_t>(cd::chunk, t.size() - first);
      cd::float_chunk values{};
      std::copy_n(t.data() + first, n, values.v);
      const auto rows = static_cast<index_t>(n);
      cd::timestep_kernel<<<cd::elementwise_grid(rows, half), cd::elementwise_block, 0, ctx.stream()>>>(
          values, rows, freqs.data(), half, out.row(static_cast<index_t>(first)), out.stride());
      ddm::cuda::check_launch("dit::timestep_embedding");
    }
  }

  /// out(r, :) = table(rows[r], :), the indices (host memory) checked on the host and passed to
  /// the kernel by value.
  ///
  /// Not the library's device gather (ddm::expert_grouping<cuda_space>::gather): that one reads
  /// its indices from device memory, so host indices would first need ddm::copy to the device,
  /// which waits for the stream (ddm/cuda/transfer.hpp), and a forward pass never waits (see the
  /// header comment). Passing up to 256 indices by value in the launch needs no copy.
  static void gather_rows(const context& ctx, view<const float> table, std::span<const std::int32_t> rows,
                          view<float> out) {
    namespace cd = gpu;
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
      cd::gather_kernel<<<cd::elementwise_grid(count, table.cols()), cd::elementwise_block, 0, ctx.stream()>>>(
          table.data(), table.stride(), values, count, out.row(static_cast<index_t>(first)), out.stride(),
          table.cols());
      ddm::cuda::check_launch("dit::gather_rows");
    }
  }

  /// Host values into device memory (blocking: for loading, not inside a forward pass). The
  /// transfers are the library's ddm::copy (ddm/cuda/transfer.hpp) over a host view of the span.
  static void upload(const context& ctx, std::span<const float> values, view<float> dst) { upload_(ctx, values, dst); }
  static void upload(const context& ctx, std::span<const std::uint16_t> values, view<std::uint16_t> dst) {
    upload_(ctx, values, dst);
  }

  /// Device values into host memory (blocking).
  static void download(const context& ctx, view<const float> src, std::span<float> values) {
    gpu::require(static_cast<index_t>(values.size()) == src.size(), "dit::download", "sizes must agree");
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
    namespace cd = gpu;
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
    DDM_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, gpu::current_device()));
    return major >= 8;
  }

  // y = words (n, w.cols, contiguous 16-bit operand of w's type) w^T + bias (+ y).
  static void product_16_(const context& ctx, const std::uint16_t* words, index_t n, weight_view<space> w,
                          const float* bias, view<float> y, bool accumulate) {
    gpu::gemm(ctx, w.rows, n, w.cols, w.data, w.stride, words, w.cols, y.data(), y.stride(),
                      w.storage == weight_storage::bf16 ? CUDA_R_16BF : CUDA_R_16F, CUBLAS_COMPUTE_32F, bias,
                      accumulate ? 1.0f : 0.0f);
  }

  template <class U>
  static void upload_(const context& ctx, std::span<const U> values, view<U> dst) {
    gpu::require(static_cast<index_t>(values.size()) == dst.size(), "dit::upload", "sizes must agree");
    if (dst.empty()) return;
    ddm::copy(ctx, dst, batch_view<const U>(values.data(), dst.rows(), dst.cols()));
  }

  template <class Op>
  static void map_(const context& ctx, view<const float> x, view<float> y, Op op, const char* where) {
    namespace cd = gpu;
    cd::require(ddm::same_shape(x, y), where, "x and y must have the same shape");
    if (x.empty()) return;
    cd::map_kernel<<<cd::elementwise_grid(x.rows(), x.cols()), cd::elementwise_block, 0, ctx.stream()>>>(
        x.data(), x.stride(), y.data(), y.stride(), x.rows(), x.cols(), op);
    ddm::cuda::check_launch(where);
  }

  template <bool Modulate, class Out>
  static void launch_norm_(const context& ctx, view<const float> x, double eps, const float* gamma, const float* beta,
                           view<const float> shift, view<const float> scale, Out* y, index_t sy) {
    namespace cd = gpu;
    if (x.empty()) return;
    constexpr index_t rows_per_block = cd::elementwise_block / 32;
    const index_t blocks = std::min<index_t>((x.rows() + rows_per_block - 1) / rows_per_block, cd::max_grid_x);
    cd::layer_norm_kernel<Modulate, Out><<<static_cast<unsigned>(blocks), cd::elementwise_block, 0, ctx.stream()>>>(
        x.data(), x.stride(), y, sy, x.rows(), x.cols(), static_cast<float>(eps), gamma, beta,
        Modulate ? shift.data() : nullptr, Modulate ? shift.stride() : 0, Modulate ? scale.data() : nullptr,
        Modulate ? scale.stride() : 0, Modulate ? x.rows() / shift.rows() : 1);
    ddm::cuda::check_launch(Modulate ? "dit::layer_norm_modulate" : "dit::layer_norm");
  }
};

}  // namespace dit
