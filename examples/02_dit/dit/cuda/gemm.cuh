#pragma once
// Matrix products of the DiT's CUDA backend: y = x w^T + bias through cuBLASLt, the bias in the
// matmul's epilogue, with the descriptors and the heuristic's algorithm cached per shape and
// alignment (one plan cache per thread), and cublasGemmEx plus a bias kernel where cuBLASLt
// offers no algorithm. The workspace comes from the per-stream scratch (dit/cuda/scratch.cuh).
// Include from CUDA translation units.

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <climits>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <utility>

#include <ddm/core/config.hpp>
#include <ddm/core/error.hpp>
#include <ddm/cuda/blas.hpp>
#include <ddm/cuda/context.hpp>
#include <ddm/cuda/error.hpp>

#include "dit/cuda/elementwise.cuh"
#include "dit/cuda/launch.cuh"
#include "dit/cuda/scratch.cuh"

namespace dit::gpu {

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
  bias_kernel<<<elementwise_grid(rows, cols), elementwise_block, 0, ctx.stream()>>>(y, ldy, bias, keep, rows, cols);
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

}  // namespace dit::gpu
