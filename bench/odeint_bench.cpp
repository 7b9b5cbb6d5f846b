// ddm's plain integrators against Boost.Odeint's, on the same field at equal accuracy.
//
// The field is the closed-form rectified flow of Gaussian data N(m, s^2 I), s = 0.5, m_c =
// sin(c) (support/gaussian_flow.hpp): its exact solution from t = 1 to t = 0 is known, so
// the error of a run is exact. Both libraries call the very same field code (odeint through a
// functor on std::vector<double> that wraps the vectors as ddm views), in double, so what differs
// is the integration method, its step control and its state algebra.
//
// "Equal accuracy": for a target eps, every method is run at the cheapest setting whose final
// error max_{r,c} |x(0) - x_exact(0)| is <= eps, from the same noise (B = 16, D = 1024):
//   fixed-step methods (ddm euler, heun, dpm++2m, dpm++3m; odeint euler, runge_kutta4): the
//     smallest N of uniform(N) (doubling, then bisection; at most 65536 steps)
//   adaptive methods (ddm adaptive bs32 and dopri5 with rtol = atol = tol; odeint controlled
//     runge_kutta_dopri5 and runge_kutta_cash_karp54 with abs = rel = tol): the largest tol on a
//     grid of 8 values per decade from 1e-1 down to 1e-13
// then timed at that setting. Error norms differ between the libraries (ddm: per-row RMS scaled by
// atol + rtol max(|x|, |x'|); odeint: max-norm scaled by abs + rel (|x| + |dt| |dxdt|)), which is
// why tolerances are not compared directly: the final error is.
//
// Reported: setting (N or tol), final_error, steps (accepted), evals (field evaluations),
// s_per_run (the figure to compare), s_per_step. eps in {1e-3, 1e-6}; Euler only at 1e-3 (it needs
// ~10^6 steps for 1e-6). Smoke: eps = 1e-2, B = 2, D = 16.

#include <boost/numeric/odeint.hpp>

#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "support/bench_support.hpp"

#include <ddm/ddm.hpp>

#include "support/gaussian_flow.hpp"

namespace ddm::bench {
namespace {

namespace odeint = boost::numeric::odeint;
using state_type = std::vector<double>;

struct problem {
  index_t b = 16;
  index_t d = 1024;
  ddm::test::gaussian_flow flow;
  std::vector<double> noise;  // (B, D) at t = 1
  std::vector<double> exact;  // (B, D) at t = 0

  problem(index_t rows, index_t cols) : b(rows), d(cols) {
    flow.s = 0.5;
    for (index_t c = 0; c < d; ++c) flow.m.push_back(std::sin(static_cast<double>(c)));
    noise.resize(static_cast<std::size_t>(b * d));
    exact.resize(noise.size());
    fill_normal(host_context{}, batch_view<double>(noise.data(), b, d), 2026);
    flow.exact(batch_view<const double>(noise.data(), b, d), 1.0, 0.0, batch_view<double>(exact.data(), b, d));
  }

