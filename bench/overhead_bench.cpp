// The sampler's own overhead: ddm::sample() over a routed field against a hand-written loop that
// does the same arithmetic with the same pieces: the same router object, the same softmax and
// top-k per-row functions, the same expert objects on the same gathered sub-batches, the same
// weighted scatter-add in the same expert order, and the Euler / DPM-Solver++(2M) update written
// out as plain loops with the coefficients ddm uses. Its buffers are allocated once, outside the
// timed runs, and it checks nothing: the cheapest a hand-written sampler can be.
//
// ddm is timed three times: ddm::sample() with a default context, which makes the integrator's
// stepper (and allocates and zeroes its buffers) on every call; ddm::sample() with a context whose
// scratch is a ddm::workspace_pool, which keeps the stepper there between calls; and
// ddm::sampler, which keeps it itself. All produce the same samples (max_abs_diff against the
// hand-written loop is reported; it is 0 when the arithmetic is the same bit for bit;
// sampler_vs_sample_diff and pooled_vs_sample_diff are 0). Each iteration times one run of each
// from the same noise, in turn, so that load on the machine hits all alike; overhead_pct,
// pooled_overhead_pct and sampler_overhead_pct compare medians: 100 (median ddm / median hand - 1).
//
// Grid (full): analytic DDM and linear routed field (bench/support/routed_cases.hpp), top-2 of
// K = 8, Euler and 2M over uniform(8), (B, D) in (1, 64), (64, 64), (64, 1024), (1024, 1024) and,
// for the linear field, (1024, 16384). Smoke: (16, 64).

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

#include "support/bench_support.hpp"
#include "support/routed_cases.hpp"

// bench/overhead_callgrind.sh --before REV builds this file against an older tree's headers,
// which may predate ddm::workspace_pool: the pooled side is then left out.
#if __has_include(<ddm/core/workspace_pool.hpp>)
#define DDM_BENCH_HAS_WORKSPACE_POOL 1
#else
#define DDM_BENCH_HAS_WORKSPACE_POOL 0
#endif

namespace ddm::bench {
namespace {

constexpr std::size_t steps = 8;
constexpr int top = 2;

// The routed Euler / 2M sampler as one would write it by hand.
template <class Experts, class Router>
class hand_sampler {
 public:
  hand_sampler(Experts experts, Router router, index_t b, index_t d)
      : experts_(std::move(experts)),
        router_(std::move(router)),
        k_(static_cast<int>(experts_.size())),
        b_(b),
        d_(d),
        logits_(b, k_),
        probs_(b, k_),
        weights_(b, k_),
        selected_(static_cast<std::size_t>(b * k_)),
        rows_(static_cast<std::size_t>(k_)),
        x_sub_(b, d),
        v_sub_(b, d),
        v_(b, d),
        d0_(b, d),
        d1_(b, d) {
    for (auto& r : rows_) r.reserve(static_cast<std::size_t>(b));
  }

  // v = sum over the top-2 experts of w_k v_k, for every row of x.
  void field(const value_t* x, double t, value_t* v) {
    const batch_view<const value_t> xv(x, b_, d_);
    router_(xv, t, logits_.view());
    for (index_t r = 0; r < b_; ++r) {
      softmax_row(logits_.data() + r * k_, k_, 1.0, probs_.data() + r * k_);
      top_k_row(probs_.data() + r * k_, k_, top, weights_.data() + r * k_, selected_.data() + r * k_);
    }
    for (int e = 0; e < k_; ++e) {
      auto& rows = rows_[static_cast<std::size_t>(e)];
      rows.clear();
      for (index_t r = 0; r < b_; ++r)
        if (selected_[static_cast<std::size_t>(r * k_ + e)] != 0) rows.push_back(static_cast<std::int32_t>(r));
    }
    std::fill_n(v, b_ * d_, value_t(0));
    for (int e = 0; e < k_; ++e) {
      const auto& rows = rows_[static_cast<std::size_t>(e)];
      const auto n = static_cast<index_t>(rows.size());
      if (n == 0) continue;
      const value_t* xin = x;
      if (n != b_) {
        for (index_t i = 0; i < n; ++i) std::copy_n(x + rows[static_cast<std::size_t>(i)] * d_, d_, x_sub_.data() + i * d_);
        xin = x_sub_.data();
      }
      experts_[static_cast<std::size_t>(e)](batch_view<const value_t>(xin, n, d_), t,
                                            batch_view<value_t>(v_sub_.data(), n, d_));
      for (index_t i = 0; i < n; ++i) {
        const index_t r = rows[static_cast<std::size_t>(i)];
        const value_t w = weights_(r, e);
        value_t* out = v + r * d_;
        const value_t* in = v_sub_.data() + i * d_;
        for (index_t c = 0; c < d_; ++c) out[c] += w * in[c];
      }
    }
  }

