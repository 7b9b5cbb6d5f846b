#pragma once
// Loading a fashion DDM folder (examples/03_fashion/fashion_nets.py describes the format):
// config.json, then every safetensors file it names, each tensor checked against the shape that
// config.json implies. A wrong shape, a missing or an unexpected tensor, or a config.json that
// disagrees with the files is a ddm::io_error naming the file, the tensor, its shape and the
// expectation (with the config.json entries the expectation comes from). F16 / BF16 / F32
// tensors are read as float.

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <ddm/core/error.hpp>
#include <ddm/io/safetensors.hpp>

#include "networks.hpp"

namespace fashion {

namespace fs = std::filesystem;

/// What the loader checks a folder's config.json against, and what it holds.
struct folder_config {
  std::string name;
  std::string partition;  ///< "classes" or "kmeans"
  index_t num_experts = 0;
  index_t latent_dim = 0;
  time_mlp_config net;
  index_t classifier_hidden = 0, classifier_features = 0, classes = 10;
  float pixel_mean = 0, pixel_std = 1;
  std::string pca_file, partition_file, monolith_file, router_file, classifier_file;
  std::vector<std::string> expert_files;
};

/// The centroids, priors and the oracle router's subsample of a partition.
struct partition_data {
  index_t k = 0, d = 0, n = 0;
  std::vector<double> centroids;  ///< (K, d)
  std::vector<double> priors;     ///< (K)
  std::vector<double> oracle_latents;  ///< (N, d)
  std::vector<int> oracle_clusters;    ///< (N), each in [0, K)
};

/// Everything of a folder, loaded and validated. Shared (read-only) by the fields and routers.
struct ddm_folder {
  fs::path dir;
  folder_config cfg;
  pca latent;
  partition_data part;
  std::vector<time_mlp> experts;
  time_mlp monolith;
  time_mlp router;
  classifier clf;
};

namespace folder_format {

[[noreturn]] inline void fail_folder(const fs::path& file, const std::string& problem) {
  throw ddm::io_error(ddm::concat("fashion DDM folder: ", file.string(), ": ", problem));
}

template <class T>
T get(const nlohmann::json& j, const fs::path& file, const std::string& path) {
  const nlohmann::json* node = &j;
  std::size_t start = 0;
  while (true) {
    const auto dot = path.find('.', start);
    const std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!node->is_object() || !node->contains(key)) fail_folder(file, "has no entry '" + path + "'");
    node = &(*node)[key];
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  try {
    return node->get<T>();
  } catch (const nlohmann::json::exception&) {
    fail_folder(file, "entry '" + path + "' = " + node->dump() + " has the wrong type");
  }
}

inline index_t positive(const nlohmann::json& j, const fs::path& file, const std::string& path, long long max = 1 << 20) {
  const auto v = get<long long>(j, file, path);
  if (v < 1 || v > max) fail_folder(file, ddm::concat("entry '", path, "' = ", v, ", expected an integer in [1, ", max, "]"));
  return static_cast<index_t>(v);
}

/// Reads a safetensors file's tensors by name with the shapes config.json implies, and at the
/// end refuses tensors that were never asked for (a checkpoint of another architecture).
class reader {
 public:
  reader(const fs::path& path, std::string why) : file_(open_(path)), why_(std::move(why)) {}

  std::vector<float> take(const std::string& name, std::vector<std::uint64_t> shape) {
    used_.insert(name);
    if (!file_.contains(name))
      fail_folder(file_.label(), "tensor '" + name + "' is missing (expected shape " + ddm::io::shape_string(shape) +
                                     " from config.json: " + why_ + ")");
    const auto& info = file_.info(name);
    if (info.shape != shape)
      fail_folder(file_.label(), "tensor '" + name + "' has shape " + ddm::io::shape_string(info.shape) +
                                     ", expected " + ddm::io::shape_string(shape) + " from config.json (" + why_ + ")");
    auto v = file_.read<float>(name);
    for (std::size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i])) fail_folder(file_.label(), ddm::concat("tensor '", name, "' has a non-finite value at index ", i));
    return v;
  }
  linear take_linear(const std::string& prefix, index_t out, index_t in) {
    linear l;
    l.in = in;
    l.out = out;
    l.weight = take(prefix + ".weight", {static_cast<std::uint64_t>(out), static_cast<std::uint64_t>(in)});
    l.bias = take(prefix + ".bias", {static_cast<std::uint64_t>(out)});
    return l;
  }
  layer_norm take_norm(const std::string& prefix, index_t n, double eps) {
    layer_norm l;
    l.weight = take(prefix + ".weight", {static_cast<std::uint64_t>(n)});
    l.bias = take(prefix + ".bias", {static_cast<std::uint64_t>(n)});
    l.eps = static_cast<float>(eps);
    return l;
  }
  /// Every tensor of the file was read.
  void finish() const {
    for (const auto& t : file_.tensors())
      if (used_.count(t.name) == 0)
        fail_folder(file_.label(), "has tensor '" + t.name + "' " + ddm::io::shape_string(t.shape) +
                                       ", which config.json's architecture does not have (" + why_ + ")");
  }

