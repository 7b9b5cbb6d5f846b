// The diagnostics on device views agree with the host's: per-row operations, probes, Jacobian-
// vector products (finite differences and exact), Hutchinson's estimator, the expert disagreement
// through Gram matrices (within the bound of the Gram route's rounding), the angular deviation and
// the alignment ranks. cuBLAS failures are ddm::device_error naming the call.
//
// GPU tests skip with the runtime's reason when no device is usable.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <ddm/cuda.hpp>

#include "support/cuda_support.hpp"

namespace {

namespace dd = ddm::diagnostics;
using ddm::batch;
using ddm::batch_view;
using ddm::cuda_space;
using ddm::index_t;

const ddm::host_context host{};

using ddm::test::scaled_noise;

template <class T>
class DeviceDiagnostics : public ::testing::Test {};
using ValueTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(DeviceDiagnostics, ValueTypes);

// ---------------------------------------------------------------------------------------------
// Per-row operations and probes

TYPED_TEST(DeviceDiagnostics, RowOperationsAgreeWithTheHost) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  const ddm::cuda_context ctx;
  for (index_t cols : {index_t{5}, index_t{64}, index_t{1001}}) {
    constexpr index_t rows = 70;
    const auto x = scaled_noise<T>(rows, cols, 1);
    const auto y = scaled_noise<T>(rows, cols, 2);
    std::vector<double> c(rows);
    for (index_t r = 0; r < rows; ++r) c[static_cast<std::size_t>(r)] = 0.3 * static_cast<double>(r) - 7.0;
    batch<T> axpy(rows, cols), scaled(rows, cols);
    ddm::axpy_rows(host, axpy.view(), x.cview(), std::span<const double>(c), y.cview());
    ddm::scale_rows(host, scaled.view(), std::span<const double>(c), x.cview());
    std::vector<double> dots(rows);
    ddm::row_dots(host, x.cview(), y.cview(), std::span<double>(dots));

    for (index_t pad : {index_t{0}, index_t{3}}) {
      const auto dx = ddm::test::on_device<T>(ctx, x, pad);
      const auto dy = ddm::test::on_device<T>(ctx, y, pad);
      auto out = ddm::test::on_device<T>(ctx, batch<T>(rows, cols), pad);
      ddm::axpy_rows(ctx, out.view, dx.view.as_const(), std::span<const double>(c), dy.view.as_const());
      const auto got_axpy = ddm::cuda::to_host(ctx, out.view);
      ddm::scale_rows(ctx, out.view, std::span<const double>(c), dx.view.as_const());
      const auto got_scaled = ddm::cuda::to_host(ctx, out.view);
      std::vector<double> got_dots(rows);
      ddm::row_dots(ctx, dx.view.as_const(), dy.view.as_const(), std::span<double>(got_dots));
      const double eps = std::numeric_limits<T>::epsilon();
      for (index_t r = 0; r < rows; ++r) {
        const double cr = static_cast<double>(static_cast<T>(c[static_cast<std::size_t>(r)]));
        double abs_sum = 0;
        for (index_t j = 0; j < cols; ++j) {
          const double xv = static_cast<double>(x(r, j));
          const double yv = static_cast<double>(y(r, j));
          abs_sum += std::abs(xv * yv);
          // x + c y: one rounding of the product on the host, none on the device (FMA).
          ASSERT_LE(std::abs(static_cast<double>(got_axpy(r, j)) - static_cast<double>(axpy(r, j))),
                    2 * eps * (std::abs(xv) + std::abs(cr * yv)))
              << "axpy_rows " << r << ", " << j;
          ASSERT_EQ(got_scaled(r, j), scaled(r, j)) << "scale_rows " << r << ", " << j;
        }
        // Double sums in another order (see the device algebra's row_dot).
        ASSERT_LE(std::abs(got_dots[static_cast<std::size_t>(r)] - dots[static_cast<std::size_t>(r)]),
                  2 * static_cast<double>(cols) * std::numeric_limits<double>::epsilon() * abs_sum)
            << "row_dots " << r;
      }
    }
  }
}

