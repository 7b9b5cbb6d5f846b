// Expert-parallel sampling over MPI, run by CTest under mpirun -np 2 and -np 4: the distributed
// run gives the single-process samples to the bit, whatever the placement; conditioning travels
// as global row indices; a failing expert fails every rank with its rank and call; ranks that
// disagree about the call fail clearly. Every rank runs every test (they are collective); only
// rank 0 prints.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <ddm/ddm.hpp>
#include <ddm/mpi.hpp>

namespace {

namespace mpi = ddm::mpi;

ddm::synthetic::analytic_ddm make_system() {
  return ddm::synthetic::analytic_ddm(ddm::synthetic::analytic_ddm_options{.clusters = 5, .dim = 6, .seed = 11});
}

// The single-process run every rank computes for itself: the reference.
template <class Experts>
ddm::batch<double> single_process(Experts experts, const ddm::synthetic::analytic_ddm& sys,
                                  const ddm::builtin_policy& policy, ddm::index_t b) {
  auto field = ddm::make_routed_field<double>(std::move(experts), sys.router(0.5), policy);
  ddm::batch<double> x(b, sys.dim());
  ddm::fill_normal(ddm::host_context{}, x.view(), 5);
  ddm::sample(field, x, ddm::schedules::uniform(6), ddm::heun{});
  return x;
}

// The same run with this rank's shard and the experts spread by `where`; the shards gathered.
template <class Experts>
ddm::batch<double> distributed(Experts experts, const ddm::synthetic::analytic_ddm& sys,
                               const ddm::builtin_policy& policy, ddm::index_t b, const mpi::placement& where) {
  const auto comm = mpi::communicator::world();
  const auto mine = mpi::shard_of(b, comm);
  ddm::batch<double> noise(b, sys.dim());
  ddm::fill_normal(ddm::host_context{}, noise.view(), 5);
  ddm::batch<double> x(mine.rows, sys.dim());
  ddm::copy(ddm::host_context{}, x.view(), noise.cview().subrows(mine.first, mine.rows));
  auto field = ddm::make_routed_field<double>(
      mpi::make_distributed_experts<double>(comm, where, std::move(experts), mine.first), sys.router(0.5), policy);
  ddm::sample(field, x, ddm::schedules::uniform(6), ddm::heun{});
  ddm::batch<double> all(b, sys.dim());
  mpi::allgather_rows(comm, x.cview(), all.view());
  return all;
}

void expect_same_bits(const ddm::batch<double>& a, const ddm::batch<double>& b, const std::string& what) {
  ASSERT_EQ(a.rows(), b.rows());
  for (ddm::index_t r = 0; r < a.rows(); ++r)
    for (ddm::index_t c = 0; c < a.cols(); ++c) ASSERT_EQ(a(r, c), b(r, c)) << what << " row " << r << " col " << c;
}

int ranks() { return mpi::communicator::world().size(); }

TEST(Distributed, SamplesEqualTheSingleProcessRunToTheBitForEveryPlacementAndPolicy) {
  const auto sys = make_system();
  const int p = ranks();
  std::vector<mpi::placement> placements{mpi::placement::round_robin(5, p),
                                         mpi::placement::parse("0|0|0|0|0", 5, p)};
  if (p >= 2) {
    // Replicas with unequal shares, and the last rank holding nothing.
    placements.push_back(mpi::placement::parse("0,1:3|1|0,1|0|1:0.25,0:0.75", 5, p));
    const std::vector<double> load{9, 1, 4, 1, 6};
    placements.push_back(mpi::placement::balanced(load, p, 3));
  }
  for (const char* spec : {"top1", "top2", "full", "top_p:0.9", "full_then_top1@0.5"}) {
    const auto policy = ddm::policy_by_name(spec);
    const auto reference = single_process(sys.experts(), sys, policy, 23);
    for (const auto& where : placements)
      expect_same_bits(distributed(sys.experts(), sys, policy, 23, where), reference,
                       std::string(spec) + " placement " + where.describe());
  }
}

// An expert whose velocity depends on the global row index it is given: conditioning.
struct indexed_expert {
  double scale;
  void operator()(ddm::batch_view<const double> x, double t, ddm::batch_view<double> v,
                  ddm::row_index_view<> rows) const {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t c = 0; c < x.cols(); ++c) v(r, c) = scale * (x(r, c) + t) + 0.01 * rows(r, 0);
  }
  void operator()(ddm::batch_view<const double> x, double t, ddm::batch_view<double> v) const {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t c = 0; c < x.cols(); ++c) v(r, c) = scale * (x(r, c) + t) + 0.01 * static_cast<double>(r);
  }
};

