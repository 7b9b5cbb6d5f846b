#pragma once
// The DiT networks as ddm components: experts as velocity fields, the router as a ddm router.
//
// Each wrapper declares the two conventions that connect a network to ddm's rectified-flow time
// t in [0, 1] (t = 1 noise):
//   - the timestep scale: the network is called with model_t = time_scale * t (Paris: sigma *
//     1000, so time_scale = 1000; under a VP adapter the adapter already passes DDPM timesteps,
//     so time_scale = 1);
//   - the output: what the network predicts (velocity for Paris; eps for the original DDPM DiT).
//     Anything but velocity is turned into a velocity by the adapters of
//     ddm/flow/parameterization.hpp (dit::as_velocity below), never inside an integrator.
//
// Per-sample conditioning (class labels, text states) is a table with one row per sample of the
// batch being sampled. Called as a plain velocity field, row i of x uses row i of the table (or
// row 0 when the table has a single row). Called with row indices -- as ddm's routed field calls
// the experts it gives a sub-batch -- row i uses row rows(i, 0) of the table.
//
// Memory spaces: every wrapper runs its network on the execution context it was built with (for
// ddm::cuda_space, the stream of the routed field and the sampler: build them with the same
// context). On a device, row indices live in device memory; a wrapper with a per-sample table
// copies them to the host once per call (one wait for the device) to pick the labels or the
// text rows; a one-row table needs no indices and waits for nothing.

#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <ddm/core/batch.hpp>
#include <ddm/core/error.hpp>
#include <ddm/core/memory_space.hpp>
#include <ddm/flow/parameterization.hpp>

#include "dit/backend.hpp"
#include "dit/dit_model.hpp"
#include "dit/dit_router.hpp"
#include "dit/paris_expert.hpp"

