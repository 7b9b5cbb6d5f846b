#pragma once
// What the learned Fashion-MNIST systems share (fashion_system.hpp: TimeMLP experts in a PCA
// latent space; fashion_dit_system.hpp: DiT experts in pixel space): one router type over the
// learned and the oracle router, the quality measures in the classifier's feature space against
// the 10,000 test images, a seeded draw of training images for the floor, and the rows that run
// one network or one source under the study's integrator and precision.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "fashion/fields.hpp"
#include "fashion/idx.hpp"
#include "fashion/quality.hpp"

#include "host_policy.hpp"
#include "study.hpp"
#include "system.hpp"

namespace paradox {

/// The learned router or the oracle as one router type, so that a system's routed field is one
/// type whichever it routes with: the variant dispatches.
template <class Learned, class Oracle>
struct learned_or_oracle_router {
  std::variant<Learned, Oracle> r;
  [[nodiscard]] std::size_t num_experts() const noexcept {
    return std::visit([](const auto& x) { return x.num_experts(); }, r);
  }
  [[nodiscard]] const char* name() const noexcept { return std::visit([](const auto& x) { return x.name(); }, r); }
  template <class T>
  void operator()(ddm::batch_view<const T> x, double t, ddm::batch_view<T> logits) {
    std::visit([&](auto& y) { y(x, t, logits); }, r);
  }
};

/// A batch of images (B, 784) seen by the classifier: its features and its 10 class logits.
struct embedded {
  std::vector<float> features, logits;
};

/// The quality measures of a fashion system: FD, k-NN precision and recall (k = 3) and
/// predicted-class coverage in the classifier's features against the test images; per sample, the
/// distance to the 3rd-nearest test feature.
class fashion_reference {
 public:
  static constexpr ddm::index_t knn_k = 3;

  template <class Classifier>
  fashion_reference(const Classifier& clf, const std::filesystem::path& data_dir) : nf_(clf.features_dim()) {
    std::size_t n = 0;
    const auto images = fashion::read_idx_images(data_dir / "t10k-images-idx3-ubyte.gz", &n);
    const auto labels = fashion::read_idx_labels(data_dir / "t10k-labels-idx1-ubyte.gz", 10);
    if (labels.size() != n)
      throw ddm::io_error(ddm::concat("Fashion-MNIST test set in ", data_dir.string(), ": ", n, " images but ",
                                      labels.size(), " labels"));
    test_n_ = static_cast<ddm::index_t>(n);
    label_share_.assign(10, 0.0);
    for (int l : labels) label_share_[static_cast<std::size_t>(l)] += 1.0 / static_cast<double>(n);
    test_features_.resize(static_cast<std::size_t>(test_n_ * nf_));
    clf.forward(ddm::batch_view<const float>(images.data(), test_n_, fashion::image_values),
                ddm::batch_view<float>(test_features_.data(), test_n_, nf_));
    test_fit_ = fashion::fit_gaussian(test_view());
    test_radii2_ = fashion::knn_radii_squared(test_view(), knn_k);
  }

  /// The classifier's view of B images (B, 784) in [0, 1].
  template <class Classifier>
  [[nodiscard]] embedded embed(const Classifier& clf, const std::vector<float>& images, ddm::index_t b) const {
    embedded e;
    e.features.resize(static_cast<std::size_t>(b * nf_));
    e.logits.resize(static_cast<std::size_t>(b * 10));
    clf.forward(ddm::batch_view<const float>(images.data(), b, fashion::image_values),
                ddm::batch_view<float>(e.features.data(), b, nf_), ddm::batch_view<float>(e.logits.data(), b, 10));
    return e;
  }

  [[nodiscard]] quality_numbers quality(const embedded& e, ddm::index_t b) const {
    const ddm::batch_view<const float> fv(e.features.data(), b, nf_);
    quality_numbers q;
    q.frechet = fashion::frechet_distance(fashion::fit_gaussian(fv), test_fit_);
    q.nll = std::nan("");  // no density: reported as n/a (null in JSON)
    const auto pr = fashion::improved_precision_recall(test_view(), test_radii2_, fv, knn_k);
    q.precision = pr.precision;
    q.recall = pr.recall;
    const auto cov =
        fashion::coverage_of(fashion::argmax_rows(ddm::batch_view<const float>(e.logits.data(), b, 10)), label_share_);
    q.coverage = static_cast<double>(cov.covered) / 10.0;
    q.cluster_coverage = q.coverage;
    q.cluster_tv = cov.tv_distance;
    q.cluster_share = cov.share;
    return q;
  }

  [[nodiscard]] std::vector<double> per_sample(const embedded& e, ddm::index_t b) const {
    const auto nn = fashion::knn_squared(ddm::batch_view<const float>(e.features.data(), b, nf_), test_view(), knn_k);
    std::vector<double> out(static_cast<std::size_t>(b));
    for (std::size_t r = 0; r < out.size(); ++r) out[r] = std::sqrt(static_cast<double>(nn[r * knn_k + knn_k - 1]));
    return out;
  }