TEST(Distributed, ConditionedExpertsOnOtherRanksSeeGlobalRowIndices) {
  const auto sys = make_system();
  std::vector<indexed_expert> e{{-1.0}, {-0.5}, {-2.0}, {-1.5}, {-0.25}};
  const auto reference = single_process(ddm::expert_vector<indexed_expert>(e), sys, ddm::policy_by_name("top2"), 29);
  const auto got = distributed(ddm::expert_vector<indexed_expert>(e), sys, ddm::policy_by_name("top2"), 29,
                               mpi::placement::round_robin(5, ranks()));
  expect_same_bits(got, reference, "conditioned experts");
}

// Expert 3 throws; it lives on the last rank.
struct throwing_expert {
  bool fail;
  void operator()(ddm::batch_view<const double> x, double /*t*/, ddm::batch_view<double> v) const {
    if (fail) throw std::runtime_error("expert 3 cannot evaluate");
    ddm::copy(ddm::host_context{}, v, x);
  }
};

TEST(Distributed, AnExpertThatThrowsFailsEveryRankNamingTheRankAndTheCall) {
  const auto comm = mpi::communicator::world();
  const int p = comm.size();
  const int owner = p - 1;
  std::vector<std::vector<int>> owners(5, std::vector<int>{0});
  owners[3] = {owner};
  ddm::expert_vector<throwing_expert> experts({{false}, {false}, {false}, {true}, {false}});
  mpi::distributed_experts<double, ddm::expert_vector<throwing_expert>> set(comm, mpi::placement(p, owners), experts);
  ddm::batch<double> x(4, 3), v(4, 3);
  ddm::fill_normal(ddm::host_context{}, x.view(), 1);
  set.evaluate(0, x.cview(), 0.5, v.view());  // call 0 succeeds
  try {
    set.evaluate(3, x.cview(), 0.25, v.view());  // call 1: every rank sends rows of expert 3
    FAIL() << "expected ddm::mpi::distributed_error";
  } catch (const mpi::distributed_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("call 1"), std::string::npos) << m;
    EXPECT_NE(m.find("failed on rank " + std::to_string(owner)), std::string::npos) << m;
    EXPECT_NE(m.find("expert 3 cannot evaluate"), std::string::npos) << m;
  }
  // The set is still usable: the next call works on every rank.
  set.evaluate(1, x.cview(), 0.5, v.view());
  for (ddm::index_t r = 0; r < 4; ++r)
    for (ddm::index_t c = 0; c < 3; ++c) EXPECT_EQ(v(r, c), x(r, c));
}

TEST(Distributed, RanksAtDifferentTimesFailClearlyInsteadOfMixingCalls) {
  const auto comm = mpi::communicator::world();
  if (comm.size() < 2) GTEST_SKIP() << "needs two ranks";
  ddm::expert_vector<throwing_expert> experts({{false}, {false}, {false}, {false}, {false}});
  mpi::distributed_experts<double, ddm::expert_vector<throwing_expert>> set(
      comm, mpi::placement::round_robin(5, comm.size()), experts);
  ddm::batch<double> x(3, 2), v(3, 2);
  const double t = comm.rank() == 1 ? 0.75 : 0.5;
  try {
    set.evaluate(0, x.cview(), t, v.view());
    FAIL() << "expected ddm::mpi::distributed_error";
  } catch (const mpi::distributed_error& e) {
    EXPECT_NE(std::string(e.what()).find("do not make the same calls"), std::string::npos) << e.what();
  }
}

