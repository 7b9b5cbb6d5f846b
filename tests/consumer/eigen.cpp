// Uses a header that needs Eigen through ddm::eigen: the Frechet distance of true data to itself.
#include <cstdio>

#include <ddm/ddm.hpp>
#include <ddm/synthetic/quality.hpp>

int main() {
  const ddm::synthetic::analytic_ddm model;
  const double fd = ddm::synthetic::frechet_distance(model.mean(), model.covariance(), model.mean(), model.covariance());
  std::printf("Frechet distance of the truth to itself: %.3g\n", fd);
  return fd < 1e-9 ? 0 : 1;
}
