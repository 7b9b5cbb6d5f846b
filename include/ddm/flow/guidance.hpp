#pragma once
// Classifier-free guidance as a velocity field: v = v_u + s (v_c - v_u) = (1 - s) v_u + s v_c.
//
// A DDM applies guidance inside each expert before combining (Paris: v_k = v_k(uncond) +
// s (v_k(cond) - v_k(uncond)), then the routed sum), so a guided field is an expert like any other:
// wrap each expert's unconditional and conditional fields, then route the wrapped experts.
// Per-sample conditioning passes through: when the guided field is given row indices, each of
// the two fields that takes them receives them.

#include <cmath>
#include <type_traits>
#include <utility>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/conditioning.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/field.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/scratch.hpp"

namespace ddm {

template <class Uncond, class Cond, class Space = host_space>
class guided_field {
 public:
  /// s = 0 is the unconditional field, s = 1 the conditional one, s > 1 extrapolates past it.
  guided_field(Uncond uncond, Cond cond, double scale, execution_context<Space> ctx = {})
      : uncond_(std::move(uncond)), cond_(std::move(cond)), ctx_(ctx) {
    set_scale(scale);
  }

  template <class T>
    requires(velocity_field<Uncond, T, Space> && velocity_field<Cond, T, Space>)
  void operator()(batch_view<const T, Space> x, double t, batch_view<T, Space> v) {
    ddm::require_same_shape("ddm::guided_field", "v", v, x);
    auto vu = scratch_.template get<T>(ctx_, x.rows(), x.cols());
    uncond_(x, t, vu);
    cond_(x, t, v);
    combine_(v, vu);
  }

  template <class T>
    requires((velocity_field<Uncond, T, Space> || conditioned_velocity_field<Uncond, T, Space>) &&
             (velocity_field<Cond, T, Space> || conditioned_velocity_field<Cond, T, Space>))
  void operator()(batch_view<const T, Space> x, double t, batch_view<T, Space> v, row_index_view<Space> rows) {
    ddm::require_same_shape("ddm::guided_field", "v", v, x);
    auto vu = scratch_.template get<T>(ctx_, x.rows(), x.cols());
    call_field(uncond_, x, t, vu, rows);
    call_field(cond_, x, t, v, rows);
    combine_(v, vu);
  }

  /// out = ((1 - s) J_u + s J_c) u, when both fields offer an exact jvp.
  template <class T>
    requires(has_jvp<Uncond, T, Space> && has_jvp<Cond, T, Space>)
  void jvp(batch_view<const T, Space> x, double t, batch_view<const T, Space> u, batch_view<T, Space> out) {
    ddm::require_same_shape("ddm::guided_field::jvp", "out", out, u);
    auto ju = scratch_.template get<T>(ctx_, u.rows(), u.cols());
    uncond_.jvp(x, t, u, ju);
    cond_.jvp(x, t, u, out);
    combine_(out, ju);
  }

  [[nodiscard]] double scale() const noexcept { return scale_; }
  void set_scale(double scale) {
    if (!std::isfinite(scale)) ddm::fail_argument("ddm::guided_field", "scale", scale, "a finite guidance scale");
    scale_ = scale;
  }
  [[nodiscard]] Uncond& unconditional() noexcept { return uncond_; }
  [[nodiscard]] Cond& conditional() noexcept { return cond_; }

 private:
  // v holds the conditional result, vu the unconditional one.
  template <class T>
  void combine_(batch_view<T, Space> v, batch_view<T, Space> vu) {
    lincomb(ctx_, v, {scale_, 1.0 - scale_}, v, vu);
  }

  Uncond uncond_;
  Cond cond_;
  double scale_ = 1.0;
  [[no_unique_address]] execution_context<Space> ctx_;
  detail::typed_scratch<Space> scratch_;
};

template <class Uncond, class Cond>
guided_field(Uncond, Cond, double) -> guided_field<Uncond, Cond, host_space>;

template <class Uncond, class Cond, class Space>
guided_field(Uncond, Cond, double, execution_context<Space>) -> guided_field<Uncond, Cond, Space>;

}  // namespace ddm