  [[nodiscard]] ddm::index_t test_images() const noexcept { return test_n_; }
  [[nodiscard]] ddm::index_t feature_dim() const noexcept { return nf_; }

  /// The description every fashion system's JSON gives of its quality reference.
  [[nodiscard]] nlohmann::json describe(const char* floor) const {
    return {{"feature_dim", nf_},
            {"test_images", test_n_},
            {"knn_k", knn_k},
            {"per_sample_quality", "distance to the k-th nearest test feature (lower is better)"},
            {"floor", floor}};
  }

 private:
  [[nodiscard]] ddm::batch_view<const float> test_view() const { return {test_features_.data(), test_n_, nf_}; }

  ddm::index_t test_n_ = 0, nf_ = 0;
  std::vector<double> label_share_;
  std::vector<float> test_features_;
  fashion::gaussian_fit test_fit_;
  std::vector<float> test_radii2_;
};

/// min(count, 60,000) training images (B, 784) in [0, 1], drawn without replacement under `seed`:
/// the data the floor of each quality measure is computed from. `b` receives B.
inline std::vector<float> seeded_training_images(const std::filesystem::path& data_dir, std::uint64_t seed,
                                                 ddm::index_t count, ddm::index_t& b) {
  std::size_t n = 0;
  const auto train = fashion::read_idx_images(data_dir / "train-images-idx3-ubyte.gz", &n);
  std::vector<std::size_t> idx(n);
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  std::mt19937_64 gen(seed);
  std::shuffle(idx.begin(), idx.end(), gen);
  b = std::min<ddm::index_t>(count, static_cast<ddm::index_t>(n));
  std::vector<float> x(static_cast<std::size_t>(b * fashion::image_values));
  for (ddm::index_t r = 0; r < b; ++r)
    std::copy_n(train.data() + idx[static_cast<std::size_t>(r)] * fashion::image_values, fashion::image_values,
                x.data() + r * fashion::image_values);
  return x;
}

/// A policy row of a fashion system: measure_policy under the study's integrator and precision.
template <class Source>
measurement measure_source(const config& c, const system_geometry& geo, const Source& source, const std::string& key,
                           double tau, const progress& prog, const std::string& row_key = {}) {
  return ddm::with_integrator(
      c.integrator,
      [&](const auto& i) {
        if (c.prec == precision::float32) return measure_host_policy<float>(c, geo, source, key, tau, i, prog, row_key);
        return measure_host_policy<double>(c, geo, source, key, tau, i, prog, row_key);
      },
      study_integrators{});
}

/// The baseline rows of a fashion system: the monolith, then the oracle router under top-1, top-2
/// and the full ensemble. measure_oracle(key, row_key) measures the oracle source under policy key.
template <class MeasureOracle>
std::vector<policy_result> fashion_baselines(const config& c, const study_system& system, measurement monolith,
                                             const MeasureOracle& measure_oracle, const progress& prog) {
  std::vector<policy_result> out;
  out.push_back(finish_policy(c, system, std::move(monolith), c.tau, prog));
  for (const char* key : {"top1", "top2", "full"})
    out.push_back(finish_policy(c, system, measure_oracle(key, std::string("oracle_") + key), c.tau, prog));
  return out;
}

/// The monolith row: the instruments that apply to one network (no router, no experts to
/// disagree): quality, L_eff, Delta_refine, amplification and cost, from the same noise as the
/// policies. make_field() gives the network as a velocity field of dimension d; relative_cost is
/// its cost against the full ensemble (1 / K).
template <class MakeField>
measurement measure_monolith(const config& c, const MakeField& make_field, ddm::index_t d, double relative_cost,
                             double data_rms, const progress& prog) {
  // Under mpirun (rows: a distributed_rows, distributed.hpp) each rank samples its shard and the
  // per-row results are gathered before any statistic, as in measure_policy; else rows is
  // one_process.
  auto run = [&]<class T>(const auto& integ, const auto& rows) {
    constexpr bool sharded = sharded_source<std::remove_cvref_t<decltype(rows)>>;
    const auto t_start = std::chrono::steady_clock::now();
    const ddm::host_context ctx{};
    const auto schedule = ddm::schedules::uniform(c.steps);
    auto field = make_field();
    const auto b = c.samples;
    ddm::index_t first = 0, n = b;
    if constexpr (sharded) {
      first = rows.shard().first;
      n = rows.shard().rows;
    }
    measurement out;
    policy_result& res = out.result;
    res.key = "monolith";
    res.name = "monolith";
    const std::string tag = progress_tag(c.tau, res.key);
    ddm::batch<T> all(b, d);
    ddm::fill_normal(ctx, all.view(), c.seed);
    ddm::batch<T> noise(n, d);
    ddm::copy(ctx, noise.view(), all.cview().subrows(first, n));
    prog.note(tag + "sampling");
    ddm::batch<T> x(n, d);
    ddm::copy(ctx, x.view(), noise.cview());
    const auto t0 = std::chrono::steady_clock::now();
    const auto sampled = ddm::sample(ctx, ddm::sample_options{}, field, x.view(), schedule, integ);
    res.cost.sampling_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    res.cost.field_evaluations = sampled.field_evaluations;
    res.cost.expert_evaluations_per_sample = static_cast<double>(sampled.field_evaluations);
    res.cost.relative_cost = relative_cost;
    out.samples = convert<double>(x.cview());
    if constexpr (sharded) out.samples = rows.gather_rows(out.samples.cview());

    prog.note(tag + "observing (L_eff)");
    ddm::batch<T> y(n, d);
    ddm::copy(ctx, y.view(), noise.cview());
    const dd::sensitivity_options sens_options{.every = c.leff_every};
    if constexpr (sharded) {
      shard_sensitivity<T, decltype(field)> sens(ctx, field, sens_options, first, b);
      ddm::sample(ctx, ddm::sample_options{}, field, y.view(), schedule, integ, sens);
      res.observed_run_bit_identical = rows.all(same_bits(y.cview(), x.cview()));
      set_sharded_l_eff(res.stability, sens, rows);
    } else {
      auto sens = dd::make_trajectory_sensitivity<T, ddm::host_space>(ctx, field, sens_options);
      ddm::sample(ctx, ddm::sample_options{}, field, y.view(), schedule, integ, sens);
      res.observed_run_bit_identical = same_bits(y.cview(), x.cview());
      res.stability.l_eff_median = dd::median(sens.row_mean());
      res.stability.l_eff_cumulative_iqr = sens.cumulative_iqr();
      res.stability.l_eff_steps = sens.steps();
    }

    measure_convergence(ctx, field, noise.cview(), schedule, integ, c, data_rms, res.stability, prog, tag, rows);
    res.cost.study_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    return out;
  };
  auto run_here = [&]<class T>(const auto& integ) {
#if DDM_PARADOX_MPI
    if (c.ranks != nullptr) return run.template operator()<T>(integ, distributed_rows(*c.ranks, c.samples));
#endif
    return run.template operator()<T>(integ, one_process{});
  };
  return ddm::with_integrator(
      c.integrator,
      [&](const auto& integ) {
        if (c.prec == precision::float32) return run_here.template operator()<float>(integ);
        return run_here.template operator()<double>(integ);
      },
      study_integrators{});
}

/// What the latent and the DiT Fashion-MNIST systems share: the partition's geometry (its cluster
/// centroids and the RMS of its oracle subsample), the quality reference in the classifier's
/// features, and the measurements of the policies and of the oracle baselines through
/// Source{folder, oracle}. A system supplies its name, header and outputs, embed_ (its samples as
/// classifier features) and measure_monolith_.
template <class Source>
class fashion_system_base : public study_system {
 public:
  using folder_type = typename decltype(Source::folder)::element_type;