 private:
  static ddm::io::safetensors_file open_(const fs::path& path) {
    if (!fs::exists(path)) fail_folder(path, "does not exist (named in config.json)");
    return ddm::io::safetensors_file(path);
  }
  ddm::io::safetensors_file file_;
  std::string why_;
  std::set<std::string> used_;
};

inline time_mlp load_time_mlp(const fs::path& path, const time_mlp_config& c, index_t in_dim, index_t out_dim,
                              const std::string& out_why) {
  const std::string why = ddm::concat("time_mlp width = ", c.width, ", depth = ", c.depth, ", hidden = ", c.hidden,
                                              ", frequencies = ", c.frequencies, ", latent_dim = ", in_dim, ", ", out_why);
  reader r(path, why);
  time_mlp m;
  m.cfg = c;
  m.in_dim = in_dim;
  m.out_dim = out_dim;
  m.inp = r.take_linear("inp", c.width, in_dim);
  m.time0 = r.take_linear("time.0", c.width, 2 * c.frequencies);
  m.time2 = r.take_linear("time.2", c.width, c.width);
  for (index_t i = 0; i < c.depth; ++i) {
    const std::string p = "blocks." + std::to_string(i);
    time_mlp::block b;
    b.norm = r.take_norm(p + ".norm", c.width, c.layer_norm_eps);
    b.fc1 = r.take_linear(p + ".fc1", c.hidden, c.width);
    b.temb = r.take_linear(p + ".temb", c.hidden, c.width);
    b.fc2 = r.take_linear(p + ".fc2", c.width, c.hidden);
    m.blocks.push_back(std::move(b));
  }
  m.out_norm = r.take_norm("out_norm", c.width, c.layer_norm_eps);
  m.out = r.take_linear("out", out_dim, c.width);
  r.finish();
  return m;
}

}  // namespace folder_format

/// Reads and checks config.json of the folder `dir`.
inline folder_config read_folder_config(const fs::path& dir) {
  using folder_format::get;
  using folder_format::positive;
  const fs::path file = dir / "config.json";
  std::ifstream in(file);
  if (!in) folder_format::fail_folder(file, "cannot be read (is '" + dir.string() + "' a fashion DDM folder?)");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    folder_format::fail_folder(file, std::string("is not valid JSON: ") + e.what());
  }
  folder_config c;
  const auto format = get<std::string>(j, file, "format");
  if (format != "ddm-fashion-ddm/1") folder_format::fail_folder(file, "format '" + format + "', expected 'ddm-fashion-ddm/1'");
  c.name = get<std::string>(j, file, "name");
  c.partition = get<std::string>(j, file, "partition");
  c.num_experts = positive(j, file, "num_experts", 4096);
  if (c.num_experts < 2) folder_format::fail_folder(file, ddm::concat("num_experts = ", c.num_experts, ", expected >= 2"));
  c.latent_dim = positive(j, file, "latent_dim", 784);
  c.net.width = positive(j, file, "time_mlp.width");
  c.net.depth = positive(j, file, "time_mlp.depth", 1024);
  c.net.hidden = positive(j, file, "time_mlp.hidden");
  c.net.frequencies = positive(j, file, "time_mlp.frequencies", 1 << 16);
  c.net.max_period = get<double>(j, file, "time_mlp.max_period");
  c.net.time_scale = get<double>(j, file, "time_mlp.time_scale");
  c.net.layer_norm_eps = get<double>(j, file, "time_mlp.layer_norm_eps");
  if (!(c.net.max_period > 1) || !(c.net.time_scale > 0) || !(c.net.layer_norm_eps > 0) || !std::isfinite(c.net.max_period) ||
      !std::isfinite(c.net.time_scale))
    folder_format::fail_folder(file, "time_mlp.max_period must be > 1, time_scale and layer_norm_eps > 0");
  const auto arch = get<std::string>(j, file, "classifier.arch");
  if (arch != "mlp_classifier") folder_format::fail_folder(file, "classifier.arch '" + arch + "', expected 'mlp_classifier'");
  c.classifier_hidden = positive(j, file, "classifier.hidden");
  c.classifier_features = positive(j, file, "classifier.features");
  c.classes = positive(j, file, "classifier.classes", 10);
  if (c.classes != 10) folder_format::fail_folder(file, ddm::concat("classifier.classes = ", c.classes, ", expected 10"));
  c.pixel_mean = get<float>(j, file, "classifier.pixel_mean");
  c.pixel_std = get<float>(j, file, "classifier.pixel_std");
  if (!(c.pixel_std > 0)) folder_format::fail_folder(file, "classifier.pixel_std must be > 0");
  const auto h = get<int>(j, file, "image.height"), w = get<int>(j, file, "image.width"), ch = get<int>(j, file, "image.channels");
  if (h != 28 || w != 28 || ch != 1)
    folder_format::fail_folder(file, ddm::concat("image is ", ch, " x ", h, " x ", w, ", expected 1 x 28 x 28"));
  c.pca_file = get<std::string>(j, file, "files.pca");
  c.partition_file = get<std::string>(j, file, "files.partition");
  c.monolith_file = get<std::string>(j, file, "files.monolith");
  c.router_file = get<std::string>(j, file, "files.router");
  c.classifier_file = get<std::string>(j, file, "files.classifier");
  c.expert_files = get<std::vector<std::string>>(j, file, "files.experts");
  if (static_cast<index_t>(c.expert_files.size()) != c.num_experts)
    folder_format::fail_folder(file, ddm::concat("files.experts names ", c.expert_files.size(), " files, but num_experts = ",
                                                  c.num_experts));
  return c;
}

