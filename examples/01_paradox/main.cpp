// ddm-paradox: the stability-quality paradox of decentralized diffusion models, reproduced on the
// analytic DDM, whose data, experts and router are known exactly.
//
// For each routing policy (top-1, top-2, full ensemble, and two time-scheduled mixes) it samples
// the same noise and measures quality (exact Frechet distance, NLL, coverage, precision), stability
// (L_eff, Delta_refine, perturbation amplification), alignment (ranks of the selected experts'
// clusters, angular deviation), disagreement (trajectory-integrated, against per-sample NLL) and
// cost; then it prints a table and verdicts computed from those numbers. See docs/paradox.md.

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include <ddm/core/checked.hpp>

#include "analytic_system.hpp"
#include "report.hpp"
#include "study.hpp"
#include "system.hpp"

#ifndef DDM_PARADOX_FASHION
#define DDM_PARADOX_FASHION 0
#endif
#if DDM_PARADOX_FASHION
#include "fashion_dit_system.hpp"
#include "fashion_system.hpp"
#endif

#ifndef DDM_PARADOX_CUDA
#define DDM_PARADOX_CUDA 0
#endif
#ifndef DDM_PARADOX_MPI
#define DDM_PARADOX_MPI 0
#endif
#if DDM_PARADOX_MPI
#include <optional>

#include "distributed.hpp"
#endif
#if DDM_PARADOX_CUDA
#include "device.hpp"
#endif

