#pragma once
// The DiT tier of the learned Fashion-MNIST DDM (models/fashion-dit, written by
// `train.py --arch dit`; fashion_dit_nets.py is the contract): small original-DiT experts and
// monolith in pixel space, loaded by examples/02_dit's dit::dit_model, the DiT router
// (dit::dit_router_model, the Paris-port layout), the classifier, and the partition in pixel
// space. Here the folder is loaded and checked, and turned into ddm components: each DiT as a
// velocity field, the router with its logits divided by tau. The oracle router is
// fashion::oracle_router over the folder's partition (fields.hpp).
//
// Model space: x = 2 * pixel - 1, (1 * 28 * 28) values per sample, row-major; the networks see
// 1000 t (config.json: dit.time_scale, router.time_scale) and the experts predict the
// rectified-flow velocity v = eps - x0 directly (no eps or VP adapter).

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include <ddm/core/batch.hpp>
#include <ddm/core/error.hpp>
#include <ddm/routing/ensemble.hpp>

#include "dit/backend_host.hpp"
#include "dit/dit_model.hpp"
#include "dit/dit_router.hpp"
#include "dit/fields.hpp"

#include "folder.hpp"
#include "idx.hpp"

namespace fashion {

/// Everything of a fashion-dit folder, loaded and validated; shared read-only by the fields.
struct dit_folder {
  fs::path dir;
  std::string name, partition;
  index_t num_experts = 0;
  dit::dit_config expert_cfg;
  double expert_time_scale = 1000.0;
  std::int32_t label = 0;  ///< the one label of the unconditional DiTs (their label table has one row)
  dit::router_config router_cfg;
  double router_time_scale = 1000.0;
  std::vector<std::shared_ptr<const dit::dit_model<>>> experts;
  std::shared_ptr<const dit::dit_model<>> monolith;
  std::shared_ptr<const dit::dit_router_model<>> router;
  std::shared_ptr<const partition_data> part;  ///< d = 784, model space
  classifier clf;
};

namespace folder_format {

inline double positive_real(const nlohmann::json& j, const fs::path& file, const std::string& path) {
  const auto v = get<double>(j, file, path);
  if (!(v > 0) || !std::isfinite(v)) fail_folder(file, ddm::concat("entry '", path, "' = ", v, ", expected a finite value > 0"));
  return v;
}

// The image geometry every network of the folder must have: 1 x 28 x 28.
inline void require_image(const fs::path& file, const std::string& what, index_t size, index_t channels) {
  if (size != 28 || channels != 1)
    fail_folder(file, ddm::concat(what, ".input_size = ", size, ", ", what, ".in_channels = ", channels,
                                  ", expected 28 and 1 (Fashion-MNIST, not padded)"));
}

}  // namespace folder_format

/// Loads a fashion-dit folder: config.json (format "ddm-fashion-dit/1"), then every file it names,
/// each network by examples/02_dit's strict loaders (a missing, extra or misshapen tensor is an
/// error naming the file and the tensor).
inline std::shared_ptr<const dit_folder> load_dit_folder(const fs::path& dir) {
  using folder_format::get;
  using folder_format::positive;
  const fs::path file = dir / "config.json";
  std::ifstream in(file);
  if (!in) folder_format::fail_folder(file, "cannot be read (is '" + dir.string() + "' a fashion-dit folder?)");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    folder_format::fail_folder(file, std::string("is not valid JSON: ") + e.what());
  }
  const auto format = get<std::string>(j, file, "format");
  if (format != "ddm-fashion-dit/1") folder_format::fail_folder(file, "format '" + format + "', expected 'ddm-fashion-dit/1'");
  auto f = std::make_shared<dit_folder>();
  f->dir = dir;
  f->name = get<std::string>(j, file, "name");
  f->partition = get<std::string>(j, file, "partition");
  f->num_experts = positive(j, file, "num_experts", 4096);

