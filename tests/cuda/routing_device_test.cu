// Routing on device views agrees with the host: softmax, every policy, the grouping (the same
// counting sort, to the last index), gather and scatter-add, and the routed field (each expert
// called once on exactly its rows, conditioning indices, counts, observers, errors); top_k with
// k = K equals the full ensemble renormalized.
//
// GPU tests skip with the runtime's reason when no device is usable.

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <ddm/cuda.hpp>

#include "support/cuda_support.hpp"

namespace {

using ddm::batch;
using ddm::batch_view;
using ddm::cuda_space;
using ddm::index_t;

const ddm::host_context host{};
constexpr int K = 8;

using ddm::test::scaled_noise;

template <class T>
class DeviceRouting : public ::testing::Test {};
using ValueTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(DeviceRouting, ValueTypes);

// Logits with exact ties in some rows (every expert equal; two experts equal at the top), so that
// the policies' tie rule (tied experts at the boundary are all kept) is exercised on the device.
template <class T>
batch<T> routing_logits(index_t rows) {
  auto logits = scaled_noise<T>(rows, K, 31, 2.0);
  for (index_t c = 0; c < K; ++c) logits(3, c) = T(0.5);
  logits(4, 2) = T(5);
  logits(4, 6) = T(5);
  return logits;
}

std::string thrown_message(auto&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(nothing thrown)";
}

// ---------------------------------------------------------------------------------------------
// Launch shapes (host code: these run without a GPU)

TEST(LaunchShapes, StreamLayoutsTakeTheVectorPathOnlyWhenEveryOperandSharesItsAlignment) {
  namespace cd = ddm::cuda::detail;
  alignas(16) static float buffer[64];
  const auto at = [](index_t offset) -> const void* { return buffer + offset; };
  for (index_t off = 0; off < 4; ++off) {
    const auto one_row = cd::make_stream_layout<float>(std::array<const void*, 3>{at(off), at(off + 8), at(off + 20)},
                                                      std::array<index_t, 3>{47, 47, 47}, 1, 45);
    EXPECT_EQ(one_row.width, 4) << off;
    EXPECT_EQ(one_row.head, (4 - off) % 4) << off;
    EXPECT_EQ(one_row.vectors, (45 - (4 - off) % 4) / 4) << off;
    // Rows 48 floats apart keep the alignment; rows 47 apart do not.
    EXPECT_EQ((cd::make_stream_layout<float>(std::array<const void*, 2>{at(off), at(off + 4)},
                                              std::array<index_t, 2>{48, 48}, 3, 45)
                   .width),
              4);
    EXPECT_EQ((cd::make_stream_layout<float>(std::array<const void*, 2>{at(off), at(off + 4)},
                                              std::array<index_t, 2>{47, 48}, 3, 45)
                   .width),
              1);
  }
  // Operands at different offsets: one value at a time, the whole row as "vectors" of one.
  const auto mixed = cd::make_stream_layout<float>(std::array<const void*, 2>{at(0), at(1)},
                                                   std::array<index_t, 2>{45, 45}, 1, 45);
  EXPECT_EQ(mixed.width, 1);
  EXPECT_EQ(mixed.head, 0);
  EXPECT_EQ(mixed.vectors, 45);
  // Rows shorter than the head: everything is head.
  const auto tiny = cd::make_stream_layout<float>(std::array<const void*, 1>{at(1)}, std::array<index_t, 1>{2}, 1, 2);
  EXPECT_EQ(tiny.head, 2);
  EXPECT_EQ(tiny.vectors, 0);
  // double: two values per access.
  alignas(16) static double dbuf[8];
  const auto d1 = cd::make_stream_layout<double>(std::array<const void*, 1>{dbuf + 1}, std::array<index_t, 1>{9}, 1, 9);
  EXPECT_EQ(d1.width, 2);
  EXPECT_EQ(d1.head, 1);
  EXPECT_EQ(d1.vectors, 4);
  // Types other than float and double never vectorize.
  EXPECT_EQ((cd::make_stream_layout<std::int32_t>(std::array<const void*, 1>{at(0)}, std::array<index_t, 1>{8}, 1, 8)
                 .width),
            1);
}

TEST(LaunchShapes, ElementwiseGridsCoverTheirViewWithinTheGridLimits) {
  using ddm::cuda::elementwise_block;
  using ddm::cuda::elementwise_grid;
  // Columns in blocks of elementwise_block on x, one row per block on y: every value gets a thread.
  const dim3 g = elementwise_grid(3, 1000);
  EXPECT_EQ(g.x, 4U);
  EXPECT_EQ(g.y, 3U);
  EXPECT_EQ(g.z, 1U);
  EXPECT_GE(static_cast<index_t>(g.x) * elementwise_block, 1000);
  EXPECT_LT(static_cast<index_t>(g.x - 1) * elementwise_block, 1000);
  // Past the limits the kernels stride: the grid stops at them.
  EXPECT_EQ(elementwise_grid(1'000'000, 1).y, static_cast<unsigned>(ddm::cuda::max_grid_y));
  EXPECT_EQ(elementwise_grid(1, index_t{1} << 40).x, static_cast<unsigned>(ddm::cuda::max_grid_x));
  // An empty extent still gives a valid launch (the DiT's timestep embedding launches on any
  // number of frequencies, 0 included).
  EXPECT_EQ(elementwise_grid(0, 0).x, 1U);
  EXPECT_EQ(elementwise_grid(0, 0).y, 1U);
}

TEST(LaunchShapes, RowMappedBlocksAndMixtureScratchFitTheirWork) {
  namespace cd = ddm::cuda::detail;
  // A row of 2 accesses: 32 threads along it, 8 rows per block.
  const auto small = ddm::cuda::row_mapped_shape(1000, 2, 4, 100);
  EXPECT_EQ(small.block.x, 32U);
  EXPECT_EQ(small.block.y, 8U);
  EXPECT_EQ(small.grid.x, 1U);
  EXPECT_EQ(small.grid.y, 125U);
  // A long row: 256 threads along it, one row per block, no more blocks along x than resident.
  const auto large = ddm::cuda::row_mapped_shape(4096, 4096, 4, 3);
  EXPECT_EQ(large.block.x, 256U);
  EXPECT_EQ(large.block.y, 1U);
  EXPECT_EQ(large.grid.x, 3U);
  EXPECT_EQ(large.grid.y, 4096U);
  // Scratch per row: odd strides, 48 KiB of shared memory at most, global memory beyond.
  const auto expert = cd::plan_scratch(4);
  EXPECT_TRUE(expert.shared);
  EXPECT_EQ(expert.stride, 5);
  EXPECT_EQ(expert.threads, 128);
  const auto jvp = cd::plan_scratch(64);
  EXPECT_TRUE(jvp.shared);
  EXPECT_EQ(jvp.stride, 65);
  EXPECT_LE(jvp.shared_bytes(), 48U * 1024U);
  EXPECT_EQ(jvp.threads, 64);
  const auto huge = cd::plan_scratch(1000);
  EXPECT_FALSE(huge.shared);
  EXPECT_EQ(huge.shared_bytes(), 0U);
}

// ---------------------------------------------------------------------------------------------
// Softmax

// Both sides compute in double (exp within 1 ulp of the exact value on each side) and round to T
// twice (the exponential, then the normalized value): in float, equal or at most two ulps apart;
// in double, a few ulps (the sum and the division add theirs; 8 allowed).
TYPED_TEST(DeviceRouting, SoftmaxAgreesWithTheHostToAFewUlps) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  const ddm::cuda_context ctx;
  const auto logits = routing_logits<T>(300);
  batch<T> expect(300, K);
  ddm::softmax_rows(host, logits.cview(), 0.7, expect.view());
  const auto d_logits = ddm::test::on_device<T>(ctx, logits, 3);
  auto d_probs = ddm::test::on_device<T>(ctx, batch<T>(300, K), 1);
  ddm::softmax_rows(ctx, d_logits.view.as_const(), 0.7, d_probs.view);
  const auto got = ddm::cuda::to_host(ctx, d_probs.view);
  double worst = 0;
  for (index_t r = 0; r < 300; ++r)
    for (index_t c = 0; c < K; ++c) {
      const double rel = std::abs(static_cast<double>(got(r, c)) - static_cast<double>(expect(r, c))) /
                         static_cast<double>(expect(r, c));
      worst = std::max(worst, rel);
      ASSERT_LE(rel, (sizeof(T) == 4 ? 2.01 : 8.0) * std::numeric_limits<T>::epsilon()) << r << ", " << c;
    }
  std::printf("[ measured ] softmax (%s): max relative |device - host| = %.2e\n", sizeof(T) == 4 ? "float" : "double",
              worst);
}

