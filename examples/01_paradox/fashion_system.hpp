#pragma once
// A learned Fashion-MNIST DDM folder (examples/03_fashion) as a study_system: the trained
// experts as velocity fields in the PCA latent space, the learned router with its logits divided
// by tau, and quality measured in the classifier's feature space against the 10,000 test images
// (FD, k-NN precision and recall with k = 3, predicted-class coverage; per sample, the distance to
// the 3rd-nearest test feature). Baselines beside the study's policies: the monolith (one network
// of the same architecture trained on all the data) and the oracle router (the empirical
// posterior of the partition's subsample of training latents) under top-1, top-2 and full.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "fashion/fields.hpp"
#include "fashion/folder.hpp"
#include "fashion/idx.hpp"
#include "fashion/quality.hpp"
#if DDM_FASHION_PNG
#include "fashion/png.hpp"
#endif

#include "fashion_common.hpp"
#include "study.hpp"
#include "system.hpp"

namespace paradox {


/// The experts of a folder with the learned (oracle = false) or the oracle router.
struct fashion_source {
  std::shared_ptr<const fashion::ddm_folder> folder;
  bool oracle = false;

  [[nodiscard]] ddm::host_context context() const noexcept { return {}; }
  [[nodiscard]] auto experts() const { return fashion::make_experts(folder); }
  template <class T>
  [[nodiscard]] auto routed_field(double tau, const ddm::builtin_policy& policy) const {
    return ddm::make_routed_field<T, ddm::host_space>(experts(), router(tau), policy, context());
  }

  using either_router = learned_or_oracle_router<fashion::learned_router, fashion::oracle_router>;
  [[nodiscard]] either_router router(double tau) const {
    if (oracle) return {fashion::oracle_router(folder, tau)};
    return {fashion::learned_router(folder, tau)};
  }
};

inline std::vector<float> to_float(ddm::batch_view<const double> x) {
  std::vector<float> out(static_cast<std::size_t>(x.rows() * x.cols()));
  for (ddm::index_t r = 0; r < x.rows(); ++r)
    for (ddm::index_t c = 0; c < x.cols(); ++c) out[static_cast<std::size_t>(r * x.cols() + c)] = static_cast<float>(x(r, c));
  return out;
}


class fashion_system final : public fashion_system_base<fashion_source> {
 public:
  /// Defaults where the command line gives none: each system's whole run (5 policies, 4
  /// baselines) within 3 minutes on 2 cores (docs/paradox.md gives the measured times).
  static constexpr ddm::index_t default_samples = 500;
  static constexpr long default_steps = 16;

  fashion_system(const std::string& system_name, const std::filesystem::path& models_dir, const std::filesystem::path& data_dir)
      : fashion_system_base(fashion::load_folder(models_dir / system_name), data_dir), name_(system_name) {}

  [[nodiscard]] std::string name() const override { return name_; }
  [[nodiscard]] std::size_t num_experts() const override { return static_cast<std::size_t>(folder_->cfg.num_experts); }

  /// PCA latents of as many training images as the study draws (a seeded subset): the floor of
  /// each measure for this latent space and sample size (the decoder's reconstruction error
  /// included, as in every sample).
  [[nodiscard]] quality_numbers reference_quality(const config& cfg) const override {
    ddm::index_t b = 0;
    const auto x = seeded_training_images(data_dir_, cfg.seed, cfg.samples, b);
    std::vector<float> z(static_cast<std::size_t>(b * folder_->cfg.latent_dim));
    folder_->latent.encode(ddm::batch_view<const float>(x.data(), b, 784), ddm::batch_view<float>(z.data(), b, folder_->cfg.latent_dim));
    ddm::batch<double> zd(b, folder_->cfg.latent_dim);
    for (ddm::index_t r = 0; r < b; ++r)
      for (ddm::index_t c = 0; c < zd.cols(); ++c) zd(r, c) = z[static_cast<std::size_t>(r * zd.cols() + c)];
    return quality(zd.cview());
  }

