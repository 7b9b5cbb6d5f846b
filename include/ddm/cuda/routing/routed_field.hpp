#pragma once
// The routed field on device memory: routed_field<Experts, Router, Policy, T, ddm::cuda_space>,
// with the interface of the host one (ddm/routing/routed_field.hpp; make_routed_field<T,
// ddm::cuda_space>(experts, router, policy, ctx) builds it). Experts and router are device fields
// that enqueue their work on the field's stream (ctx).
//
// Per call, for a batch x (B, D) at time t, all on the context's stream:
//   1. the router writes logits (B, K);
//   2. one kernel runs softmax and the policy per row (softmax_row, policy.apply_row: the host's
//      per-row code) into probabilities, weights and selections (B, K); failures go to two status
//      words;
//   3. the grouping (expert-major flags, CUB exclusive scan, scatter) writes each expert's rows,
//      ascending, into row_index, each selected (row, expert) pair's slot (B, K), and the K + 1
//      offsets;
//   4. ONE copy to the host, of the K + 1 offsets and the two status words (page-locked memory),
//      and ONE wait for the stream: the host needs the per-expert counts to size the sub-batches
//      and to skip the experts nobody selected. Nothing else in a call waits for the device. A
//      failure recorded in step 2 is raised here (the same errors, with the same messages, as on
//      the host; reading the offending logit costs one more copy on that error path only);
//   5. each selected expert is called once, on its rows gathered into a contiguous sub-batch (on
//      x itself when it has all B rows), writing its velocities into rows [offsets[k],
//      offsets[k + 1]) of a stacked buffer (sum_k n_k, D);
//   6. one combine kernel writes v(r) = sum over the row's selected experts, in ascending expert
//      order, of w(r, k) v_k(r), reading each expert's row from its slot. No atomics: the sum of
//      each row is formed by one thread per value in a fixed order (the host's order: 0 + w_0 v_0,
//      then + w_1 v_1, ...), so the result is deterministic and agrees with the host to the
//      rounding of the multiply-adds.
// Observers then see the decision (device views) and the per-expert counts (host), as on the host.
//
// Policies that are not device_row_policy (any_routing_policy) run steps 2 as softmax_rows and
// select, each of which waits for the stream: three waits per call instead of one.
//
// Memory: the (B, K) decision, row_index (B K), the (B, K) slots, one gathered sub-batch (B, D)
// reused by every expert (a stack (sum_k n_k, D) of them for a ddm::grouped_expert_set, which
// gets every group of the call at once), and the stacked outputs (sum_k n_k, D): k B D values for top-k, B K D
// for the full ensemble. Workspace grows when a call needs more and is kept; a warmed-up field
// allocates nothing.
//
// Requires the CUDA toolkit and CUB (link ddm::cuda); include from CUDA translation units.

#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/conditioning.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/scratch.hpp"
#include "ddm/cuda/core/algebra.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/cuda/launch.hpp"
#include "ddm/cuda/memory_resource.hpp"
#include "ddm/cuda/pinned_buffer.hpp"
#include "ddm/cuda/routing/grouping.hpp"
#include "ddm/cuda/routing/policy.hpp"
#include "ddm/cuda/routing/softmax.hpp"
#include "ddm/routing/routed_field.hpp"