TYPED_TEST(DeviceRouting, ANonFiniteLogitGivesTheHostsErrorNamingRouterRowAndExpert) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  const ddm::cuda_context ctx;
  auto logits = routing_logits<T>(300);
  logits(200, 1) = std::numeric_limits<T>::infinity();
  logits(37, 5) = std::numeric_limits<T>::quiet_NaN();  // the first in row-major order
  batch<T> probs(300, K);
  const auto d_logits = ddm::cuda::to_device(ctx, logits);
  batch<T, cuda_space> d_probs(ctx, 300, K);
  const std::string expected = thrown_message([&] { ddm::softmax_rows(host, logits.cview(), 1.0, probs.view(), "r1", 0.25); });
  const std::string got = thrown_message([&] { ddm::softmax_rows(ctx, d_logits.cview(), 1.0, d_probs.view(), "r1", 0.25); });
  std::printf("[ measured ] %s\n", got.c_str());
  EXPECT_NE(expected.find("row 37, expert 5"), std::string::npos) << expected;
  EXPECT_EQ(got, expected);
  EXPECT_THROW(ddm::softmax_rows(ctx, d_logits.cview(), 1.0, d_probs.view()), ddm::non_finite_error);
}

// ---------------------------------------------------------------------------------------------
// Policies

// Runs `policy` on the host and on the device from the same probabilities: the selections are
// identical and the weights (double arithmetic, one rounding to T, on both sides) equal.
template <class T, class Policy>
void expect_policy_agrees(const Policy& policy, double t) {
  const ddm::cuda_context ctx;
  const auto logits = routing_logits<T>(500);
  batch<T> p(500, K), w(500, K);
  batch<std::uint8_t> sel(500, K);
  ddm::softmax_rows(host, logits.cview(), 1.3, p.view());
  policy.select(host, p.cview(), t, w.view(), sel.view());
  const auto dp = ddm::cuda::to_device(ctx, p);
  auto dw = ddm::test::on_device<T>(ctx, batch<T>(500, K), 2);  // strided outputs
  batch<std::uint8_t, cuda_space> dsel(ctx, 500, K);
  policy.select(ctx, dp.cview(), t, dw.view, dsel.view());
  const auto gw = ddm::cuda::to_host(ctx, dw.view);
  const auto gsel = ddm::cuda::to_host(ctx, dsel);
  std::size_t chosen = 0;
  for (index_t r = 0; r < 500; ++r)
    for (index_t c = 0; c < K; ++c) {
      ASSERT_EQ(gsel(r, c), sel(r, c)) << policy.name() << " at t = " << t << ", (" << r << ", " << c << ")";
      ASSERT_EQ(gw(r, c), w(r, c)) << policy.name() << " at t = " << t << ", (" << r << ", " << c << ")";
      chosen += gsel(r, c);
    }
  // The tie rows keep every tied expert, as on the host.
  std::printf("[ measured ] %s at t = %.1f: %zu (row, expert) pairs selected, identical to the host\n",
              policy.name().c_str(), t, chosen);
}

