// The analytic DDM: the decomposition theorem (full ensemble with the exact router = the mixture's
// velocity), the velocity against its definition, endpoints, exact Jacobian-vector products, the
// router against Bayes' rule, and the data sampler.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <ddm/ddm.hpp>

#include "support/error_message.hpp"
#include "support/gaussian_flow.hpp"

namespace {

using ddm::synthetic::analytic_ddm;
const ddm::host_context ctx{};

// x_t = (1 - t) x0 + t eps for true data x0, and 4 far-away rows (30 eps).
ddm::batch<double> states(const analytic_ddm& m, ddm::index_t n, double t, std::uint64_t seed) {
  auto x0 = m.sample_data(n, seed);
  ddm::batch<double> eps(n, m.dim()), x(n + 4, m.dim());
  ddm::fill_normal(ctx, eps.view(), seed + 1);
  ddm::lincomb(ctx, x.view().subrows(0, n), {1.0 - t, t}, x0, eps);
  ddm::lincomb(ctx, x.view().subrows(n, 4), {30.0}, eps.cview().subrows(0, 4));
  return x;
}

double max_abs(ddm::batch_view<const double> a) {
  double m = 0;
  for (ddm::index_t r = 0; r < a.rows(); ++r)
    for (ddm::index_t c = 0; c < a.cols(); ++c) m = std::max(m, std::abs(a(r, c)));
  return m;
}

const std::vector<double> times{0.0, 1e-12, 1e-6, 1e-3, 0.05, 0.3, 0.5, 0.8, 0.999, 1.0 - 1e-6, 1.0 - 1e-12, 1.0};

TEST(AnalyticDdm, DefaultsLookLikeParis) {
  const analytic_ddm m;
  EXPECT_EQ(m.num_clusters(), 8u);
  EXPECT_EQ(m.num_components(), 32u);
  EXPECT_EQ(m.dim(), 8);
  double prior_sum = 0, weight_sum = 0;
  for (double p : m.cluster_priors()) prior_sum += p;
  for (double w : m.component_weights()) weight_sum += w;
  EXPECT_NEAR(prior_sum, 1.0, 1e-15);
  EXPECT_NEAR(weight_sum, 1.0, 1e-15);
  EXPECT_EQ(m.cluster_begin().back(), 32);
  // Deterministic in the seed.
  const analytic_ddm same;
  const analytic_ddm other(ddm::synthetic::analytic_ddm_options{.seed = 7});
  EXPECT_EQ(m.component_means()(5, 3), same.component_means()(5, 3));
  EXPECT_NE(m.component_means()(5, 3), other.component_means()(5, 3));
}

// The DDM decomposition theorem: sum_k p(k | x_t) v_k = v of the whole mixture.
TEST(AnalyticDdm, FullEnsembleWithExactRouterIsTheMixtureVelocity) {
  const analytic_ddm m;
  auto routed = ddm::make_routed_field<double>(m.experts(), m.router(1.0), ddm::full_ensemble{});
  auto mixture = m.mixture_field();
  double worst = 0;
  for (double t : times) {
    const auto x = states(m, 60, t, 11);
    ddm::batch<double> a(x.rows(), x.cols()), b(x.rows(), x.cols());
    routed(x.cview(), t, a.view());
    mixture(x.cview(), t, b.view());
    ASSERT_TRUE(ddm::all_finite(ctx, a.cview())) << t;
    const double err = ddm::test::max_abs_diff(a.cview(), b.cview());
    EXPECT_LT(err, 1e-10) << "t = " << t;
    worst = std::max(worst, err / max_abs(b.cview()));
  }
  std::printf("[ measured ] decomposition theorem: largest relative deviation %.2e over %zu times\n", worst, times.size());
  // top-K with K experts renormalizes by sum p = 1: the same field.
  auto top_all = ddm::make_routed_field<double>(m.experts(), m.router(1.0), ddm::top_k{8});
  const auto x = states(m, 30, 0.4, 3);
  ddm::batch<double> a(x.rows(), x.cols()), b(x.rows(), x.cols());
  top_all(x.cview(), 0.4, a.view());
  mixture(x.cview(), 0.4, b.view());
  EXPECT_LT(ddm::test::max_abs_diff(a.cview(), b.cview()), 1e-10);
}

// v = (x - E[x0 | x_t = x]) / t, with E[x0 | x_t] from Bayes' rule, evaluated naively in long double.
TEST(AnalyticDdm, VelocityMatchesItsDefinition) {
  const analytic_ddm m;
  const auto d = static_cast<std::size_t>(m.dim());
  auto mixture = m.mixture_field();
  for (double t : {0.02, 0.3, 0.6, 0.95}) {
    const auto x = states(m, 20, t, 5);
    ddm::batch<double> v(20, m.dim());
    mixture(x.cview().subrows(0, 20), t, v.view());
    for (ddm::index_t r = 0; r < 20; ++r) {
      std::vector<long double> post(m.num_components());
      long double z = 0;
      for (std::size_t j = 0; j < post.size(); ++j) {
        const long double s = m.component_scales()[j];
        const long double var = (1 - t) * (1 - t) * s * s + static_cast<long double>(t) * t;
        long double d2 = 0;
        for (std::size_t c = 0; c < d; ++c) {
          const long double diff = x(r, static_cast<ddm::index_t>(c)) - (1 - t) * m.component_means()(static_cast<ddm::index_t>(j), static_cast<ddm::index_t>(c));
          d2 += diff * diff;
        }
        post[j] = m.component_weights()[j] * std::exp(-d2 / (2 * var)) / std::pow(var, static_cast<long double>(d) / 2);
        z += post[j];
      }
      for (std::size_t c = 0; c < d; ++c) {
        long double e_x0 = 0;
        for (std::size_t j = 0; j < post.size(); ++j) {
          const long double s = m.component_scales()[j];
          const long double var = (1 - t) * (1 - t) * s * s + static_cast<long double>(t) * t;
          const long double g = (1 - t) * s * s / var;
          const long double mu = m.component_means()(static_cast<ddm::index_t>(j), static_cast<ddm::index_t>(c));
          e_x0 += post[j] / z * (mu + g * (x(r, static_cast<ddm::index_t>(c)) - (1 - t) * mu));
        }
        const auto expected = static_cast<double>((x(r, static_cast<ddm::index_t>(c)) - e_x0) / t);
        EXPECT_NEAR(v(r, static_cast<ddm::index_t>(c)), expected, 1e-9 * (1 + std::abs(expected))) << "t = " << t;
      }
    }
  }
}

TEST(AnalyticDdm, EndpointsAndStabilityNearThem) {
  const analytic_ddm m;
  const auto x = states(m, 10, 0.5, 9);
  ddm::batch<double> v(x.rows(), x.cols()), w(x.rows(), x.cols());
  auto mixture = m.mixture_field();
  auto expert = m.expert(3);
  // t = 1: v = x - (mean of the data); expert k: x - (centroid of cluster k).
  mixture(x.cview(), 1.0, v.view());
  expert(x.cview(), 1.0, w.view());
  for (ddm::index_t r = 0; r < x.rows(); ++r)
    for (ddm::index_t c = 0; c < x.cols(); ++c) {
      EXPECT_NEAR(v(r, c), x(r, c) - m.mean()[static_cast<std::size_t>(c)], 1e-12);
      EXPECT_NEAR(w(r, c), x(r, c) - m.centroids()(3, c), 1e-12);
    }
  // t = 0: v = -x (E[eps | x0] = 0).
  mixture(x.cview(), 0.0, v.view());
  for (ddm::index_t r = 0; r < x.rows(); ++r)
    for (ddm::index_t c = 0; c < x.cols(); ++c) EXPECT_NEAR(v(r, c), -x(r, c), 1e-14 * (1 + std::abs(x(r, c))));
  // Continuous into both ends (no division by t or 1 - t).
  for (auto [t_end, t_near] : {std::pair{0.0, 1e-12}, std::pair{1.0, 1.0 - 1e-12}}) {
    mixture(x.cview(), t_end, v.view());
    mixture(x.cview(), t_near, w.view());
    EXPECT_LT(ddm::test::max_abs_diff(v.cview(), w.cview()), 1e-8) << t_end;
  }
  EXPECT_THROW(mixture(x.cview(), -0.1, v.view()), ddm::argument_error);
}

TEST(AnalyticDdm, SingleComponentExpertIsTheGaussianFlow) {
  ddm::synthetic::mixture_spec spec{2, {0.5, -1.0, 3.0, 3.0}, {0.4, 0.7}, {1.0, 2.0}, {0, 1}};
  const analytic_ddm m(spec);
  ddm::test::gaussian_flow g{{0.5, -1.0}, 0.4};
  auto e = m.expert(0);
  ddm::batch<double> x(5, 2), a(5, 2), b(5, 2);
  ddm::fill_normal(ctx, x.view(), 4);
  for (double t : {0.0, 0.2, 0.7, 1.0}) {
    e(x.cview(), t, a.view());
    g(x.cview(), t, b.view());
    EXPECT_LT(ddm::test::max_abs_diff(a.cview(), b.cview()), 1e-14) << t;
  }
  EXPECT_NEAR(m.cluster_priors()[1], 2.0 / 3.0, 1e-15);
}

TEST(AnalyticDdm, JvpMatchesCentralDifferences) {
  const analytic_ddm m;
  auto mixture = m.mixture_field();
  auto expert = m.expert(5);
  static_assert(ddm::has_jvp<decltype(mixture), double>);
  const double h = 1e-6;
  double worst = 0;
  for (double t : {0.05, 0.4, 0.9}) {
    const auto x = states(m, 12, t, 21);
    ddm::batch<double> u(x.rows(), x.cols()), xp(x.rows(), x.cols()), xm(x.rows(), x.cols());
    ddm::fill_normal(ctx, u.view(), 77);
    ddm::lincomb(ctx, xp.view(), {1.0, h}, x, u);
    ddm::lincomb(ctx, xm.view(), {1.0, -h}, x, u);
    for (auto* f : {&mixture, &expert}) {
      ddm::batch<double> jv(x.rows(), x.cols()), vp(x.rows(), x.cols()), vm(x.rows(), x.cols()), fd(x.rows(), x.cols());
      f->jvp(x.cview(), t, u.cview(), jv.view());
      (*f)(xp.cview(), t, vp.view());
      (*f)(xm.cview(), t, vm.view());
      ddm::lincomb(ctx, fd.view(), {0.5 / h, -0.5 / h}, vp, vm);
      const double err = ddm::test::max_abs_diff(jv.cview(), fd.cview()) / (1 + max_abs(jv.cview()));
      EXPECT_LT(err, 1e-6) << "t = " << t;
      worst = std::max(worst, err);
    }
  }
  std::printf("[ measured ] jvp vs central differences (h = 1e-6): largest relative deviation %.2e\n", worst);
}

TEST(AnalyticDdm, RouterIsBayesPosteriorWithTemperature) {
  const analytic_ddm m;
  const ddm::index_t k_count = 8;
  for (double t : {1.0, 0.7, 0.2, 0.01}) {
    const auto x = states(m, 15, t, 2);
    const ddm::index_t n = 15;
    // Bayes: p(k | x) = sum_{j in k} w_j N_j(x) / sum_j w_j N_j(x), in long double.
    std::vector<long double> bayes(static_cast<std::size_t>(n * k_count), 0);
    for (ddm::index_t r = 0; r < n; ++r) {
      long double z = 0;
      for (std::size_t j = 0; j < m.num_components(); ++j) {
        const long double s = m.component_scales()[j];
        const long double var = (1 - t) * (1 - t) * s * s + static_cast<long double>(t) * t;
        long double d2 = 0;
        for (ddm::index_t c = 0; c < m.dim(); ++c) {
          const long double diff = x(r, c) - (1 - t) * m.component_means()(static_cast<ddm::index_t>(j), c);
          d2 += diff * diff;
        }
        const long double term = m.component_weights()[j] * std::exp(-d2 / (2 * var)) / std::pow(var, m.dim() / 2.0L);
        bayes[static_cast<std::size_t>(r * k_count + m.component_cluster()[j])] += term;
        z += term;
      }
      for (ddm::index_t k = 0; k < k_count; ++k) bayes[static_cast<std::size_t>(r * k_count + k)] /= z;
    }
    for (double tau : {1.0, 2.0, 5.0}) {
      auto router = m.router(tau);
      ddm::batch<double> l(n, k_count), p(n, k_count);
      router(x.cview().subrows(0, n), t, l.view());
      ddm::softmax_rows(ctx, l.cview(), 1.0, p.view());
      for (ddm::index_t r = 0; r < n; ++r) {
        long double z = 0;
        for (ddm::index_t k = 0; k < k_count; ++k) z += std::pow(bayes[static_cast<std::size_t>(r * k_count + k)], 1.0L / tau);
        for (ddm::index_t k = 0; k < k_count; ++k) {
          const auto expected = static_cast<double>(std::pow(bayes[static_cast<std::size_t>(r * k_count + k)], 1.0L / tau) / z);
          EXPECT_NEAR(p(r, k), expected, 1e-12) << "t = " << t << " tau = " << tau;
        }
      }
      if (t == 1.0 && tau == 1.0) {
        for (ddm::index_t k = 0; k < k_count; ++k) {
          EXPECT_NEAR(p(0, k), m.cluster_priors()[static_cast<std::size_t>(k)], 1e-14);
        }
      }
    }
  }
  EXPECT_THROW((void)m.router(0.0), ddm::argument_error);
}

TEST(AnalyticDdm, SamplerIsDeterministicAndFollowsTheWeights) {
  const analytic_ddm m;
  const ddm::index_t n = 40000;
  const auto s = m.sample_data_labeled(n, 123);
  const auto again = m.sample_data(n, 123);
  EXPECT_EQ(ddm::test::max_abs_diff(s.x.cview(), again.cview()), 0.0);
  std::vector<double> freq(m.num_components(), 0.0);
  for (int j : s.component) freq[static_cast<std::size_t>(j)] += 1.0 / static_cast<double>(n);
  for (std::size_t j = 0; j < freq.size(); ++j) {
    const double w = m.component_weights()[j];
    EXPECT_NEAR(freq[j], w, 5 * std::sqrt(w * (1 - w) / static_cast<double>(n))) << j;
  }
  for (std::size_t i = 0; i < s.cluster.size(); ++i)
    ASSERT_EQ(s.cluster[i], m.component_cluster()[static_cast<std::size_t>(s.component[i])]);
  // Mean of the sample against the exact mean, within 5 standard errors.
  for (ddm::index_t c = 0; c < m.dim(); ++c) {
    double mean = 0;
    for (ddm::index_t r = 0; r < n; ++r) mean += s.x(r, c) / static_cast<double>(n);
    const double se = std::sqrt(m.covariance()(c, c) / static_cast<double>(n));
    EXPECT_NEAR(mean, m.mean()[static_cast<std::size_t>(c)], 5 * se) << c;
  }
  // Centroids are the in-cluster weighted means of the components.
  for (std::size_t k = 0; k < m.num_clusters(); ++k)
    for (ddm::index_t c = 0; c < m.dim(); ++c) {
      double centroid = 0;
      for (int j = m.cluster_begin()[k]; j < m.cluster_begin()[k + 1]; ++j)
        centroid += m.component_weights()[static_cast<std::size_t>(j)] / m.cluster_priors()[k] * m.component_means()(j, c);
      EXPECT_NEAR(m.centroids()(static_cast<ddm::index_t>(k), c), centroid, 1e-14);
    }
}

TEST(AnalyticDdm, FloatFieldsAgreeWithDouble) {
  const analytic_ddm m;
  const auto xd = states(m, 40, 0.3, 8);
  ddm::batch<float> xf(xd.rows(), xd.cols()), vf(xd.rows(), xd.cols());
  for (ddm::index_t r = 0; r < xd.rows(); ++r)
    for (ddm::index_t c = 0; c < xd.cols(); ++c) xf(r, c) = static_cast<float>(xd(r, c));
  ddm::batch<double> xr(xd.rows(), xd.cols()), vd(xd.rows(), xd.cols());
  for (ddm::index_t r = 0; r < xd.rows(); ++r)
    for (ddm::index_t c = 0; c < xd.cols(); ++c) xr(r, c) = xf(r, c);  // the same (rounded) inputs
  auto routed_f = ddm::make_routed_field<float>(m.experts(), m.router(2.0), ddm::top_2());
  auto routed_d = ddm::make_routed_field<double>(m.experts(), m.router(2.0), ddm::top_2());
  routed_f(xf.cview(), 0.3, vf.view());
  routed_d(xr.cview(), 0.3, vd.view());
  double worst = 0;
  for (ddm::index_t r = 0; r < xd.rows(); ++r)
    for (ddm::index_t c = 0; c < xd.cols(); ++c)
      worst = std::max(worst, std::abs(vf(r, c) - vd(r, c)) / (1 + std::abs(vd(r, c))));
  EXPECT_LT(worst, 1e-5);
}

// The field and the router run blocked host kernels (rows in blocks of 4, the sums over columns
// vectorized across components); every sum adds the same terms in the same order as the per-row
// functions the device shares, so both give the same values: here for a row count that is not a
// multiple of the block, D beyond one column block (512), float and double, and every time.
template <class T>
void check_blocked_against_rows(ddm::index_t rows, int dim, int clusters = 5, int per_cluster = 4) {
  ddm::synthetic::analytic_ddm_options o;
  o.dim = dim;
  o.clusters = clusters;
  o.components_per_cluster = per_cluster;
  const analytic_ddm m(o);
  const auto xd = states(m, rows, 0.4, 11);
  ddm::batch<T> x(xd.rows(), xd.cols()), v(xd.rows(), xd.cols()), logits(xd.rows(), clusters);
  for (ddm::index_t r = 0; r < xd.rows(); ++r)
    for (ddm::index_t c = 0; c < xd.cols(); ++c) x(r, c) = static_cast<T>(xd(r, c));
  std::vector<double> scratch(m.num_components());
  std::vector<T> row_v(static_cast<std::size_t>(dim)), row_l(static_cast<std::size_t>(clusters));
  double worst_v = 0, worst_l = 0;
  for (double t : times) {
    for (std::size_t k = 0; k <= m.num_clusters(); ++k) {
      // k < K: expert k; k == K: the whole mixture
      auto field = k < m.num_clusters() ? m.expert(k) : m.mixture_field();
      field(x.cview(), t, v.view());
      for (ddm::index_t r = 0; r < x.rows(); ++r) {
        ddm::synthetic::mixture_velocity_row(field.view(), x.cview().row(r), t, row_v.data(), scratch.data());
        for (int c = 0; c < dim; ++c)
          worst_v = std::max(worst_v, std::abs(static_cast<double>(v(r, c)) - static_cast<double>(row_v[c])) /
                                          (1 + std::abs(static_cast<double>(row_v[c]))));
      }
    }
    auto router = m.router(1.5);
    router(x.cview(), t, logits.view());
    for (ddm::index_t r = 0; r < x.rows(); ++r) {
      ddm::synthetic::cluster_logits_row(m.view(), m.cluster_begin().data(), clusters, x.cview().row(r), t, 1.0 / 1.5,
                                         row_l.data(), scratch.data());
      for (int k = 0; k < clusters; ++k)
        worst_l = std::max(worst_l, std::abs(static_cast<double>(logits(r, k)) - static_cast<double>(row_l[k])) /
                                        (1 + std::abs(static_cast<double>(row_l[k]))));
    }
  }
  std::printf("[ measured ] B = %td, D = %d, J = %d x %d, %s: largest relative difference %.3g (velocity), %.3g "
              "(logits)\n",
              x.rows(), dim, clusters, per_cluster, sizeof(T) == 4 ? "float" : "double", worst_v, worst_l);
  // The same sums in the same order; allow a few ulps for a compiler that contracts a multiply-add
  // differently in the vectorized loop.
  const double ulp = std::numeric_limits<T>::epsilon();
  EXPECT_LE(worst_v, 8 * ulp);
  EXPECT_LE(worst_l, 8 * ulp);
}

// The kernels group 1, 2 or 4 chunks of 8 components: J = 20 (4 chunks, one group), 15 (2) and
// 36 (two groups of 4, the second partly padding); experts of 3 to 5 components (1 chunk).
TEST(AnalyticDdm, BlockedHostKernelsMatchTheRowFunctions) {
  check_blocked_against_rows<double>(7, 8);
  check_blocked_against_rows<double>(5, 1100);
  check_blocked_against_rows<float>(7, 1100);
  check_blocked_against_rows<double>(6, 70, 3, 5);
  check_blocked_against_rows<float>(9, 130, 12, 3);
}

// Experts and policy chosen at run time route exactly like the typed ones.
TEST(AnalyticDdm, TypeErasedExpertsAndPolicyRouteLikeTypedOnes) {
  const analytic_ddm m;
  static_assert(ddm::routing_policy<ddm::any_routing_policy<double>, double>);
  ddm::any_ensemble<double> experts;
  for (std::size_t k = 0; k < m.num_clusters(); ++k) experts.push_back(m.expert(k));
  const ddm::any_routing_policy<double> policy = ddm::scheduled{0.5, ddm::full_ensemble{}, ddm::top_2()};
  auto erased = ddm::make_routed_field<double>(std::move(experts), m.router(3.0), policy);
  auto typed = ddm::make_routed_field<double>(m.experts(), m.router(3.0), ddm::scheduled{0.5, ddm::full_ensemble{}, ddm::top_2()});
  for (double t : {0.8, 0.2}) {
    const auto x = states(m, 30, t, 4);
    ddm::batch<double> a(x.rows(), x.cols()), b(x.rows(), x.cols());
    erased(x.cview(), t, a.view());
    typed(x.cview(), t, b.view());
    EXPECT_EQ(ddm::test::max_abs_diff(a.cview(), b.cview()), 0.0) << t;
  }
  EXPECT_EQ(erased.expert_evaluations(), typed.expert_evaluations());
}

TEST(AnalyticDdm, ExplicitSpecIsValidated) {
  using spec = ddm::synthetic::mixture_spec;
  const auto message = [](const spec& s) {
    return ddm::test::error_message<ddm::argument_error>([&] { const analytic_ddm m(s); });
  };
  EXPECT_NE(message(spec{1, {0.0, 1.0}, {0.5, 0.0}, {1, 1}, {0, 0}}).find("spec.scales[1]"), std::string::npos);
  EXPECT_NE(message(spec{1, {0.0, 1.0}, {0.5, 0.5}, {1, -1}, {0, 0}}).find("spec.weights[1]"), std::string::npos);
  EXPECT_NE(message(spec{1, {0.0, 1.0}, {0.5, 0.5}, {1, 1}, {0, 2}}).find("cluster 1 has no component"), std::string::npos);
  EXPECT_NE(message(spec{2, {0.0, 1.0}, {0.5, 0.5}, {1, 1}, {0, 1}}).find("J * D = 4"), std::string::npos);
  EXPECT_THROW(analytic_ddm(ddm::synthetic::analytic_ddm_options{.clusters = 0}), ddm::argument_error);
}

}  // namespace