namespace {

using paradox::config;

// The usage text, with the integrators and the policy forms from ddm's registry.
std::string usage_text() {
  // The forms, wrapped to the usage text's columns.
  std::string policy_forms;
  std::size_t column = 24;
  for (const auto& form : ddm::policy_spec_forms()) {
    if (!policy_forms.empty()) {
      policy_forms += ",";
      if (column + form.size() + 2 > 100) {
        policy_forms += "\n" + std::string(24, ' ');
        column = 24;
      } else {
        policy_forms += " ";
        ++column;
      }
    }
    policy_forms += form;
    column += form.size() + 1;
  }
  std::string text = R"(usage: ddm-paradox [options]

Samples a DDM under several routing policies and measures quality, stability, alignment,
disagreement and cost; prints a table and verdicts (docs/paradox.md).

system
  --system NAME         analytic | fashion-classes | fashion-kmeans | fashion-dit (default analytic): the
                        analytic DDM of the options below, or a learned Fashion-MNIST DDM
                        (examples/03_fashion; fashion-dit: DiT experts in pixel space)
  --models DIR          the folder holding the fashion DDM folders (default: the source tree's
                        examples/03_fashion/models)
model (analytic)
  --clusters K          experts / data clusters (default 8)
  --dim D               dimension (default 8)
  --components J        Gaussian components per cluster (default 4)
  --model-seed S        seed of the model's parameters (default 2026)
sampling
  --samples B           samples per policy (default 2000; fashion systems 500, fashion-dit 128)
  --steps N             uniform steps from t = 1 to 0 (default 32; fashion systems 16, fashion-dit 8)
  --integrator NAME     @INTEGRATORS@ (default heun)
  --tau X               router temperature: the exact posterior p(k | x_t)^(1/tau); 1 = perfect router,
                        > 1 = under-confident like a trained one (default 4); fashion systems: the learned
                        router's logits / tau (default 1)
  --seed S              seed of the noise, probes, perturbation and statistics (default 1)
  --policies LIST       comma-separated policies (ddm::policy_by_name, docs/routing.md), each one of
                        @POLICIES@.
                        confidence:C is top-1 where the largest router probability is >= C, else
                        top-2; ratio:R is top-2 with the second expert only where p2 / p1 >= R;
                        A_then_B@S is A while t > S, then B (A, B any form but a schedule).
                        Default: top1, top2, full, full_then_top2, top2_then_full
  --t-switch T          where a schedule A_then_B written without @S switches, in (0, 1) (default 0.5)
  --sweep-switch LIST   run each schedule A_then_B of --policies (written without @S) at every switch
                        time of LIST instead (e.g. 0.2,0.4,0.6,0.8: rows full_then_top2@0.2, ...)
study
  --sweep-tau LIST      also run the study at each temperature of LIST (e.g. 1,2,4,8) and print a summary
  --leff-every N        measure L_eff every N-th step (default 1)
  --epsilon E           noise perturbation scale for the amplification (default 1e-3)
  --permutations P      Spearman permutation test size (default 9999)
  --bootstrap R         Spearman bootstrap resamples (default 1000)
output
  --json FILE           write every number as JSON (schema: docs/paradox.md)
  --out DIR             write CSV files and SVG plots into DIR (default ddm-paradox-out, in the current
                        directory; its path is printed at the end)
  --no-out              write no CSV files and plots
  --device cpu|cuda     where to run (default cpu): cuda runs the sampler, the routed field (experts and
                        router), the observers, Delta_refine and the amplification on the GPU
  --precision P         float | double: the states' value type (default: double on cpu, float on cuda)
  --placement P         under mpirun -np N (a build with MPI; --device cpu): which ranks hold
                        which experts: round-robin (expert k on rank k % N, the default), balanced (from
                        each policy's measured load, with replicas of hot experts), or explicit owners
                        per expert separated by '|' ("0|1|2,3|0": expert 2 on ranks 2 and 3). Each rank
                        samples its shard of the batch; the numbers are those of one process
                        (docs/distributed.md). One process ignores it
  --quiet               no progress on stderr
  --help                this message
)";
  auto put = [&](const std::string& key, const std::string& value) { text.replace(text.find(key), key.size(), value); };
  std::string integrators;
  for (const auto& n : ddm::integrator_names(paradox::study_integrators{}))
    integrators += (integrators.empty() ? "" : " | ") + n;
  put("@INTEGRATORS@", integrators);
  put("@POLICIES@", policy_forms);
  return text;
}

[[noreturn]] void bad_usage(const std::string& message) {
  std::fprintf(stderr, "ddm-paradox: %s\n\n%s", message.c_str(), usage_text().c_str());
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

// Every size flag has an upper bound (docs/paradox.md, "Flags"; a refusal names it), far above any study
// that finishes in hours, so that a mistyped value is refused at once with the flag's name instead
// of running for hours, wrapping, or failing later as "vector::reserve" or bad_alloc.
constexpr long long max_clusters = 4096;
constexpr long long max_dim = 1 << 20;
constexpr long long max_components = 4096;
constexpr long long max_samples = 100'000'000;
constexpr long long max_steps = 1'000'000;
constexpr long long max_permutations = 10'000'000;
constexpr long long max_bootstrap = 1'000'000;

// The flags together can still ask for more memory than the machine has: the study keeps a few
// dozen (B, D) and (B, K) state-sized buffers per policy (samples, noise, velocities, probes, the
// observers' and the experts' sub-batches) and the model's K x J component means. A rough lower
// bound of that, checked before any work starts, in checked arithmetic (the product of the
// bounds above overflows 64 bits).
std::uint64_t physical_memory_bytes() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
#endif
  return 0;  // unknown: only the overflow check applies
}

void check_memory(const config& c) {
  const char* const flags = "--samples x --dim x --clusters (and --components)";
  try {
    // The learned systems' sizes come from their folders (K <= 10 experts in a 32-dimensional
    // latent space); their largest per-sample arrays are the decoded 784-pixel images.
    const bool analytic = c.system == "analytic";
    const auto b = c.samples;
    const auto d = analytic ? ddm::index_t{c.model.dim} : ddm::index_t{784};
    const auto k = analytic ? ddm::index_t{c.model.clusters} : ddm::index_t{10};
    const auto j = analytic ? ddm::index_t{c.model.components_per_cluster} : ddm::index_t{0};
    const auto state = ddm::checked_size("ddm-paradox", flags, b, ddm::checked_sum("ddm-paradox", flags, d, k));
    const auto experts = ddm::checked_size("ddm-paradox", flags, b, d, k);  // the full ensemble's velocities
    const auto model = ddm::checked_size("ddm-paradox", flags, k, j, d);
    const auto values = ddm::checked_sum("ddm-paradox", flags, ddm::checked_size("ddm-paradox", flags, state, 24),
                                         ddm::checked_size("ddm-paradox", flags, experts, 2), model);
    const auto bytes = ddm::checked_bytes<double>("ddm-paradox", flags, values);
    const auto available = physical_memory_bytes();
    auto gib = [](std::uint64_t n) {
      char text[32];
      std::snprintf(text, sizeof text, "%.1f GiB", static_cast<double>(n) / double(1ULL << 30));
      return std::string(text);
    };
    if (available != 0 && bytes > available)
      bad_usage(ddm::concat("--samples ", b, ", --dim ", d, ", --clusters ", k, " and --components ", j,
                                    " need at least ", gib(bytes),
                                    " of memory (8 bytes x (24 B (D + K) + 2 B D K + K J D)), more than this "
                                    "machine's ", gib(available)));
  } catch (const ddm::argument_error& e) {
    bad_usage(ddm::concat(e.what(), ": the study would not fit in memory"));
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
  config c;
  c.out_dir = "ddm-paradox-out";
  bool precision_given = false;
  std::vector<std::string> sweep_switch;  // as written, so the row keys read as the user typed them
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
      std::fputs(usage_text().c_str(), stdout);
      std::exit(0);
    } else if (flag == "--clusters") {
      c.model.clusters = static_cast<int>(to_integer(flag, next(), 2, max_clusters));
    } else if (flag == "--dim") {
      c.model.dim = static_cast<int>(to_integer(flag, next(), 1, max_dim));
    } else if (flag == "--components") {
      c.model.components_per_cluster = static_cast<int>(to_integer(flag, next(), 1, max_components));
    } else if (flag == "--model-seed") {
      c.model.seed = static_cast<std::uint64_t>(to_integer(flag, next(), 0));
    } else if (flag == "--samples") {
      c.samples = static_cast<ddm::index_t>(to_integer(flag, next(), 8, max_samples));
      c.samples_given = true;
    } else if (flag == "--steps") {
      c.steps = static_cast<long>(to_integer(flag, next(), 2, max_steps));
      c.steps_given = true;
    } else if (flag == "--integrator") {
      c.integrator = next();
      try {
        ddm::with_integrator(c.integrator, [](const auto&) {}, paradox::study_integrators{});
      } catch (const ddm::argument_error& e) {
        bad_usage(e.what());
      }
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
        try {
          const auto policy = ddm::policy_by_name(p);
          // A schedule that never switches (S = 0 or 1) is one of its halves under another name.
          if (policy.is_scheduled() && !(policy.t_switch() > 0 && policy.t_switch() < 1))
            bad_usage("policy '" + p + "': expected a switch time in (0, 1) after '@'");
        } catch (const ddm::argument_error& e) {
          bad_usage(e.what());
        }
      }
    } else if (flag == "--t-switch") {
      c.t_switch = to_double(flag, next());
      if (!(c.t_switch > 0 && c.t_switch < 1)) bad_usage("option --t-switch expects a time in (0, 1)");
    } else if (flag == "--sweep-switch") {
      for (const auto& v : split(next())) {
        const double t = to_double(flag, v);
        if (!(t > 0 && t < 1)) bad_usage("option --sweep-switch expects times in (0, 1)");
        sweep_switch.push_back(v);
      }
      if (sweep_switch.empty()) bad_usage("option --sweep-switch expects a comma-separated list of times");
    } else if (flag == "--sweep-tau") {
      for (const auto& s : split(next())) {
        const double t = to_double(flag, s);
        if (!(t > 0)) bad_usage("option --sweep-tau expects temperatures > 0");
        c.sweep_tau.push_back(t);
      }
      if (c.sweep_tau.empty()) bad_usage("option --sweep-tau expects a comma-separated list of temperatures");
    } else if (flag == "--leff-every") {
      c.leff_every = static_cast<std::size_t>(to_integer(flag, next(), 1, max_steps));
    } else if (flag == "--epsilon") {
      c.epsilon = to_double(flag, next());
      if (!(c.epsilon > 0)) bad_usage("option --epsilon expects a value > 0");
    } else if (flag == "--permutations") {
      c.permutations = static_cast<std::size_t>(to_integer(flag, next(), 0, max_permutations));
    } else if (flag == "--bootstrap") {
      c.bootstrap = static_cast<std::size_t>(to_integer(flag, next(), 0, max_bootstrap));
    } else if (flag == "--system") {
      c.system = next();
      if (c.system != "analytic" && c.system != "fashion-classes" && c.system != "fashion-kmeans" &&
          c.system != "fashion-dit")
        bad_usage("unknown system '" + c.system + "' (expected analytic, fashion-classes, fashion-kmeans or fashion-dit)");
    } else if (flag == "--models") {
      c.models_dir = next();
      if (c.models_dir.empty()) bad_usage("option --models expects a folder");
    } else if (flag == "--json") {
      c.json_path = next();
    } else if (flag == "--out") {
      c.out_dir = next();
      if (c.out_dir.empty()) bad_usage("option --out expects a directory (--no-out writes none)");
    } else if (flag == "--no-out") {
      if (has_value) bad_usage("option --no-out takes no value");
      c.out_dir.clear();
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
    } else if (flag == "--placement") {
      c.placement = next();
      if (c.placement.empty()) bad_usage("option --placement expects round-robin, balanced or an explicit map");
    } else if (flag == "--quiet") {
      if (has_value) bad_usage("option --quiet takes no value");
      c.quiet = true;
    } else {
      bad_usage("unknown option '" + flag + "'");
    }
  }
  // --sweep-switch: each schedule written without its switch time becomes one row per switch time
  // (key@S).
  if (!sweep_switch.empty()) {
    std::vector<std::string> expanded;
    bool any = false;
    for (const auto& p : c.policies) {
      if (p.find("_then_") == std::string::npos || p.find('@') != std::string::npos) {
        expanded.push_back(p);
        continue;
      }
      any = true;
      for (const auto& t : sweep_switch) expanded.push_back(p + "@" + t);
    }
    if (!any) bad_usage("option --sweep-switch needs a schedule A_then_B without @S (e.g. full_then_top2) in --policies");
    c.policies = std::move(expanded);
  }
  // GPUs are built for float; the host's float run is the one a device run compares with.
  if (!precision_given) c.prec = c.dev == paradox::device::cuda ? paradox::precision::float32 : paradox::precision::float64;
  check_memory(c);
  return c;
}