TYPED_TEST(DeviceRouting, EveryPolicyAgreesWithTheHost) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  expect_policy_agrees<T>(ddm::top_1(), 0.5);
  expect_policy_agrees<T>(ddm::top_2(), 0.5);
  expect_policy_agrees<T>(ddm::top_k{K}, 0.5);
  expect_policy_agrees<T>(ddm::full_ensemble{}, 0.5);
  expect_policy_agrees<T>(ddm::full_ensemble{0.05}, 0.5);
  expect_policy_agrees<T>(ddm::top_p{0.9}, 0.5);
  expect_policy_agrees<T>(ddm::top_p{1.0}, 0.5);
  expect_policy_agrees<T>(ddm::threshold{0.1}, 0.5);
  const ddm::scheduled sched{0.5, ddm::full_ensemble{}, ddm::top_2()};
  expect_policy_agrees<T>(sched, 0.7);
  expect_policy_agrees<T>(sched, 0.3);
  // The gated policies (ddm/routing/gated_policy.hpp), alone and scheduled.
  expect_policy_agrees<T>(ddm::confidence_adaptive{0.6}, 0.5);
  expect_policy_agrees<T>(ddm::confidence_adaptive{0.0}, 0.5);
  expect_policy_agrees<T>(ddm::ratio_gated{0.4}, 0.5);
  expect_policy_agrees<T>(ddm::ratio_gated{1.0}, 0.5);
  const ddm::scheduled gated{0.6, ddm::top_2(), ddm::confidence_adaptive{0.8}};
  expect_policy_agrees<T>(gated, 0.8);
  expect_policy_agrees<T>(gated, 0.2);
}

TEST(DeviceRoutingErrors, InvalidProbabilitiesAndBadArgumentsGiveTheHostsErrors) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx;
  batch<float> p(20, K), w(20, K);
  batch<std::uint8_t> sel(20, K);
  ddm::fill(host, p.view(), 0.125F);
  p(11, 3) = -0.5F;
  p(15, 0) = std::numeric_limits<float>::quiet_NaN();
  const auto dp = ddm::cuda::to_device(ctx, p);
  batch<float, cuda_space> dw(ctx, 20, K);
  batch<std::uint8_t, cuda_space> dsel(ctx, 20, K);
  const auto expected = thrown_message([&] { ddm::top_2().select(host, p.cview(), 0.5, w.view(), sel.view()); });
  const auto got = thrown_message([&] { ddm::top_2().select(ctx, dp.cview(), 0.5, dw.view(), dsel.view()); });
  EXPECT_NE(expected.find("row 11"), std::string::npos) << expected;
  EXPECT_EQ(got, expected);
  EXPECT_THROW(ddm::top_k{9}.select(ctx, dp.cview(), 0.5, dw.view(), dsel.view()), ddm::argument_error);
}

// ---------------------------------------------------------------------------------------------
// Grouping, gather, scatter-add

