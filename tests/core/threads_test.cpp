// Host threads (host_context::threads): every primitive that splits rows over threads gives the
// same bits at 1, 2, 3 and 7 threads, and so do a whole routed sample of the analytic DDM and the
// diagnostics that split rows (expert disagreement, angular deviation, alignment ranks).
// The machine running the tests may have 2 cores; oversubscription only slows this test down.
// min_work_per_thread = 1 makes even these small batches split over every thread.

#include <gtest/gtest.h>

#include <cstdint>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <span>
#include <vector>

#include <ddm/ddm.hpp>

#include "support/same_bits.hpp"

namespace {

constexpr int thread_counts[] = {1, 2, 3, 7};

ddm::host_context threads(int n) { return ddm::host_context{.threads = n, .min_work_per_thread = 1}; }

using ddm::test::same_bits;

template <class T>
ddm::batch<T> noise(ddm::index_t rows, ddm::index_t cols, std::uint64_t seed) {
  ddm::batch<T> x(rows, cols);
  ddm::fill_normal(ddm::host_context{}, x.view(), seed);
  return x;
}

// Runs f(ctx) -> batch at every thread count and expects the 1-thread result's bits.
template <class F>
void expect_same_bits_for_every_thread_count(const char* what, F&& f) {
  const auto reference = f(threads(1));
  for (int n : thread_counts) {
    const auto result = f(threads(n));
    EXPECT_TRUE(same_bits(result.cview(), reference.cview())) << what << " differs at " << n << " threads";
  }
}

TEST(HostThreads, TheSplitUsesEveryThreadWhenOpenMPIsThere) {
  // Otherwise the other tests would compare the one-thread path with itself.
  if (!ddm::host_threads_available()) GTEST_SKIP() << "ddm compiled without OpenMP: every loop runs inline";
  EXPECT_EQ(ddm::row_parts(threads(7), 37, 1), 7);
  EXPECT_EQ(ddm::row_parts(threads(7), 3, 1), 3);  // never more parts than rows
  EXPECT_EQ(ddm::row_parts(ddm::host_context{.threads = 4}, 64, 64), 1);  // too little work to wake threads
  EXPECT_EQ(ddm::row_parts(ddm::host_context{}, 1 << 20, 1 << 10), 1);   // the default: one thread
}

TEST(HostThreads, RangesCoverEveryRowOnceInAlignedParts) {
  for (int n : thread_counts) {
    std::vector<int> hits(101, 0);
    std::vector<int> starts(101, 0);  // each thread writes only its own ranges' entries
    ddm::for_row_ranges(
        threads(n), 101, 1,
        [&](const ddm::row_range& range) {
          for (ddm::index_t r = range.begin; r < range.end; ++r) ++hits[static_cast<std::size_t>(r)];
          starts[static_cast<std::size_t>(range.begin)] = 1;
        },
        4);
    for (std::size_t r = 0; r < starts.size(); ++r)
      if (starts[r] != 0) {
        EXPECT_EQ(r % 4, 0U) << "a range starts at row " << r << ", " << n << " threads";
      }
    for (int h : hits) EXPECT_EQ(h, 1) << n << " threads";
  }
}

TEST(HostThreads, ANonPositiveThreadCountIsAnArgumentError) {
  const ddm::host_context bad{.threads = 0};
  ddm::batch<float> x(4, 4);
  try {
    ddm::fill(bad, x.view(), 1.0f);
    FAIL() << "threads = 0 was accepted";
  } catch (const ddm::argument_error& e) {
    EXPECT_NE(std::string(e.what()).find("threads"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("0"), std::string::npos) << e.what();
  }
}

TEST(HostThreads, TheAlgebraGivesTheSameBits) {
  constexpr ddm::index_t B = 37, D = 29;
  const auto a = noise<float>(B, D, 1), b = noise<float>(B, D, 2), c = noise<float>(B, D, 3);
  expect_same_bits_for_every_thread_count("lincomb (contiguous)", [&](const ddm::host_context& ctx) {
    ddm::batch<float> out(B, D);
    ddm::lincomb(ctx, out.view(), {0.3, -1.7, 2.25}, a, b, c);
    return out;
  });
  // Rows with a stride: the row-by-row path.
  ddm::batch<float> wide(B, D + 5);
  ddm::fill_normal(ddm::host_context{}, wide.view(), 4);
  const ddm::batch_view<const float> strided(wide.data(), B, D, D + 5);
  expect_same_bits_for_every_thread_count("lincomb (strided)", [&](const ddm::host_context& ctx) {
    ddm::batch<float> out(B, D);
    ddm::lincomb(ctx, out.view(), {0.5, 1.25}, strided, a);
    return out;
  });
  expect_same_bits_for_every_thread_count("fill", [&](const ddm::host_context& ctx) {
    ddm::batch<double> out(B, D);
    ddm::fill(ctx, out.view(), 0.125);
    return out;
  });
  expect_same_bits_for_every_thread_count("row_dot and row_norm", [&](const ddm::host_context& ctx) {
    ddm::batch<double> out(B, 2);
    ddm::row_dot(ctx, a, b, ddm::batch_view<double>(out.data(), B, 1, 2));
    ddm::row_norm(ctx, c, ddm::batch_view<double>(out.data() + 1, B, 1, 2));
    return out;
  });
  const double reference = ddm::max_scaled_rms(threads(1), a, b, c, 1e-3, 1e-2);
  for (int n : thread_counts) {
    EXPECT_EQ(ddm::max_scaled_rms(threads(n), a, b, c, 1e-3, 1e-2), reference) << n << " threads";
    EXPECT_TRUE(ddm::all_finite(threads(n), a)) << n << " threads";
  }
}

TEST(HostThreads, ReductionsSeeANonFiniteValueInAnyRow) {
  constexpr ddm::index_t B = 37, D = 11;
  for (ddm::index_t bad_row : {ddm::index_t{0}, ddm::index_t{18}, B - 1}) {
    auto x = noise<double>(B, D, 5);
    x(bad_row, 3) = std::numeric_limits<double>::quiet_NaN();
    const auto y = noise<double>(B, D, 6);
    for (int n : thread_counts) {
      EXPECT_FALSE(ddm::all_finite(threads(n), x)) << "row " << bad_row << ", " << n << " threads";
      // A NaN error in any row is a NaN norm, not one hidden by the rows after it.
      EXPECT_TRUE(std::isnan(ddm::max_scaled_rms(threads(n), x, y, y, 1e-3, 1e-3)))
          << "row " << bad_row << ", " << n << " threads";
    }
  }
}

TEST(HostThreads, RowOperationsGiveTheSameBits) {
  constexpr ddm::index_t B = 23, D = 17;
  const auto x = noise<double>(B, D, 7), y = noise<double>(B, D, 8);
  std::vector<double> c(B);
  for (std::size_t r = 0; r < c.size(); ++r) c[r] = 0.1 * static_cast<double>(r) - 1.0;
  expect_same_bits_for_every_thread_count("axpy_rows, scale_rows, row_dots", [&](const ddm::host_context& ctx) {
    ddm::batch<double> out(B, 2 * D + 1);
    ddm::axpy_rows(ctx, ddm::batch_view<double>(out.data(), B, D, 2 * D + 1), x.cview(), c, y.cview());
    ddm::scale_rows(ctx, ddm::batch_view<double>(out.data() + D, B, D, 2 * D + 1), c, x.cview());
    std::vector<double> dots(B);
    ddm::row_dots(ctx, x.cview(), y.cview(), std::span<double>(dots));
    for (ddm::index_t r = 0; r < B; ++r) out(r, 2 * D) = dots[static_cast<std::size_t>(r)];
    return out;
  });
}

TEST(HostThreads, RoutingGivesTheSameBitsAndNamesTheFirstBadRow) {
  constexpr ddm::index_t B = 41, K = 8, D = 13;
  auto logits = noise<double>(B, K, 9);
  expect_same_bits_for_every_thread_count("softmax_rows and top_2", [&](const ddm::host_context& ctx) {
    ddm::batch<double> out(B, 2 * K);
    ddm::batch<std::uint8_t> selected(B, K);
    const ddm::batch_view<double> probs(out.data(), B, K, 2 * K);
    const ddm::batch_view<double> weights(out.data() + K, B, K, 2 * K);
    ddm::softmax_rows<double>(ctx, logits.cview(), 0.7, probs);
    ddm::top_2().select(ctx, probs.as_const(), 0.5, weights, selected.view());
    return out;
  });
  // The first bad row is named at any thread count, although later parts meet other bad rows.
  logits(30, 2) = std::numeric_limits<double>::infinity();
  logits(12, 5) = std::numeric_limits<double>::quiet_NaN();
  for (int n : thread_counts) {
    ddm::batch<double> probs(B, K);
    try {
      ddm::softmax_rows<double>(threads(n), logits.cview(), 1.0, probs.view());
      ADD_FAILURE() << "no error at " << n << " threads";
    } catch (const ddm::non_finite_error& e) {
      EXPECT_NE(std::string(e.what()).find("row 12, expert 5"), std::string::npos) << e.what();
    }
  }
  // Gather and the weighted scatter-add of one expert's rows.
  const auto x = noise<float>(B, D, 10);
  const auto w = noise<float>(B, K, 11);
  ddm::batch<std::int32_t> rows(B / 2, 1);
  for (ddm::index_t i = 0; i < rows.rows(); ++i) rows(i, 0) = static_cast<std::int32_t>((7 * i) % B);
  expect_same_bits_for_every_thread_count("gather_rows and scatter_add_weighted", [&](const ddm::host_context& ctx) {
    ddm::batch<float> sub(rows.rows(), D);
    ddm::gather_rows<float>(ctx, x.cview(), rows.cview(), sub.view());
    auto v = noise<float>(B, D, 12);
    ddm::scatter_add_weighted<float>(ctx, v.view(), w.cview(), 3, rows.cview(), sub.cview());
    return v;
  });
}

TEST(HostThreads, TheAnalyticDDMGivesTheSameBits) {
  ddm::synthetic::analytic_ddm_options o;
  o.dim = 40;  // not a multiple of any block: ragged tiles in every kernel
  const ddm::synthetic::analytic_ddm model(o);
  const auto x = noise<double>(45, o.dim, 13);
  expect_same_bits_for_every_thread_count("expert, mixture field, jvp, router", [&](const ddm::host_context& ctx) {
    ddm::batch<double> out(x.rows(), 3 * o.dim + 8);
    auto part = [&](ddm::index_t col, ddm::index_t cols) {
      return ddm::batch_view<double>(out.data() + col, x.rows(), cols, out.cols());
    };
    auto expert = model.expert(2, ctx);
    expert(x.cview(), 0.4, part(0, o.dim));
    auto mixture = model.mixture_field(ctx);
    mixture(x.cview(), 0.4, part(o.dim, o.dim));
    expert.jvp(x.cview(), 0.4, x.cview(), part(2 * o.dim, o.dim));
    auto router = model.router(1.5, ctx);
    router(x.cview(), 0.4, part(3 * o.dim, 8));
    return out;
  });
}

TEST(HostThreads, ARoutedSampleGivesTheSameBits) {
  ddm::synthetic::analytic_ddm_options o;
  o.dim = 24;
  const ddm::synthetic::analytic_ddm model(o);
  const auto z = noise<float>(29, o.dim, 14);
  auto run = [&](const ddm::host_context& ctx, auto policy, auto integ,
                 ddm::synthetic::arithmetic arith = ddm::synthetic::arithmetic::exact) {
    auto field =
        ddm::make_routed_field<float>(model.experts(ctx, arith), model.router(1.0, ctx, arith), policy, ctx);
    ddm::batch<float> x(z.rows(), z.cols());
    ddm::copy(ctx, x.view(), z);
    ddm::sample(ctx, ddm::sample_options{.check_finite = true}, field, x.view(), ddm::schedules::uniform(4), integ);
    return x;
  };
  expect_same_bits_for_every_thread_count("top-2, DPM-Solver++(2M)", [&](const ddm::host_context& ctx) {
    return run(ctx, ddm::top_2(), ddm::dpmpp_2m{});
  });
  expect_same_bits_for_every_thread_count("full ensemble, adaptive BS3(2)", [&](const ddm::host_context& ctx) {
    return run(ctx, ddm::full_ensemble{}, ddm::adaptive_bs32{});
  });
  expect_same_bits_for_every_thread_count("top-2, Heun, float arithmetic", [&](const ddm::host_context& ctx) {
    return run(ctx, ddm::top_2(), ddm::heun{}, ddm::synthetic::arithmetic::value_type);
  });
}

TEST(HostThreads, TheDiagnosticsGiveTheSameBits) {
  // Rows where a group is empty or an expert's velocity is zero (an undefined angle) are in the
  // batch too, so that the row-order parts of the results (counts, histogram) are exercised.
  constexpr ddm::index_t B = 37, K = 5, D = 11, E = 6;
  std::vector<ddm::batch<double>> v;
  for (ddm::index_t k = 0; k < K; ++k) v.push_back(noise<double>(B, D, 20 + static_cast<std::uint64_t>(k)));
  for (ddm::index_t c = 0; c < D; ++c) v[2](5, c) = 0.0;
  std::vector<ddm::batch_view<const double>> views;
  for (const auto& b : v) views.push_back(b.cview());
  const std::span<const ddm::batch_view<const double>> experts(views);
  const auto blended = noise<double>(B, D, 30);
  const auto embedded = noise<double>(B, E, 31);
  const auto centroids = noise<double>(K, E, 32);
  ddm::batch<std::uint8_t> selected(B, K);
  for (ddm::index_t r = 0; r < B; ++r)
    for (ddm::index_t k = 0; k < K; ++k) selected(r, k) = static_cast<std::uint8_t>((r * 7 + k * 3) % 4 == 0);
  for (ddm::index_t k = 0; k < K; ++k) selected(9, k) = 0;  // no expert selected
  for (ddm::index_t k = 0; k < K; ++k) selected(10, k) = 1;  // every expert selected

  const auto bits = [](const auto& vec) {
    using V = typename std::decay_t<decltype(vec)>::value_type;
    std::vector<unsigned char> out(vec.size() * sizeof(V));
    if (!vec.empty()) std::memcpy(out.data(), vec.data(), out.size());
    return out;
  };
  const auto d1 = ddm::diagnostics::expert_disagreement(threads(1), experts);
  const auto a1 = ddm::diagnostics::angular_deviation(threads(1), experts, blended.cview(), selected.cview());
  const auto r1 = ddm::diagnostics::selected_ranks(threads(1), embedded.cview(), selected.cview(), centroids.cview());
  ASSERT_GT(a1.undefined_angles, 0u);
  ASSERT_EQ(r1.rows_without_selection, 1u);
  for (int n : thread_counts) {
    const auto d = ddm::diagnostics::expert_disagreement(threads(n), experts);
    EXPECT_EQ(bits(d), bits(d1)) << "expert_disagreement at " << n << " threads";
    const auto a = ddm::diagnostics::angular_deviation(threads(n), experts, blended.cview(), selected.cview());
    EXPECT_EQ(bits(a.selected_angle), bits(a1.selected_angle)) << n << " threads";
    EXPECT_EQ(bits(a.unselected_angle), bits(a1.unselected_angle)) << n << " threads";
    EXPECT_EQ(bits(a.relative_gap), bits(a1.relative_gap)) << n << " threads";
    EXPECT_EQ(a.defined, a1.defined) << n << " threads";
    EXPECT_EQ(a.selected_count, a1.selected_count) << n << " threads";
    EXPECT_EQ(a.unselected_count, a1.unselected_count) << n << " threads";
    EXPECT_EQ(a.undefined_angles, a1.undefined_angles) << n << " threads";
    const auto r = ddm::diagnostics::selected_ranks(threads(n), embedded.cview(), selected.cview(), centroids.cview());
    EXPECT_EQ(bits(r.mean_rank), bits(r1.mean_rank)) << "selected_ranks at " << n << " threads";
    EXPECT_EQ(r.selected_count, r1.selected_count) << n << " threads";
    EXPECT_EQ(r.rank_histogram, r1.rank_histogram) << n << " threads";
    EXPECT_EQ(r.pairs, r1.pairs) << n << " threads";
    EXPECT_EQ(r.rows_without_selection, r1.rows_without_selection) << n << " threads";
  }
  expect_same_bits_for_every_thread_count("fill_probe (Rademacher)", [&](const ddm::host_context& ctx) {
    ddm::batch<float> z(B, D);
    ddm::diagnostics::fill_probe(ctx, z.view(), ddm::diagnostics::probe_kind::rademacher, 41, 2);
    return z;
  });
  // The one-thread results are the per-row functions' (an independent reference for the split).
  std::vector<const double*> p(K);
  for (ddm::index_t r = 0; r < B; ++r) {
    for (ddm::index_t k = 0; k < K; ++k) p[static_cast<std::size_t>(k)] = views[static_cast<std::size_t>(k)].row(r);
    const double ref = ddm::diagnostics::mean_pairwise_distance(p.data(), static_cast<int>(K), D);
    EXPECT_EQ(std::memcmp(&ref, &d1[static_cast<std::size_t>(r)], sizeof ref), 0) << "row " << r;
  }
  std::size_t pairs = 0;
  for (auto h : r1.rank_histogram) pairs += h;
  EXPECT_EQ(pairs, r1.pairs);
}

}  // namespace