TYPED_TEST(DeviceDiagnostics, ProbesAreTheHostsProbes) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  const ddm::cuda_context ctx;
  batch<T> z(33, 257);
  dd::fill_probe(host, z.view(), dd::probe_kind::rademacher, 7, 3);
  auto dz = ddm::test::on_device<T>(ctx, batch<T>(33, 257), 5);
  dd::fill_probe(ctx, dz.view, dd::probe_kind::rademacher, 7, 3);
  const auto got = ddm::cuda::to_host(ctx, dz.view);
  for (index_t r = 0; r < 33; ++r)
    for (index_t c = 0; c < 257; ++c) ASSERT_EQ(got(r, c), z(r, c)) << r << ", " << c;
  dd::fill_probe(host, z.view(), dd::probe_kind::gaussian, 7, 3);
  dd::fill_probe(ctx, dz.view, dd::probe_kind::gaussian, 7, 3);
  const auto gauss = ddm::cuda::to_host(ctx, dz.view);
  // fill_normal's agreement (tests/cuda/philox_device_test.cu): a few ulps, 8 allowed.
  for (index_t r = 0; r < 33; ++r)
    for (index_t c = 0; c < 257; ++c)
      ASSERT_LE(std::abs(static_cast<double>(gauss(r, c)) - static_cast<double>(z(r, c))),
                8 * std::numeric_limits<T>::epsilon() * std::abs(static_cast<double>(z(r, c))));
}

// ---------------------------------------------------------------------------------------------
// Jacobian estimators on the analytic mixture field

// Device and host evaluate the field with the same double arithmetic to within the device's exp
// and log (a few ulps of double), then round to T. Central differences divide those differences
// by 2h: in double, the estimates agree to ~1e-9 relative; in float, where h ~ 5e-3 (1 + rms x)
// and the field values differ by up to one float ulp, to ~eps_float / h ~ 1e-4 of |J u|.
template <class T>
constexpr double fd_agreement = sizeof(T) == 4 ? 1e-3 : 1e-8;

TYPED_TEST(DeviceDiagnostics, JacobianVectorProductsAndHutchinsonAgreeWithTheHost) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  const ddm::cuda_context ctx;
  const ddm::synthetic::analytic_ddm model;
  const ddm::cuda::device_analytic_ddm dev(ctx, model);
  constexpr index_t rows = 64;
  const index_t d = model.dim();
  const auto x = scaled_noise<T>(rows, d, 21, 2.0);
  const auto u = scaled_noise<T>(rows, d, 22);
  const auto dx = ddm::cuda::to_device(ctx, x);
  const auto du = ddm::cuda::to_device(ctx, u);
  auto hm = model.mixture_field();
  auto dm = dev.mixture_field();
  const double t = 0.4;

  for (auto mode : {dd::derivative_mode::finite_difference, dd::derivative_mode::exact}) {
    batch<T> ju(rows, d);
    batch<T, cuda_space> dju(ctx, rows, d);
    dd::jacobian_products<T> hp(host, rows, d, {mode});
    dd::jacobian_products<T, cuda_space> dp(ctx, rows, d, {mode});
    hp.jvp(hm, x.cview(), t, u.cview(), ju.view());
    dp.jvp(dm, dx.cview(), t, du.cview(), dju.view());
    const auto got = ddm::cuda::to_host(ctx, dju);
    double worst = 0;
    for (index_t r = 0; r < rows; ++r) {
      double scale = 0, diff = 0;
      for (index_t c = 0; c < d; ++c) {
        scale = std::max(scale, std::abs(static_cast<double>(ju(r, c))));
        diff = std::max(diff, std::abs(static_cast<double>(got(r, c)) - static_cast<double>(ju(r, c))));
      }
      worst = std::max(worst, diff / std::max(scale, 1e-3));
    }
    const bool fd = mode == dd::derivative_mode::finite_difference;
    std::printf("[ measured ] jvp (%s, %s) device vs host: %.2e of |J u|, %zu field evaluations\n",
                sizeof(T) == 4 ? "float" : "double", fd ? "central differences" : "exact", worst,
                dp.field_evaluations());
    EXPECT_LT(worst, fd ? fd_agreement<T> : 1e-5);
    EXPECT_EQ(dp.field_evaluations(), hp.field_evaluations());
  }

  const dd::hutchinson_options options{.probes = 6, .kind = dd::probe_kind::rademacher, .seed = 5,
                                       .derivative = {dd::derivative_mode::finite_difference}};
  const auto h = dd::estimate_frobenius(host, hm, x.cview(), t, options);
  const auto g = dd::estimate_frobenius(ctx, dm, dx.cview(), t, options);
  double worst = 0;
  for (index_t r = 0; r < rows; ++r) {
    const auto ru = static_cast<std::size_t>(r);
    worst = std::max(worst, std::abs(g.mean[ru] - h.mean[ru]) / h.mean[ru]);
  }
  std::printf("[ measured ] Hutchinson (%s, 6 probes, central differences) device vs host: %.2e relative\n",
              sizeof(T) == 4 ? "float" : "double", worst);
  EXPECT_LT(worst, 2 * fd_agreement<T>);
  EXPECT_EQ(g.field_evaluations, h.field_evaluations);
}