TEST(DeviceGrouping, IsTheHostsCountingSortIndexForIndex) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx;
  for (index_t rows : {index_t{1}, index_t{37}, index_t{5000}}) {
    batch<std::uint8_t> sel(rows, K);
    batch<double> u(rows, K);
    ddm::fill_uniform(host, u.view(), static_cast<std::uint64_t>(rows));
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < K; ++c) sel(r, c) = (u(r, c) < 0.3 || c == 7) && c != 5 ? 1 : 0;  // expert 5: nobody
    batch<std::int32_t> ri(rows * K, 1);
    std::vector<index_t> offsets(K + 1);
    ddm::group_rows_by_expert(host, sel.cview(), ri.view(), std::span<index_t>(offsets));

    const auto dsel = ddm::test::on_device<std::uint8_t>(ctx, sel, 3);
    batch<std::int32_t, cuda_space> dri(ctx, rows * K, 1);
    std::vector<index_t> doffsets(K + 1, -1);
    ddm::group_rows_by_expert(ctx, dsel.view.as_const(), dri.view(), std::span<index_t>(doffsets));
    EXPECT_EQ(doffsets, offsets) << rows << " rows";
    const auto got = ddm::cuda::to_host(ctx, dri);
    for (index_t i = 0; i < offsets[K]; ++i) ASSERT_EQ(got(i, 0), ri(i, 0)) << rows << " rows, index " << i;
    EXPECT_EQ(offsets[6] - offsets[5], 0);
    EXPECT_EQ(offsets[8] - offsets[7], rows);
  }
}

TYPED_TEST(DeviceRouting, GatherIsExactAndScatterAddAgreesWithTheHost) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  const ddm::cuda_context ctx;
  constexpr index_t rows = 300;
  for (index_t cols : {index_t{3}, index_t{8}, index_t{1027}}) {
    const auto src = scaled_noise<T>(rows, cols, 41);
    const auto w = scaled_noise<T>(rows, K, 42);
    batch<std::int32_t> idx(100, 1);
    for (index_t i = 0; i < 100; ++i) idx(i, 0) = static_cast<std::int32_t>((i * 37 + 11) % rows);  // distinct
    batch<T> gathered(100, cols);
    ddm::gather_rows(host, src.cview(), idx.cview(), gathered.view());
    const auto v_before = scaled_noise<T>(rows, cols, 43);
    auto v = scaled_noise<T>(rows, cols, 43);
    ddm::scatter_add_weighted(host, v.view(), w.cview(), 3, idx.cview(), gathered.cview());

    for (index_t pad : {index_t{0}, index_t{1}}) {
      const auto dsrc = ddm::test::on_device<T>(ctx, src, pad);
      const auto didx = ddm::cuda::to_device(ctx, idx);
      auto dg = ddm::test::on_device<T>(ctx, batch<T>(100, cols), pad);
      ddm::gather_rows(ctx, dsrc.view.as_const(), didx.cview(), dg.view);
      const auto g = ddm::cuda::to_host(ctx, dg.view);
      for (index_t i = 0; i < 100; ++i)
        for (index_t c = 0; c < cols; ++c) ASSERT_EQ(g(i, c), gathered(i, c)) << "gather " << i << ", " << c;
      auto dv = ddm::test::on_device<T>(ctx, v_before, pad);
      const auto dw = ddm::cuda::to_device(ctx, w);
      ddm::scatter_add_weighted(ctx, dv.view, dw.cview(), 3, didx.cview(), dg.view.as_const());
      const auto got = ddm::cuda::to_host(ctx, dv.view);
      const auto& before = v_before;
      for (index_t r = 0; r < rows; ++r)
        for (index_t c = 0; c < cols; ++c) {
          // v + w x: at most one rounding apart (a fused multiply-add on the device).
          const double scale = std::abs(static_cast<double>(before(r, c))) + std::abs(static_cast<double>(v(r, c)));
          ASSERT_LE(std::abs(static_cast<double>(got(r, c)) - static_cast<double>(v(r, c))),
                    2 * std::numeric_limits<T>::epsilon() * scale)
              << "scatter-add " << r << ", " << c;
        }
    }
  }
  // Indices outside the batch are an argument_error, as on the host (not a fault of the device).
  batch<std::int32_t> bad(2, 1);
  bad(0, 0) = 1;
  bad(1, 0) = static_cast<std::int32_t>(rows);
  const auto dbad = ddm::cuda::to_device(ctx, bad);
  const batch<T, cuda_space> src(ctx, rows, 4);
  batch<T, cuda_space> dst(ctx, 2, 4);
  const std::string what = thrown_message([&] { ddm::gather_rows(ctx, src.cview(), dbad.cview(), dst.view()); });
  EXPECT_NE(what.find("rows(1, 0) is outside [0, 300)"), std::string::npos) << what;
}

// ---------------------------------------------------------------------------------------------
// The routed field

// Expert k's velocity, as in the host tests: distinct per expert, depends on x and t.
double value(int k, double x, double t) { return (k + 1) + x * (0.5 + k) * t; }

struct call_log {
  int calls = 0;
  std::vector<int> rows_seen;     // column 0 of x, which the tests set to the row index
  std::vector<int> indices_seen;  // row indices received
};

