#pragma once
// The analytic DDM on a GPU: its experts, mixture field and posterior router as device velocity
// fields and a device router, over the parameters of a ddm::synthetic::analytic_ddm copied to
// device memory once.
//
//     const ddm::synthetic::analytic_ddm model;                  // host: data, quality measures
//     const ddm::cuda::device_analytic_ddm dev(ctx, model);      // parameters to the device, once
//     auto field = ddm::cuda::make_analytic_routed_field<float>(dev, 2.0, ddm::top_2());
//     ddm::batch<float, ddm::cuda_space> x(ctx, 4096, model.dim());
//     ddm::fill_normal(ctx, x.view(), 1);
//     ddm::sample(ctx, {}, field, x.view(), ddm::schedules::uniform(32), ddm::heun{});
//     const auto samples = ddm::cuda::to_host(ctx, x);           // then evaluate_quality(model, ...)
//
// Every kernel gives each row one thread and runs the host's per-row code
// (ddm/synthetic/gaussian_mixture.hpp: mixture_velocity_row, mixture_jvp_row, cluster_logits_row),
// compiled for the device, in double whatever T is. Device and host therefore agree to the
// rounding of the device's exp and log (within 2 ulp of double), then one rounding to T: in float,
// equal or adjacent values (the tests bound the difference by 1e-5 relative to the row's scale).
// The per-row scratch (J doubles, 2 J for the jvp) lives in shared memory, padded to an odd
// number of doubles per thread against bank conflicts; mixtures too large for that (J > 191) use
// a global buffer kept by the field.
//
// Requires the CUDA toolkit (link ddm::cuda); include from CUDA translation units.

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/scratch.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/cuda/launch.hpp"
#include "ddm/cuda/memory_resource.hpp"
#include "ddm/cuda/routing/routed_field.hpp"
#include "ddm/cuda/transfer.hpp"
#include "ddm/routing/ensemble.hpp"
#include "ddm/synthetic/analytic_ddm.hpp"
#include "ddm/synthetic/gaussian_mixture.hpp"

namespace ddm::cuda {

namespace detail {

/// The analytic DDM's parameters in device memory, shared by every field and router made from it.
struct device_mixture_data {
  int clusters = 0;
  int dim = 0;
  int components = 0;
  batch<double, cuda_space> means;                // (J, D), grouped by cluster
  batch<double, cuda_space> scales;               // (1, J)
  batch<double, cuda_space> log_weights;          // (1, J) overall
  batch<double, cuda_space> log_cluster_weights;  // (1, J) within each component's cluster
  batch<int, cuda_space> cluster_begin;           // (1, K + 1)
  std::vector<int> cluster_begin_host;            // (K + 1)

  [[nodiscard]] synthetic::mixture_view whole() const noexcept {
    return {means.data(), scales.data(), log_weights.data(), components, dim};
  }
  [[nodiscard]] synthetic::mixture_view cluster(int k) const noexcept {
    const auto b = static_cast<std::size_t>(cluster_begin_host[static_cast<std::size_t>(k)]);
    const int n = cluster_begin_host[static_cast<std::size_t>(k) + 1] - cluster_begin_host[static_cast<std::size_t>(k)];
    return {means.data() + b * static_cast<std::size_t>(dim), scales.data() + b, log_cluster_weights.data() + b, n,
            dim};
  }
};

/// Where a row's scratch of `doubles` values goes: shared memory (`threads` per block, `stride`
/// doubles each, odd so that consecutive threads start in different banks) or, when even 32
/// threads' worth does not fit in 48 KiB, a global buffer of `stride` doubles per row.
struct scratch_plan {
  int threads = 128;
  int stride = 1;
  bool shared = true;

