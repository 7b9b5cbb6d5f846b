#pragma once
// The DiT tier of the learned Fashion-MNIST DDM (examples/03_fashion/models/fashion-dit) as a
// study_system: small original-DiT experts (examples/02_dit's host backend) as velocity fields in
// pixel space, the learned DiT router with its logits divided by tau, and the quality measures of
// the latent fashion systems (fashion/quality.hpp): FD, k-NN precision and recall (k = 3) and
// predicted-class coverage in the classifier's features against the 10,000 test images; per
// sample, the distance to the 3rd-nearest test feature. Samples are images already: the
// classifier sees clip((x + 1) / 2, 0, 1). Baselines: the monolith DiT and the oracle router
// (the empirical posterior over the partition's pixel-space subsample) under top-1, top-2, full.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "fashion/dit_folder.hpp"
#include "fashion/fields.hpp"
#include "fashion/idx.hpp"
#include "fashion/quality.hpp"
#if DDM_FASHION_PNG
#include "fashion/png.hpp"
#endif

#include "fashion_common.hpp"
#include "study.hpp"
#include "system.hpp"

namespace paradox {

/// The DiT experts of a folder with the learned (oracle = false) or the oracle router.
struct fashion_dit_source {
  std::shared_ptr<const fashion::dit_folder> folder;
  bool oracle = false;

  [[nodiscard]] ddm::host_context context() const noexcept { return {}; }
  [[nodiscard]] auto experts() const { return fashion::make_dit_experts(folder); }
  template <class T>
  [[nodiscard]] auto routed_field(double tau, const ddm::builtin_policy& policy) const {
    return ddm::make_routed_field<T, ddm::host_space>(experts(), router(tau), policy, context());
  }

  using either_router = learned_or_oracle_router<fashion::dit_learned_router, fashion::oracle_router>;
  [[nodiscard]] either_router router(double tau) const {
    if (oracle) return {fashion::oracle_router(folder->part, tau)};
    return {fashion::dit_learned_router(folder, tau)};
  }
};

class fashion_dit_system final : public fashion_system_base<fashion_dit_source> {
 public:
  /// Defaults where the command line gives none, chosen so that the whole run (5 policies, 4
  /// baselines) stays within a few minutes on 2 cores: every sample is an image of 784 values
  /// through up to 8 DiTs per step (docs/paradox.md gives the measured time).
  static constexpr ddm::index_t default_samples = 128;
  static constexpr long default_steps = 8;

  fashion_dit_system(const std::filesystem::path& models_dir, const std::filesystem::path& data_dir)
      : fashion_system_base(fashion::load_dit_folder(models_dir / "fashion-dit"), data_dir) {}

  [[nodiscard]] std::string name() const override { return "fashion-dit"; }
  [[nodiscard]] std::size_t num_experts() const override { return static_cast<std::size_t>(folder_->num_experts); }

  /// As many seeded training images as the study draws, in model space: the floor of each
  /// measure at this sample size (pixel space has no reconstruction error).
  [[nodiscard]] quality_numbers reference_quality(const config& cfg) const override {
    ddm::index_t b = 0;
    const auto images = seeded_training_images(data_dir_, cfg.seed, cfg.samples, b);
    ddm::batch<double> x(b, fashion::image_values);
    for (ddm::index_t r = 0; r < b; ++r)
      for (ddm::index_t c = 0; c < fashion::image_values; ++c)
        x(r, c) = 2.0 * static_cast<double>(images[static_cast<std::size_t>(r * fashion::image_values + c)]) - 1.0;
    return quality(x.cview());
  }

  void print_header(std::FILE* f, const config& c, const std::string& sampler_line) const override {
    const auto& e = folder_->expert_cfg;
    const auto& r = folder_->router_cfg;
    std::fprintf(f, "ddm-paradox: the stability-quality paradox on the learned Fashion-MNIST DiT DDM '%s'\n",
                 folder_->name.c_str());
    std::fprintf(f, "model    K = %td DiT experts (partition: %s) in pixel space (784 values, x = 2 pixel - 1): hidden %td, "
                    "depth %td, %td heads, patch %td; %s\n",
                 folder_->num_experts, folder_->partition.c_str(), e.hidden_size, e.depth, e.num_heads, e.patch_size,
                 folder_->dir.string().c_str());
    std::fputs(sampler_line.c_str(), f);
    std::fprintf(f, "router   learned DiT router (hidden %td, depth %td), softmax(logits / tau), tau = %g; scheduled policies\n"
                    "         switch at t = %g; oracle_* rows: empirical posterior over %td training images; monolith: one DiT\n",
                 r.hidden_size, r.depth, c.tau, c.t_switch, folder_->part->n);
    std::fprintf(f, "columns  FD: Frechet distance in the classifier's %td features to the %td test images; NLL: n/a (no\n"
                    "         density); cover: share of the 10 classes covered (predicted share >= half the test share);\n"
                    "         prec: k-NN precision (k = %td; recall printed below); L_eff, cum.IQR, D_refine (/ pixel RMS),\n"
                    "         amplif, rank (cluster mean images), ang.gap, I_dis, evals, time: as for the analytic system;\n"
                    "         rho, p: Spearman(I_dis, per-sample distance to the %td-th nearest test feature)\n\n",
                 ref_.feature_dim(), ref_.test_images(), fashion_reference::knn_k, fashion_reference::knn_k);
  }

  [[nodiscard]] nlohmann::json describe(const config&) const override {
    const auto& e = folder_->expert_cfg;
    const auto& r = folder_->router_cfg;
    return {{"folder", folder_->dir.string()},
            {"name", folder_->name},
            {"partition", folder_->partition},
            {"clusters", folder_->num_experts},
            {"dim", fashion::image_values},
            {"space", "pixels, x = 2 pixel - 1"},
            {"dit", {{"hidden", e.hidden_size}, {"depth", e.depth}, {"heads", e.num_heads}, {"patch", e.patch_size}}},
            {"router", {{"hidden", r.hidden_size}, {"depth", r.depth}, {"heads", r.num_heads}, {"patch", r.patch_size}}},
            {"oracle_latents", folder_->part->n},
            {"cluster_priors", folder_->part->priors},
            {"quality_reference", ref_.describe("as many seeded training images as samples")}};
  }

  void write_extra_outputs(const std::string& dir, const std::vector<const policy_result*>& rows) const override {
#if DDM_FASHION_PNG
    for (const auto* p : rows) {
      const auto b = static_cast<ddm::index_t>(p->sample_preview.size()) / fashion::image_values;
      if (b == 0) continue;
      std::vector<float> images(static_cast<std::size_t>(b * fashion::image_values));
      fashion::to_pixels(ddm::batch_view<const double>(p->sample_preview.data(), b, fashion::image_values),
                         ddm::batch_view<float>(images.data(), b, fashion::image_values));
      fashion::write_png_grid(std::filesystem::path(dir) / ("samples_" + p->key + ".png"),
                              ddm::batch_view<const float>(images.data(), b, fashion::image_values), 8);
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
    std::vector<float> images(static_cast<std::size_t>(b * fashion::image_values));
    fashion::to_pixels(samples, ddm::batch_view<float>(images.data(), b, fashion::image_values));
    return ref_.embed(folder_->clf, images, b);
  }

  measurement measure_monolith_(const config& c, const progress& prog) const override {
    return paradox::measure_monolith(
        c, [&] { return fashion::make_dit_monolith(folder_); }, fashion::image_values,
        1.0 / static_cast<double>(folder_->num_experts), data_rms_, prog);
  }

};

}  // namespace paradox
