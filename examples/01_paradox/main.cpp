// ddm-paradox: the stability-quality paradox of decentralized diffusion models, reproduced on the
// analytic DDM, whose data, experts and router are known exactly.
//
// For each routing policy (top-1, top-2, full ensemble, and two time-scheduled mixes) it samples
// the same noise and measures quality (exact Frechet distance, NLL, coverage, precision), stability
// (L_eff, Delta_refine, perturbation amplification), alignment (ranks of the selected experts'
// clusters, angular deviation), disagreement (trajectory-integrated, against per-sample NLL) and
// cost; then it prints a table and verdicts computed from those numbers. See docs/paradox.md.

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "analytic_system.hpp"
#include "report.hpp"
#include "study.hpp"
#include "system.hpp"

#ifndef DDM_PARADOX_FASHION
#define DDM_PARADOX_FASHION 0
#endif
#if DDM_PARADOX_FASHION
#include "fashion_system.hpp"
#endif

#ifndef DDM_PARADOX_CUDA
#define DDM_PARADOX_CUDA 0
#endif
#if DDM_PARADOX_CUDA
#include "device.hpp"
#endif

namespace {

using paradox::config;

const char* const usage_text = R"(usage: ddm-paradox [options]

Samples a DDM under several routing policies and measures quality, stability, alignment,
disagreement and cost; prints a table and verdicts (docs/paradox.md).

system
  --system NAME         analytic | fashion-classes | fashion-kmeans (default analytic): the analytic DDM
                        of the options below, or a learned Fashion-MNIST DDM (examples/03_fashion)
  --models DIR          the folder holding the fashion DDM folders (default: the source tree's
                        examples/03_fashion/models)
model (analytic)
  --clusters K          experts / data clusters (default 8)
  --dim D               dimension (default 8)
  --components J        Gaussian components per cluster (default 4)
  --model-seed S        seed of the model's parameters (default 2026)
sampling
  --samples B           samples per policy (default 2000; fashion systems 500)
  --steps N             uniform steps from t = 1 to 0 (default 32; fashion systems 16)
  --integrator NAME     euler | heun | dpm++2m | dpm++3m (default heun)
  --tau X               router temperature: the exact posterior p(k | x_t)^(1/tau); 1 = perfect router,
                        > 1 = under-confident like a trained one (default 4); fashion systems: the learned
                        router's logits / tau (default 1)
  --seed S              seed of the noise, probes, perturbation and statistics (default 1)
  --policies LIST       comma-separated, from top1, top2, full, full_then_top2, top2_then_full (default: all)
  --t-switch T          where the scheduled policies switch, in (0, 1) (default 0.5)
study
  --sweep-tau LIST      also run the study at each temperature of LIST (e.g. 1,2,4,8) and print a summary
  --leff-every N        measure L_eff every N-th step (default 1)
  --epsilon E           noise perturbation scale for the amplification (default 1e-3)
  --permutations P      Spearman permutation test size (default 9999)
  --bootstrap R         Spearman bootstrap resamples (default 1000)
output
  --json FILE           write every number as JSON (schema: docs/paradox.md)
  --out DIR             write CSV files and SVG plots into DIR
  --device cpu|cuda     where to run (default cpu): cuda runs the sampler, the routed field (experts and
                        router), the observers, Delta_refine and the amplification on the GPU
  --precision P         float | double: the states' value type (default: double on cpu, float on cuda)
  --quiet               no progress on stderr
  --help                this message
)";

[[noreturn]] void bad_usage(const std::string& message) {
  std::fprintf(stderr, "ddm-paradox: %s\n\n%s", message.c_str(), usage_text);
  std::exit(2);
}

double to_double(const std::string& flag, const std::string& v) {
  try {
    std::size_t n = 0;
    const double d = std::stod(v, &n);
    if (n != v.size() || !std::isfinite(d)) throw std::invalid_argument("");
    return d;
  } catch (const std::exception&) {
    bad_usage("option " + flag + " expects a number, got '" + v + "'");
  }
}