// arithmetic::value_type on float batches computes the O(B J D) sums in float (like a float32
// framework): its difference from the exact (double) path on the same float inputs is measured and
// printed, and bounded by the error model of float sums. A squared distance summed in float is off
// by a few eps_f of itself (tiles of 64 columns, their partial sums added in double); a log term
// -d2 / (2 var) inherits that relative error, and at the states the flow visits d2 / var is about
// D for the components that matter, so log terms and responsibilities move by ~D eps_f, and the
// velocity by that times the spread of the means (a few units). Bound: 4 (16 + D) eps_f.
// Measured (gcc 12, x86-64): 3.9e-6, 1.6e-4 and 5.7e-4 at D = 8, 1100 and 16384.
TEST(AnalyticDdm, FloatArithmeticStaysWithinTheFloatErrorModel) {
  using ddm::synthetic::arithmetic;
  constexpr double eps_f = std::numeric_limits<float>::epsilon();
  for (int dim : {8, 1100, 16384}) {
    ddm::synthetic::analytic_ddm_options o;
    o.dim = dim;
    const analytic_ddm m(o);
    double worst_v = 0, worst_l = 0;
    for (double t : {0.05, 0.3, 0.7, 1.0}) {
      const auto xd = states(m, 9, t, 17);
      ddm::batch<float> xf(xd.rows(), xd.cols()), vf(xd.rows(), xd.cols()), lf(xd.rows(), 8);
      ddm::batch<double> xr(xd.rows(), xd.cols()), vd(xd.rows(), xd.cols()), ld(xd.rows(), 8);
      for (ddm::index_t r = 0; r < xd.rows(); ++r)
        for (ddm::index_t c = 0; c < xd.cols(); ++c) {
          xf(r, c) = static_cast<float>(xd(r, c));
          xr(r, c) = xf(r, c);
        }
      for (std::size_t k = 0; k <= m.num_clusters(); ++k) {
        auto ff = k < m.num_clusters() ? m.expert(k, ctx, arithmetic::value_type)
                                       : m.mixture_field(ctx, arithmetic::value_type);
        auto fd = k < m.num_clusters() ? m.expert(k) : m.mixture_field();
        ff(xf.cview(), t, vf.view());
        fd(xr.cview(), t, vd.view());
        for (ddm::index_t r = 0; r < xd.rows(); ++r)
          for (ddm::index_t c = 0; c < xd.cols(); ++c)
            worst_v = std::max(worst_v, std::abs(vf(r, c) - vd(r, c)) / (1 + std::abs(vd(r, c))));
      }
      auto rf = m.router(1.0, ctx, arithmetic::value_type);
      auto rd = m.router(1.0);
      rf(xf.cview(), t, lf.view());
      rd(xr.cview(), t, ld.view());
      // What routing uses: the posterior probabilities (softmax of the logits), compared absolutely.
      ddm::batch<double> pf(xd.rows(), 8), pd(xd.rows(), 8), lfd(xd.rows(), 8);
      for (ddm::index_t r = 0; r < xd.rows(); ++r)
        for (ddm::index_t k = 0; k < 8; ++k) lfd(r, k) = lf(r, k);
      ddm::softmax_rows<double>(ctx, lfd.cview(), 1.0, pf.view());
      ddm::softmax_rows<double>(ctx, ld.cview(), 1.0, pd.view());
      for (ddm::index_t r = 0; r < xd.rows(); ++r)
        for (ddm::index_t k = 0; k < 8; ++k) worst_l = std::max(worst_l, std::abs(pf(r, k) - pd(r, k)));
    }
    std::printf("[ measured ] float arithmetic, D = %d: largest relative difference from double %.3g (velocity), "
                "%.3g (posterior probabilities)\n",
                dim, worst_v, worst_l);
    const double model = 4.0 * (16.0 + dim) * eps_f;
    EXPECT_LT(worst_v, model) << "D = " << dim;
    EXPECT_LT(worst_l, model) << "D = " << dim;
  }
  // Double batches ignore the choice: the same bits as the exact path.
  const analytic_ddm m;
  const auto x = states(m, 11, 0.4, 19);
  ddm::batch<double> a(x.rows(), x.cols()), b(x.rows(), x.cols());
  m.expert(3, ctx, arithmetic::value_type)(x.cview(), 0.4, a.view());
  m.expert(3)(x.cview(), 0.4, b.view());
  for (ddm::index_t r = 0; r < x.rows(); ++r)
    for (ddm::index_t c = 0; c < x.cols(); ++c) EXPECT_EQ(a(r, c), b(r, c));
}