namespace ddm {

namespace cuda::detail {

// v(r, :) = sum over e ascending with slot(r, e) >= 0 of w(r, e) * stack(slot(r, e), :).
// weights and slots are contiguous (B, K). Every thread of a row reads the row's K slots and
// weights (broadcast, cached); a warp never spans two rows, so the branches on them are uniform.
template <class T, int W>
__global__ void __launch_bounds__(elementwise_block)
    combine_kernel(T* v, index_t sv, const T* weights, const std::int32_t* slot, int k, const T* stack,
                   index_t s_stride, index_t rows, index_t cols, index_t head, index_t vectors) {
  constexpr int unroll = 4;
  const index_t tid = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  const index_t threads = static_cast<index_t>(gridDim.x) * blockDim.x;
  const index_t body_end = head + vectors * W;
  const index_t edge = head + (cols - body_end);
  for (index_t r = blockIdx.y * static_cast<index_t>(blockDim.y) + threadIdx.y; r < rows;
       r += static_cast<index_t>(gridDim.y) * blockDim.y) {
    const std::int32_t* slots = slot + r * k;
    const T* w = weights + r * k;
    T* out = v + r * sv;
    if (tid < edge) {
      const index_t j = tid < head ? tid : body_end + (tid - head);
      T s = T(0);
      for (int e = 0; e < k; ++e) {
        const std::int32_t p = slots[e];
        if (p >= 0) s += w[e] * stack[static_cast<index_t>(p) * s_stride + j];
      }
      out[j] = s;
    }
    T* out_body = out + head;
    for (index_t base = tid; base < vectors; base += threads * unroll) {
      pack<T, W> acc[unroll];
#pragma unroll
      for (int u = 0; u < unroll; ++u)
#pragma unroll
        for (int q = 0; q < W; ++q) acc[u].v[q] = T(0);
      for (int e = 0; e < k; ++e) {
        const std::int32_t p = slots[e];
        if (p < 0) continue;
        const T we = w[e];
        const T* in_body = stack + static_cast<index_t>(p) * s_stride + head;
        pack<T, W> in[unroll];
#pragma unroll
        for (int u = 0; u < unroll; ++u)
          if (base + u * threads < vectors) in[u] = load_stream<T, W>(in_body, base + u * threads);
#pragma unroll
        for (int u = 0; u < unroll; ++u)
          if (base + u * threads < vectors) {
#pragma unroll
            for (int q = 0; q < W; ++q) acc[u].v[q] += we * in[u].v[q];
          }
      }
#pragma unroll
      for (int u = 0; u < unroll; ++u)
        if (base + u * threads < vectors) store_stream<T, W>(out_body, base + u * threads, acc[u]);
    }
  }
}

template <class T, int W>
void launch_combine(const cuda_context& ctx, batch_view<T, cuda_space> v, const T* weights, const std::int32_t* slot,
                    int k, batch_view<const T, cuda_space> stack, const stream_layout& layout) {
  static std::array<std::atomic<int>, 64> resident_cache{};
  const index_t resident = resident_blocks(combine_kernel<T, W>, elementwise_block, resident_cache);
  const index_t edge = v.cols() - layout.vectors * W;
  const row_blocks shape = row_mapped_shape(v.rows(), std::max(layout.vectors, edge), 4, resident);
  combine_kernel<T, W><<<shape.grid, shape.block, 0, ctx.stream()>>>(v.data(), v.stride(), weights, slot, k,
                                                                     stack.data(), stack.stride(), v.rows(), v.cols(),
                                                                     layout.head, layout.vectors);
  check_launch("ddm::routed_field (combine_kernel)");
}

/// v(r) = sum_k w(r, k) v_k(r) from the stacked expert outputs (see combine_kernel).
template <class T>
void combine_routed(const cuda_context& ctx, batch_view<T, cuda_space> v, batch_view<const T, cuda_space> weights,
                    batch_view<const std::int32_t, cuda_space> slot, batch_view<const T, cuda_space> stack) {
  const stream_layout layout = make_stream_layout<T>(std::array<const void*, 2>{v.data(), stack.data()},
                                                     std::array<index_t, 2>{v.stride(), stack.stride()}, 2, v.cols());
  const int k = static_cast<int>(weights.cols());
  if (layout.width > 1) {
    launch_combine<T, vector_width<T>>(ctx, v, weights.data(), slot.data(), k, stack, layout);
  } else {
    launch_combine<T, 1>(ctx, v, weights.data(), slot.data(), k, stack, layout);
  }
}

}  // namespace cuda::detail

namespace cuda {

/// The routed field's last step on its own: v(r) = sum_k weights(r, k) * stack(slot(r, k)) over the
/// experts with slot(r, k) >= 0, where stack holds the experts' outputs for their gathered rows
/// (an expert's rows contiguous, as ddm::group_rows_by_expert orders them) and slot(r, k) is the
/// stack row of row r's output from expert k (-1 where k is not selected). For code that groups
/// rows itself and for benchmarks of the step; one kernel, no synchronization.
template <class T>
void combine_routed(const cuda_context& ctx, batch_view<T, cuda_space> v, batch_view<const T, cuda_space> weights,
                    batch_view<const std::int32_t, cuda_space> slot, batch_view<const T, cuda_space> stack) {
  require_shape("ddm::cuda::combine_routed", "weights", weights, v.rows(), weights.cols());
  require_shape("ddm::cuda::combine_routed", "slot", slot, v.rows(), weights.cols());
  require_shape("ddm::cuda::combine_routed", "stack", stack, stack.rows(), v.cols());
  detail::combine_routed(ctx, v, weights, slot, stack);
}

}  // namespace cuda

template <class Experts, class Router, class Policy, class T>
class routed_field<Experts, Router, Policy, T, cuda_space>
    : public detail::routed_field_base<Experts, Router, Policy, T, cuda_space> {
  using base = detail::routed_field_base<Experts, Router, Policy, T, cuda_space>;

 public:
  routed_field(Experts experts, Router router, Policy policy, cuda_context ctx = {})
      : base(std::move(experts), std::move(router), std::move(policy), ctx) {
    const auto k = static_cast<index_t>(this->num_experts());
    offsets_.assign(static_cast<std::size_t>(k) + 1, 0);
    report_host_ = cuda::pinned_buffer<int>(static_cast<std::size_t>(k) + 3);
    report_ = batch<int, cuda_space>(this->ctx_, 1, k + 3);
    probe_p_ = batch<T>(1, k);
    probe_w_ = batch<T>(1, k);
    probe_sel_ = batch<std::uint8_t>(1, k);
    fill(host_context{}, probe_p_.view(), static_cast<T>(1.0 / static_cast<double>(k)));
  }

  /// v = sum_k w_k(x, t) v_k(x, t) over the experts the policy selected for each row.
  void operator()(batch_view<const T, cuda_space> x, double t, batch_view<T, cuda_space> v) {
    route_(x, t, v, nullptr);
  }

  /// The same for a sub-batch of a larger batch (per-sample conditioning; see the host field).
  void operator()(batch_view<const T, cuda_space> x, double t, batch_view<T, cuda_space> v,
                  row_index_view<cuda_space> rows) {
    base::check_outer_rows_(x, rows);
    route_(x, t, v, &rows);
  }

  /// Whether a call waits for the device once (the policy runs in the decision kernel) or three
  /// times (softmax_rows and the policy's select each wait; see the header comment).
  [[nodiscard]] static constexpr bool fused_decision() noexcept { return device_row_policy<Policy, T>; }

 private:
  void reshape_(index_t rows, index_t cols) {
    const auto k = static_cast<index_t>(this->num_experts());
    row_index_ = row_index_scratch_.get(this->ctx_, rows * k, 1);
    slot_ = slot_scratch_.get(this->ctx_, rows, k);
    composed_ = composed_scratch_.get(this->ctx_, rows * k, 1);
    if constexpr (!base::grouped) x_sub_ = x_scratch_.get(this->ctx_, rows, cols);
  }

  // The policy's own argument checks (top_k's k <= K, ...) run in its host select; the decision
  // kernel calls only apply_row, so they are run here on a one-row host probe of K equal
  // probabilities, at the call's t (a scheduled policy checks the policy in force).
  void check_policy_(double t) {
    this->policy_.select(host_context{}, probe_p_.cview(), t, probe_w_.view(), probe_sel_.view());
  }

  [[noreturn]] void fail_softmax_(index_t bad, double t) {
    const auto k = static_cast<index_t>(this->num_experts());
    const index_t row = bad / k;
    const index_t expert = bad % k;
    T value{};
    DDM_CUDA_CHECK(cudaMemcpyAsync(&value, this->last_decision().logits.cview().row(row) + expert, sizeof(T),
                                   cudaMemcpyDeviceToHost, this->ctx_.stream()));
    this->ctx_.synchronize();
    throw non_finite_error(ddm::concat("ddm::softmax_rows: router '", name_of(this->router_),
                                          "' returned the non-finite logit ", static_cast<double>(value), " for row ",
                                          row, ", expert ", expert, " at t = ", t),
                           -1, t);
  }

  void route_(batch_view<const T, cuda_space> x, double t, batch_view<T, cuda_space> v,
              const row_index_view<cuda_space>* outer) {
    if (!this->begin_call_(x, t, v)) {
      this->evaluate_no_rows_(t);
      return;
    }
    const index_t b = x.rows();
    const index_t d = x.cols();
    const auto k = static_cast<index_t>(this->num_experts());
    cuda::detail::check_routing_size("ddm::routed_field", b, k);
    const cuda_context& ctx = this->ctx_;

    reshape_(b, d);
    auto& decision = this->next_decision_(b, t);
    this->router_(x, t, decision.logits.view());
    DDM_CUDA_CHECK(cudaMemsetAsync(report_.data(), 0, 2 * sizeof(int), ctx.stream()));
    if constexpr (device_row_policy<Policy, T>) {
      check_policy_(t);
      cuda::detail::decide_kernel<Policy, T>
          <<<cuda::row_grid(b), cuda::row_block, 0, ctx.stream()>>>(
              this->policy_, decision.logits.data(), decision.probabilities.data(), decision.weights.data(),
              decision.selected.data(), b, static_cast<int>(k), 1.0 / this->temperature_, t, report_.data());
      cuda::check_launch("ddm::routed_field (decide_kernel)");
    } else {
      softmax_rows(ctx, decision.logits.cview(), this->temperature_, decision.probabilities.view(),
                   this->router_.name(), t);
      this->policy_.select(ctx, decision.probabilities.cview(), t, decision.weights.view(),
                           decision.selected.view());
    }
    grouper_.enqueue(ctx, decision.selected.cview(), row_index_.data(), row_index_.stride(), slot_.data(),
                     report_.data() + 2);
    // The one wait of the call: counts and status words come back together.
    DDM_CUDA_CHECK(cudaMemcpyAsync(report_host_.data(), report_.data(), report_host_.size() * sizeof(int),
                                   cudaMemcpyDeviceToHost, ctx.stream()));
    ctx.synchronize();
    if (const index_t bad = cuda::detail::decode_first(report_host_[0], b * k); bad >= 0) fail_softmax_(bad, t);
    if (const index_t bad = cuda::detail::decode_first(report_host_[1], b); bad >= 0)
      throw argument_error(ddm::concat("ddm::routing_policy '", name_of(this->policy_),
                                          "'::select: the probabilities of row ", bad,
                                          " are invalid (a negative or non-finite value, or no positive mass to "
                                          "renormalize), expected the output of ddm::softmax_rows"));
    for (std::size_t e = 0; e <= static_cast<std::size_t>(k); ++e) offsets_[e] = report_host_[e + 2];

    const auto stack = v_stack_scratch_.get(ctx, std::max<index_t>(offsets_.back(), 1), d);
    if constexpr (base::grouped) x_sub_ = x_scratch_.get(ctx, std::max<index_t>(offsets_.back(), 1), d);
    this->evaluate_experts_(
        x, t, outer, std::span<const index_t>(offsets_), row_index_, x_sub_, composed_,
        [&](std::size_t, index_t first, index_t n) { return stack.subrows(first, n); },
        [](std::size_t, row_index_view<cuda_space>, batch_view<const T, cuda_space>) {});
    cuda::detail::combine_routed(ctx, v, decision.weights.cview(), slot_.as_const(),
                                 stack.subrows(0, offsets_.back()).as_const());
    this->end_call_(x, t, v);
  }

  std::vector<index_t> offsets_;              // (K + 1), host
  cuda::pinned_buffer<int> report_host_;      // (K + 3): status words, then offsets
  batch<int, cuda_space> report_;             // (1, K + 3) its device side
  cuda::detail::expert_grouper grouper_;
  batch<T> probe_p_;                          // (1, K) the policy check's host probe
  batch<T> probe_w_;
  batch<std::uint8_t> probe_sel_;
  detail::scratch_buffer<std::int32_t, cuda_space> row_index_scratch_;
  detail::scratch_buffer<std::int32_t, cuda_space> slot_scratch_;
  detail::scratch_buffer<std::int32_t, cuda_space> composed_scratch_;
  detail::scratch_buffer<T, cuda_space> x_scratch_;
  detail::scratch_buffer<T, cuda_space> v_stack_scratch_;
  batch_view<std::int32_t, cuda_space> row_index_;
  batch_view<std::int32_t, cuda_space> slot_;
  batch_view<std::int32_t, cuda_space> composed_;
  batch_view<T, cuda_space> x_sub_;
};

}  // namespace ddm