// A device expert that copies what it is given to the host (waiting for the stream: a test
// expert may) and writes value(k, x, t) back.
struct logging_expert {
  int k;
  call_log* log;
  ddm::cuda_context ctx;

  void operator()(batch_view<const double, cuda_space> x, double t, batch_view<double, cuda_space> v) const {
    ++log->calls;
    const auto hx = ddm::cuda::to_host(ctx, x);
    batch<double> hv(x.rows(), x.cols());
    for (index_t r = 0; r < x.rows(); ++r) {
      log->rows_seen.push_back(static_cast<int>(hx(r, 0)));
      for (index_t c = 0; c < x.cols(); ++c) hv(r, c) = value(k, hx(r, c), t);
    }
    ddm::copy(ctx, v, hv);
  }
  void operator()(batch_view<const double, cuda_space> x, double t, batch_view<double, cuda_space> v,
                  ddm::row_index_view<cuda_space> rows) const {
    (*this)(x, t, v);
    const auto h = ddm::cuda::to_host(ctx, rows);
    for (index_t r = 0; r < rows.rows(); ++r) log->indices_seen.push_back(h(r, 0));
  }
};

// Row r prefers expert r % 7 (logits -(k - m - 1/4)^2: the quarter keeps m - 1 and m + 1 from tying,
// and tied experts would all be kept); expert 7 has logit -100.
void peaked_logits(batch_view<const double> x, batch_view<double> logits) {
  for (index_t r = 0; r < x.rows(); ++r) {
    const auto m = static_cast<double>(static_cast<index_t>(x(r, 0)) % 7);
    for (index_t k = 0; k < K; ++k)
      logits(r, k) = k == 7 ? -100.0 : -(static_cast<double>(k) - m - 0.25) * (static_cast<double>(k) - m - 0.25);
  }
}

auto device_peaked_router(const ddm::cuda_context& ctx) {
  return ddm::router_fn(K, "peaked", [ctx](batch_view<const double, cuda_space> x, double /*t*/,
                                            batch_view<double, cuda_space> logits) {
    const auto hx = ddm::cuda::to_host(ctx, x);
    batch<double> hl(x.rows(), K);
    peaked_logits(hx.cview(), hl.view());
    ddm::copy(ctx, logits, hl);
  });
}

batch<double> rows_as_x(index_t b, index_t d) {
  batch<double> x(b, d);
  ddm::fill_normal(host, x.view(), 99);
  for (index_t r = 0; r < b; ++r) x(r, 0) = static_cast<double>(r);
  return x;
}

template <class Policy>
void check_device_routing(const Policy& policy, index_t b, double t) {
  const ddm::cuda_context ctx;
  std::vector<call_log> logs(K);
  std::vector<logging_expert> experts;
  for (int k = 0; k < K; ++k) experts.push_back({k, &logs[static_cast<std::size_t>(k)], ctx});
  auto field = ddm::make_routed_field<double, cuda_space>(ddm::expert_vector<logging_expert>(experts),
                                                          device_peaked_router(ctx), policy, ctx);
  const auto x = rows_as_x(b, 3);
  const auto dx = ddm::cuda::to_device(ctx, x);
  batch<double, cuda_space> dv(ctx, b, 3);
  // A sub-batch of a larger batch: the experts get composed indices (original row 2 r + 1).
  batch<std::int32_t> outer(b, 1);
  for (index_t r = 0; r < b; ++r) outer(r, 0) = static_cast<std::int32_t>(2 * r + 1);
  const auto douter = ddm::cuda::to_device(ctx, outer);
  field(dx.cview(), t, dv.view(), douter.cview());

  // The host's decision from the same logits.
  batch<double> logits(b, K), p(b, K), w(b, K);
  batch<std::uint8_t> sel(b, K);
  peaked_logits(x.cview(), logits.view());
  ddm::softmax_rows(host, logits.cview(), 1.0, p.view());
  policy.select(host, p.cview(), t, w.view(), sel.view());

  for (int k = 0; k < K; ++k) {
    std::vector<int> expected_rows;
    std::vector<int> expected_indices;
    for (index_t r = 0; r < b; ++r)
      if (sel(r, k)) {
        expected_rows.push_back(static_cast<int>(r));
        expected_indices.push_back(static_cast<int>(2 * r + 1));
      }
    const auto& log = logs[static_cast<std::size_t>(k)];
    EXPECT_EQ(log.calls, expected_rows.empty() ? 0 : 1) << policy.name() << " expert " << k;
    EXPECT_EQ(log.rows_seen, expected_rows) << policy.name() << " expert " << k;
    EXPECT_EQ(log.indices_seen, expected_indices) << policy.name() << " expert " << k;
    EXPECT_EQ(field.last_expert_rows()[static_cast<std::size_t>(k)], expected_rows.size());
  }
  const auto v = ddm::cuda::to_host(ctx, dv);
  double worst = 0;
  for (index_t r = 0; r < b; ++r)
    for (index_t c = 0; c < 3; ++c) {
      double expected = 0;
      for (int k = 0; k < K; ++k) expected += w(r, k) * value(k, x(r, c), t);
      worst = std::max(worst, std::abs(v(r, c) - expected) / (1 + std::abs(expected)));
    }
  EXPECT_LT(worst, 1e-13) << policy.name();
  const auto dsel = ddm::cuda::to_host(ctx, field.last_decision().selected);
  const auto dw = ddm::cuda::to_host(ctx, field.last_decision().weights);
  for (index_t r = 0; r < b; ++r)
    for (index_t k = 0; k < K; ++k) {
      ASSERT_EQ(dsel(r, k), sel(r, k)) << r << ", " << k;
      // exp() on the device and in the host's libm may differ in the last bit.
      ASSERT_NEAR(dw(r, k), w(r, k), 1e-13 * std::abs(w(r, k))) << r << ", " << k;
    }
  std::printf("[ measured ] device routed field, %s, B = %ld: every expert called once on exactly its rows; "
              "max relative |v - sum w v_k| = %.1e\n",
              policy.name().c_str(), static_cast<long>(b), worst);
}

