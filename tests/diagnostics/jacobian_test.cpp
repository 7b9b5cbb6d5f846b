// Jacobian estimators against known Jacobians: linear fields v = A x (J = A), and a nonlinear
// field with an exact jvp. Eigen is the independent reference for eigen- and singular values.

#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <cstdio>
#include <vector>

#include <Eigen/Dense>
#include <ddm/ddm.hpp>

#include "support/linear_field.hpp"

namespace {

namespace dd = ddm::diagnostics;
const ddm::host_context ctx{};

// v_i = (1 + t) sin(x_i + 0.3 x_{i+1}) - 0.5 x_i (indices mod D), with its exact jvp.
struct coupled_sine {
  template <class T>
  void operator()(ddm::batch_view<const T> x, double t, ddm::batch_view<T> v) const {
    const auto d = x.cols();
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t i = 0; i < d; ++i) {
        const double a = static_cast<double>(x(r, i)) + 0.3 * static_cast<double>(x(r, (i + 1) % d));
        v(r, i) = static_cast<T>((1 + t) * std::sin(a) - 0.5 * static_cast<double>(x(r, i)));
      }
  }
  template <class T>
  void jvp(ddm::batch_view<const T> x, double t, ddm::batch_view<const T> u, ddm::batch_view<T> out) const {
    const auto d = x.cols();
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t i = 0; i < d; ++i) {
        const double a = static_cast<double>(x(r, i)) + 0.3 * static_cast<double>(x(r, (i + 1) % d));
        const double du = static_cast<double>(u(r, i)) + 0.3 * static_cast<double>(u(r, (i + 1) % d));
        out(r, i) = static_cast<T>((1 + t) * std::cos(a) * du - 0.5 * static_cast<double>(u(r, i)));
      }
  }
};

template <class T>
ddm::batch<T> normal_batch(ddm::index_t rows, ddm::index_t cols, std::uint64_t seed) {
  ddm::batch<T> x(rows, cols);
  ddm::fill_normal(ctx, x.view(), seed);
  return x;
}

template <class T>
double max_rel_diff(ddm::batch_view<const T> a, ddm::batch_view<const T> b) {
  double worst = 0, scale = 0;
  for (ddm::index_t r = 0; r < a.rows(); ++r)
    for (ddm::index_t c = 0; c < a.cols(); ++c) {
      worst = std::max(worst, std::abs(static_cast<double>(a(r, c)) - static_cast<double>(b(r, c))));
      scale = std::max(scale, std::abs(static_cast<double>(b(r, c))));
    }
  return worst / scale;
}

Eigen::MatrixXd to_eigen(const ddm::test::linear_field& f) {
  Eigen::MatrixXd m(f.d, f.d);
  for (ddm::index_t i = 0; i < f.d; ++i)
    for (ddm::index_t j = 0; j < f.d; ++j) m(i, j) = f(i, j);
  return m;
}

ddm::test::linear_field from_eigen(const Eigen::MatrixXd& m) {
  ddm::test::linear_field f{m.rows(), std::vector<double>(static_cast<std::size_t>(m.size()))};
  for (ddm::index_t i = 0; i < f.d; ++i)
    for (ddm::index_t j = 0; j < f.d; ++j) f.a[static_cast<std::size_t>(i * f.d + j)] = m(i, j);
  return f;
}

// ---------------------------------------------------------------------------------------------
// Jacobian-vector products

TEST(JacobianProducts, CentralDifferencesAgreeWithTheExactJvpAndConvergeAtSecondOrder) {
  const coupled_sine field;
  const auto x = normal_batch<double>(5, 9, 1);
  const auto u = normal_batch<double>(5, 9, 2);
  ddm::batch<double> exact(5, 9), fd(5, 9);
  dd::jvp(ctx, field, x.cview(), 0.4, u.cview(), exact.view());
  std::vector<double> errors;
  for (double eta : {1e-2, 5e-3, 0.0}) {
    dd::jvp(ctx, field, x.cview(), 0.4, u.cview(), fd.view(),
            {.mode = dd::derivative_mode::finite_difference, .relative_step = eta});
    errors.push_back(max_rel_diff<double>(fd.cview(), exact.cview()));
  }
  const double order = std::log2(errors[0] / errors[1]);
  std::printf("[ measured ] FD jvp relative error: eta 1e-2: %.3e, 5e-3: %.3e (order %.3f), default eta %.2e: %.3e\n",
              errors[0], errors[1], order, dd::default_relative_step<double>(), errors[2]);
  EXPECT_NEAR(order, 2.0, 0.1);
  EXPECT_LT(errors[2], 1e-9);
}

