#pragma once
// Routing policies on device memory: the CUDA backend of ddm/routing/policy.hpp
// (policy_rows<cuda_space>), one thread per row running the policy's apply_row (the host's code,
// compiled for the device), and the fused softmax-then-policy kernel the device routed field
// decides with. A row the policy rejects is recorded as the first failing row (record_first in
// launch.hpp); select() reads it back, so it waits for the stream.
//
// Requires the CUDA toolkit (link ddm::cuda); include from CUDA translation units.

#include <cuda_runtime_api.h>

#include <concepts>
#include <cstdint>
#include <type_traits>

#include "ddm/core/batch.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/cuda/launch.hpp"
#include "ddm/cuda/memory_resource.hpp"
#include "ddm/cuda/routing/softmax.hpp"
#include "ddm/routing/policy.hpp"

namespace ddm {

/// A policy whose per-row decision can run in a device kernel: trivially copyable (it is passed
/// by value) with apply_row(p, K, t, w, selected) (DDM_HOST_DEVICE). Every policy ddm provides
/// qualifies, scheduled ones included; any_routing_policy (type-erased) does not.
template <class P, class T>
concept device_row_policy =
    std::is_trivially_copyable_v<P> &&
    requires(const P& p, const T* probs, int k, double t, T* w, std::uint8_t* selected) {
      { p.apply_row(probs, k, t, w, selected) } -> std::convertible_to<bool>;
    };

namespace cuda::detail {

template <class Policy, class T>
__global__ void __launch_bounds__(row_block)
    policy_kernel(const Policy policy, const T* probs, index_t sp, double t, T* w, index_t sw, std::uint8_t* selected,
                  index_t ss, index_t rows, int k, int* first_bad) {
  for (index_t r = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<index_t>(gridDim.x) * blockDim.x)
    if (!policy.apply_row(probs + r * sp, k, t, w + r * sw, selected + r * ss)) record_first(first_bad, rows, r);
}

/// The routed field's decision in one kernel: softmax (with the temperature) then the policy, per
/// row, on contiguous (B, K) buffers. status[0] receives the first non-finite logit (row-major
/// index), status[1] the first row the policy rejected. A row with a bad logit is not given to the
/// policy (its report would only repeat the cause).
template <class Policy, class T>
__global__ void __launch_bounds__(row_block)
    decide_kernel(const Policy policy, const T* logits, T* probs, T* w, std::uint8_t* selected, index_t rows, int k,
                  double inv_temperature, double t, int* status) {
  for (index_t r = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t o = r * k;
    const int bad = softmax_row(logits + o, k, inv_temperature, probs + o);
    if (bad >= 0) {
      record_first(status, rows * k, o + bad);
      continue;
    }
    if (!policy.apply_row(probs + o, k, t, w + o, selected + o)) record_first(status + 1, rows, r);
  }
}

}  // namespace cuda::detail

/// A policy over device rows: one thread per row running policy.apply_row. Waits for the stream
/// to learn whether a row's probabilities were rejected.
template <>
struct policy_rows<cuda_space> {
  template <class Policy, class T>
  static index_t run(const cuda_context& ctx, const Policy& policy, batch_view<const T, cuda_space> probs, double t,
                     batch_view<T, cuda_space> weights, batch_view<std::uint8_t, cuda_space> selected) {
    static_assert(device_row_policy<Policy, T>,
                  "ddm: this routing policy cannot run on device views: a device policy must be trivially copyable "
                  "and offer a DDM_HOST_DEVICE member apply_row(p, K, t, w, selected) (see ddm/routing/policy.hpp)");
    const index_t rows = probs.rows();
    const int k = static_cast<int>(probs.cols());
    cuda::detail::check_routing_size("ddm::routing_policy::select", rows, k);
    const cuda::detail::device_scalar<int> first_bad(ctx);
    cuda::detail::policy_kernel<Policy, T>
        <<<cuda::row_grid(rows), cuda::row_block, 0, ctx.stream()>>>(
            policy, probs.data(), probs.stride(), t, weights.data(), weights.stride(), selected.data(),
            selected.stride(), rows, k, first_bad.get());
    cuda::check_launch("ddm::routing_policy::select (policy_kernel)");
    return cuda::detail::decode_first(first_bad.read(), rows);
  }
};

}  // namespace ddm