  void euler_run(value_t* x, const time_schedule& s) {
    value_t* v = v_.data();
    const index_t n = b_ * d_;
    for (std::size_t i = 0; i < s.steps(); ++i) {
      field(x, s[i], v);
      const auto one = static_cast<value_t>(1.0);
      const auto dt = static_cast<value_t>(s[i + 1] - s[i]);
      for (index_t j = 0; j < n; ++j) x[j] = one * x[j] + dt * v[j];
    }
  }

  // DPM-Solver++(2M) in data prediction D = x - t v, with lambda = log((1 - t) / t): first order
  // from t = 1, after it (its lambda is -inf), and into t = 0.
  void dpmpp_2m_run(value_t* x, const time_schedule& s) {
    value_t* v = v_.data();
    value_t* cur = d0_.data();
    value_t* prev = d1_.data();
    const index_t n = b_ * d_;
    bool usable = false;
    double l_prev = 0;
    for (std::size_t i = 0; i < s.steps(); ++i) {
      const double t = s[i];
      const double t_next = s[i + 1];
      field(x, t, v);
      std::swap(cur, prev);
      const auto one = static_cast<value_t>(1.0);
      const auto mt = static_cast<value_t>(-t);
      for (index_t j = 0; j < n; ++j) cur[j] = one * x[j] + mt * v[j];
      const double l = flow::lambda(t);
      const double a = t_next / t;
      const double b = (t - t_next) / t;
      if (t_next == 0.0 || !usable) {
        const auto ca = static_cast<value_t>(a);
        const auto cb = static_cast<value_t>(b);
        for (index_t j = 0; j < n; ++j) x[j] = ca * x[j] + cb * cur[j];
      } else {
        const double h = flow::lambda(t_next) - l;
        const double c = 1.0 / (2.0 * ((l - l_prev) / h));
        const auto ca = static_cast<value_t>(a);
        const auto cb = static_cast<value_t>(b * (1.0 + c));
        const auto cc = static_cast<value_t>(-b * c);
        for (index_t j = 0; j < n; ++j) x[j] = ca * x[j] + cb * cur[j] + cc * prev[j];
      }
      l_prev = l;
      usable = std::isfinite(l);
    }
  }