TEST(JacobianProducts, FloatStatesUseALargerDefaultStep) {
  const coupled_sine field;
  const auto x = normal_batch<float>(4, 6, 3);
  const auto u = normal_batch<float>(4, 6, 4);
  ddm::batch<float> exact(4, 6), fd(4, 6);
  dd::jvp(ctx, field, x.cview(), 0.7, u.cview(), exact.view());
  dd::jvp(ctx, field, x.cview(), 0.7, u.cview(), fd.view(), {.mode = dd::derivative_mode::finite_difference});
  const double err = max_rel_diff<float>(fd.cview(), exact.cview());
  std::printf("[ measured ] float FD jvp relative error at default eta %.2e: %.3e\n", dd::default_relative_step<float>(), err);
  // Truncation ~ eta^2 and rounding ~ epsilon / eta are both about 2.4e-5 at eta = cbrt(epsilon).
  EXPECT_LT(err, 1e-3);
}

TEST(JacobianProducts, ExactJvpIsUsedWhenOfferedAndCounted) {
  const auto f = ddm::test::linear_field::random(4, 5);
  const ddm::test::values_only<ddm::test::linear_field> plain{&f};
  const auto x = normal_batch<double>(3, 4, 6);
  const auto u = normal_batch<double>(3, 4, 7);
  ddm::batch<double> out(3, 4);
  dd::jacobian_products<double> products(ctx, 3, 4);
  EXPECT_TRUE(products.uses_exact_jvp<const ddm::test::linear_field>());
  EXPECT_FALSE(products.uses_exact_jvp<const ddm::test::values_only<ddm::test::linear_field>>());
  products.jvp(f, x.cview(), 0.5, u.cview(), out.view());
  products.jvp(plain, x.cview(), 0.5, u.cview(), out.view());
  EXPECT_EQ(products.exact_products(), 1U);
  EXPECT_EQ(products.field_evaluations(), 2U);
}

TEST(JacobianProducts, ZeroDirectionGivesZeroAndBadArgumentsAreErrors) {
  const coupled_sine field;
  const auto x = normal_batch<double>(2, 3, 8);
  ddm::batch<double> u(2, 3), out(2, 3);
  u(1, 2) = 1.0;  // row 0 is the zero direction
  dd::jvp(ctx, field, x.cview(), 0.5, u.cview(), out.view(), {.mode = dd::derivative_mode::finite_difference});
  for (ddm::index_t c = 0; c < 3; ++c) EXPECT_EQ(out(0, c), 0.0);
  EXPECT_NE(out(1, 2), 0.0);

  const auto f = ddm::test::linear_field::random(3, 1);
  const ddm::test::values_only<ddm::test::linear_field> plain{&f};
  try {
    dd::jvp(ctx, plain, x.cview(), 0.5, u.cview(), out.view(), {.mode = dd::derivative_mode::exact});
    FAIL() << "no error";
  } catch (const ddm::argument_error& e) {
    EXPECT_NE(std::string(e.what()).find("no member jvp"), std::string::npos) << e.what();
  }
  ddm::batch<double> wrong(2, 4);
  EXPECT_THROW(dd::jvp(ctx, field, x.cview(), 0.5, u.cview(), wrong.view()), ddm::shape_error);
  EXPECT_THROW(dd::jvp(ctx, field, x.cview(), 0.5, out.cview(), out.view()), ddm::argument_error);  // out aliases u
  EXPECT_THROW(dd::jvp(ctx, field, x.cview(), 0.5, u.cview(), out.view(), {.relative_step = -1.0}), ddm::argument_error);
}

// ---------------------------------------------------------------------------------------------
// Dense Jacobian

