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

#include "study.hpp"
#include "system.hpp"

namespace paradox {

/// The DiT experts of a folder with the learned (oracle = false) or the oracle router.
struct fashion_dit_source {
  std::shared_ptr<const fashion::dit_folder> folder;
  bool oracle = false;

  [[nodiscard]] ddm::host_context context() const noexcept { return {}; }
  template <class T>
  [[nodiscard]] auto routed_field(double tau, const ddm::builtin_policy& policy) const {
    return ddm::make_routed_field<T, ddm::host_space>(fashion::make_dit_experts(folder), router_(tau), policy, context());
  }

 private:
  struct either_router {
    std::variant<fashion::dit_learned_router, fashion::oracle_router> r;
    [[nodiscard]] std::size_t num_experts() const noexcept {
      return std::visit([](const auto& x) { return x.num_experts(); }, r);
    }
    [[nodiscard]] const char* name() const noexcept { return std::visit([](const auto& x) { return x.name(); }, r); }
    template <class T>
    void operator()(ddm::batch_view<const T> x, double t, ddm::batch_view<T> logits) {
      std::visit([&](auto& y) { y(x, t, logits); }, r);
    }
  };
  [[nodiscard]] either_router router_(double tau) const {
    if (oracle) return {fashion::oracle_router(folder->part, tau)};
    return {fashion::dit_learned_router(folder, tau)};
  }
};

class fashion_dit_system final : public study_system {
 public:
  static constexpr ddm::index_t knn_k = 3;
  /// Defaults where the command line gives none, chosen so that the whole run (5 policies, 4
  /// baselines) stays within a few minutes on 2 cores: every sample is an image of 784 values
  /// through up to 8 DiTs per step (docs/paradox.md gives the measured time).
  static constexpr ddm::index_t default_samples = 128;
  static constexpr long default_steps = 8;

  fashion_dit_system(const std::filesystem::path& models_dir, const std::filesystem::path& data_dir) {
    folder_ = fashion::load_dit_folder(models_dir / "fashion-dit");
    const auto& p = *folder_->part;
    centroids_ = p.centroids;
    double ss = 0;
    for (double v : p.oracle_latents) ss += v * v;
    data_rms_ = std::sqrt(ss / static_cast<double>(p.oracle_latents.size()));
    std::size_t n = 0;
    const auto images = fashion::read_idx_images(data_dir / "t10k-images-idx3-ubyte.gz", &n);
    const auto labels = fashion::read_idx_labels(data_dir / "t10k-labels-idx1-ubyte.gz", 10);
    if (labels.size() != n)
      throw ddm::io_error(ddm::concat("Fashion-MNIST test set in ", data_dir.string(), ": ", n, " images but ",
                                      labels.size(), " labels"));
    test_n_ = static_cast<ddm::index_t>(n);
    label_share_.assign(10, 0.0);
    for (int l : labels) label_share_[static_cast<std::size_t>(l)] += 1.0 / static_cast<double>(n);
    nf_ = folder_->clf.features_dim();
    test_features_.resize(static_cast<std::size_t>(test_n_ * nf_));
    folder_->clf.forward(ddm::batch_view<const float>(images.data(), test_n_, fashion::image_values),
                         ddm::batch_view<float>(test_features_.data(), test_n_, nf_));
    test_fit_ = fashion::fit_gaussian(test_view_());
    test_radii2_ = fashion::knn_radii_squared(test_view_(), knn_k);
    data_dir_ = data_dir;
  }

  [[nodiscard]] std::string name() const override { return "fashion-dit"; }
  [[nodiscard]] std::size_t num_experts() const override { return static_cast<std::size_t>(folder_->num_experts); }
  [[nodiscard]] system_geometry geometry() const override {
    const auto& p = *folder_->part;
    return {p.d, ddm::batch_view<const double>(centroids_.data(), p.k, p.d), data_rms_};
  }

  [[nodiscard]] measurement measure(const config& c, const std::string& key, double tau,
                                    const progress& prog) const override {
    return measure_with(c, fashion_dit_source{folder_, false}, key, tau, prog);
  }