TEST(DeviceDiagnosticsRouted, LeffOfTheRoutedFieldRunsOnTheDeviceLikeOnTheHost) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx;
  const ddm::synthetic::analytic_ddm model;
  const ddm::cuda::device_analytic_ddm dev(ctx, model);
  auto h_field = ddm::make_routed_field<double>(model.experts(), model.router(1.0), ddm::full_ensemble{});
  auto d_field = ddm::cuda::make_analytic_routed_field<double>(dev, 1.0, ddm::full_ensemble{});
  auto h_sens = dd::make_trajectory_sensitivity<double>(h_field, {.every = 2});
  auto d_sens = dd::make_trajectory_sensitivity<double, cuda_space>(ctx, d_field, {.every = 2});
  batch<double> x(128, model.dim());
  ddm::fill_normal(host, x.view(), 3);
  batch<double, cuda_space> dx(ctx, 128, model.dim());
  ddm::fill_normal(ctx, dx.view(), 3);
  ddm::sample(h_field, x.view(), ddm::schedules::uniform(8), ddm::euler{}, h_sens);
  ddm::sample(ctx, {}, d_field, dx.view(), ddm::schedules::uniform(8), ddm::euler{}, d_sens);
  ASSERT_EQ(d_sens.steps().size(), h_sens.steps().size());
  double worst = 0;
  for (std::size_t j = 0; j < h_sens.steps().size(); ++j)
    worst = std::max(worst, std::abs(d_sens.steps()[j].median - h_sens.steps()[j].median) / h_sens.steps()[j].median);
  std::printf("[ measured ] L_eff medians of the full-ensemble routed field (double), device vs host: %.2e relative; "
              "cumulative IQR %.6f vs %.6f\n",
              worst, d_sens.cumulative_iqr(), h_sens.cumulative_iqr());
  EXPECT_LT(worst, 1e-6);
}