// A file written whole or not at all: opened (and so checked) before the study, under a
// temporary name beside the destination, renamed onto it by commit(); removed if commit() is
// never reached, so a failed run leaves nothing that looks like a result.
class output_file {
 public:
  output_file() = default;
  output_file(const output_file&) = delete;
  output_file& operator=(const output_file&) = delete;
  ~output_file() {
    if (!temp_.empty()) {
      f_.close();
      std::error_code ec;
      std::filesystem::remove(temp_, ec);
    }
  }
  void open(const char* flag, const std::string& path) {
    namespace fs = std::filesystem;
    flag_ = flag;
    path_ = path;
    std::error_code ec;
    if (fs::is_directory(path, ec))
      throw std::runtime_error(ddm::concat(flag, " '", path, "' is a directory, expected a file name"));
    temp_ = path + ".partial";
    f_.open(temp_, std::ios::binary | std::ios::trunc);
    if (!f_) {
      const int err = errno;
      temp_.clear();
      throw std::runtime_error(ddm::concat(flag, " '", path, "' cannot be written: ", std::strerror(err)));
    }
  }
  void commit(const std::string& text) {
    f_ << text;
    f_.close();
    if (!f_) throw std::runtime_error(ddm::concat(flag_, " '", path_, "': writing failed"));
    std::error_code ec;
    std::filesystem::rename(temp_, path_, ec);
    if (ec) throw std::runtime_error(ddm::concat(flag_, " '", path_, "' cannot be written: ", ec.message()));
    temp_.clear();
  }

