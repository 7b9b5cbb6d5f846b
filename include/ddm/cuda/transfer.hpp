#pragma once
// Copies between host and device memory.
//
//     ddm::copy(ctx, device_view, host_view)   host -> device
//     ddm::copy(ctx, host_view, device_view)   device -> host
//     auto d = ddm::cuda::to_device(ctx, host_batch_or_view);   // a new batch<T, cuda_space>
//     auto h = ddm::cuda::to_host(ctx, device_batch_or_view);   // a new batch<T, host_space>
//
// (device -> device is ddm::copy of ddm/core/algebra.hpp, a kernel on the stream.) Views may be
// strided on either side (one cudaMemcpy2DAsync; one cudaMemcpyAsync when both are contiguous).
// Transfers between the spaces are blocking: they are enqueued on the context's stream, in order
// with the work before them, and return when the copy is complete, so the host memory may be
// read, reused or freed at once. They are meant for setting up and inspecting a run, not for the
// inside of a sampler step.
//
// Requires the CUDA toolkit (link ddm::cuda).

#include <cuda_runtime_api.h>

#include <cstddef>
#include <type_traits>

#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/cuda/memory_resource.hpp"

namespace ddm {

namespace cuda::detail {

template <class X, class Space>
concept batch_in = batch_like<X> && std::is_same_v<typename const_view_t<X>::space, Space>;

template <class T, class DstSpace, class SrcSpace>
void copy_across(const cuda_context& ctx, batch_view<T, DstSpace> dst, batch_view<const T, SrcSpace> src,
                 cudaMemcpyKind kind, const char* where) {
  if (!same_shape(dst, src))
    throw shape_error(ddm::concat(where, ": argument 'src' has shape (", src.rows(), ", ", src.cols(),
                                          "), expected the shape of 'dst', (", dst.rows(), ", ", dst.cols(), ")"));
  if (dst.empty()) return;
  const char* direction = kind == cudaMemcpyHostToDevice ? "host to device" : "device to host";
  if (dst.is_contiguous() && src.is_contiguous()) {
    // One flat copy: no pitch, so no limit on the row length.
    const auto bytes = static_cast<std::size_t>(dst.size()) * sizeof(T);
    check(cudaMemcpyAsync(dst.data(), src.data(), bytes, kind, ctx.stream()),
          ddm::concat("cudaMemcpyAsync(", bytes, " bytes, ", direction, ") in ", where));
    ctx.synchronize();
    return;
  }
  const auto width = static_cast<std::size_t>(dst.cols()) * sizeof(T);
  check(cudaMemcpy2DAsync(dst.data(), static_cast<std::size_t>(dst.stride()) * sizeof(T), src.data(),
                          static_cast<std::size_t>(src.stride()) * sizeof(T), width,
                          static_cast<std::size_t>(dst.rows()), kind, ctx.stream()),
        ddm::concat("cudaMemcpy2DAsync(", dst.rows(), " rows of ", width, " bytes, ", direction, ") in ",
                            where));
  ctx.synchronize();
}

}  // namespace cuda::detail

/// Host -> device: dst = src. Blocking (see the header comment).
template <class T, class X>
  requires(!std::is_const_v<T> && cuda::detail::batch_in<X, host_space> &&
           std::is_same_v<typename const_view_t<X>::value_type, T>)
void copy(const cuda_context& ctx, batch_view<T, cuda_space> dst, const X& src) {
  cuda::detail::copy_across(ctx, dst, cview(src), cudaMemcpyHostToDevice, "ddm::copy");
}

/// Device -> host: dst = src. Blocking: dst holds the values when the call returns.
template <class T, class X>
  requires(!std::is_const_v<T> && cuda::detail::batch_in<X, cuda_space> &&
           std::is_same_v<typename const_view_t<X>::value_type, T>)
void copy(const cuda_context& ctx, batch_view<T, host_space> dst, const X& src) {
  cuda::detail::copy_across(ctx, dst, cview(src), cudaMemcpyDeviceToHost, "ddm::copy");
}

namespace cuda {

/// A new device batch (contiguous, allocated through ctx) holding the values of a host batch or
/// view.
template <class X>
  requires detail::batch_in<X, host_space>
[[nodiscard]] batch<typename const_view_t<X>::value_type, cuda_space> to_device(const cuda_context& ctx,
                                                                                const X& host) {
  const auto src = cview(host);
  batch<typename const_view_t<X>::value_type, cuda_space> out(ctx, src.rows(), src.cols());
  detail::copy_across(ctx, out.view(), src, cudaMemcpyHostToDevice, "ddm::cuda::to_device");
  return out;
}

/// A new host batch holding the values of a device batch or view. Blocking.
template <class X>
  requires detail::batch_in<X, cuda_space>
[[nodiscard]] batch<typename const_view_t<X>::value_type, host_space> to_host(const cuda_context& ctx,
                                                                              const X& device) {
  const auto src = cview(device);
  batch<typename const_view_t<X>::value_type, host_space> out(src.rows(), src.cols());
  detail::copy_across(ctx, out.view(), src, cudaMemcpyDeviceToHost, "ddm::cuda::to_host");
  return out;
}

}  // namespace cuda
}  // namespace ddm