  [[nodiscard]] system_geometry geometry() const override {
    return {part_.d, ddm::batch_view<const double>(part_.centroids.data(), part_.k, part_.d), data_rms_};
  }

  [[nodiscard]] measurement measure(const config& c, const std::string& key, double tau,
                                    const progress& prog) const override {
    return measure_source(c, geometry(), Source{folder_, false}, key, tau, prog);
  }

  [[nodiscard]] std::vector<policy_result> baselines(const config& c, const progress& prog) const override {
    return fashion_baselines(
        c, *this, measure_monolith_(c, prog),
        [&](const char* key, const std::string& row) {
          return measure_source(c, geometry(), Source{folder_, true}, key, c.tau, prog, row);
        },
        prog);
  }

  [[nodiscard]] quality_numbers quality(ddm::batch_view<const double> samples) const override {
    return ref_.quality(embed_(samples), samples.rows());
  }
  [[nodiscard]] std::vector<double> per_sample_quality(ddm::batch_view<const double> samples) const override {
    return ref_.per_sample(embed_(samples), samples.rows());
  }
  [[nodiscard]] std::string per_sample_quality_name() const override { return "k-NN feature distance"; }

 protected:
  fashion_system_base(std::shared_ptr<const folder_type> folder, const std::filesystem::path& data_dir)
      : folder_(std::move(folder)), part_(partition_of_(*folder_)), ref_(folder_->clf, data_dir), data_dir_(data_dir) {
    double ss = 0;
    for (double v : part_.oracle_latents) ss += v * v;
    data_rms_ = std::sqrt(ss / static_cast<double>(part_.oracle_latents.size()));
  }

  // A latent folder holds its partition, a DiT folder shares it.
  static const fashion::partition_data& partition_of_(const folder_type& f) {
    if constexpr (requires { *f.part; }) {
      return *f.part;
    } else {
      return f.part;
    }
  }

  [[nodiscard]] virtual embedded embed_(ddm::batch_view<const double> samples) const = 0;
  [[nodiscard]] virtual measurement measure_monolith_(const config& c, const progress& prog) const = 0;

  std::shared_ptr<const folder_type> folder_;
  const fashion::partition_data& part_;  // the folder's, which folder_ keeps
  fashion_reference ref_;
  double data_rms_ = 1.0;
  std::filesystem::path data_dir_;
};

}  // namespace paradox
