#pragma once
// cuBLAS beside the execution context: a handle whose stream is the context's, and status checks.
//
// A cuBLAS handle is costly to create (it allocates device workspace) and belongs to the device
// that was current when it was created. ddm therefore keeps one handle per thread and device
// (blas_for(ctx)), created on first use and kept for the life of the process, and sets its stream
// to the context's before every use, so cuBLAS work is ordered with the rest of the context's
// work. Own a blas_handle instead to control its lifetime or settings.
//
// Every cuBLAS status is checked; a failure raises ddm::device_error naming the call:
//
//     ddm::cuda: cublasSgemmStridedBatched_64 (Gram matrices in ddm::diagnostics::expert_disagreement) failed:
//     the function failed to launch on the GPU (CUBLAS_STATUS_EXECUTION_FAILED)
//
// Math mode: ddm's handles keep CUBLAS_DEFAULT_MATH, under which single-precision GEMMs run in
// FP32 (no TF32 tensor cores unless the environment forces it with NVIDIA_TF32_OVERRIDE=1).
// Results of a GEMM are bit-for-bit reproducible from run to run on GPUs of the same
// architecture and SM count with the same toolkit (cuBLAS's guarantee, for one stream).
//
// Requires the CUDA toolkit and cuBLAS (link ddm::cuda).

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <array>
#include <cstddef>
#include <string>
#include <utility>

#include "ddm/core/error.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/device.hpp"
#include "ddm/cuda/error.hpp"

namespace ddm::cuda {

/// Raise ddm::device_error unless `status` is CUBLAS_STATUS_SUCCESS; `call` names the call.
inline void check_blas(cublasStatus_t status, const char* call) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw device_error(ddm::concat("ddm::cuda: ", call, " failed: ", cublasGetStatusString(status), " (",
                                         cublasGetStatusName(status), ")"));
}
inline void check_blas(cublasStatus_t status, const std::string& call) { check_blas(status, call.c_str()); }

/// An owned cuBLAS handle (created on the current device). Move-only.
class blas_handle {
 public:
  blas_handle() { check_blas(cublasCreate(&handle_), "cublasCreate"); }
  explicit blas_handle(const cuda_context& ctx) : blas_handle() { set_stream(ctx); }
  blas_handle(const blas_handle&) = delete;
  blas_handle& operator=(const blas_handle&) = delete;
  blas_handle(blas_handle&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  blas_handle& operator=(blas_handle&& other) noexcept {
    if (this != &other) {
      destroy_();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  ~blas_handle() { destroy_(); }

  /// Enqueue the handle's work on ctx's stream from now on.
  void set_stream(const cuda_context& ctx) { check_blas(cublasSetStream(handle_, ctx.stream()), "cublasSetStream"); }
  [[nodiscard]] cublasHandle_t get() const noexcept { return handle_; }

 private:
  void destroy_() noexcept {
    // A failure here (a device already torn down at exit) cannot be raised from a destructor.
    if (handle_ != nullptr) (void)cublasDestroy(handle_);
    handle_ = nullptr;
  }

  cublasHandle_t handle_ = nullptr;
};

/// The calling thread's handle for the current device, its stream set to ctx's.
///
/// The handles are deliberately never destroyed: a thread_local destructor of the main thread
/// runs during process exit, when the CUDA runtime may already be torn down, and destroying a
/// handle then can fail or crash. The driver reclaims them with the process (one handle per
/// thread and device that used cuBLAS through ddm; own a blas_handle to control the lifetime).
[[nodiscard]] inline cublasHandle_t blas_for(const cuda_context& ctx) {
  constexpr int max_devices = 64;
  thread_local std::array<blas_handle*, max_devices> handles{};
  const int device = current_device();
  if (device < 0 || device >= max_devices)
    throw device_error(ddm::concat("ddm::cuda::blas_for: device ", device, ", expected fewer than ",
                                           max_devices, " devices"));
  auto& handle = handles[static_cast<std::size_t>(device)];
  if (handle == nullptr) handle = new blas_handle();  // NOLINT: kept for the life of the process
  handle->set_stream(ctx);
  return handle->get();
}

}  // namespace ddm::cuda

/// Evaluate a cuBLAS call and raise ddm::device_error naming it (as written) if it fails.
#define DDM_CUBLAS_CHECK(call) ::ddm::cuda::check_blas((call), #call)