 private:
  const char* flag_ = "";
  std::string path_;
  std::string temp_;
  std::ofstream f_;
};

// Creates the directory (as write_outputs will) and a file in it, removed at once.
void check_writable_dir(const char* flag, const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw std::runtime_error(ddm::concat(flag, " '", dir, "' is not a directory that can be created",
                                                 ec ? ": " + ec.message() : std::string()));
  const fs::path probe = fs::path(dir) / ".ddm-paradox-write-check";
  {
    std::ofstream f(probe);
    if (!f) {
      const int err = errno;
      throw std::runtime_error(ddm::concat(flag, " '", dir, "' cannot be written: ", std::strerror(err)));
    }
  }
  fs::remove(probe, ec);
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
  if (c.system == "fashion-dit") return std::make_unique<paradox::fashion_dit_system>(models, DDM_PARADOX_FASHION_DATA);
  return std::make_unique<paradox::fashion_system>(c.system, models, DDM_PARADOX_FASHION_DATA);
#else
  throw std::runtime_error("--system " + c.system + ": this build of ddm-paradox has no fashion systems (they need "
                           "nlohmann_json, a CBLAS, Eigen and zlib; see the CMake status lines)");
#endif
}

}  // namespace

int main(int argc, char** argv) {
#if DDM_PARADOX_MPI
  // Under mpirun: MPI, this rank's place among the ranks, and rank 0 alone printing and writing.
  // A plain run starts no MPI runtime.
  std::optional<ddm::mpi::environment> mpi_env;
  std::optional<paradox::cluster> ranks;
  if (paradox::launched_by_mpirun()) {
    mpi_env.emplace(argc, argv);
    auto comm = ddm::mpi::communicator::world();
    if (comm.size() > 1) ranks.emplace(paradox::cluster{std::move(comm), "round-robin"});
  }
#endif
  config c = parse(argc, argv);
#if DDM_PARADOX_MPI
  if (ranks) {
    const bool lead_rank = ranks->rank() == 0;
    if (c.dev != paradox::device::cpu) {
      if (lead_rank)
        std::fprintf(stderr, "ddm-paradox: under mpirun (%d processes) the study runs on the cpu; run --device %s "
                             "as one process\n", ranks->size(), paradox::to_string(c.dev));
      return 2;
    }
    if (c.samples < ranks->size())
      bad_usage(ddm::concat("--samples ", c.samples, " gives fewer rows than the ", ranks->size(),
                            " processes; expected at least one row per process"));
    if (c.placement != "balanced") {
      try {
        // The learned systems' K comes from their folders: their explicit maps are checked there.
        if (c.system == "analytic")
          (void)ddm::mpi::placement::parse(c.placement, static_cast<std::size_t>(c.model.clusters), ranks->size());
      } catch (const ddm::argument_error& e) {
        bad_usage(ddm::concat("option --placement: ", e.what()));
      }
    }
    ranks->placement_spec = c.placement;
    c.ranks = &*ranks;
    if (!lead_rank) {
      c.quiet = true;
      c.json_path.clear();
      c.out_dir.clear();
      if (std::freopen("/dev/null", "w", stdout) == nullptr) return 1;
    }
  }
#endif
  if (c.system != "analytic") {
    if (c.dev == paradox::device::cuda) {
      std::fprintf(stderr, "ddm-paradox: --device cuda runs the analytic system only; --system %s runs on the host "
                           "(use --device cpu)\n", c.system.c_str());
      return 2;
    }
#if DDM_PARADOX_FASHION
    const bool dit = c.system == "fashion-dit";
    if (!c.samples_given) c.samples = dit ? paradox::fashion_dit_system::default_samples : paradox::fashion_system::default_samples;
    if (!c.steps_given) c.steps = dit ? paradox::fashion_dit_system::default_steps : paradox::fashion_system::default_steps;
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
  // Both outputs are checked before the study runs (it may take hours): a path that cannot be
  // written is a usage error now, not a failure at the end.
  output_file json_out;
  try {
    if (!c.json_path.empty()) json_out.open("--json", c.json_path);
    if (!c.out_dir.empty()) check_writable_dir("--out", c.out_dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddm-paradox: %s\n", e.what());
    return 2;
  }
  try {
    const paradox::progress prog(c.quiet);
    const auto system = make_system(c);
    const paradox::study_system& sys = *system;
    const auto k_experts = sys.num_experts();
    const auto quality_name = sys.per_sample_quality_name();
    print_header(c, sys, device_name);
#if DDM_PARADOX_MPI
    if (ranks)
      std::printf("ranks    %d processes (mpirun), each sampling its shard of every batch; experts placed %s\n\n",
                  ranks->size(), c.placement.c_str());
#endif

    const auto main_run = run_at(c, sys, c.tau, prog);
    const auto baselines = sys.baselines(c, prog);
    const auto reference = sys.reference_quality(c);
    const auto v = paradox::compute_verdicts(main_run, k_experts, quality_name);
    std::printf("headline at tau = %g (the study's claim; every verdict is at the end):\n", c.tau);
    paradox::print_verdict(stdout, v.paradox_vs_top2);
    std::printf("\n");
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
        for (const auto& p : s.policies) std::printf(" %15s", paradox::fmt(p.quality.frechet).c_str());
        for (const auto& p : s.policies) std::printf(" %15s", paradox::fmt(p.stability.delta_refine).c_str());
        auto w = [](const std::optional<bool>& h) { return !h ? "n/a" : (*h ? "yes" : "no"); };
        std::printf("  %7s  %7s  %7s  %9s\n", w(sv.paradox.holds), w(sv.paradox_vs_top2.holds),
                    w(sv.sparse_better_aligned.holds), w(sv.quality_falls_with_disagreement.holds));
      }
    }

    bool identical = true;
    for (const auto& p : main_run.policies) identical = identical && p.observed_run_bit_identical;
    std::printf("\nobserved runs reproduce the plain runs bit for bit: %s; total wall time %.1f s\n",
                identical ? "yes" : "NO", prog.seconds());

    auto write_out = [&] {
      paradox::write_outputs(c.out_dir, main_run, sweep, quality_name);
      std::vector<const paradox::policy_result*> rows;
      for (const auto& p : shown.policies) rows.push_back(&p);
      sys.write_extra_outputs(c.out_dir, rows);
    };
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
      nlohmann::json sweep_timing = nlohmann::json::array();
      for (const auto& s : sweep) sweep_timing.push_back(paradox::timing_json(s));
      const auto main_timing = paradox::timing_json(main_run);
      j["timing"] = {{"policies", main_timing["policies"]}, {"sweep", sweep_timing}};
      if (!baselines.empty())
        j["timing"]["baselines"] = paradox::timing_json(paradox::tau_result{c.tau, baselines})["policies"];
      // --out first: the JSON is the run's claim of success, so it appears only once everything
      // else was written.
      if (!c.out_dir.empty()) write_out();
      j["timing"]["wall_seconds"] = prog.seconds();
#if DDM_PARADOX_MPI
      // Kept apart like the timing: the rest of the JSON is the same under any number of processes.
      if (ranks) {
        nlohmann::json placements = nlohmann::json::object();
        for (const auto& p : main_run.policies) placements[p.key] = p.placement;
        j["distributed"] = {{"ranks", ranks->size()}, {"placement", c.placement}, {"placements", placements}};
      }
#endif
      json_out.commit(j.dump(2) + "\n");
    } else if (!c.out_dir.empty()) {
      write_out();
    }
    if (!c.out_dir.empty())
      std::printf("CSV files, SVG plots%s in %s (--out DIR elsewhere, --no-out for none)\n",
                  baselines.empty() ? "" : " and PNG sample grids", std::filesystem::absolute(c.out_dir).string().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddm-paradox: %s\n", e.what());
#if DDM_PARADOX_MPI
    // The other ranks may be waiting for this one in an exchange: end them now rather than at
    // their timeout.
    if (ranks) {
      std::fflush(stderr);
      MPI_Abort(ranks->comm.get(), 1);
    }
#endif
    return 1;
  }
  return 0;
}