TEST(DenseJacobian, EqualsAExactlyWithTheExactJvpAndToRoundingByFiniteDifferences) {
  const auto f = ddm::test::linear_field::random(5, 11);
  const ddm::test::values_only<ddm::test::linear_field> plain{&f};
  const auto x = normal_batch<double>(3, 5, 12);
  const auto exact = dd::dense_jacobian(ctx, f, x.cview(), 0.3);
  const auto fd = dd::dense_jacobian(ctx, plain, x.cview(), 0.3);
  EXPECT_EQ(exact.exact_products, 5U);
  EXPECT_EQ(fd.field_evaluations, 10U);
  double worst_fd = 0;
  for (ddm::index_t r = 0; r < 3; ++r)
    for (ddm::index_t i = 0; i < 5; ++i)
      for (ddm::index_t j = 0; j < 5; ++j) {
        EXPECT_EQ(exact.entry(r, i, j), f(i, j)) << r << " " << i << " " << j;
        worst_fd = std::max(worst_fd, std::abs(fd.entry(r, i, j) - f(i, j)));
      }
  std::printf("[ measured ] dense FD Jacobian of a linear field: max |error| = %.3e\n", worst_fd);
  EXPECT_LT(worst_fd, 1e-9);
}

TEST(DenseJacobian, MatchesTheNonlinearFieldsJacobianColumnByColumn) {
  const coupled_sine field;
  const auto x = normal_batch<double>(2, 4, 13);
  const auto j = dd::dense_jacobian(ctx, field, x.cview(), 0.2);
  // d v_i / d x_j = (1 + t) cos(a_i) (delta_ij + 0.3 delta_{j, i+1}) - 0.5 delta_ij.
  for (ddm::index_t r = 0; r < 2; ++r)
    for (ddm::index_t i = 0; i < 4; ++i)
      for (ddm::index_t c = 0; c < 4; ++c) {
        const double a = x(r, i) + 0.3 * x(r, (i + 1) % 4);
        const double expect = 1.2 * std::cos(a) * ((c == i ? 1.0 : 0.0) + (c == (i + 1) % 4 ? 0.3 : 0.0)) -
                              (c == i ? 0.5 : 0.0);
        EXPECT_NEAR(j.entry(r, i, c), expect, 1e-14);
      }
  EXPECT_THROW((void)dd::dense_jacobian(ctx, field, x.cview(), 0.2, {.max_cols = 3}), ddm::argument_error);
}

// ---------------------------------------------------------------------------------------------
// Hutchinson

TEST(Hutchinson, MeanIsWithinFourStandardErrorsOfTheFrobeniusNormSquaredOverD) {
  const ddm::index_t d = 6;
  const auto f = ddm::test::linear_field::random(d, 21);
  const double truth = f.frobenius_sq() / static_cast<double>(d);
  const auto x = normal_batch<double>(4, d, 22);
  for (auto kind : {dd::probe_kind::rademacher, dd::probe_kind::gaussian}) {
    const auto est = dd::estimate_frobenius(ctx, f, x.cview(), 0.5, {.probes = 2000, .kind = kind, .seed = 5});
    ASSERT_EQ(est.mean.size(), 4U);
    EXPECT_EQ(est.exact_products, 2000U);
    for (std::size_t r = 0; r < 4; ++r) {
      const double z = (est.mean[r] - truth) / est.standard_error[r];
      std::printf("[ measured ] %s row %zu: estimate %.5f +- %.5f, truth %.5f, z = %+.2f\n", dd::to_string(kind), r,
                  est.mean[r], est.standard_error[r], truth, z);
      EXPECT_LT(std::abs(z), 4.0);
    }
  }
}

TEST(Hutchinson, StandardErrorMatchesTheProbeVarianceTheory) {
  // One probe's ||A z||^2 / D has variance 2 sum_{i != j} M_ij^2 / D^2 (Rademacher) and
  // 2 ||M||_F^2 / D^2 (Gaussian), M = A^T A.
  const ddm::index_t d = 5;
  const auto f = ddm::test::linear_field::random(d, 31);
  const Eigen::MatrixXd a = to_eigen(f);
  const Eigen::MatrixXd m = a.transpose() * a;
  const double off = m.squaredNorm() - m.diagonal().squaredNorm();
  const std::size_t p = 4000;
  const auto x = normal_batch<double>(1, d, 32);
  for (auto kind : {dd::probe_kind::rademacher, dd::probe_kind::gaussian}) {
    const double var = 2.0 * (kind == dd::probe_kind::rademacher ? off : m.squaredNorm()) / static_cast<double>(d * d);
    const double se = std::sqrt(var / static_cast<double>(p));
    const auto est = dd::estimate_frobenius(ctx, f, x.cview(), 0.5, {.probes = p, .kind = kind, .seed = 9});
    std::printf("[ measured ] %s: reported standard error %.5f, theory %.5f (ratio %.3f)\n", dd::to_string(kind),
                est.standard_error[0], se, est.standard_error[0] / se);
    EXPECT_NEAR(est.standard_error[0] / se, 1.0, 0.15);
  }
}