  [[nodiscard]] std::size_t shared_bytes() const noexcept {
    return shared ? static_cast<std::size_t>(threads) * static_cast<std::size_t>(stride) * sizeof(double) : 0;
  }
};

[[nodiscard]] inline scratch_plan plan_scratch(int doubles) {
  constexpr std::size_t limit = 48 * 1024;
  scratch_plan plan{128, std::max(doubles, 1) | 1, true};
  while (plan.threads >= 32 && plan.shared_bytes() > limit) plan.threads /= 2;
  if (plan.threads < 32) plan = {128, plan.stride, false};
  return plan;
}

enum class mixture_op { velocity, jvp };

template <mixture_op Op, class T>
__global__ void mixture_kernel(const synthetic::mixture_view m, const T* x, index_t sx, const T* u, index_t su, T* out,
                               index_t so, index_t rows, double t, double* global_scratch, int stride) {
  extern __shared__ double shared_scratch[];
  for (index_t r = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<index_t>(gridDim.x) * blockDim.x) {
    double* s = global_scratch != nullptr ? global_scratch + r * stride : shared_scratch + threadIdx.x * stride;
    if constexpr (Op == mixture_op::velocity) {
      synthetic::mixture_velocity_row(m, x + r * sx, t, out + r * so, s);
    } else {
      synthetic::mixture_jvp_row(m, x + r * sx, t, u + r * su, out + r * so, s);
    }
  }
}

template <class T>
__global__ void cluster_logits_kernel(const synthetic::mixture_view m, const int* cluster_begin, int clusters,
                                      const T* x, index_t sx, T* logits, index_t sl, index_t rows, double t,
                                      double inv_tau, double* global_scratch, int stride) {
  extern __shared__ double shared_scratch[];
  for (index_t r = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<index_t>(gridDim.x) * blockDim.x) {
    double* s = global_scratch != nullptr ? global_scratch + r * stride : shared_scratch + threadIdx.x * stride;
    synthetic::cluster_logits_row(m, cluster_begin, clusters, x + r * sx, t, inv_tau, logits + r * sl, s);
  }
}

[[nodiscard]] inline unsigned mixture_grid(index_t rows, int threads) {
  return static_cast<unsigned>(std::clamp<index_t>((rows + threads - 1) / threads, 1, max_grid_x));
}

// The global scratch of a launch when the plan needs one (rows x stride doubles), else nullptr.
inline double* global_scratch(const cuda_context& ctx, const scratch_plan& plan,
                              ddm::detail::scratch_buffer<double, cuda_space>& buffer, index_t rows) {
  return plan.shared ? nullptr : buffer.get(ctx, rows, plan.stride).data();
}

}  // namespace detail

/// The exact rectified-flow velocity of a Gaussian mixture (one cluster of the analytic DDM, or all
/// of it) on device views of float or double, with an exact jvp. Enqueues on its context's stream.
class device_gaussian_mixture_field {
 public:
  device_gaussian_mixture_field(std::shared_ptr<const detail::device_mixture_data> data, synthetic::mixture_view view,
                                cuda_context ctx)
      : data_(std::move(data)), view_(view), ctx_(ctx) {}

  template <class T>
  void operator()(batch_view<const T, cuda_space> x, double t, batch_view<T, cuda_space> v) {
    constexpr const char* where = "ddm::cuda::device_gaussian_mixture_field";
    check_(x, t, where);
    ddm::require_same_shape(where, "v", v, x);
    if (x.rows() == 0) return;
    const detail::scratch_plan plan = detail::plan_scratch(view_.components);
    detail::mixture_kernel<detail::mixture_op::velocity, T>
        <<<detail::mixture_grid(x.rows(), plan.threads), plan.threads, plan.shared_bytes(), ctx_.stream()>>>(
            view_, x.data(), x.stride(), nullptr, 0, v.data(), v.stride(), x.rows(), t,
            detail::global_scratch(ctx_, plan, scratch_, x.rows()), plan.stride);
    check_launch("ddm::cuda::device_gaussian_mixture_field (mixture_kernel)");
  }

  /// out = J(x, t) u row by row, exactly.
  template <class T>
  void jvp(batch_view<const T, cuda_space> x, double t, batch_view<const T, cuda_space> u,
           batch_view<T, cuda_space> out) {
    constexpr const char* where = "ddm::cuda::device_gaussian_mixture_field::jvp";
    check_(x, t, where);
    ddm::require_same_shape(where, "u", u, x);
    ddm::require_same_shape(where, "out", out, x);
    if (x.rows() == 0) return;
    const detail::scratch_plan plan = detail::plan_scratch(2 * view_.components);
    detail::mixture_kernel<detail::mixture_op::jvp, T>
        <<<detail::mixture_grid(x.rows(), plan.threads), plan.threads, plan.shared_bytes(), ctx_.stream()>>>(
            view_, x.data(), x.stride(), u.data(), u.stride(), out.data(), out.stride(), x.rows(), t,
            detail::global_scratch(ctx_, plan, scratch_, x.rows()), plan.stride);
    check_launch("ddm::cuda::device_gaussian_mixture_field::jvp (mixture_kernel)");
  }