  [[nodiscard]] std::vector<policy_result> baselines(const config& c, const progress& prog) const override {
    std::vector<policy_result> out;
    out.push_back(finish_policy(c, *this, measure_monolith(c, prog), c.tau, prog));
    for (const char* key : {"top1", "top2", "full"}) {
      out.push_back(finish_policy(c, *this,
                                  measure_with(c, fashion_dit_source{folder_, true}, key, c.tau, prog,
                                               std::string("oracle_") + key),
                                  c.tau, prog));
    }
    return out;
  }

  [[nodiscard]] quality_numbers quality(ddm::batch_view<const double> samples) const override {
    const auto e = embed_(samples);
    const ddm::batch_view<const float> fv(e.features.data(), samples.rows(), nf_);
    quality_numbers q;
    q.frechet = fashion::frechet_distance(fashion::fit_gaussian(fv), test_fit_);
    q.nll = std::nan("");  // no density: reported as n/a (null in JSON)
    const auto pr = fashion::improved_precision_recall(test_view_(), test_radii2_, fv, knn_k);
    q.precision = pr.precision;
    q.recall = pr.recall;
    const auto cov = fashion::coverage_of(
        fashion::argmax_rows(ddm::batch_view<const float>(e.logits.data(), samples.rows(), 10)), label_share_);
    q.coverage = static_cast<double>(cov.covered) / 10.0;
    q.cluster_coverage = q.coverage;
    q.cluster_tv = cov.tv_distance;
    q.cluster_share = cov.share;
    return q;
  }

  [[nodiscard]] std::vector<double> per_sample_quality(ddm::batch_view<const double> samples) const override {
    const auto e = embed_(samples);
    const auto nn = fashion::knn_squared(ddm::batch_view<const float>(e.features.data(), samples.rows(), nf_), test_view_(), knn_k);
    std::vector<double> out(static_cast<std::size_t>(samples.rows()));
    for (std::size_t r = 0; r < out.size(); ++r) out[r] = std::sqrt(static_cast<double>(nn[r * knn_k + knn_k - 1]));
    return out;
  }
  [[nodiscard]] std::string per_sample_quality_name() const override { return "k-NN feature distance"; }

  /// As many seeded training images as the study draws, in model space: the floor of each
  /// measure at this sample size (pixel space has no reconstruction error).
  [[nodiscard]] quality_numbers reference_quality(const config& cfg) const override {
    std::size_t n = 0;
    const auto train = fashion::read_idx_images(data_dir_ / "train-images-idx3-ubyte.gz", &n);
    std::vector<std::size_t> idx(n);
    std::iota(idx.begin(), idx.end(), std::size_t{0});
    std::mt19937_64 gen(cfg.seed);
    std::shuffle(idx.begin(), idx.end(), gen);
    const auto b = std::min<ddm::index_t>(cfg.samples, static_cast<ddm::index_t>(n));
    ddm::batch<double> x(b, fashion::image_values);
    for (ddm::index_t r = 0; r < b; ++r)
      for (ddm::index_t c = 0; c < fashion::image_values; ++c)
        x(r, c) = 2.0 * static_cast<double>(train[idx[static_cast<std::size_t>(r)] * 784 + static_cast<std::size_t>(c)]) - 1.0;
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
                 nf_, test_n_, knn_k, knn_k);
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
            {"quality_reference",
             {{"feature_dim", nf_},
              {"test_images", test_n_},
              {"knn_k", knn_k},
              {"per_sample_quality", "distance to the k-th nearest test feature (lower is better)"},
              {"floor", "as many seeded training images as samples"}}}};
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
  struct embedded {
    std::vector<float> features, logits;
  };
  embedded embed_(ddm::batch_view<const double> samples) const {
    const auto b = samples.rows();
    std::vector<float> images(static_cast<std::size_t>(b * fashion::image_values));
    fashion::to_pixels(samples, ddm::batch_view<float>(images.data(), b, fashion::image_values));
    embedded e;
    e.features.resize(static_cast<std::size_t>(b * nf_));
    e.logits.resize(static_cast<std::size_t>(b * 10));
    folder_->clf.forward(ddm::batch_view<const float>(images.data(), b, fashion::image_values),
                         ddm::batch_view<float>(e.features.data(), b, nf_), ddm::batch_view<float>(e.logits.data(), b, 10));
    return e;
  }
  [[nodiscard]] ddm::batch_view<const float> test_view_() const { return {test_features_.data(), test_n_, nf_}; }