  auto& e = f->expert_cfg;
  e.input_size = positive(j, file, "dit.input_size", 4096);
  e.patch_size = positive(j, file, "dit.patch_size", 4096);
  e.in_channels = positive(j, file, "dit.in_channels", 4096);
  e.hidden_size = positive(j, file, "dit.hidden_size");
  e.depth = positive(j, file, "dit.depth", 1024);
  e.num_heads = positive(j, file, "dit.num_heads", 4096);
  e.mlp_ratio = folder_format::positive_real(j, file, "dit.mlp_ratio");
  e.num_classes = positive(j, file, "dit.num_classes", 1 << 20);
  e.null_class = get<bool>(j, file, "dit.null_class");
  e.learn_sigma = get<bool>(j, file, "dit.learn_sigma");
  e.layer_norm_eps = folder_format::positive_real(j, file, "dit.layer_norm_eps");
  e.frequency_size = positive(j, file, "dit.frequency_size", 1 << 16);
  f->expert_time_scale = folder_format::positive_real(j, file, "dit.time_scale");
  const auto label = get<long long>(j, file, "dit.label");
  if (label < 0 || label >= e.num_classes)
    folder_format::fail_folder(file, ddm::concat("entry 'dit.label' = ", label, ", expected a class in [0, dit.num_classes = ",
                                          e.num_classes, ")"));
  f->label = static_cast<std::int32_t>(label);
  folder_format::require_image(file, "dit", e.input_size, e.in_channels);
  if (e.learn_sigma) folder_format::fail_folder(file, "dit.learn_sigma is true, expected false (the experts predict the velocity only)");

  auto& r = f->router_cfg;
  r.input_size = positive(j, file, "router.input_size", 4096);
  r.patch_size = positive(j, file, "router.patch_size", 4096);
  r.in_channels = positive(j, file, "router.in_channels", 4096);
  r.hidden_size = positive(j, file, "router.hidden_size");
  r.depth = positive(j, file, "router.depth", 1024);
  r.num_heads = positive(j, file, "router.num_heads", 4096);
  r.mlp_ratio = folder_format::positive_real(j, file, "router.mlp_ratio");
  r.num_experts = f->num_experts;
  r.layer_norm_eps = folder_format::positive_real(j, file, "router.layer_norm_eps");
  r.head_layer_norm_eps = folder_format::positive_real(j, file, "router.head_layer_norm_eps");
  r.frequency_size = positive(j, file, "router.frequency_size", 1 << 16);
  f->router_time_scale = folder_format::positive_real(j, file, "router.time_scale");
  folder_format::require_image(file, "router", r.input_size, r.in_channels);
  try {
    e.validate();
    r.validate();
  } catch (const ddm::argument_error& err) {
    folder_format::fail_folder(file, err.what());
  }

  const auto expert_files = get<std::vector<std::string>>(j, file, "files.experts");
  if (static_cast<index_t>(expert_files.size()) != f->num_experts)
    folder_format::fail_folder(file, ddm::concat("files.experts names ", expert_files.size(), " files, but num_experts = ",
                                          f->num_experts));
  for (const auto& name : expert_files) f->experts.push_back(dit::dit_model<>::load(dir / name, e));
  f->monolith = dit::dit_model<>::load(dir / get<std::string>(j, file, "files.monolith"), e);
  f->router = dit::dit_router_model<>::load(dir / get<std::string>(j, file, "files.router"), r);
  f->part = std::make_shared<const partition_data>(
      read_partition(dir / get<std::string>(j, file, "files.partition"), f->num_experts, image_values, "784 pixels"));

  const auto arch = get<std::string>(j, file, "classifier.arch");
  if (arch != "mlp_classifier") folder_format::fail_folder(file, "classifier.arch '" + arch + "', expected 'mlp_classifier'");
  const auto classes = positive(j, file, "classifier.classes", 10);
  if (classes != 10) folder_format::fail_folder(file, ddm::concat("classifier.classes = ", classes, ", expected 10"));
  const auto pixel_std = get<float>(j, file, "classifier.pixel_std");
  if (!(pixel_std > 0)) folder_format::fail_folder(file, "classifier.pixel_std must be > 0");
  f->clf = read_classifier(dir / get<std::string>(j, file, "files.classifier"), positive(j, file, "classifier.hidden"),
                           positive(j, file, "classifier.features"), classes, get<float>(j, file, "classifier.pixel_mean"),
                           pixel_std);
  return f;
}

/// Model-space samples (B, 784), any value, -> pixels in [0, 1] (clipped), what the classifier sees.
template <class T>
void to_pixels(ddm::batch_view<const T> x, ddm::batch_view<float> images) {
  ddm::require_shape("fashion::to_pixels", "images", images, x.rows(), image_values);
  ddm::require_shape("fashion::to_pixels", "x", x, x.rows(), image_values);
  for (index_t r = 0; r < x.rows(); ++r)
    for (index_t c = 0; c < image_values; ++c)
      images(r, c) = std::clamp(static_cast<float>((static_cast<double>(x(r, c)) + 1.0) * 0.5), 0.0f, 1.0f);
}