  /// The parameters, by device pointer (valid while a field or the device_analytic_ddm lives).
  [[nodiscard]] const synthetic::mixture_view& view() const noexcept { return view_; }
  [[nodiscard]] const cuda_context& context() const noexcept { return ctx_; }

 private:
  template <class T>
  void check_(batch_view<const T, cuda_space> x, double t, const char* where) const {
    synthetic::detail::check_time(where, t);
    if (x.cols() != view_.dim)
      throw shape_error(ddm::concat(where, ": argument 'x' has ", x.cols(), " columns, expected D = ", view_.dim));
  }

  std::shared_ptr<const detail::device_mixture_data> data_;
  synthetic::mixture_view view_;
  cuda_context ctx_;
  ddm::detail::scratch_buffer<double, cuda_space> scratch_;
};

/// The exact posterior router of the analytic DDM on device views: logits_k = log p(k | x_t) / tau
/// up to a per-row constant (as ddm::synthetic::posterior_router).
class device_posterior_router {
 public:
  device_posterior_router(std::shared_ptr<const detail::device_mixture_data> data, double tau, cuda_context ctx)
      : data_(std::move(data)), tau_(tau), ctx_(ctx) {
    if (!(tau > 0.0) || !std::isfinite(tau))
      ddm::fail_argument("ddm::cuda::device_posterior_router", "tau", tau, "a finite value > 0");
  }

  [[nodiscard]] std::size_t num_experts() const noexcept { return static_cast<std::size_t>(data_->clusters); }
  [[nodiscard]] const char* name() const noexcept { return "analytic posterior router"; }
  [[nodiscard]] double tau() const noexcept { return tau_; }

  template <class T>
  void operator()(batch_view<const T, cuda_space> x, double t, batch_view<T, cuda_space> logits) {
    constexpr const char* where = "ddm::cuda::device_posterior_router";
    synthetic::detail::check_time(where, t);
    if (x.cols() != data_->dim)
      throw shape_error(ddm::concat(where, ": argument 'x' has ", x.cols(), " columns, expected D = ", data_->dim));
    ddm::require_shape(where, "logits", logits, x.rows(), data_->clusters);
    if (x.rows() == 0) return;
    const detail::scratch_plan plan = detail::plan_scratch(data_->components);
    detail::cluster_logits_kernel<T>
        <<<detail::mixture_grid(x.rows(), plan.threads), plan.threads, plan.shared_bytes(), ctx_.stream()>>>(
            data_->whole(), data_->cluster_begin.data(), data_->clusters, x.data(), x.stride(), logits.data(),
            logits.stride(), x.rows(), t, 1.0 / tau_, detail::global_scratch(ctx_, plan, scratch_, x.rows()),
            plan.stride);
    check_launch("ddm::cuda::device_posterior_router (cluster_logits_kernel)");
  }