  void print_header(std::FILE* f, const config& c, const std::string& sampler_line) const override {
    const auto& cf = folder_->cfg;
    std::fprintf(f, "ddm-paradox: the stability-quality paradox on the learned Fashion-MNIST DDM '%s'\n", cf.name.c_str());
    std::fprintf(f, "model    K = %td experts (partition: %s), latent d = %td (whitened PCA), TimeMLP width %td, depth %td, "
                    "hidden %td; %s\n",
                 cf.num_experts, cf.partition.c_str(), cf.latent_dim, cf.net.width, cf.net.depth, cf.net.hidden,
                 folder_->dir.string().c_str());
    std::fputs(sampler_line.c_str(), f);
    std::fprintf(f, "router   learned router, softmax(logits / tau), tau = %g; scheduled policies switch at t = %g;\n"
                    "         oracle_* rows: empirical posterior over %td training latents; monolith: one network on all data\n",
                 c.tau, c.t_switch, folder_->part.n);
    std::fprintf(f, "columns  FD: Frechet distance in the classifier's %td features to the %td test images; NLL: n/a (no\n"
                    "         density); cover: share of the 10 classes covered (predicted share >= half the test share);\n"
                    "         prec: k-NN precision (k = %td; recall printed below); L_eff, cum.IQR, D_refine (/ latent RMS),\n"
                    "         amplif, rank (cluster centroids in latent space), ang.gap, I_dis, evals, time: as for the\n"
                    "         analytic system; rho, p: Spearman(I_dis, per-sample distance to the %td-th nearest test feature)\n\n",
                 ref_.feature_dim(), ref_.test_images(), fashion_reference::knn_k, fashion_reference::knn_k);
  }

  [[nodiscard]] nlohmann::json describe(const config&) const override {
    const auto& cf = folder_->cfg;
    return {{"folder", folder_->dir.string()},
            {"name", cf.name},
            {"partition", cf.partition},
            {"clusters", cf.num_experts},
            {"dim", cf.latent_dim},
            {"time_mlp", {{"width", cf.net.width}, {"depth", cf.net.depth}, {"hidden", cf.net.hidden}, {"frequencies", cf.net.frequencies}}},
            {"oracle_latents", folder_->part.n},
            {"cluster_priors", folder_->part.priors},
            {"quality_reference", ref_.describe("PCA latents of as many seeded training images as samples")}};
  }

  void write_extra_outputs(const std::string& dir, const std::vector<const policy_result*>& rows) const override {
#if DDM_FASHION_PNG
    const auto d = folder_->cfg.latent_dim;
    for (const auto* p : rows) {
      const auto b = static_cast<ddm::index_t>(p->sample_preview.size()) / d;
      if (b == 0) continue;
      std::vector<float> z(p->sample_preview.begin(), p->sample_preview.end()), images(static_cast<std::size_t>(b * 784));
      folder_->latent.decode(ddm::batch_view<const float>(z.data(), b, d), ddm::batch_view<float>(images.data(), b, 784));
      fashion::write_png_grid(std::filesystem::path(dir) / ("samples_" + p->key + ".png"),
                              ddm::batch_view<const float>(images.data(), b, 784), 8);
    }
#else
    (void)dir;
    (void)rows;
    std::fprintf(stderr, "ddm-paradox: this build has no libpng (libpng-dev): no sample grids written\n");
#endif
  }

 private:
  embedded embed_(ddm::batch_view<const double> samples) const override {
    const auto b = samples.rows();
    const auto z = to_float(samples);
    std::vector<float> images(static_cast<std::size_t>(b * fashion::image_values));
    folder_->latent.decode(ddm::batch_view<const float>(z.data(), b, samples.cols()),
                           ddm::batch_view<float>(images.data(), b, fashion::image_values));
    return ref_.embed(folder_->clf, images, b);
  }

  measurement measure_monolith_(const config& c, const progress& prog) const override {
    return paradox::measure_monolith(
        c, [&] { return fashion::make_monolith(folder_); }, folder_->cfg.latent_dim,
        1.0 / static_cast<double>(folder_->cfg.num_experts), data_rms_, prog);
  }

  std::string name_;
};

}  // namespace paradox