namespace float_rows {

// x (float or double, any stride) into a contiguous float buffer; the DiTs compute in float.
template <class T>
ddm::batch_view<const float> as_float_rows(ddm::batch_view<const T> x, std::vector<float>& buf) {
  buf.resize(static_cast<std::size_t>(x.rows() * x.cols()));
  for (index_t r = 0; r < x.rows(); ++r)
    for (index_t c = 0; c < x.cols(); ++c) buf[static_cast<std::size_t>(r * x.cols() + c)] = static_cast<float>(x(r, c));
  return {buf.data(), x.rows(), x.cols()};
}

template <class T>
void from_float_rows(const std::vector<float>& buf, ddm::batch_view<T> y) {
  for (index_t r = 0; r < y.rows(); ++r)
    for (index_t c = 0; c < y.cols(); ++c) y(r, c) = static_cast<T>(buf[static_cast<std::size_t>(r * y.cols() + c)]);
}

}  // namespace float_rows

/// One DiT of a folder (an expert or the monolith) as a ddm velocity field for float and double
/// states (the network runs in float). Copies share the weights and have their own scratch.
class dit_velocity_field {
 public:
  dit_velocity_field(std::shared_ptr<const dit_folder> folder, std::shared_ptr<const dit::dit_model<>> net)
      : folder_(std::move(folder)), field_(std::move(net), {folder_->label}, folder_->expert_time_scale) {}

  template <class T>
    requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
  void operator()(ddm::batch_view<const T> x, double t, ddm::batch_view<T> v) {
    ddm::require_shape("fashion::dit_velocity_field", "x", x, x.rows(), image_values);
    ddm::require_shape("fashion::dit_velocity_field", "v", v, x.rows(), image_values);
    const auto xf = float_rows::as_float_rows(x, xin_);
    yout_.resize(static_cast<std::size_t>(x.rows() * image_values));
    field_(xf, t, ddm::batch_view<float>(yout_.data(), x.rows(), image_values));
    float_rows::from_float_rows(yout_, v);
  }

 private:
  std::shared_ptr<const dit_folder> folder_;
  dit::dit_expert_field<> field_;
  std::vector<float> xin_, yout_;
};

/// The folder's K DiT experts as a ddm expert set.
inline ddm::expert_vector<dit_velocity_field> make_dit_experts(const std::shared_ptr<const dit_folder>& f) {
  std::vector<dit_velocity_field> e;
  for (const auto& net : f->experts) e.emplace_back(f, net);
  return ddm::expert_vector<dit_velocity_field>(std::move(e));
}

inline dit_velocity_field make_dit_monolith(const std::shared_ptr<const dit_folder>& f) { return {f, f->monolith}; }

/// The learned DiT router: its logits divided by the temperature tau.
class dit_learned_router {
 public:
  dit_learned_router(std::shared_ptr<const dit_folder> folder, double tau)
      : folder_(std::move(folder)), router_(folder_->router, folder_->router_time_scale, "learned_dit_router"), tau_(tau) {
    if (!(tau > 0) || !std::isfinite(tau)) ddm::fail_argument("fashion::dit_learned_router", "tau", tau, "a finite value > 0");
  }
  [[nodiscard]] std::size_t num_experts() const noexcept { return static_cast<std::size_t>(folder_->num_experts); }
  [[nodiscard]] const char* name() const noexcept { return "learned_router"; }

  template <class T>
    requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
  void operator()(ddm::batch_view<const T> x, double t, ddm::batch_view<T> logits) {
    ddm::require_shape("fashion::dit_learned_router", "x", x, x.rows(), image_values);
    ddm::require_shape("fashion::dit_learned_router", "logits", logits, x.rows(), folder_->num_experts);
    const auto xf = float_rows::as_float_rows(x, xin_);
    yout_.resize(static_cast<std::size_t>(x.rows() * folder_->num_experts));
    router_(xf, t, ddm::batch_view<float>(yout_.data(), x.rows(), folder_->num_experts));
    float_rows::from_float_rows(yout_, logits);
    const T inv = static_cast<T>(1.0 / tau_);
    for (index_t r = 0; r < logits.rows(); ++r)
      for (index_t c = 0; c < logits.cols(); ++c) logits(r, c) *= inv;
  }

 private:
  std::shared_ptr<const dit_folder> folder_;
  dit::dit_router<> router_;
  double tau_;
  std::vector<float> xin_, yout_;
};

}  // namespace fashion