 private:
  Experts experts_;
  Router router_;
  int k_;
  index_t b_, d_;
  batch<value_t> logits_, probs_, weights_;
  std::vector<std::uint8_t> selected_;
  std::vector<std::vector<std::int32_t>> rows_;
  batch<value_t> x_sub_, v_sub_, v_, d0_, d1_;
};

struct overhead_case {
  bool analytic;
  std::string solver;  // euler or dpm++2m (the hand-written samplers')
  index_t b;
  index_t d;
};

[[nodiscard]] double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Out of line so that a profiler (valgrind --tool=callgrind) attributes each side's cost to it
// (bench/overhead_callgrind.sh); Timed tells the warm-up runs (false: they size the routed field's
// workspace and fill the pool) from the timed ones, so that a profile counts warm runs only. The
// integrator is a template argument on every side, so that no side compares solver names.
template <bool Timed, class Field, class Integrator>
[[gnu::noinline]] void ddm_sampler_run(Field& field, batch<value_t>& x, const batch<value_t>& noise,
                                        const time_schedule& schedule, const Integrator& integ) {
  if constexpr (Timed) benchmark::ClobberMemory();  // no code; keeps the two instances apart (-fipa-icf)
  copy(host_context{}, x.view(), noise);
  (void)sample(field, x, schedule, integ);
}

#if DDM_BENCH_HAS_WORKSPACE_POOL
template <bool Timed, class Field, class Integrator>
[[gnu::noinline]] void ddm_workspace_run(Field& field, const host_context& ctx, batch<value_t>& x,
                                          const batch<value_t>& noise, const time_schedule& schedule,
                                          const Integrator& integ) {
  if constexpr (Timed) benchmark::ClobberMemory();  // no code; keeps the two instances apart (-fipa-icf)
  copy(ctx, x.view(), noise);
  (void)sample(ctx, {}, field, x.view(), schedule, integ);
}
#endif

template <bool Timed, class Field, class Kept>
[[gnu::noinline]] void ddm_kept_run(Field& field, Kept& kept, batch<value_t>& x, const batch<value_t>& noise,
                                     const time_schedule& schedule) {
  if constexpr (Timed) benchmark::ClobberMemory();  // no code; keeps the two instances apart (-fipa-icf)
  copy(host_context{}, x.view(), noise);
  (void)kept(field, x, schedule);
}

template <bool Timed, class Hand, class Integrator>
[[gnu::noinline]] void hand_sampler_run(Hand& hand, batch<value_t>& x, const batch<value_t>& noise,
                                         const time_schedule& schedule, const Integrator& /*integ*/) {
  if constexpr (Timed) benchmark::ClobberMemory();  // no code; keeps the two instances apart (-fipa-icf)
  copy(host_context{}, x.view(), noise);
  if constexpr (std::is_same_v<Integrator, euler>) hand.euler_run(x.data(), schedule);
  else hand.dpmpp_2m_run(x.data(), schedule);
}

[[nodiscard]] double max_abs_diff(const batch<value_t>& a, const batch<value_t>& b) {
  double diff = 0;
  for (index_t i = 0; i < a.size(); ++i) diff = std::max(diff, static_cast<double>(std::abs(a.data()[i] - b.data()[i])));
  return diff;
}

template <class Experts, class Router, class Integrator>
void compare(benchmark::State& state, const Experts& experts, const Router& router, const overhead_case& c,
             const Integrator& integ) {
  const host_context ctx{};
  batch<value_t> noise(c.b, c.d), x_ddm(c.b, c.d), x_pooled(c.b, c.d), x_kept(c.b, c.d), x_hand(c.b, c.d);
#if DDM_BENCH_HAS_WORKSPACE_POOL
  workspace_pool pool;
  const host_context pooled_ctx{.scratch = &pool};
#endif
  fill_normal(ctx, noise.view(), 2026);
  const time_schedule schedule = schedules::uniform(static_cast<long>(steps));
  auto field = make_routed_field<value_t>(experts, router, top_k{top});
  sampler<Integrator, value_t> kept(integ, c.b, c.d);
  hand_sampler<Experts, Router> hand(experts, router, c.b, c.d);
  auto ddm_run = [&](auto timed) { ddm_sampler_run<decltype(timed)::value>(field, x_ddm, noise, schedule, integ); };
  auto pooled_run = [&](auto timed) {
#if DDM_BENCH_HAS_WORKSPACE_POOL
    ddm_workspace_run<decltype(timed)::value>(field, pooled_ctx, x_pooled, noise, schedule, integ);
#else
    copy(host_context{}, x_pooled.view(), noise);  // absent: only the copy, for a valid diff
#endif
  };
  auto kept_run = [&](auto timed) { ddm_kept_run<decltype(timed)::value>(field, kept, x_kept, noise, schedule); };
  auto hand_run = [&](auto timed) { hand_sampler_run<decltype(timed)::value>(hand, x_hand, noise, schedule, integ); };
  ddm_run(std::false_type{});  // sizes the routed field's workspace
  pooled_run(std::false_type{});
  kept_run(std::false_type{});
  hand_run(std::false_type{});
  const double diff = max_abs_diff(x_ddm, x_hand);
  const double diff_kept = max_abs_diff(x_ddm, x_kept);
  const double diff_pooled = max_abs_diff(x_ddm, x_pooled);
  std::vector<double> t_ddm, t_pooled, t_kept, t_hand;
  for (auto _ : state) {
    const loop_timer a;
    ddm_run(std::true_type{});
    const double s_ddm = a.seconds();
    const loop_timer p;
    pooled_run(std::true_type{});
    const double s_pooled = p.seconds();
    const loop_timer k;
    kept_run(std::true_type{});
    const double s_kept = k.seconds();
    const loop_timer h;
    hand_run(std::true_type{});
    const double s_hand = h.seconds();
    benchmark::DoNotOptimize(x_ddm.data());
    benchmark::DoNotOptimize(x_pooled.data());
    benchmark::DoNotOptimize(x_kept.data());
    benchmark::DoNotOptimize(x_hand.data());
    t_ddm.push_back(s_ddm);
    t_pooled.push_back(s_pooled);
    t_kept.push_back(s_kept);
    t_hand.push_back(s_hand);
    state.SetIterationTime(s_ddm + s_pooled + s_kept + s_hand);
  }
  const double m_ddm = median(t_ddm);
  const double m_pooled = median(t_pooled);
  const double m_kept = median(t_kept);
  const double m_hand = median(t_hand);
  state.counters["ddm_s"] = m_ddm;
  state.counters["pooled_s"] = m_pooled;
  state.counters["sampler_s"] = m_kept;
  state.counters["hand_s"] = m_hand;
  state.counters["overhead_pct"] = 100.0 * (m_ddm / m_hand - 1.0);
  state.counters["pooled_overhead_pct"] = 100.0 * (m_pooled / m_hand - 1.0);
  state.counters["sampler_overhead_pct"] = 100.0 * (m_kept / m_hand - 1.0);
  state.counters["max_abs_diff"] = diff;
  state.counters["sampler_vs_sample_diff"] = diff_kept;
  state.counters["pooled_vs_sample_diff"] = diff_pooled;
}

void run(benchmark::State& state, overhead_case c) {
  const int k = 8;
  auto with = [&](const auto& integ) {
    if (c.analytic) {
      const synthetic::analytic_ddm model = analytic_model(k, c.d);
      compare(state, model.experts(), model.router(1.0), c, integ);
    } else {
      compare(state, linear_experts(k), linear_router(k), c, integ);
    }
  };
  with_solver(c.solver, with);
}

}  // namespace

void register_benchmarks(const options& opt) {
  std::vector<std::pair<index_t, index_t>> shapes{{16, 64}};
  if (opt.shapes == grid::full) shapes = {{1, 64}, {64, 64}, {64, 1024}, {1024, 1024}, {1024, 16384}};
  for (bool analytic : {true, false})
    for (const std::string s : {euler::name(), dpmpp_2m::name()})
      for (auto [b, d] : shapes) {
        if (analytic && b * d > (index_t{1} << 20)) continue;
        char name[128];
        std::snprintf(name, sizeof name, "overhead/%s/%s/top2/K:8/B:%td/D:%td", analytic ? "analytic" : "linear",
                      s.c_str(), b, d);
        benchmark::RegisterBenchmark(name, run, overhead_case{analytic, s, b, d})
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
      }
}

}  // namespace ddm::bench