TEST(DeviceRoutedField, EachExpertIsCalledOnceOnExactlyItsRowsWithComposedIndices) {
  DDM_TEST_REQUIRE_GPU();
  check_device_routing(ddm::top_1(), 20, 0.6);
  check_device_routing(ddm::top_2(), 50, 0.6);
  check_device_routing(ddm::full_ensemble{1e-6}, 30, 0.6);
  check_device_routing(ddm::threshold{0.01}, 64, 0.6);
  check_device_routing(ddm::top_p{0.95}, 64, 0.6);
  check_device_routing(ddm::full_ensemble{}, 7, 0.6);  // every expert, every row: no gather
}

TEST(DeviceRoutedField, CountsCostAndObserversMatchTheHost) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx;
  std::vector<call_log> logs(K);
  std::vector<logging_expert> experts;
  for (int k = 0; k < K; ++k) experts.push_back({k, &logs[static_cast<std::size_t>(k)], ctx});
  auto field = ddm::make_routed_field<double, cuda_space>(ddm::expert_vector<logging_expert>(experts),
                                                          device_peaked_router(ctx), ddm::top_2(), ctx);
  std::vector<std::vector<std::size_t>> seen_counts;
  std::vector<double> seen_t;
  field.add_observer([&](const ddm::routing_event<double, cuda_space>& e) {
    seen_counts.emplace_back(e.rows_per_expert.begin(), e.rows_per_expert.end());
    seen_t.push_back(e.t);
    const auto sel = ddm::cuda::to_host(ctx, e.selected);
    std::size_t pairs = 0;
    for (index_t r = 0; r < sel.rows(); ++r)
      for (index_t k = 0; k < K; ++k) pairs += sel(r, k);
    EXPECT_EQ(pairs, 2 * static_cast<std::size_t>(sel.rows()));
  });
  const auto x = ddm::cuda::to_device(ctx, rows_as_x(70, 2));
  batch<double, cuda_space> v(ctx, 70, 2);
  field(x.cview(), 0.9, v.view());
  field(x.cview(), 0.4, v.view());
  ASSERT_EQ(seen_counts.size(), 2U);
  EXPECT_EQ(seen_t, (std::vector<double>{0.9, 0.4}));
  std::size_t per_call = 0;
  for (auto n : seen_counts[0]) per_call += n;
  EXPECT_EQ(per_call, 140U);
  EXPECT_EQ(field.calls(), 2U);
  EXPECT_EQ(field.rows_routed(), 140U);
  EXPECT_EQ(field.expert_evaluations(), 280U);
  EXPECT_DOUBLE_EQ(field.relative_cost(), 0.25);
  EXPECT_EQ(seen_counts[0][7], 0U);  // expert 7 (logit -100) is never selected by top-2
  EXPECT_EQ(field.expert_calls()[7], 0U);
  EXPECT_TRUE(field.fused_decision());
}

TEST(DeviceRoutedField, TopKWithKEqualToTheExpertCountEqualsTheFullEnsembleRenormalized) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx;
  const ddm::synthetic::analytic_ddm model;
  const ddm::cuda::device_analytic_ddm dev(ctx, model);
  auto full = ddm::cuda::make_analytic_routed_field<float>(dev, 2.0, ddm::full_ensemble{});
  auto all_k = ddm::cuda::make_analytic_routed_field<float>(dev, 2.0, ddm::top_k{K});
  const auto x = ddm::cuda::to_device(ctx, scaled_noise<float>(512, model.dim(), 5, 2.0));
  batch<float, cuda_space> v1(ctx, 512, model.dim()), v2(ctx, 512, model.dim());
  double worst = 0;
  for (double t : {0.95, 0.5, 0.05}) {
    full(x.cview(), t, v1.view());
    all_k(x.cview(), t, v2.view());
    const auto a = ddm::cuda::to_host(ctx, v1);
    const auto b = ddm::cuda::to_host(ctx, v2);
    for (index_t r = 0; r < 512; ++r) {
      double scale = 0, diff = 0;
      for (index_t c = 0; c < model.dim(); ++c) {
        scale = std::max(scale, std::abs(static_cast<double>(a(r, c))));
        diff = std::max(diff, std::abs(static_cast<double>(a(r, c)) - static_cast<double>(b(r, c))));
      }
      worst = std::max(worst, diff / std::max(scale, 1.0));
    }
  }
  // The weights differ only by the division by sum_k p_k = 1 + O(K eps): a few ulps of float.
  std::printf("[ measured ] top_%ld vs full ensemble on device: max relative difference %.2e\n", static_cast<long>(K), worst);
  EXPECT_LT(worst, 1e-6);
  EXPECT_EQ(all_k.expert_evaluations(), full.expert_evaluations());
}