// `max` is the largest value the option's variable holds: a larger one would wrap when narrowed
// (--clusters 4294967298 would run with K = 2), so it is refused instead.
long long to_integer(const std::string& flag, const std::string& v, long long min,
                     long long max = std::numeric_limits<long long>::max()) {
  try {
    std::size_t n = 0;
    const long long i = std::stoll(v, &n);
    if (n != v.size()) throw std::invalid_argument("");
    if (i < min) bad_usage("option " + flag + " expects an integer >= " + std::to_string(min) + ", got " + v);
    if (i > max) bad_usage("option " + flag + " expects an integer <= " + std::to_string(max) + ", got " + v);
    return i;
  } catch (const std::invalid_argument&) {
    bad_usage("option " + flag + " expects an integer, got '" + v + "'");
  } catch (const std::out_of_range&) {
    bad_usage("option " + flag + " is out of range: '" + v + "'");
  }
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

config parse(int argc, char** argv) {
  constexpr long long int_max = std::numeric_limits<int>::max();
  config c;
  bool precision_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    std::string value;
    bool has_value = false;
    if (const auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_value = true;
    }
    auto next = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= argc) bad_usage("option " + flag + " expects a value");
      return argv[++i];
    };
    if (flag == "--help" || flag == "-h") {
      std::fputs(usage_text, stdout);
      std::exit(0);
    } else if (flag == "--clusters") {
      c.model.clusters = static_cast<int>(to_integer(flag, next(), 2, int_max));
    } else if (flag == "--dim") {
      c.model.dim = static_cast<int>(to_integer(flag, next(), 1, int_max));
    } else if (flag == "--components") {
      c.model.components_per_cluster = static_cast<int>(to_integer(flag, next(), 1, int_max));
    } else if (flag == "--model-seed") {
      c.model.seed = static_cast<std::uint64_t>(to_integer(flag, next(), 0));
    } else if (flag == "--samples") {
      c.samples = static_cast<ddm::index_t>(to_integer(flag, next(), 8));
      c.samples_given = true;
    } else if (flag == "--steps") {
      c.steps = static_cast<long>(to_integer(flag, next(), 2));
      c.steps_given = true;
    } else if (flag == "--integrator") {
      c.integrator = next();
      if (c.integrator != "euler" && c.integrator != "heun" && c.integrator != "dpm++2m" && c.integrator != "dpm++3m")
        bad_usage("unknown integrator '" + c.integrator + "' (expected euler, heun, dpm++2m or dpm++3m)");
    } else if (flag == "--tau") {
      c.tau = to_double(flag, next());
      if (!(c.tau > 0)) bad_usage("option --tau expects a value > 0");
      c.tau_given = true;
    } else if (flag == "--seed") {
      c.seed = static_cast<std::uint64_t>(to_integer(flag, next(), 0));
    } else if (flag == "--policies") {
      c.policies = split(next());
      if (c.policies.empty()) bad_usage("option --policies expects at least one policy");
      for (const auto& p : c.policies) {
        bool known = false;
        for (const auto& k : paradox::known_policies()) known = known || k == p;
        if (!known) bad_usage("unknown policy '" + p + "' (expected top1, top2, full, full_then_top2, top2_then_full)");
      }
    } else if (flag == "--t-switch") {
      c.t_switch = to_double(flag, next());
      if (!(c.t_switch > 0 && c.t_switch < 1)) bad_usage("option --t-switch expects a time in (0, 1)");
    } else if (flag == "--sweep-tau") {
      for (const auto& s : split(next())) {
        const double t = to_double(flag, s);
        if (!(t > 0)) bad_usage("option --sweep-tau expects temperatures > 0");
        c.sweep_tau.push_back(t);
      }
      if (c.sweep_tau.empty()) bad_usage("option --sweep-tau expects a comma-separated list of temperatures");
    } else if (flag == "--leff-every") {
      c.leff_every = static_cast<std::size_t>(to_integer(flag, next(), 1));
    } else if (flag == "--epsilon") {
      c.epsilon = to_double(flag, next());
      if (!(c.epsilon > 0)) bad_usage("option --epsilon expects a value > 0");
    } else if (flag == "--permutations") {
      c.permutations = static_cast<std::size_t>(to_integer(flag, next(), 0));
    } else if (flag == "--bootstrap") {
      c.bootstrap = static_cast<std::size_t>(to_integer(flag, next(), 0));
    } else if (flag == "--system") {
      c.system = next();
      if (c.system != "analytic" && c.system != "fashion-classes" && c.system != "fashion-kmeans")
        bad_usage("unknown system '" + c.system + "' (expected analytic, fashion-classes or fashion-kmeans)");
    } else if (flag == "--models") {
      c.models_dir = next();
      if (c.models_dir.empty()) bad_usage("option --models expects a folder");
    } else if (flag == "--json") {
      c.json_path = next();
    } else if (flag == "--out") {
      c.out_dir = next();
    } else if (flag == "--device") {
      const auto d = next();
      if (d == "cpu") {
        c.dev = paradox::device::cpu;
      } else if (d == "cuda") {
        c.dev = paradox::device::cuda;
      } else {
        bad_usage("unknown device '" + d + "' (expected cpu or cuda)");
      }
    } else if (flag == "--precision") {
      const auto p = next();
      if (p == "float") {
        c.prec = paradox::precision::float32;
      } else if (p == "double") {
        c.prec = paradox::precision::float64;
      } else {
        bad_usage("unknown precision '" + p + "' (expected float or double)");
      }
      precision_given = true;
    } else if (flag == "--quiet") {
      if (has_value) bad_usage("option --quiet takes no value");
      c.quiet = true;
    } else {
      bad_usage("unknown option '" + flag + "'");
    }
  }
  // GPUs are built for float; the host's float run is the one a device run compares with.
  if (!precision_given) c.prec = c.dev == paradox::device::cuda ? paradox::precision::float32 : paradox::precision::float64;
  return c;
}