// The routing observer on device views (device instruments, the device field's kept decisions)
// follows a scheduled policy's run as the host's observer does: the same decisions (selected experts per row at every
// step), the same alignment ranks, and disagreement and angles within double rounding: the Gram
// route's relative error, D eps (|v_a| + |v_b|)^2 / d_ab^2, stays below 1e-10 unless two experts
// agree to 1% of their norms, and the trajectories themselves agree to ~1e-14.
TEST(DeviceDiagnosticsRouted, RoutingObserverOnTheDeviceAgreesWithTheHost) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx;
  const ddm::synthetic::analytic_ddm model;
  const ddm::cuda::device_analytic_ddm dev(ctx, model);
  const ddm::scheduled policy{0.5, ddm::full_ensemble{}, ddm::top_2()};
  auto h_field = ddm::make_routed_field<double>(model.experts(), model.router(2.0), policy);
  auto d_field = ddm::cuda::make_analytic_routed_field<double>(dev, 2.0, policy);
  const auto schedule = ddm::schedules::uniform(8);
  const auto d_centroids = ddm::cuda::to_device(ctx, model.centroids());
  auto h_obs = dd::make_routing_observer<double>(h_field, schedule, model.centroids(), {.alignment_every_step = true});
  auto d_obs = dd::make_routing_observer<double, cuda_space>(ctx, d_field, schedule, d_centroids.cview(),
                                                             {.alignment_every_step = true});
  batch<double> x(96, model.dim());
  ddm::fill_normal(host, x.view(), 5);
  batch<double, cuda_space> dx(ctx, 96, model.dim());
  ddm::fill_normal(ctx, dx.view(), 5);
  ddm::sample(h_field, x.view(), schedule, ddm::heun{}, h_obs);
  ddm::sample(ctx, {}, d_field, dx.view(), schedule, ddm::heun{}, d_obs);

  ASSERT_EQ(d_obs.steps().size(), h_obs.steps().size());
  double worst_step = 0;
  for (std::size_t j = 0; j < h_obs.steps().size(); ++j) {
    const auto& h = h_obs.steps()[j];
    const auto& d = d_obs.steps()[j];
    EXPECT_EQ(d.mean_selected, h.mean_selected) << "step " << j;
    EXPECT_EQ(d.mean_rank.has_value(), h.mean_rank.has_value()) << "step " << j;
    if (h.mean_rank && d.mean_rank) EXPECT_EQ(*d.mean_rank, *h.mean_rank) << "step " << j;
    EXPECT_EQ(d.angular_gap.has_value(), h.angular_gap.has_value()) << "step " << j;
    worst_step = std::max(worst_step, std::abs(d.disagreement_mean - h.disagreement_mean) / h.disagreement_mean);
  }
  double worst_row = 0;
  ASSERT_EQ(d_obs.integrated_disagreement().size(), h_obs.integrated_disagreement().size());
  for (std::size_t r = 0; r < h_obs.integrated_disagreement().size(); ++r) {
    const double h = h_obs.integrated_disagreement()[r];
    worst_row = std::max(worst_row, std::abs(d_obs.integrated_disagreement()[r] - h) / h);
  }
  ASSERT_TRUE(h_obs.angular().selected_mean() && d_obs.angular().selected_mean());
  ASSERT_TRUE(h_obs.angular().unselected_mean() && d_obs.angular().unselected_mean());
  const double angle_diff = std::max(std::abs(*d_obs.angular().selected_mean() - *h_obs.angular().selected_mean()),
                                     std::abs(*d_obs.angular().unselected_mean() - *h_obs.angular().unselected_mean()));
  std::printf("[ measured ] routing observer (double), device vs host: disagreement per step %.2e, integrated per row "
              "%.2e relative; pooled angles %.2e rad; mean rank %.6f vs %.6f\n",
              worst_step, worst_row, angle_diff, d_obs.alignment_mean_rank().value_or(-1),
              h_obs.alignment_mean_rank().value_or(-1));
  EXPECT_LT(worst_step, 1e-8);
  EXPECT_LT(worst_row, 1e-8);
  EXPECT_LT(angle_diff, 1e-9);
  EXPECT_EQ(d_obs.alignment_mean_rank(), h_obs.alignment_mean_rank());
  EXPECT_EQ(d_obs.expert_evaluations(), h_obs.expert_evaluations());
}

// ---------------------------------------------------------------------------------------------
// Routing instruments

// The Gram route's error: every entry of G_r = V_r V_r^T is a length-D dot product in T, within
// gamma = D eps_T of sum_j |v_aj v_bj| <= |v_a| |v_b| whatever the summation order, so
// |d_ab^2 (device) - d_ab^2| <= gamma (|v_a| + |v_b|)^2 =: e, and |d_ab (device) - d_ab| <=
// min(e / d_ab, sqrt(e)). The row's mean carries the mean of those bounds.
template <class T>
std::vector<double> disagreement_bounds(std::span<const batch<T>> v) {
  const auto k = v.size();
  const index_t rows = v[0].rows();
  const index_t d = v[0].cols();
  const double gamma = static_cast<double>(d) * std::numeric_limits<T>::epsilon();
  std::vector<double> bound(static_cast<std::size_t>(rows));
  for (index_t r = 0; r < rows; ++r) {
    double sum = 0;
    for (std::size_t a = 0; a < k; ++a)
      for (std::size_t b = a + 1; b < k; ++b) {
        double na = 0, nb = 0, dab = 0;
        for (index_t j = 0; j < d; ++j) {
          const double va = static_cast<double>(v[a](r, j));
          const double vb = static_cast<double>(v[b](r, j));
          na += va * va;
          nb += vb * vb;
          dab += (va - vb) * (va - vb);
        }
        const double e = gamma * (std::sqrt(na) + std::sqrt(nb)) * (std::sqrt(na) + std::sqrt(nb));
        dab = std::sqrt(dab);
        sum += dab > 0 ? std::min(e / dab, std::sqrt(e)) : std::sqrt(e);
      }
    bound[static_cast<std::size_t>(r)] = 2.0 * sum / static_cast<double>(k * (k - 1)) + 1e-12;
  }
  return bound;
}