TEST(Distributed, RanksWithDifferentPlacementsFailClearly) {
  const auto comm = mpi::communicator::world();
  if (comm.size() < 2) GTEST_SKIP() << "needs two ranks";
  ddm::expert_vector<throwing_expert> experts({{false}, {false}});
  const auto where = comm.rank() == 0 ? mpi::placement::parse("0|1", 2, comm.size()) : mpi::placement::parse("1|0", 2, comm.size());
  mpi::distributed_experts<double, ddm::expert_vector<throwing_expert>> set(comm, where, experts);
  ddm::batch<double> x(3, 2), v(3, 2);
  EXPECT_THROW(set.evaluate(0, x.cview(), 0.5, v.view()), mpi::distributed_error);
}

TEST(Distributed, StatsCountTheRowsThatTravel) {
  const auto comm = mpi::communicator::world();
  const int p = comm.size();
  ddm::expert_vector<throwing_expert> experts(std::vector<throwing_expert>(static_cast<std::size_t>(p), {false}));
  std::vector<std::vector<int>> owners;
  for (int r = 0; r < p; ++r) owners.push_back({r});
  mpi::distributed_experts<double, ddm::expert_vector<throwing_expert>> set(comm, mpi::placement(p, owners), experts);
  ddm::batch<double> x(6, 4), v(6, 4);
  // Every rank sends its 6 rows to expert 0's owner, rank 0.
  set.evaluate(0, x.cview(), 0.5, v.view());
  const auto& s = set.last_stats();
  EXPECT_EQ(s.rows_sent, 6u);
  EXPECT_EQ(s.rows_sent_away, comm.rank() == 0 ? 0u : 6u);
  EXPECT_EQ(s.rows_evaluated, comm.rank() == 0 ? 6u * static_cast<std::size_t>(p) : 0u);
  const std::size_t row_out = 4 * sizeof(double) + sizeof(std::int32_t);
  const std::size_t plan = static_cast<std::size_t>(p - 1) * static_cast<std::size_t>(p + 4) * sizeof(std::int64_t);
  EXPECT_EQ(s.bytes_sent, comm.rank() == 0 ? plan + 6u * static_cast<std::size_t>(p - 1) * 4 * sizeof(double)
                                           : plan + 6 * row_out);
}

TEST(Distributed, ShardsCoverTheBatchInRankOrder) {
  for (int p : {1, 2, 3, 4, 7})
    for (ddm::index_t b : {7, 8, 23, 100}) {
      ddm::index_t next = 0;
      for (int r = 0; r < p; ++r) {
        const auto s = mpi::shard_of(b, p, r);
        EXPECT_EQ(s.first, next);
        EXPECT_GE(s.rows, b / p);
        EXPECT_LE(s.rows, b / p + 1);
        next += s.rows;
      }
      EXPECT_EQ(next, b);
    }
  EXPECT_THROW((void)mpi::shard_of(3, 4, 0), ddm::argument_error);
  EXPECT_THROW((void)mpi::shard_of(8, 4, 4), ddm::argument_error);
}

TEST(Placement, ParseAndDescribeRoundTrip) {
  for (const auto& [spec, k] : {std::pair{"0|1|2,3|0", 4}, std::pair{"0|1:0.25,2:0.75|2", 3}}) {
    const auto p = mpi::placement::parse(spec, static_cast<std::size_t>(k), 4);
    EXPECT_EQ(mpi::placement::parse(p.describe(), p.experts(), 4).describe(), p.describe());
  }
  const auto p = mpi::placement::parse("0|1:0.25,2:0.75|2", 3, 4);
  EXPECT_EQ(p.describe(), "0|1:0.25,2:0.75|2");
  EXPECT_TRUE(p.holds(2, 1));
  EXPECT_FALSE(p.holds(0, 1));
  EXPECT_EQ(p.experts_of(2), (std::vector<std::size_t>{1, 2}));
  EXPECT_EQ(mpi::placement::round_robin(5, 2).describe(), "0|1|0|1|0");
}