 private:
  std::shared_ptr<const detail::device_mixture_data> data_;
  double tau_;
  cuda_context ctx_;
  ddm::detail::scratch_buffer<double, cuda_space> scratch_;
};

/// An analytic DDM whose parameters live in device memory: the device counterpart of
/// ddm::synthetic::analytic_ddm's experts, mixture field and router. The host model it was made
/// from stays available (host_model()) for data and the exact quality measures.
class device_analytic_ddm {
 public:
  /// Copies the parameters of `model` to the device (blocking, once). Fields and routers made
  /// from this object enqueue on `ctx`'s stream and keep the device parameters alive.
  device_analytic_ddm(const cuda_context& ctx, const synthetic::analytic_ddm& model) : ctx_(ctx), host_(model) {
    auto data = std::make_shared<detail::device_mixture_data>();
    data->clusters = static_cast<int>(model.num_clusters());
    data->dim = static_cast<int>(model.dim());
    data->components = static_cast<int>(model.num_components());
    const auto j = static_cast<index_t>(model.num_components());
    const auto k = static_cast<index_t>(model.num_clusters());
    data->means = to_device(ctx, model.component_means());
    data->scales = to_device(ctx, batch_view<const double>(model.component_scales().data(), 1, j));
    std::vector<double> log_weights(static_cast<std::size_t>(j));
    std::vector<double> log_cluster_weights(static_cast<std::size_t>(j));
    const synthetic::mixture_view whole = model.view();
    for (index_t i = 0; i < j; ++i) log_weights[static_cast<std::size_t>(i)] = whole.log_weights[i];
    data->cluster_begin_host.assign(model.cluster_begin().begin(), model.cluster_begin().end());
    for (std::size_t c = 0; c < static_cast<std::size_t>(k); ++c) {
      const synthetic::mixture_view cv = model.cluster_view(c);
      for (int i = 0; i < cv.components; ++i)
        log_cluster_weights[static_cast<std::size_t>(data->cluster_begin_host[c] + i)] = cv.log_weights[i];
    }
    data->log_weights = to_device(ctx, batch_view<const double>(log_weights.data(), 1, j));
    data->log_cluster_weights = to_device(ctx, batch_view<const double>(log_cluster_weights.data(), 1, j));
    data->cluster_begin = to_device(ctx, batch_view<const int>(data->cluster_begin_host.data(), 1, k + 1));
    data_ = std::move(data);
  }

  [[nodiscard]] std::size_t num_clusters() const noexcept { return static_cast<std::size_t>(data_->clusters); }
  [[nodiscard]] index_t dim() const noexcept { return data_->dim; }
  [[nodiscard]] std::size_t num_components() const noexcept { return static_cast<std::size_t>(data_->components); }
  [[nodiscard]] const cuda_context& context() const noexcept { return ctx_; }
  /// The host model these parameters were copied from.
  [[nodiscard]] const synthetic::analytic_ddm& host_model() const noexcept { return host_; }

  /// The whole mixture's and cluster k's parameters, by device pointer.
  [[nodiscard]] synthetic::mixture_view view() const noexcept { return data_->whole(); }
  [[nodiscard]] synthetic::mixture_view cluster_view(std::size_t k) const {
    ddm::detail::check_expert_index("ddm::cuda::device_analytic_ddm::cluster_view", k, num_clusters());
    return data_->cluster(static_cast<int>(k));
  }

  /// Expert k: the exact velocity of cluster k's data alone.
  [[nodiscard]] device_gaussian_mixture_field expert(std::size_t k) const {
    ddm::detail::check_expert_index("ddm::cuda::device_analytic_ddm::expert", k, num_clusters());
    return {data_, data_->cluster(static_cast<int>(k)), ctx_};
  }
  /// All K experts, in cluster order.
  [[nodiscard]] expert_vector<device_gaussian_mixture_field> experts() const {
    std::vector<device_gaussian_mixture_field> e;
    e.reserve(num_clusters());
    for (std::size_t k = 0; k < num_clusters(); ++k) e.push_back(expert(k));
    return expert_vector<device_gaussian_mixture_field>(std::move(e));
  }
  /// The exact velocity of the whole data (a perfect monolithic model).
  [[nodiscard]] device_gaussian_mixture_field mixture_field() const { return {data_, data_->whole(), ctx_}; }
  /// The exact posterior router with temperature tau.
  [[nodiscard]] device_posterior_router router(double tau = 1.0) const { return {data_, tau, ctx_}; }

 private:
  cuda_context ctx_;
  synthetic::analytic_ddm host_;
  std::shared_ptr<const detail::device_mixture_data> data_;
};

/// The routed field of the analytic DDM on the device: its K experts, its posterior router with
/// temperature tau, and `policy`, over batches of T (float or double) on the model's stream.
template <class T, class Policy>
[[nodiscard]] auto make_analytic_routed_field(const device_analytic_ddm& model, double tau, Policy policy) {
  return make_routed_field<T, cuda_space>(model.experts(), model.router(tau), std::move(policy), model.context());
}

}  // namespace ddm::cuda
