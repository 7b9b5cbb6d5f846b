#pragma once
// expert_disagreement(ctx, experts) for device views: the mean pairwise distance among the K
// expert velocities of each row through their Gram matrices, G_r = V_r V_r^T with V_r the (K, D)
// block of row r, from one strided batched GEMM (cuBLAS, B matrices of K x K), then
// d_ab^2 = G_aa + G_bb - 2 G_ab per pair in double. Rounding can make d_ab^2 slightly negative
// when two experts nearly agree; it is clamped to 0. The GEMM accumulates in T, so the distances
// carry a relative error of about eps_T (|v_a|^2 + |v_b|^2) / d_ab^2 next to the host's direct
// differences: small for experts that disagree, large (in relative terms) for nearly equal ones,
// where the distance itself is small. The stacked (K B, D) form is the host header's, for every
// memory space.
//
// Determinism: the GEMM is cuBLAS's (reproducible run to run on one architecture and toolkit);
// the per-row sum is formed in a fixed order. Returns host values, so it waits for the stream.
//
// Requires the CUDA toolkit and cuBLAS (link ddm::cuda); include from CUDA translation units.

#include <cublas_v2.h>

#include <span>
#include <type_traits>
#include <vector>

#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/cuda/launch.hpp"
#include "ddm/core/row_ops.hpp"
#include "ddm/cuda/blas.hpp"
#include "ddm/cuda/diagnostics/instruments/expert_views.hpp"
#include "ddm/cuda/transfer.hpp"
#include "ddm/diagnostics/instruments/disagreement.hpp"

namespace ddm {

namespace cuda::detail {

// G_r = V_r V_r^T for every row r (B, K x K, column-major = row-major: G is symmetric).
template <class T>
void gram_matrices(const cuda_context& ctx, const expert_layout<T>& layout, index_t rows, index_t k, index_t cols,
                   T* gram) {
  const cublasHandle_t handle = blas_for(ctx);
  const T one = 1;
  const T zero = 0;
  if constexpr (std::is_same_v<T, float>) {
    check_blas(cublasSgemmStridedBatched_64(handle, CUBLAS_OP_T, CUBLAS_OP_N, k, k, cols, &one, layout.base,
                                            layout.step, layout.stride, layout.base, layout.step, layout.stride, &zero,
                                            gram, k, k * k, rows),
               "cublasSgemmStridedBatched_64 (Gram matrices in ddm::diagnostics::expert_disagreement)");
  } else {
    static_assert(std::is_same_v<T, double>, "ddm::diagnostics::expert_disagreement on the device: float or double");
    check_blas(cublasDgemmStridedBatched_64(handle, CUBLAS_OP_T, CUBLAS_OP_N, k, k, cols, &one, layout.base,
                                            layout.step, layout.stride, layout.base, layout.step, layout.stride, &zero,
                                            gram, k, k * k, rows),
               "cublasDgemmStridedBatched_64 (Gram matrices in ddm::diagnostics::expert_disagreement)");
  }
}

// d_r = 2 / (K (K - 1)) sum_{a < b} sqrt(max(0, G_aa + G_bb - 2 G_ab)), in double.
template <class T>
__global__ void __launch_bounds__(row_block)
    gram_disagreement_kernel(const T* gram, index_t rows, int k, double* out) {
  for (index_t r = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const T* g = gram + r * k * k;
    double sum = 0.0;
    for (int a = 0; a < k; ++a)
      for (int b = a + 1; b < k; ++b) {
        const double d2 = static_cast<double>(g[a * k + a]) + static_cast<double>(g[b * k + b]) -
                          2.0 * static_cast<double>(g[a * k + b]);
        sum += sqrt(d2 > 0.0 ? d2 : 0.0);
      }
    out[r] = 2.0 * sum / (static_cast<double>(k) * static_cast<double>(k - 1));
  }
}

}  // namespace cuda::detail

namespace diagnostics {

/// d_r (mean pairwise distance among the K expert velocities of row r) for device views, through
/// Gram matrices (see the header comment). Waits for the stream.
template <class T>
[[nodiscard]] std::vector<double> expert_disagreement(const cuda_context& ctx,
                                                      std::span<const batch_view<const T, cuda_space>> experts) {
  const char* where = "ddm::diagnostics::expert_disagreement";
  detail::check_expert_views(where, experts, 2);
  const index_t rows = experts[0].rows();
  const auto k = static_cast<index_t>(experts.size());
  const index_t cols = experts[0].cols();
  batch<T, cuda_space> storage;
  const auto layout = cuda::detail::lay_out_experts(ctx, experts, storage);
  batch<T, cuda_space> gram(ctx, rows, k * k);
  cuda::detail::gram_matrices(ctx, layout, rows, k, cols, gram.data());
  batch<double, cuda_space> d(ctx, rows, 1);
  cuda::detail::gram_disagreement_kernel<T>
      <<<cuda::row_grid(rows), cuda::row_block, 0, ctx.stream()>>>(gram.data(), rows,
                                                                                     static_cast<int>(k), d.data());
  cuda::check_launch("ddm::diagnostics::expert_disagreement (gram_disagreement_kernel)");
  std::vector<double> out(static_cast<std::size_t>(rows));
  ddm::copy(ctx, batch_view<double>(out.data(), rows, 1), d);
  ddm::require_finite_rows(where, "the expert disagreement", out, 0.0);
  return out;
}

}  // namespace diagnostics
}  // namespace ddm