// The device routed field of the analytic DDM follows the host's: the same decisions and the
// combined velocities within 1e-5 of each row's scale, for every policy.
template <class Policy>
void expect_routed_field_agrees(const ddm::synthetic::analytic_ddm& model, const ddm::cuda::device_analytic_ddm& dev,
                                const Policy& policy) {
  const ddm::cuda_context& ctx = dev.context();
  constexpr index_t rows = 512;
  auto h_field = ddm::make_routed_field<float>(model.experts(), model.router(2.0), policy);
  auto d_field = ddm::cuda::make_analytic_routed_field<float>(dev, 2.0, policy);
  const auto x = scaled_noise<float>(rows, model.dim(), 6, 2.5);
  const auto dx = ddm::test::on_device<float>(ctx, x, 1);  // strided input
  batch<float> v(rows, model.dim());
  batch<float, cuda_space> dv(ctx, rows, model.dim());
  double worst = 0;
  std::size_t mismatched = 0;
  for (double t : {1.0, 0.9, 0.5, 0.1, 0.0}) {
    h_field(x.cview(), t, v.view());
    d_field(dx.view.as_const(), t, dv.view());
    const auto got = ddm::cuda::to_host(ctx, dv);
    const auto sel = ddm::cuda::to_host(ctx, d_field.last_decision().selected);
    for (index_t r = 0; r < rows; ++r) {
      for (index_t k = 0; k < K; ++k) mismatched += sel(r, k) != h_field.last_decision().selected(r, k);
      double scale = 0, diff = 0;
      for (index_t c = 0; c < model.dim(); ++c) {
        scale = std::max(scale, std::abs(static_cast<double>(v(r, c))));
        diff = std::max(diff, std::abs(static_cast<double>(got(r, c)) - static_cast<double>(v(r, c))));
      }
      worst = std::max(worst, diff / std::max(scale, 1.0));
    }
    for (std::size_t k = 0; k < static_cast<std::size_t>(K); ++k)
      EXPECT_EQ(d_field.last_expert_rows()[k], h_field.last_expert_rows()[k]) << policy.name() << " at t = " << t;
  }
  std::printf("[ measured ] analytic DDM routed field, %s: max |device - host| = %.2e of the row scale, %zu decisions "
              "differ\n",
              policy.name().c_str(), worst, mismatched);
  EXPECT_EQ(mismatched, 0U) << policy.name();
  EXPECT_LT(worst, 1e-5) << policy.name();
  EXPECT_EQ(d_field.expert_evaluations(), h_field.expert_evaluations()) << policy.name();
}

// The calibrated router wraps a device router and divides its logits by tau(t) on the device.
TEST(DeviceCalibratedRouter, DividesTheDeviceRoutersLogitsByTauOfT) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx;
  ddm::calibrated_router<decltype(device_peaked_router(ctx)), cuda_space> router(
      device_peaked_router(ctx), ddm::temperature_schedule({0.0, 1.0}, {0.5, 2.5}), ctx);
  static_assert(ddm::router<decltype(router), double, cuda_space>);
  batch<double> x(40, 2);
  for (index_t r = 0; r < 40; ++r) {
    x(r, 0) = static_cast<double>(r);
    x(r, 1) = 0.0;
  }
  const auto dx = ddm::cuda::to_device(ctx, x);
  batch<double, cuda_space> dl(ctx, 40, K);
  for (double t : {0.0, 0.3, 1.0}) {
    router(dx.cview(), t, dl.view());
    const auto got = ddm::cuda::to_host(ctx, dl);
    batch<double> want(40, K);
    peaked_logits(x.cview(), want.view());
    for (index_t r = 0; r < 40; ++r)
      for (index_t k = 0; k < K; ++k) EXPECT_DOUBLE_EQ(got(r, k), want(r, k) / (0.5 + 2.0 * t)) << t;
  }
}