TYPED_TEST(DeviceDiagnostics, DisagreementThroughGramMatricesAgreesWithTheHost) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  const ddm::cuda_context ctx;
  constexpr index_t k = 8;
  constexpr index_t rows = 200;
  for (index_t d : {index_t{8}, index_t{300}}) {
    std::vector<batch<T>> v;
    for (index_t e = 0; e < k; ++e) v.push_back(scaled_noise<T>(rows, d, 50 + static_cast<std::uint64_t>(e)));
    // Experts 6 and 7 nearly agree (d_67 small): the rounding of the Gram route shows, and the
    // clamp of negative squared distances is exercised.
    for (index_t r = 0; r < rows; ++r)
      for (index_t j = 0; j < d; ++j) v[7](r, j) = static_cast<T>(static_cast<double>(v[6](r, j)) * (1 + 1e-6));
    std::vector<batch_view<const T>> hv;
    for (const auto& b : v) hv.push_back(b.cview());
    const auto expect = dd::expert_disagreement(host, std::span<const batch_view<const T>>(hv));
    const auto bound = disagreement_bounds<T>(std::span<const batch<T>>(v));

    // Three device layouts: separate buffers (copied into a stack), a stacked (K B, D) batch, and
    // a (B, K D) batch (row r holds its K experts side by side).
    std::vector<batch<T, cuda_space>> separate;
    for (const auto& b : v) separate.push_back(ddm::cuda::to_device(ctx, b));
    std::vector<batch_view<const T, cuda_space>> views;
    for (const auto& b : separate) views.push_back(b.cview());
    batch<T> stacked_h(k * rows, d), interleaved_h(rows, k * d);
    for (index_t e = 0; e < k; ++e)
      for (index_t r = 0; r < rows; ++r)
        for (index_t j = 0; j < d; ++j) {
          stacked_h(e * rows + r, j) = v[static_cast<std::size_t>(e)](r, j);
          interleaved_h(r, e * d + j) = v[static_cast<std::size_t>(e)](r, j);
        }
    const auto stacked = ddm::cuda::to_device(ctx, stacked_h);
    const auto interleaved = ddm::cuda::to_device(ctx, interleaved_h);
    std::vector<batch_view<const T, cuda_space>> interleaved_views;
    for (index_t e = 0; e < k; ++e)
      interleaved_views.emplace_back(interleaved.data() + e * d, rows, d, k * d);

    const std::vector<std::vector<double>> results{
        dd::expert_disagreement(ctx, std::span<const batch_view<const T, cuda_space>>(views)),
        dd::expert_disagreement(ctx, stacked.cview(), k),
        dd::expert_disagreement(ctx, std::span<const batch_view<const T, cuda_space>>(interleaved_views))};
    double worst = 0;
    for (const auto& got : results)
      for (index_t r = 0; r < rows; ++r) {
        const auto ru = static_cast<std::size_t>(r);
        ASSERT_LE(std::abs(got[ru] - expect[ru]), bound[ru]) << "D = " << d << ", row " << r;
        worst = std::max(worst, std::abs(got[ru] - expect[ru]) / bound[ru]);
      }
    std::printf("[ measured ] disagreement via Gram (%s, K = %ld, D = %ld): worst |device - host| = %.3f of the bound\n",
                sizeof(T) == 4 ? "float" : "double", static_cast<long>(k), static_cast<long>(d), worst);
  }
}