/// A partition file: centroids (K, d), priors (K), oracle_latents (N, d), oracle_clusters (N);
/// N, the one size config.json does not give, is read from oracle_latents. Shared by the latent
/// folders (d = latent_dim) and the pixel-space DiT folder (d = 784).
inline partition_data read_partition(const fs::path& file, index_t num_experts, index_t dim,
                                     const char* dim_name = "latent_dim") {
  const auto d = static_cast<std::uint64_t>(dim);
  const auto k = static_cast<std::uint64_t>(num_experts);
  const ddm::io::safetensors_file probe(file);
  std::uint64_t n = 0;
  if (probe.contains("oracle_latents") && probe.info("oracle_latents").shape.size() == 2)
    n = probe.info("oracle_latents").shape[0];
  if (n == 0) folder_format::fail_folder(file, ddm::concat("tensor 'oracle_latents' is missing or not (N, ", dim_name, ") with N >= 1"));
  folder_format::reader r(file, ddm::concat("num_experts = ", k, ", ", dim_name, " = ", d));
  partition_data p;
  p.k = num_experts;
  p.d = dim;
  p.n = static_cast<index_t>(n);
  const auto cen = r.take("centroids", {k, d});
  const auto pri = r.take("priors", {k});
  const auto lat = r.take("oracle_latents", {n, d});
  const auto cl = r.take("oracle_clusters", {n});
  r.finish();
  p.centroids.assign(cen.begin(), cen.end());
  p.priors.assign(pri.begin(), pri.end());
  p.oracle_latents.assign(lat.begin(), lat.end());
  for (std::size_t i = 0; i < cl.size(); ++i) {
    const float v = cl[i];
    if (!(v >= 0) || v >= static_cast<float>(k) || v != std::floor(v))
      folder_format::fail_folder(file, ddm::concat("tensor 'oracle_clusters' has ", v, " at index ", i,
                                                    ", expected a cluster index in [0, ", k, ")"));
    p.oracle_clusters.push_back(static_cast<int>(v));
  }
  return p;
}

/// The classifier (feature network) file of a folder.
inline classifier read_classifier(const fs::path& file, index_t hidden, index_t features, index_t classes,
                                  float pixel_mean, float pixel_std) {
  folder_format::reader r(file, ddm::concat("classifier.hidden = ", hidden, ", classifier.features = ", features));
  classifier clf;
  clf.fc1 = r.take_linear("fc1", hidden, 784);
  clf.fc2 = r.take_linear("fc2", features, hidden);
  clf.fc3 = r.take_linear("fc3", classes, features);
  clf.pixel_mean = pixel_mean;
  clf.pixel_std = pixel_std;
  r.finish();
  return clf;
}

/// Loads the whole folder.
inline std::shared_ptr<const ddm_folder> load_folder(const fs::path& dir) {
  auto f = std::make_shared<ddm_folder>();
  f->dir = dir;
  f->cfg = read_folder_config(dir);
  const auto& c = f->cfg;
  const auto d = static_cast<std::uint64_t>(c.latent_dim);
  {
    folder_format::reader r(dir / c.pca_file, ddm::concat("latent_dim = ", d));
    f->latent.d = c.latent_dim;
    f->latent.mean = r.take("mean", {784});
    f->latent.components = r.take("components", {d, 784});
    f->latent.scale = r.take("scale", {d});
    for (std::size_t i = 0; i < f->latent.scale.size(); ++i)
      if (!(f->latent.scale[i] > 0))
        folder_format::fail_folder(dir / c.pca_file, ddm::concat("tensor 'scale' has ", f->latent.scale[i], " at index ", i,
                                                                  ", expected > 0 (square roots of PCA eigenvalues)"));
    r.finish();
  }
  f->part = read_partition(dir / c.partition_file, c.num_experts, c.latent_dim);
  for (index_t e = 0; e < c.num_experts; ++e)
    f->experts.push_back(folder_format::load_time_mlp(dir / c.expert_files[static_cast<std::size_t>(e)], c.net, c.latent_dim,
                                               c.latent_dim, ddm::concat("expert ", e, ": out = latent_dim")));
  f->monolith = folder_format::load_time_mlp(dir / c.monolith_file, c.net, c.latent_dim, c.latent_dim, "monolith: out = latent_dim");
  f->router = folder_format::load_time_mlp(dir / c.router_file, c.net, c.latent_dim, c.num_experts, "router: out = num_experts");
  f->clf = read_classifier(dir / c.classifier_file, c.classifier_hidden, c.classifier_features, c.classes,
                           c.pixel_mean, c.pixel_std);
  return f;
}

}  // namespace fashion
