// The Frechet distance (needs Eigen): closed forms for Gaussians, convergence to 0 for true data
// as n grows, and the exact mixture field sampling the data distribution.

#include <gtest/gtest.h>

#include <Eigen/Eigenvalues>

#include <cmath>
#include <vector>

#include <ddm/ddm.hpp>
#include <ddm/synthetic/quality.hpp>

namespace {

using ddm::synthetic::analytic_ddm;
const ddm::host_context ctx{};

TEST(Frechet, DiagonalCovariancesHaveAClosedForm) {
  const std::vector<double> m1{0.0, 1.0, 2.0}, m2{0.5, 1.0, -1.0};
  std::vector<double> c1(9, 0.0), c2(9, 0.0);
  const double a[3] = {1.0, 4.0, 0.25}, b[3] = {2.0, 1.0, 0.25};
  double expected = 0.25 + 9.0;
  for (int i = 0; i < 3; ++i) {
    c1[static_cast<std::size_t>(4 * i)] = a[i];
    c2[static_cast<std::size_t>(4 * i)] = b[i];
    expected += (std::sqrt(a[i]) - std::sqrt(b[i])) * (std::sqrt(a[i]) - std::sqrt(b[i]));
  }
  const double fd = ddm::synthetic::frechet_distance(m1, ddm::batch_view<const double>(c1.data(), 3, 3), m2,
                                                     ddm::batch_view<const double>(c2.data(), 3, 3));
  EXPECT_NEAR(fd, expected, 1e-13);
}

// Tr (C1^{1/2} C2 C1^{1/2})^{1/2} = sum_i sqrt(lambda_i(C1 C2)): an independent route through a
// general (non-symmetric) eigensolver.
TEST(Frechet, GeneralCovariancesAgreeWithTheProductEigenvalues) {
  const int d = 5;
  Eigen::MatrixXd a = Eigen::MatrixXd::Zero(d, d), b = Eigen::MatrixXd::Zero(d, d);
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) {
      a(i, j) = std::sin(1.0 + i * 3 + j * 7);
      b(i, j) = std::cos(2.0 + i * 5 - j);
    }
  const Eigen::MatrixXd c1 = a * a.transpose() + 0.1 * Eigen::MatrixXd::Identity(d, d);
  const Eigen::MatrixXd c2 = b * b.transpose() + 0.2 * Eigen::MatrixXd::Identity(d, d);
  const Eigen::EigenSolver<Eigen::MatrixXd> es(c1 * c2);
  double trace_root = 0;
  for (int i = 0; i < d; ++i) trace_root += std::sqrt(es.eigenvalues()(i).real());
  std::vector<double> m1(d, 0.0), m2(d, 1.0), v1(d * d), v2(d * d);
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) {
      v1[static_cast<std::size_t>(i * d + j)] = c1(i, j);
      v2[static_cast<std::size_t>(i * d + j)] = c2(i, j);
    }
  const double expected = d + c1.trace() + c2.trace() - 2 * trace_root;
  const auto fd = [&](auto& ma, auto& va, auto& mb, auto& vb) {
    return ddm::synthetic::frechet_distance(ma, ddm::batch_view<const double>(va.data(), d, d), mb,
                                            ddm::batch_view<const double>(vb.data(), d, d));
  };
  EXPECT_NEAR(fd(m1, v1, m2, v2), expected, 1e-10 * expected);
  EXPECT_NEAR(fd(m2, v2, m1, v1), expected, 1e-10 * expected);  // symmetric
  EXPECT_NEAR(fd(m1, v1, m1, v1), 0.0, 1e-10);
}

TEST(Frechet, TrueDataConvergesToZeroAsTheSampleGrows) {
  const analytic_ddm m;
  std::vector<double> fds;
  for (ddm::index_t n : {256, 2048, 16384, 131072}) {
    double mean_fd = 0;
    for (std::uint64_t seed = 1; seed <= 3; ++seed)
      mean_fd += ddm::synthetic::frechet_distance(m, m.sample_data(n, 1000 * seed + static_cast<std::uint64_t>(n))) / 3;
    std::printf("[ measured ] Frechet distance of %6td true samples (mean of 3): %.5f\n", n, mean_fd);
    fds.push_back(mean_fd);
  }
  for (std::size_t i = 1; i < fds.size(); ++i) EXPECT_LT(fds[i], fds[i - 1]);
  // The bias of the plug-in estimate is O(1/n): 512x the samples should gain far more than 32x.
  EXPECT_LT(fds.back(), fds.front() / 32);
}

TEST(Frechet, ExactMixtureFieldSamplesTheData) {
  const analytic_ddm m;
  const ddm::index_t n = 3000;
  ddm::batch<double> x(n, m.dim());
  ddm::fill_normal(ctx, x.view(), 31);
  ddm::sample(m.mixture_field(), x, ddm::schedules::uniform(64), ddm::heun{});
  const auto q = ddm::synthetic::evaluate_quality(m, x);
  const double reference = ddm::synthetic::frechet_distance(m, m.sample_data(n, 32));
  std::printf("[ measured ] exact field, heun 64 steps, %td samples: FD %.4f (true sample of the same size %.4f), "
              "NLL %.3f, precision %.4f, coverage %.3f\n",
              n, q.frechet, reference, q.nll, q.modes.precision, q.modes.coverage);
  EXPECT_LT(q.frechet, 3 * reference + 0.02);
  EXPECT_GT(q.modes.precision, 0.95);
  EXPECT_EQ(q.modes.coverage, 1.0);
}

}  // namespace