TYPED_TEST(DeviceDiagnostics, AngularDeviationAgreesWithTheHost) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  const ddm::cuda_context ctx;
  constexpr index_t k = 8;
  constexpr index_t rows = 150;
  constexpr index_t d = 77;
  const auto stacked = scaled_noise<T>(k * rows, d, 61);
  auto blended = scaled_noise<T>(rows, d, 62);
  batch<T> with_zero(k * rows, d);
  ddm::copy(host, with_zero.view(), stacked);
  for (index_t j = 0; j < d; ++j) {
    with_zero(2 * rows + 5, j) = T(0);  // expert 2, row 5: no angle
    blended(9, j) = T(0);               // row 9: no blended direction, no angle at all
  }
  // Row 11's blended velocity is expert 3's: an angle of exactly 0 (accurate through Kahan's form).
  for (index_t j = 0; j < d; ++j) blended(11, j) = with_zero(3 * rows + 11, j);
  batch<std::uint8_t> sel(rows, k);
  for (index_t r = 0; r < rows; ++r)
    for (index_t e = 0; e < k; ++e) sel(r, e) = (r + e) % 3 == 0 ? 1 : 0;
  for (index_t e = 0; e < k; ++e) sel(20, e) = 1;  // every expert selected: gap undefined
  const auto expect = dd::angular_deviation(host, with_zero.cview(), k, blended.cview(), sel.cview());

  const auto d_stacked = ddm::cuda::to_device(ctx, with_zero);
  const auto d_blended = ddm::test::on_device<T>(ctx, blended, 2);
  const auto d_sel = ddm::cuda::to_device(ctx, sel);
  const auto got = dd::angular_deviation(ctx, d_stacked.cview(), k, d_blended.view.as_const(), d_sel.cview());
  EXPECT_EQ(got.undefined_angles, expect.undefined_angles);
  EXPECT_EQ(got.selected_count, expect.selected_count);
  EXPECT_EQ(got.unselected_count, expect.unselected_count);
  EXPECT_EQ(got.defined, expect.defined);
  double worst = 0;
  auto compare = [&](const std::vector<double>& a, const std::vector<double>& b, const char* what) {
    for (std::size_t r = 0; r < a.size(); ++r) {
      if (std::isnan(b[r])) {
        EXPECT_TRUE(std::isnan(a[r])) << what << " row " << r;
        continue;
      }
      const double diff = std::abs(a[r] - b[r]);
      worst = std::max(worst, diff);
      EXPECT_LE(diff, 1e-12 * (1 + std::abs(b[r]))) << what << " row " << r;
    }
  };
  compare(got.selected_angle, expect.selected_angle, "selected_angle");
  compare(got.unselected_angle, expect.unselected_angle, "unselected_angle");
  compare(got.relative_gap, expect.relative_gap, "relative_gap");
  std::printf("[ measured ] angular deviation (%s) device vs host: max difference %.2e rad; %zu undefined angles\n",
              sizeof(T) == 4 ? "float" : "double", worst, got.undefined_angles);
}

TYPED_TEST(DeviceDiagnostics, AlignmentRanksAgreeWithTheHost) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  const ddm::cuda_context ctx;
  const ddm::synthetic::analytic_ddm model;
  constexpr index_t rows = 300;
  const index_t d = model.dim();
  const index_t k = static_cast<index_t>(model.num_clusters());
  batch<T> centroids(k, d);
  for (index_t e = 0; e < k; ++e)
    for (index_t j = 0; j < d; ++j) centroids(e, j) = static_cast<T>(model.centroids()(e, j));
  const auto x = scaled_noise<T>(rows, d, 71, 3.0);
  const auto v = scaled_noise<T>(rows, d, 72);
  batch<std::uint8_t> sel(rows, k);
  for (index_t r = 0; r < rows; ++r)
    for (index_t e = 0; e < k; ++e) sel(r, e) = (r * 7 + e * 3) % 5 == 0 ? 1 : 0;
  for (index_t e = 0; e < k; ++e) sel(0, e) = 0;  // a row without selection
  const auto expect = dd::alignment_ranks(host, x.cview(), 0.3, v.cview(), sel.cview(), centroids.cview());

  const auto dx = ddm::cuda::to_device(ctx, x);
  const auto dv = ddm::cuda::to_device(ctx, v);
  const auto dsel = ddm::cuda::to_device(ctx, sel);
  const auto dcent = ddm::cuda::to_device(ctx, centroids);
  const auto got = dd::alignment_ranks(ctx, dx.cview(), 0.3, dv.cview(), dsel.cview(), dcent.cview());
  EXPECT_EQ(got.rank_histogram, expect.rank_histogram);
  EXPECT_EQ(got.selected_count, expect.selected_count);
  EXPECT_EQ(got.pairs, expect.pairs);
  EXPECT_EQ(got.rows_without_selection, expect.rows_without_selection);
  for (index_t r = 0; r < rows; ++r) {
    const auto ru = static_cast<std::size_t>(r);
    if (std::isnan(expect.mean_rank[ru])) {
      EXPECT_TRUE(std::isnan(got.mean_rank[ru])) << r;
    } else {
      EXPECT_EQ(got.mean_rank[ru], expect.mean_rank[ru]) << r;
    }
  }
  std::printf("[ measured ] alignment ranks (%s) device vs host: identical; pooled mean rank %.4f over %zu pairs\n",
              sizeof(T) == 4 ? "float" : "double", got.pooled_mean_rank().value_or(0.0), got.pairs);

  // A selection value other than 0 or 1: the host's message.
  sel(4, 2) = 2;
  const auto bad = ddm::cuda::to_device(ctx, sel);
  std::string what;
  try {
    (void)dd::selected_ranks(ctx, dx.cview(), bad.cview(), dcent.cview());
  } catch (const ddm::argument_error& e) {
    what = e.what();
  }
  EXPECT_NE(what.find("argument 'selected' has value 2 at (4, 2), expected 0 or 1"), std::string::npos) << what;
}