TEST(Placement, RejectsBadSpecsNamingThePart) {
  auto message = [](const char* spec, std::size_t k, int ranks) {
    try {
      (void)mpi::placement::parse(spec, k, ranks);
    } catch (const ddm::argument_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("0|x", 2, 2).find("'x' is not a rank number"), std::string::npos);
  EXPECT_NE(message("0|2", 2, 2).find("owner rank 2, expected a rank in [0, 2)"), std::string::npos);
  EXPECT_NE(message("0|1,1", 2, 2).find("names rank 1 twice"), std::string::npos);
  EXPECT_NE(message("0|1:-1", 2, 2).find("share -1"), std::string::npos);
  EXPECT_NE(message("0|1", 3, 2).find("names owners for 2 experts, expected 3"), std::string::npos);
  EXPECT_NE(message("0||1", 3, 2).find("empty owner list"), std::string::npos);
  EXPECT_NE(message("0|1:abc", 2, 2).find("share that is not a number"), std::string::npos);
}

TEST(Placement, SplitsRowsByShareWithoutLosingAny) {
  const auto p = mpi::placement::parse("0:1,1:2,2:1", 1, 3);
  for (std::size_t n : {0u, 1u, 3u, 4u, 10u, 1001u}) {
    std::vector<std::size_t> counts(3);
    p.split(0, n, counts);
    EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), std::size_t{0}), n);
    if (n == 1001) {
      EXPECT_EQ(counts, (std::vector<std::size_t>{250, 501, 250}));
    }
  }
}

TEST(Placement, BalancedLowersTheLargestRankLoadAndKeepsItsInvariants) {
  // Skewed load, as top-1 routing gives: one expert takes most rows.
  const std::vector<double> load{40, 5, 5, 20, 10, 5, 10, 5};
  for (int ranks_count : {2, 4}) {
    const std::size_t slots = (load.size() + static_cast<std::size_t>(ranks_count) - 1) / static_cast<std::size_t>(ranks_count) + 1;
    const auto balanced = mpi::placement::balanced(load, ranks_count, slots);
    const auto naive = mpi::placement::round_robin(load.size(), ranks_count);
    const auto lb = balanced.rank_load(load);
    const auto ln = naive.rank_load(load);
    const double total = std::accumulate(load.begin(), load.end(), 0.0);
    EXPECT_NEAR(std::accumulate(lb.begin(), lb.end(), 0.0), total, 1e-9);
    EXPECT_LE(*std::max_element(lb.begin(), lb.end()), *std::max_element(ln.begin(), ln.end()));
    EXPECT_LT(*std::max_element(lb.begin(), lb.end()), 1.15 * total / ranks_count) << balanced.describe();
    for (int r = 0; r < ranks_count; ++r) EXPECT_LE(balanced.experts_of(r).size(), slots);
    EXPECT_GT(balanced.owners(0).size(), 1u) << "the hottest expert is replicated: " << balanced.describe();
    EXPECT_EQ(mpi::placement::balanced(load, ranks_count, slots).describe(), balanced.describe());
  }
  EXPECT_THROW((void)mpi::placement::balanced(load, 2, 3), ddm::argument_error);  // 2 x 3 < 8 experts
}

}  // namespace

int main(int argc, char** argv) {
  ddm::mpi::environment env(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  if (ddm::mpi::communicator::world().rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  // Every rank's failures count: mpirun exits non-zero when any rank does.
  return RUN_ALL_TESTS();
}