TEST(Hutchinson, RademacherProbesAreExactForADiagonalJacobian) {
  ddm::test::linear_field f{3, {2.0, 0, 0, 0, -1.0, 0, 0, 0, 0.5}};
  const auto x = normal_batch<double>(3, 3, 41);
  const auto est = dd::estimate_frobenius(ctx, f, x.cview(), 0.5, {.probes = 3});
  for (std::size_t r = 0; r < 3; ++r) {
    EXPECT_DOUBLE_EQ(est.mean[r], (4.0 + 1.0 + 0.25) / 3.0);
    EXPECT_EQ(est.standard_error[r], 0.0);
  }
}

TEST(Hutchinson, IsDeterministicUnderASeedAndRejectsOneProbe) {
  const auto f = ddm::test::linear_field::random(4, 51);
  const ddm::test::values_only<ddm::test::linear_field> plain{&f};
  const auto x = normal_batch<double>(2, 4, 52);
  const auto a = dd::estimate_frobenius(ctx, plain, x.cview(), 0.5, {.probes = 5, .seed = 3});
  const auto b = dd::estimate_frobenius(ctx, plain, x.cview(), 0.5, {.probes = 5, .seed = 3});
  const auto c = dd::estimate_frobenius(ctx, plain, x.cview(), 0.5, {.probes = 5, .seed = 4});
  EXPECT_EQ(a.mean, b.mean);
  EXPECT_NE(a.mean, c.mean);
  EXPECT_EQ(a.field_evaluations, 10U);
  EXPECT_THROW((void)dd::estimate_frobenius(ctx, f, x.cview(), 0.5, {.probes = 1}), ddm::argument_error);
}

TEST(Hutchinson, NonFiniteVelocityIsAnError) {
  auto nan_field = [](ddm::batch_view<const double> x, double, ddm::batch_view<double> v) {
    ddm::copy(ddm::host_context{}, v, x);
    v(1, 0) = std::numeric_limits<double>::quiet_NaN();
  };
  const auto x = normal_batch<double>(2, 3, 53);
  try {
    (void)dd::estimate_frobenius(ctx, nan_field, x.cview(), 0.25);
    FAIL() << "no error";
  } catch (const ddm::non_finite_error& e) {
    EXPECT_NE(std::string(e.what()).find("row 1"), std::string::npos) << e.what();
    EXPECT_EQ(e.time(), 0.25);
  }
}

// ---------------------------------------------------------------------------------------------
// Power iteration

TEST(DominantEigenvalue, FindsTheLargestMagnitudeEigenvalueWithItsSign) {
  // A = S diag(-3, 2, 1.5, 1, -0.5, 0.25) S^{-1} with a random S: non-symmetric, dominant -3.
  const ddm::index_t d = 6;
  Eigen::MatrixXd s(d, d);
  for (ddm::index_t i = 0; i < d; ++i)
    for (ddm::index_t j = 0; j < d; ++j) s(i, j) = ddm::philox4x32::normal(61, 0, static_cast<std::uint64_t>(i * d + j));
  Eigen::VectorXd lambda(d);
  lambda << -3, 2, 1.5, 1, -0.5, 0.25;
  const Eigen::MatrixXd a = s * lambda.asDiagonal() * s.inverse();
  const Eigen::EigenSolver<Eigen::MatrixXd> es(a);
  double reference = 0;
  for (ddm::index_t i = 0; i < d; ++i)
    if (std::abs(es.eigenvalues()(i)) > std::abs(reference)) reference = es.eigenvalues()(i).real();
  const auto f = from_eigen(a);
  const ddm::test::values_only<ddm::test::linear_field> plain{&f};
  const auto x = normal_batch<double>(3, d, 62);
  const auto exact = dd::estimate_dominant_eigenvalue(ctx, f, x.cview(), 0.5, {.max_iterations = 200, .tolerance = 1e-10});
  const auto fd = dd::estimate_dominant_eigenvalue(ctx, plain, x.cview(), 0.5, {.max_iterations = 200, .tolerance = 1e-7});
  std::printf("[ measured ] dominant eigenvalue: exact jvp %.12f in %zu iterations, FD %.9f in %zu, Eigen %.12f\n",
              exact.value[0], exact.iterations, fd.value[0], fd.iterations, reference);
  EXPECT_TRUE(exact.all_converged());
  EXPECT_TRUE(fd.all_converged());
  EXPECT_EQ(exact.exact_products, exact.iterations);
  EXPECT_EQ(fd.field_evaluations, 2 * fd.iterations);
  for (std::size_t r = 0; r < 3; ++r) {
    EXPECT_NEAR(exact.value[r], reference, 1e-8);
    EXPECT_NEAR(exact.value[r], -3.0, 1e-8);
    EXPECT_NEAR(fd.value[r], -3.0, 1e-5);
  }
}