  [[nodiscard]] double error(const std::vector<double>& x) const {
    double e = 0;
    for (std::size_t i = 0; i < x.size(); ++i) e = std::max(e, std::abs(x[i] - exact[i]));
    return e;
  }
};

// The same field, as odeint sees it.
struct odeint_system {
  const problem* p;
  std::size_t* evals;
  void operator()(const state_type& x, state_type& dxdt, double t) const {
    ++*evals;
    p->flow(batch_view<const double>(x.data(), p->b, p->d), t, batch_view<double>(dxdt.data(), p->b, p->d));
  }
};

struct outcome {
  double error = 0;
  std::size_t steps = 0;
  std::size_t evals = 0;
};

// One run of a method at a setting (N steps or a tolerance), writing the final state into x.
using method_fn = std::function<outcome(const problem&, double setting, std::vector<double>& x)>;

struct method {
  const char* name;
  bool adaptive;
  method_fn run;
};

template <class Integrator>
outcome ddm_fixed(const problem& p, double n, std::vector<double>& x, Integrator integ) {
  x = p.noise;
  const sample_result r = sample(p.flow, batch_view<double>(x.data(), p.b, p.d),
                                 schedules::uniform(static_cast<long>(n)), integ);
  return {p.error(x), r.accepted_steps, r.field_evaluations};
}

template <class Integrator>
outcome ddm_adaptive(const problem& p, double tol, std::vector<double>& x) {
  x = p.noise;
  Integrator integ;
  integ.rtol = tol;
  integ.atol = tol;
  const sample_result r = sample(p.flow, batch_view<double>(x.data(), p.b, p.d), schedules::uniform(1), integ);
  return {p.error(x), r.accepted_steps, r.field_evaluations};
}

template <class Stepper>
outcome odeint_fixed(const problem& p, double n, std::vector<double>& x) {
  x = p.noise;
  std::size_t evals = 0;
  const auto steps = static_cast<std::size_t>(n);
  odeint::integrate_n_steps(Stepper{}, odeint_system{&p, &evals}, x, 1.0, -1.0 / n, steps);
  return {p.error(x), steps, evals};
}

template <class ErrorStepper>
outcome odeint_controlled(const problem& p, double tol, std::vector<double>& x) {
  x = p.noise;
  std::size_t evals = 0;
  const std::size_t steps = odeint::integrate_adaptive(odeint::make_controlled<ErrorStepper>(tol, tol),
                                                       odeint_system{&p, &evals}, x, 1.0, 0.0, -1e-2);
  return {p.error(x), steps, evals};
}

const std::vector<method>& methods() {
  static const std::vector<method> all{
      {"ddm/euler", false, [](const problem& p, double n, auto& x) { return ddm_fixed(p, n, x, euler{}); }},
      {"ddm/heun", false, [](const problem& p, double n, auto& x) { return ddm_fixed(p, n, x, heun{}); }},
      {"ddm/dpm++2m", false, [](const problem& p, double n, auto& x) { return ddm_fixed(p, n, x, dpmpp_2m{}); }},
      {"ddm/dpm++3m", false, [](const problem& p, double n, auto& x) { return ddm_fixed(p, n, x, dpmpp_3m{}); }},
      {"ddm/adaptive_bs32", true, ddm_adaptive<adaptive_bs32>},
      {"ddm/adaptive_dopri5", true, ddm_adaptive<adaptive_dopri5>},
      {"odeint/euler", false, odeint_fixed<odeint::euler<state_type>>},
      {"odeint/runge_kutta4", false, odeint_fixed<odeint::runge_kutta4<state_type>>},
      {"odeint/controlled_dopri5", true, odeint_controlled<odeint::runge_kutta_dopri5<state_type>>},
      {"odeint/controlled_cash_karp54", true, odeint_controlled<odeint::runge_kutta_cash_karp54<state_type>>},
  };
  return all;
}

constexpr double max_steps = 65536;

// The cheapest setting that reaches eps (NaN when none does).
double find_setting(const method& m, const problem& p, double eps) {
  std::vector<double> x;
  if (!m.adaptive) {
    double hi = 1;
    while (m.run(p, hi, x).error > eps) {
      hi *= 2;
      if (hi > max_steps) return std::nan("");
    }
    double lo = hi / 2;  // fails (or is 0.5: 1 step is the first tried)
    if (lo < 1) return hi;
    while (hi - lo > 1) {
      const double mid = std::floor((lo + hi) / 2);
      (m.run(p, mid, x).error <= eps ? hi : lo) = mid;
    }
    return hi;
  }
  for (int i = 0; i <= 96; ++i) {  // tol = 10^(-1 - i/8)
    const double tol = std::pow(10.0, -1.0 - i / 8.0);
    if (m.run(p, tol, x).error <= eps) return tol;
  }
  return std::nan("");
}

void run(benchmark::State& state, const method* m, double eps, index_t b, index_t d) {
  static std::map<std::pair<index_t, index_t>, problem> problems;
  auto it = problems.find({b, d});
  if (it == problems.end()) it = problems.emplace(std::pair{b, d}, problem(b, d)).first;
  const problem& p = it->second;
  static std::map<std::pair<const method*, double>, double> settings;
  auto s = settings.find({m, eps});
  if (s == settings.end()) s = settings.emplace(std::pair{m, eps}, find_setting(*m, p, eps)).first;
  const double setting = s->second;
  if (std::isnan(setting)) {
    state.SkipWithError("the target error is not reached within the search range");
    for (auto _ : state) {
    }
    return;
  }
  std::vector<double> x;
  outcome o;
  for (auto _ : state) {
    o = m->run(p, setting, x);
    benchmark::DoNotOptimize(x.data());
  }
  const auto runs = static_cast<double>(state.iterations());
  state.counters["setting"] = setting;
  state.counters["final_error"] = o.error;
  state.counters["steps"] = static_cast<double>(o.steps);
  state.counters["evals"] = static_cast<double>(o.evals);
  state.counters["s_per_run"] = benchmark::Counter(runs, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["s_per_step"] =
      benchmark::Counter(runs * static_cast<double>(o.steps), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

}  // namespace

void register_benchmarks(const options& opt) {
  const bool smoke = opt.shapes == grid::smoke;
  const index_t b = smoke ? 2 : 16;
  const index_t d = smoke ? 16 : 1024;
  const std::vector<double> targets = smoke ? std::vector<double>{1e-2} : std::vector<double>{1e-3, 1e-6};
  for (double eps : targets)
    for (const method& m : methods()) {
      const std::string name(m.name);
      if (eps < 1e-4 && name.find("euler") != std::string::npos) continue;
      char buf[160];
      std::snprintf(buf, sizeof buf, "odeint_peer/%s/eps:%g/B:%td/D:%td", m.name, eps, b, d);
      benchmark::RegisterBenchmark(buf, run, &m, eps, b, d)->UseRealTime()->Unit(benchmark::kMicrosecond);
    }
}

}  // namespace ddm::bench