// One temperature's study, on the host or on the device (the analytic system only: refused at
// start-up for the others).
paradox::tau_result run_at(const config& c, const paradox::study_system& sys, double tau, const paradox::progress& prog) {
  if (c.dev == paradox::device::cuda) {
#if DDM_PARADOX_CUDA
    const auto& model = dynamic_cast<const paradox::analytic_system&>(sys).model();
    return paradox::run_study(c, sys, tau, prog, [&](const std::string& key) {
      return paradox::cuda::measure_policy(c, model, key, tau, prog);
    });
#else
    throw std::runtime_error("unreachable: --device cuda was refused at start-up");
#endif
  }
  return paradox::run_study(c, sys, tau, prog, [&](const std::string& key) { return sys.measure(c, key, tau, prog); });
}

void print_header(const config& c, const paradox::study_system& sys, const std::string& device_name) {
  char line[512];
  std::snprintf(line, sizeof line, "sampler  %s, %ld uniform steps, %td samples per policy, seed %llu, %s, device %s%s\n",
                c.integrator.c_str(), c.steps, c.samples, static_cast<unsigned long long>(c.seed), paradox::to_string(c.prec),
                paradox::to_string(c.dev), device_name.empty() ? "" : (" (" + device_name + ")").c_str());
  sys.print_header(stdout, c, line);
}

std::unique_ptr<paradox::study_system> make_system(const config& c) {
  if (c.system == "analytic") return std::make_unique<paradox::analytic_system>(c);
#if DDM_PARADOX_FASHION
  const std::string models = c.models_dir.empty() ? std::string(DDM_PARADOX_MODELS) : c.models_dir;
  return std::make_unique<paradox::fashion_system>(c.system, models, DDM_PARADOX_FASHION_DATA);
#else
  throw std::runtime_error("--system " + c.system + ": this build of ddm-paradox has no fashion systems (they need "
                           "nlohmann_json, a CBLAS, Eigen and zlib; see the CMake status lines)");
#endif
}

}  // namespace