TEST(DominantEigenvalue, ADominantComplexPairIsReportedUnconverged) {
  // Rotation block with eigenvalues +-2i dominates the real eigenvalue 1.
  ddm::test::linear_field f{3, {0, -2, 0, 2, 0, 0, 0, 0, 1}};
  const auto x = normal_batch<double>(2, 3, 71);
  const auto est = dd::estimate_dominant_eigenvalue(ctx, f, x.cview(), 0.5, {.max_iterations = 50, .tolerance = 1e-6});
  EXPECT_EQ(est.iterations, 50U);
  EXPECT_FALSE(est.all_converged());
  std::printf("[ measured ] rotation-dominated J: relative residual after 50 iterations %.3f\n", est.residual[0]);
  EXPECT_GT(est.residual[0], 0.1);
}

TEST(SpectralNorm, EqualsTheLargestSingularValueFromEigen) {
  const ddm::index_t d = 8;
  const auto f = ddm::test::linear_field::random(d, 81);
  const Eigen::JacobiSVD<Eigen::MatrixXd> svd(to_eigen(f));
  const double sigma = svd.singularValues()(0);
  const double gap = svd.singularValues()(1) / sigma;
  const auto x = normal_batch<double>(3, d, 82);
  const auto est = dd::estimate_spectral_norm(ctx, f, x.cview(), 0.5, {.max_iterations = 2000, .tolerance = 1e-12});
  std::printf("[ measured ] spectral norm %.14f vs JacobiSVD %.14f (sigma_2 / sigma_1 = %.3f, %zu iterations)\n",
              est.value[0], sigma, gap, est.iterations);
  EXPECT_TRUE(est.all_converged());
  EXPECT_EQ(est.exact_products, 2 * est.iterations);
  for (double v : est.value) EXPECT_NEAR(v / sigma, 1.0, 1e-10);
}

TEST(SpectralNorm, IsALowerBoundAtEveryIterationAndWorksWithFiniteDifferenceJvp) {
  const ddm::index_t d = 7;
  const auto f = ddm::test::linear_field::random(d, 91);
  const double sigma = Eigen::JacobiSVD<Eigen::MatrixXd>(to_eigen(f)).singularValues()(0);
  const auto x = normal_batch<double>(4, d, 92);
  for (std::size_t k : {1U, 2U, 5U}) {
    const auto est = dd::estimate_spectral_norm(ctx, f, x.cview(), 0.5, {.max_iterations = k, .tolerance = 0.0});
    for (double v : est.value) EXPECT_LE(v, sigma * (1 + 1e-14));
  }
  const ddm::test::vjp_only<ddm::test::linear_field> mixed{&f};
  const auto est = dd::estimate_spectral_norm(ctx, mixed, x.cview(), 0.5, {.max_iterations = 3000, .tolerance = 1e-9});
  EXPECT_EQ(est.field_evaluations, 2 * est.iterations);
  EXPECT_EQ(est.exact_products, est.iterations);
  for (double v : est.value) EXPECT_NEAR(v / sigma, 1.0, 1e-7);
}

}  // namespace