namespace dit {

/// The original row index of each row of a sub-batch (ddm::row_index_view).
template <class Space>
using row_indices = batch_view<const std::int32_t, Space>;

/// What a network's output means.
enum class output_kind {
  velocity,  ///< v = eps - x0 (flow matching; Paris)
  eps,       ///< the noise, in rectified-flow variables
  x0,        ///< the data
};

/// Which row of a conditioning table of `table_rows` rows each of `batch_rows` rows of x uses:
/// identity, broadcast of row 0, or the given indices (a routed sub-batch's original rows), each
/// checked against the table. Indices in device memory are copied to the host first (one wait for
/// the device; none when the table has a single row, which every row uses). `where` names the
/// caller in messages.
template <class Space>
std::vector<std::int32_t> conditioning_rows(const char* where, const ddm::execution_context<Space>& ctx,
                                            index_t batch_rows, index_t table_rows, const row_indices<Space>* rows) {
  if (rows == nullptr && table_rows != 1 && table_rows != batch_rows)
    throw ddm::shape_error(ddm::concat(where, ": the conditioning table has ", table_rows, " rows for a batch of ",
                                               batch_rows, ", expected one row per sample or one row for all (a "
                                               "sub-batch must come with its row indices)"));
  std::vector<std::int32_t> out(static_cast<std::size_t>(batch_rows), 0);
  if (table_rows == 1) return out;
  if (rows == nullptr) {
    for (index_t i = 0; i < batch_rows; ++i) out[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
    return out;
  }
  out = backend<Space>::download_indices(ctx, *rows);
  for (index_t i = 0; i < batch_rows; ++i) {
    const std::int32_t r = out[static_cast<std::size_t>(i)];
    if (r < 0 || r >= table_rows)
      throw ddm::argument_error(ddm::concat(where, ": row ", i, " needs conditioning row ", r,
                                                    " but the conditioning table has ", table_rows,
                                                    " rows (one per sample of the sampled batch, or 1 for all)"));
  }
  return out;
}

/// Row indices for a batch of `batch_rows` rows must be (batch_rows, 1).
template <class Space>
void check_row_indices(const char* where, index_t batch_rows, const row_indices<Space>& rows) {
  if (rows.rows() != batch_rows || rows.cols() != 1)
    throw ddm::shape_error(ddm::concat(where, ": argument 'rows' has shape (", rows.rows(), ", ", rows.cols(),
                                               "), expected (", batch_rows, ", 1)"));
}

/// The original class-conditional DiT as a field: calls the network at time_scale * t with each
/// row's class label and returns the first in_channels output channels (eps for the DDPM
/// checkpoints; the learned-sigma channels are dropped). Output convention: eps in VP variables,
/// so wrap it with dit::ddpm_velocity (time_scale 1: the adapter passes DDPM timesteps).
template <class Space = ddm::host_space>
class dit_expert_field {
 public:
  using space = Space;
  dit_expert_field(std::shared_ptr<const dit_model<Space>> model, std::vector<std::int32_t> labels,
                   double time_scale = 1.0, const ddm::execution_context<Space>& ctx = {})
      : model_(std::move(model)), labels_(std::move(labels)), time_scale_(time_scale), ctx_(ctx), ws_(ctx) {
    if (!model_) throw ddm::argument_error("dit::dit_expert_field: argument 'model' is null");
    if (labels_.empty())
      throw ddm::argument_error("dit::dit_expert_field: argument 'labels' is empty, expected one label per sample "
                                "(or one for all; -1 is the null class)");
  }

  void operator()(batch_view<const float, Space> x, double t, batch_view<float, Space> v) { run_(x, t, v, nullptr); }
  void operator()(batch_view<const float, Space> x, double t, batch_view<float, Space> v, row_indices<Space> rows) {
    check_row_indices("dit::dit_expert_field", x.rows(), rows);
    run_(x, t, v, &rows);
  }

  [[nodiscard]] static constexpr output_kind output() noexcept { return output_kind::eps; }
  [[nodiscard]] double time_scale() const noexcept { return time_scale_; }
  [[nodiscard]] const dit_model<Space>& model() const noexcept { return *model_; }
  void set_labels(std::vector<std::int32_t> labels) { labels_ = std::move(labels); }

 private:
  void run_(batch_view<const float, Space> x, double t, batch_view<float, Space> v, const row_indices<Space>* rows) {
    const auto which = conditioning_rows("dit::dit_expert_field", ctx_, x.rows(),
                                                 static_cast<index_t>(labels_.size()), rows);
    std::vector<std::int32_t> y(which.size());
    for (std::size_t i = 0; i < which.size(); ++i) y[i] = labels_[static_cast<std::size_t>(which[i])];
    const std::vector<float> ts(static_cast<std::size_t>(x.rows()), static_cast<float>(time_scale_ * t));
    model_->forward(ctx_, x, ts, y, v, ws_, model_->config().in_channels);
  }

  std::shared_ptr<const dit_model<Space>> model_;
  std::vector<std::int32_t> labels_;
  double time_scale_;
  [[no_unique_address]] ddm::execution_context<Space> ctx_;
  workspace<Space> ws_;
};

/// The channels facebookresearch/DiT's forward_with_cfg guides: the first three of the four eps
/// channels ("for exact reproducibility"; its comment calls guiding all channels the standard
/// approach). Pass it as dit_guided_field's guided_channels to reproduce the official samples.
inline constexpr index_t official_dit_guided_channels = 3;

/// The original DiT with classifier-free guidance: eps = eps(null) + s (eps(y) - eps(null)) on the
/// first `guided_channels` eps channels, the conditional eps on the others. guided_channels = 0
/// (the default) guides every channel: the standard formula (Ho & Salimans), what ddm's
/// guided_field and the Paris experts do, and the only choice that is invariant under a
/// reordering of the latent channels; official_dit_guided_channels reproduces the official
/// sampler. Same conventions as dit_expert_field (eps output, time_scale * t, labels per sample);
/// wrap it with dit::ddpm_velocity. The model must have the null class.
template <class Space = ddm::host_space>
class dit_guided_field {
 public:
  using space = Space;
  dit_guided_field(std::shared_ptr<const dit_model<Space>> model, std::vector<std::int32_t> labels, double scale,
                   index_t guided_channels = 0, double time_scale = 1.0, const ddm::execution_context<Space>& ctx = {})
      : cond_(model, std::move(labels), time_scale, ctx),
        uncond_(model, {-1}, time_scale, ctx),
        scale_(scale),
        guided_(guided_channels == 0 ? model->config().in_channels : guided_channels),
        ctx_(ctx),
        ws_(ctx) {
    const char* where = "dit::dit_guided_field";
    if (!model->config().null_class)
      throw ddm::argument_error(ddm::concat(where, ": the model has no null class (its label table has ",
                                            model->config().label_rows(), " rows for ", model->config().num_classes,
                                            " classes), so it has no unconditional prediction to guide with"));
    if (!std::isfinite(scale)) ddm::fail_argument(where, "scale", scale, "a finite guidance scale");
    if (guided_channels < 0 || guided_channels > model->config().in_channels)
      ddm::fail_argument(where, "guided_channels", guided_channels,
                         ddm::concat("in [0, ", model->config().in_channels, "] (0: every channel)").c_str());
  }

  void operator()(batch_view<const float, Space> x, double t, batch_view<float, Space> v) { run_(x, t, v, nullptr); }
  void operator()(batch_view<const float, Space> x, double t, batch_view<float, Space> v, row_indices<Space> rows) {
    check_row_indices("dit::dit_guided_field", x.rows(), rows);
    run_(x, t, v, &rows);
  }

  [[nodiscard]] static constexpr output_kind output() noexcept { return output_kind::eps; }
  [[nodiscard]] double scale() const noexcept { return scale_; }
  /// How many leading eps channels are guided (in_channels when all are).
  [[nodiscard]] index_t guided_channels() const noexcept { return guided_; }
  [[nodiscard]] const dit_model<Space>& model() const noexcept { return cond_.model(); }

 private:
  void run_(batch_view<const float, Space> x, double t, batch_view<float, Space> v, const row_indices<Space>* rows) {
    // Channel c of a row is the contiguous block [c H W, (c + 1) H W) (NCHW), so the guided
    // channels are the row's leading columns.
    const auto& c = model().config();
    const index_t guided_values = guided_ * c.input_size * c.input_size;
    auto vu = ws_.get(0, x.rows(), x.cols());
    if (rows != nullptr) {
      uncond_(x, t, vu, *rows);
      cond_(x, t, v, *rows);
    } else {
      uncond_(x, t, vu);
      cond_(x, t, v);
    }
    auto guided = columns(v, 0, guided_values);
    ddm::lincomb(ctx_, guided, {scale_, 1.0 - scale_}, guided, columns(vu, 0, guided_values));
  }

  dit_expert_field<Space> cond_;
  dit_expert_field<Space> uncond_;
  double scale_;
  index_t guided_;
  [[no_unique_address]] ddm::execution_context<Space> ctx_;
  workspace<Space> ws_;
};

/// The Paris-style expert as a field: velocity output, time_scale 1000 by default (the network
/// takes sigma * 1000), text states per sample from a shared (N, L * text_dim) table.
template <class Space = ddm::host_space>
class paris_expert_field {
 public:
  paris_expert_field(std::shared_ptr<const paris_expert<Space>> model, std::shared_ptr<const batch<float, Space>> text,
                     double time_scale = 1000.0, const ddm::execution_context<Space>& ctx = {})
      : model_(std::move(model)), text_(std::move(text)), time_scale_(time_scale), ctx_(ctx), ws_(ctx) {
    if (!model_) throw ddm::argument_error("dit::paris_expert_field: argument 'model' is null");
    if (!text_ || text_->rows() == 0)
      throw ddm::argument_error("dit::paris_expert_field: argument 'text' is empty, expected text-encoder states, "
                                "one row per sample (or one row for all)");
    if (text_->cols() != model_->config().text_values())
      throw ddm::shape_error(ddm::concat("dit::paris_expert_field: argument 'text' has ", text_->cols(),
                                                 " values per row, expected text_length x text_dim = ",
                                                 model_->config().text_values()));
  }

  void operator()(batch_view<const float, Space> x, double t, batch_view<float, Space> v) { run_(x, t, v, nullptr); }
  void operator()(batch_view<const float, Space> x, double t, batch_view<float, Space> v, row_indices<Space> rows) {
    check_row_indices("dit::paris_expert_field", x.rows(), rows);
    run_(x, t, v, &rows);
  }

  [[nodiscard]] static constexpr output_kind output() noexcept { return output_kind::velocity; }
  [[nodiscard]] double time_scale() const noexcept { return time_scale_; }
  [[nodiscard]] const paris_expert<Space>& model() const noexcept { return *model_; }

 private:
  void run_(batch_view<const float, Space> x, double t, batch_view<float, Space> v, const row_indices<Space>* rows) {
    const auto which = conditioning_rows("dit::paris_expert_field", ctx_, x.rows(), text_->rows(), rows);
    // Gather each row's text states unless the table already lines up with x.
    batch_view<const float, Space> text = text_->cview();
    bool identity = text_->rows() == x.rows();
    for (std::size_t i = 0; identity && i < which.size(); ++i) identity = which[i] == static_cast<std::int32_t>(i);
    if (!identity) {
      auto gathered = ws_.get(slot::model + 16, x.rows(), text_->cols());
      backend<Space>::gather_rows(ctx_, text_->cview(), which, gathered);
      text = gathered.as_const();
    }
    const std::vector<float> ts(static_cast<std::size_t>(x.rows()), static_cast<float>(time_scale_ * t));
    model_->forward(ctx_, x, ts, text, v, ws_);
  }

  std::shared_ptr<const paris_expert<Space>> model_;
  std::shared_ptr<const batch<float, Space>> text_;
  double time_scale_;
  [[no_unique_address]] ddm::execution_context<Space> ctx_;
  workspace<Space> ws_;
};

/// The DiT router as a ddm router: num_experts(), name(), r(x, t, logits) at time_scale * t.
template <class Space = ddm::host_space>
class dit_router {
 public:
  explicit dit_router(std::shared_ptr<const dit_router_model<Space>> model, double time_scale = 1000.0,
                      std::string name = "dit_router", const ddm::execution_context<Space>& ctx = {})
      : model_(std::move(model)), time_scale_(time_scale), name_(std::move(name)), ctx_(ctx), ws_(ctx) {
    if (!model_) throw ddm::argument_error("dit::dit_router: argument 'model' is null");
  }

  [[nodiscard]] std::size_t num_experts() const noexcept {
    return static_cast<std::size_t>(model_->config().num_experts);
  }
  [[nodiscard]] const char* name() const noexcept { return name_.c_str(); }
  [[nodiscard]] double time_scale() const noexcept { return time_scale_; }

  void operator()(batch_view<const float, Space> x, double t, batch_view<float, Space> logits) {
    const std::vector<float> ts(static_cast<std::size_t>(x.rows()), static_cast<float>(time_scale_ * t));
    model_->forward(ctx_, x, ts, logits, ws_);
  }

 private:
  std::shared_ptr<const dit_router_model<Space>> model_;
  double time_scale_;
  std::string name_;
  [[no_unique_address]] ddm::execution_context<Space> ctx_;
  workspace<Space> ws_;
};

/// A field with output convention `Kind` as a velocity field: itself for velocity, the eps or x0
/// adapter of ddm::flow otherwise (row indices pass through the adapters).
template <output_kind Kind, class Field, class Space = ddm::host_space>
[[nodiscard]] auto as_velocity(Field field, double guard = 1e-4, const ddm::execution_context<Space>& ctx = {}) {
  if constexpr (Kind == output_kind::velocity) {
    return field;
  } else if constexpr (Kind == output_kind::eps) {
    return ddm::flow::eps_velocity<Field, Space>(std::move(field), guard, ctx);
  } else {
    return ddm::flow::x0_velocity<Field, Space>(std::move(field), guard, ctx);
  }
}

/// An original (DDPM, 1000 linear-beta steps, eps-prediction) DiT as a rectified-flow velocity
/// field: the VP adapter rescales x, maps t to the DDPM timestep and converts eps to velocity.
/// Field: dit_expert_field or dit_guided_field (any field with eps output at DDPM timesteps).
template <class Field>
[[nodiscard]] auto ddpm_velocity(Field field, double guard = 1e-4,
                                 const ddm::execution_context<typename Field::space>& ctx = {}) {
  static_assert(Field::output() == output_kind::eps, "dit::ddpm_velocity: the field must predict eps");
  return ddm::flow::make_vp_eps_velocity<float, typename Field::space>(std::move(field), ddm::flow::linear_beta_timesteps{}, guard,
                                                       ctx);
}

}  // namespace dit