  measurement measure_with(const config& c, const fashion_dit_source& source, const std::string& key, double tau,
                           const progress& prog, const std::string& row_key = {}) const {
    const auto geo = geometry();
    return ddm::with_integrator(
        c.integrator,
        [&](const auto& i) {
          if (c.prec == precision::float32)
            return measure_policy<float, ddm::host_space>(c, geo, source, key, tau, i, prog, row_key);
          return measure_policy<double, ddm::host_space>(c, geo, source, key, tau, i, prog, row_key);
        },
        study_integrators{});
  }

  // The instruments that apply to one network (no router, no experts to disagree): quality,
  // L_eff, Delta_refine, amplification and cost, from the same noise as the policies (as the
  // latent systems' monolith row, fashion_system.hpp).
  template <class T, class Integrator>
  measurement measure_monolith_(const config& cfg, const Integrator& integ, const progress& prog) const {
    const auto t_start = std::chrono::steady_clock::now();
    const ddm::host_context ctx{};
    const auto schedule = ddm::schedules::uniform(cfg.steps);
    auto field = fashion::make_dit_monolith(folder_);
    const auto b = cfg.samples;
    const auto d = fashion::image_values;
    measurement out;
    policy_result& res = out.result;
    res.key = "monolith";
    res.name = "monolith";
    const std::string tag = progress_tag(cfg.tau, res.key);
    ddm::batch<T> noise(b, d);
    ddm::fill_normal(ctx, noise.view(), cfg.seed);
    prog.note(tag + "sampling");
    ddm::batch<T> x(b, d);
    ddm::copy(ctx, x.view(), noise.cview());
    const auto t0 = std::chrono::steady_clock::now();
    const auto run = ddm::sample(ctx, ddm::sample_options{}, field, x.view(), schedule, integ);
    res.cost.sampling_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    res.cost.field_evaluations = run.field_evaluations;
    res.cost.expert_evaluations_per_sample = static_cast<double>(run.field_evaluations);
    res.cost.relative_cost = 1.0 / static_cast<double>(folder_->num_experts);
    out.samples = convert<double>(x.cview());

    prog.note(tag + "observing (L_eff)");
    ddm::batch<T> y(b, d);
    ddm::copy(ctx, y.view(), noise.cview());
    auto sens = dd::make_trajectory_sensitivity<T, ddm::host_space>(ctx, field, {.every = cfg.leff_every});
    ddm::sample(ctx, ddm::sample_options{}, field, y.view(), schedule, integ, sens);
    res.observed_run_bit_identical = same_bits(y.cview(), x.cview());
    res.stability.l_eff_median = dd::median(sens.row_mean());
    res.stability.l_eff_cumulative_iqr = sens.cumulative_iqr();
    res.stability.l_eff_steps = sens.steps();

    measure_convergence(ctx, field, noise.cview(), schedule, integ, cfg, data_rms_, res.stability, prog, tag);
    res.cost.study_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    return out;
  }

  measurement measure_monolith(const config& c, const progress& prog) const {
    return ddm::with_integrator(
        c.integrator,
        [&](const auto& i) {
          if (c.prec == precision::float32) return measure_monolith_<float>(c, i, prog);
          return measure_monolith_<double>(c, i, prog);
        },
        study_integrators{});
  }

  std::shared_ptr<const fashion::dit_folder> folder_;
  std::vector<double> centroids_;
  double data_rms_ = 1.0;
  ddm::index_t test_n_ = 0, nf_ = 0;
  std::vector<double> label_share_;
  std::vector<float> test_features_;
  fashion::gaussian_fit test_fit_;
  std::vector<float> test_radii2_;
  std::filesystem::path data_dir_;
};

}  // namespace paradox