// NaN or infinite inputs are the host's errors (the same message, naming view, row and column),
// not an undefined angle or a rank of 1.
TYPED_TEST(DeviceDiagnostics, NonFiniteInputsAreTheHostsErrors) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  const ddm::cuda_context ctx;
  constexpr index_t k = 3;
  constexpr index_t rows = 40;
  constexpr index_t d = 9;
  auto stacked = scaled_noise<T>(k * rows, d, 81);
  const auto blended = scaled_noise<T>(rows, d, 82);
  batch<std::uint8_t> sel(rows, k);
  for (index_t r = 0; r < rows; ++r) sel(r, r % k) = 1;
  stacked(1 * rows + 7, 4) = std::numeric_limits<T>::quiet_NaN();  // expert 1, row 7, column 4
  auto message = [](auto&& call) {
    try {
      call();
    } catch (const ddm::non_finite_error& e) {
      return std::string(e.what());
    }
    return std::string("no non_finite_error");
  };
  const std::string host_angles = message([&] { (void)dd::angular_deviation(host, stacked.cview(), k, blended.cview(), sel.cview()); });
  const auto d_stacked = ddm::cuda::to_device(ctx, stacked);
  const auto d_blended = ddm::cuda::to_device(ctx, blended);
  const auto d_sel = ddm::cuda::to_device(ctx, sel);
  const std::string device_angles = message(
      [&] { (void)dd::angular_deviation(ctx, d_stacked.cview(), k, d_blended.cview(), d_sel.cview()); });
  EXPECT_NE(host_angles.find("row 7, column 4"), std::string::npos) << host_angles;
  EXPECT_EQ(device_angles, host_angles);

  batch<T> embedded(rows, d), centroids(k, d);
  ddm::copy(host, embedded.view(), blended.cview());
  for (index_t e = 0; e < k; ++e)
    for (index_t j = 0; j < d; ++j) centroids(e, j) = static_cast<T>(e - j);
  embedded(5, 2) = std::numeric_limits<T>::infinity();
  const std::string host_ranks = message([&] { (void)dd::selected_ranks(host, embedded.cview(), sel.cview(), centroids.cview()); });
  const auto d_embedded = ddm::cuda::to_device(ctx, embedded);
  const auto d_centroids = ddm::cuda::to_device(ctx, centroids);
  const std::string device_ranks =
      message([&] { (void)dd::selected_ranks(ctx, d_embedded.cview(), d_sel.cview(), d_centroids.cview()); });
  EXPECT_NE(host_ranks.find("row 5, column 2"), std::string::npos) << host_ranks;
  EXPECT_EQ(device_ranks, host_ranks);
}

// ---------------------------------------------------------------------------------------------
// Errors (run with or without a GPU)

TEST(DeviceBlasErrors, FailedStatusesAreDeviceErrorsNamingTheCall) {
  try {
    ddm::cuda::check_blas(CUBLAS_STATUS_INVALID_VALUE, "cublasSgemmStridedBatched_64 (a test)");
    FAIL() << "no exception";
  } catch (const ddm::device_error& e) {
    const std::string what = e.what();
    std::printf("[ measured ] %s\n", what.c_str());
    EXPECT_NE(what.find("ddm::cuda: cublasSgemmStridedBatched_64 (a test) failed: "), std::string::npos) << what;
    EXPECT_NE(what.find("CUBLAS_STATUS_INVALID_VALUE"), std::string::npos) << what;
  }
  EXPECT_NO_THROW(ddm::cuda::check_blas(CUBLAS_STATUS_SUCCESS, "cublasCreate"));
}

}  // namespace