int main(int argc, char** argv) {
  config c = parse(argc, argv);
  if (c.system != "analytic") {
    if (c.dev == paradox::device::cuda) {
      std::fprintf(stderr, "ddm-paradox: --device cuda runs the analytic system only; --system %s runs on the host "
                           "(use --device cpu)\n", c.system.c_str());
      return 2;
    }
#if DDM_PARADOX_FASHION
    if (!c.samples_given) c.samples = paradox::fashion_system::default_samples;
    if (!c.steps_given) c.steps = paradox::fashion_system::default_steps;
    // The learned router's own probabilities; the analytic default (4) imitates a trained router.
    if (!c.tau_given) c.tau = 1.0;
#endif
  }
  std::string device_name;
  if (c.dev == paradox::device::cuda) {
#if DDM_PARADOX_CUDA
    std::string why;
    bool usable = false;
    try {
      usable = paradox::cuda::start(&why, &device_name);
    } catch (const std::exception& e) {
      why = e.what();
    }
    if (!usable) {
      std::fprintf(stderr, "ddm-paradox: --device cuda: no usable CUDA device (%s); use --device cpu\n", why.c_str());
      return 2;
    }
#else
    std::fprintf(stderr,
                 "ddm-paradox: --device cuda: this build of ddm-paradox has no CUDA support (it was compiled "
                 "without DDM_PARADOX_CUDA, so the study runs on the host only); use --device cpu\n");
    return 2;
#endif
  }
  try {
    const paradox::progress prog(c.quiet);
    const auto system = make_system(c);
    const paradox::study_system& sys = *system;
    const auto k_experts = sys.num_experts();
    const auto quality_name = sys.per_sample_quality_name();
    print_header(c, sys, device_name);

    const auto main_run = run_at(c, sys, c.tau, prog);
    const auto baselines = sys.baselines(c, prog);
    const auto reference = sys.reference_quality(c);
    const auto v = paradox::compute_verdicts(main_run, k_experts, quality_name);
    auto shown = main_run;
    shown.policies.insert(shown.policies.end(), baselines.begin(), baselines.end());
    paradox::print_table(stdout, shown, reference);
    if (!baselines.empty()) paradox::print_recall(stdout, shown, reference);
    std::printf("\n");
    paradox::print_quartiles(stdout, shown, quality_name);
    std::printf("\nverdicts at tau = %g (computed from the numbers above):\n", c.tau);
    paradox::print_verdicts(stdout, v);

    std::vector<paradox::tau_result> sweep;
    for (double tau : c.sweep_tau) {
      if (tau == c.tau) {
        sweep.push_back(main_run);
        continue;
      }
      sweep.push_back(run_at(c, sys, tau, prog));
    }
    if (!sweep.empty()) {
      std::printf("\ntemperature sweep: FD and Delta_refine per policy, and the verdicts at each tau\n");
      std::printf("%6s", "tau");
      for (const auto& p : sweep.front().policies) std::printf(" %15s", (p.key + " FD").c_str());
      for (const auto& p : sweep.front().policies) std::printf(" %15s", (p.key + " Dref").c_str());
      std::printf("  paradox  vs_top2  aligned  monotonic\n");
      for (const auto& s : sweep) {
        const auto sv = paradox::compute_verdicts(s, k_experts, quality_name);
        std::printf("%6g", s.tau);
        for (const auto& p : s.policies) std::printf(" %15s", paradox::detail::fmt(p.quality.frechet).c_str());
        for (const auto& p : s.policies) std::printf(" %15s", paradox::detail::fmt(p.stability.delta_refine).c_str());
        auto w = [](const std::optional<bool>& h) { return !h ? "n/a" : (*h ? "yes" : "no"); };
        std::printf("  %7s  %7s  %7s  %9s\n", w(sv.paradox.holds), w(sv.paradox_vs_top2.holds),
                    w(sv.sparse_better_aligned.holds), w(sv.quality_falls_with_disagreement.holds));
      }
    }

    bool identical = true;
    for (const auto& p : main_run.policies) identical = identical && p.observed_run_bit_identical;
    std::printf("\nobserved runs reproduce the plain runs bit for bit: %s; total wall time %.1f s\n",
                identical ? "yes" : "NO", prog.seconds());

    if (!c.json_path.empty()) {
      nlohmann::json j;
      j["program"] = "ddm-paradox";
      j["config"] = {{"system", c.system},
                     {"samples", c.samples},
                     {"steps", c.steps},
                     {"integrator", c.integrator},
                     {"tau", c.tau},
                     {"seed", c.seed},
                     {"policies", c.policies},
                     {"t_switch", c.t_switch},
                     {"sweep_tau", c.sweep_tau},
                     {"leff_every", c.leff_every},
                     {"epsilon", c.epsilon},
                     {"permutations", c.permutations},
                     {"bootstrap", c.bootstrap},
                     {"device", paradox::to_string(c.dev)},
                     {"precision", paradox::to_string(c.prec)}};
      j["config"].update(sys.describe(c));
      const auto main_json = paradox::to_json(main_run, k_experts, quality_name);
      j["tau"] = main_json["tau"];
      j["reference"] = paradox::to_json(reference);
      j["policies"] = main_json["policies"];
      j["verdicts"] = main_json["verdicts"];
      if (!baselines.empty()) {
        nlohmann::json b = nlohmann::json::object();
        for (const auto& p : baselines) b[p.key] = paradox::to_json(p);
        j["baselines"] = b;
      }
      nlohmann::json sw = nlohmann::json::array();
      for (const auto& s : sweep) sw.push_back(paradox::to_json(s, k_experts, quality_name));
      j["sweep"] = sw;
      j["wall_seconds"] = prog.seconds();
      std::ofstream f(c.json_path);
      if (!f) throw std::runtime_error("cannot write " + c.json_path);
      f << j.dump(2) << '\n';
      if (!f) throw std::runtime_error("cannot write " + c.json_path);
    }
    if (!c.out_dir.empty()) {
      paradox::write_outputs(c.out_dir, main_run, sweep, quality_name);
      std::vector<const paradox::policy_result*> rows;
      for (const auto& p : shown.policies) rows.push_back(&p);
      sys.write_extra_outputs(c.out_dir, rows);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddm-paradox: %s\n", e.what());
    return 1;
  }
  return 0;
}
