// The device distributed experts (NCCL), run by CTest under mpirun -np 1: NCCL takes one rank per
// GPU and the GPU machines lent to this project have one, so the exchange here is a rank sending
// to itself, through the whole path (plan, NCCL send/receive, per-expert repacking, return).
// Checked: the distributed device run gives the single-process device run's samples to the bit,
// and a failing expert is reported as on the host. Skips without a GPU.

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include <ddm/cuda.hpp>
#include <ddm/cuda/mpi/distributed_experts.hpp>
#include <ddm/ddm.hpp>
#include <ddm/mpi.hpp>

#include "support/cuda_support.hpp"

namespace {

namespace mpi = ddm::mpi;
using ddm::batch;
using ddm::cuda_space;
using ddm::index_t;

TEST(DistributedDevice, SamplesEqualTheSingleProcessDeviceRunToTheBit) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx;
  const ddm::synthetic::analytic_ddm model;
  const ddm::cuda::device_analytic_ddm dev(ctx, model);
  const auto comm = mpi::communicator::world();
  constexpr index_t rows = 96;
  for (const char* spec : {"top1", "top2", "full"}) {
    const auto policy = ddm::policy_by_name(spec);
    batch<float, cuda_space> reference(ctx, rows, model.dim()), x(ctx, rows, model.dim());
    ddm::fill_normal(ctx, reference.view(), 7);
    ddm::copy(ctx, x.view(), reference.cview());
    auto single = ddm::make_routed_field<float, cuda_space>(dev.experts(), dev.router(2.0), policy, ctx);
    ddm::sample(ctx, {}, single, reference.view(), ddm::schedules::uniform(8), ddm::heun{});
    auto field = ddm::make_routed_field<float, cuda_space>(
        mpi::make_distributed_experts<float>(comm, mpi::placement::round_robin(model.num_clusters(), comm.size()),
                                             dev.experts(), ctx),
        dev.router(2.0), policy, ctx);
    ddm::sample(ctx, {}, field, x.view(), ddm::schedules::uniform(8), ddm::heun{});
    const auto want = ddm::cuda::to_host(ctx, reference);
    const auto got = ddm::cuda::to_host(ctx, x);
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < model.dim(); ++c) ASSERT_EQ(got(r, c), want(r, c)) << spec << " row " << r;
    EXPECT_GT(field.experts().stats().rows_evaluated, 0u);
  }
}

struct throwing_device_expert {
  void operator()(ddm::batch_view<const float, cuda_space>, double, ddm::batch_view<float, cuda_space>) const {
    throw std::runtime_error("device expert cannot evaluate");
  }
};

TEST(DistributedDevice, AnExpertThatThrowsIsReportedWithRankAndCall) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx;
  const auto comm = mpi::communicator::world();
  ddm::expert_vector<throwing_device_expert> experts({{}, {}});
  auto set = mpi::make_distributed_experts<float>(comm, mpi::placement::round_robin(2, comm.size()), experts, ctx);
  batch<float, cuda_space> x(ctx, 4, 3), v(ctx, 4, 3);
  ddm::fill(ctx, x.view(), 1.0f);
  try {
    set.evaluate(1, x.cview(), 0.5, v.view());
    FAIL() << "expected ddm::mpi::distributed_error";
  } catch (const mpi::distributed_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("call 0"), std::string::npos) << m;
    EXPECT_NE(m.find("device expert cannot evaluate"), std::string::npos) << m;
  }
}

}  // namespace

int main(int argc, char** argv) {
  ddm::mpi::environment env(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