TEST(DeviceRoutedField, AnalyticDdmAgreesWithTheHostForEveryPolicy) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx;
  const ddm::synthetic::analytic_ddm model;
  const ddm::cuda::device_analytic_ddm dev(ctx, model);
  expect_routed_field_agrees(model, dev, ddm::top_1());
  expect_routed_field_agrees(model, dev, ddm::top_2());
  expect_routed_field_agrees(model, dev, ddm::full_ensemble{});
  expect_routed_field_agrees(model, dev, ddm::full_ensemble{1e-6});
  expect_routed_field_agrees(model, dev, ddm::top_p{0.9});
  expect_routed_field_agrees(model, dev, ddm::threshold{0.05});
  expect_routed_field_agrees(model, dev, ddm::scheduled{0.5, ddm::full_ensemble{}, ddm::top_2()});
  expect_routed_field_agrees(model, dev, ddm::confidence_adaptive{0.7});
  expect_routed_field_agrees(model, dev, ddm::ratio_gated{0.3});
}

TEST(DeviceRoutedField, ATypeErasedPolicyTakesTheUnfusedPathWithTheSameResult) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx;
  const ddm::synthetic::analytic_ddm model;
  const ddm::cuda::device_analytic_ddm dev(ctx, model);
  auto fused = ddm::cuda::make_analytic_routed_field<float>(dev, 2.0, ddm::top_p{0.8});
  auto erased = ddm::make_routed_field<float, cuda_space>(
      dev.experts(), dev.router(2.0), ddm::any_routing_policy<float, cuda_space>(ddm::top_p{0.8}), ctx);
  static_assert(!decltype(erased)::fused_decision());
  const auto x = ddm::cuda::to_device(ctx, scaled_noise<float>(300, model.dim(), 8, 2.0));
  batch<float, cuda_space> v1(ctx, 300, model.dim()), v2(ctx, 300, model.dim());
  fused(x.cview(), 0.4, v1.view());
  erased(x.cview(), 0.4, v2.view());
  const auto a = ddm::cuda::to_host(ctx, v1);
  const auto b = ddm::cuda::to_host(ctx, v2);
  for (index_t r = 0; r < 300; ++r)
    for (index_t c = 0; c < model.dim(); ++c) ASSERT_EQ(a(r, c), b(r, c)) << r << ", " << c;
}

TEST(DeviceRoutedField, ErrorsAreTheHostsErrors) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx;
  // A router that returns NaN for row 3, expert 2 (and infinity later on).
  auto bad_logits = [](batch_view<const double> x, batch_view<double> logits) {
    peaked_logits(x, logits);
    logits(3, 2) = std::numeric_limits<double>::quiet_NaN();
    logits(9, 0) = std::numeric_limits<double>::infinity();
  };
  std::vector<call_log> logs(K);
  std::vector<logging_expert> experts;
  for (int k = 0; k < K; ++k) experts.push_back({k, &logs[static_cast<std::size_t>(k)], ctx});
  auto d_router = ddm::router_fn(K, "broken", [ctx, bad_logits](batch_view<const double, cuda_space> x, double,
                                                                batch_view<double, cuda_space> logits) {
    const auto hx = ddm::cuda::to_host(ctx, x);
    batch<double> hl(x.rows(), K);
    bad_logits(hx.cview(), hl.view());
    ddm::copy(ctx, logits, hl);
  });
  auto d_field = ddm::make_routed_field<double, cuda_space>(ddm::expert_vector<logging_expert>(experts), d_router,
                                                            ddm::top_2(), ctx);
  const auto x = rows_as_x(20, 2);
  const auto dx = ddm::cuda::to_device(ctx, x);
  batch<double, cuda_space> dv(ctx, 20, 2);
  // The host's error for the same logits (the routed field's first failure is its softmax's).
  const auto expected = thrown_message([&] {
    batch<double> logits(20, K), p(20, K);
    bad_logits(x.cview(), logits.view());
    ddm::softmax_rows(host, logits.cview(), 1.0, p.view(), "broken", 0.5);
  });
  const auto got = thrown_message([&] { d_field(dx.cview(), 0.5, dv.view()); });
  std::printf("[ measured ] %s\n", got.c_str());
  EXPECT_EQ(got, expected);
  for (const auto& log : logs) EXPECT_EQ(log.calls, 0);  // nothing evaluated after the failure

  // A policy argument that does not fit K: the policy's own message.
  const ddm::synthetic::analytic_ddm model;
  const ddm::cuda::device_analytic_ddm dev(ctx, model);
  auto too_many = ddm::cuda::make_analytic_routed_field<float>(dev, 1.0, ddm::top_k{9});
  const auto xf = ddm::cuda::to_device(ctx, scaled_noise<float>(4, model.dim(), 1));
  batch<float, cuda_space> vf(ctx, 4, model.dim());
  const auto what = thrown_message([&] { too_many(xf.cview(), 0.5, vf.view()); });
  EXPECT_NE(what.find("ddm::top_k::select: k = 9"), std::string::npos) << what;
  // v overlapping x, t outside [0, 1]: checked before any device work.
  EXPECT_THROW(too_many(xf.cview(), 1.5, vf.view()), ddm::argument_error);
}

}  // namespace
