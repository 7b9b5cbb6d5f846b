// Expert-parallel sampling over MPI with a compute-heavy expert, run by bench/distributed.sh under
// mpirun -np 1, 2, 4 (docs/distributed.md, "Measured").
//
// K experts, each a two-layer MLP in float on the CBLAS (OpenBLAS): v = W2 gelu(W1 x + b1 + t c)
// + b2, D -> H -> D, 4 D H flops per row, so that an expert call is GEMM-bound. A linear router
// whose biases fall with the expert index (bias_k = -skew k) makes the load uneven, as DDM routing
// is: top-1 sends most rows to the first experts. Euler steps (one routed-field call per step).
//
// Per (policy, placement) on rank 0, one JSON line: the time per step (the slowest rank's, as the
// ranks proceed in lockstep), the share of the ranks' time in the exchange (waiting for slower
// ranks included), the load per rank per step (rows each rank's experts evaluated: max / mean over
// ranks, averaged over steps), the rows and bytes each rank sent, and the expert rows routed, for
// the cost model (bench/distributed_cost.py). Weak scaling: --rows rows per rank; strong: --rows
// in all.

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <ddm/ddm.hpp>
#include <ddm/mpi.hpp>

namespace {

using ddm::index_t;

// x -> W2 gelu(W1 x + b1 + t c) + b2 (tanh gelu), weights drawn from Philox by expert.
class mlp_expert {
 public:
  mlp_expert(index_t d, index_t h, std::uint64_t seed) : d_(d), h_(h) {
    auto draw = [&](std::vector<float>& w, std::size_t n, double scale, std::uint64_t stream) {
      w.resize(n);
      for (std::size_t i = 0; i < n; ++i) w[i] = static_cast<float>(scale * ddm::philox4x32::normal(seed, stream, i));
    };
    const auto dd = static_cast<std::size_t>(d), hh = static_cast<std::size_t>(h);
    draw(w1_, hh * dd, 1.0 / std::sqrt(static_cast<double>(d)), 1);
    draw(b1_, hh, 0.1, 2);
    draw(c1_, hh, 0.5, 3);
    draw(w2_, dd * hh, 1.0 / std::sqrt(static_cast<double>(h)), 4);
    draw(b2_, dd, 0.1, 5);
  }

  void operator()(ddm::batch_view<const float> x, double t, ddm::batch_view<float> v) {
    const index_t n = x.rows();
    if (n == 0) return;
    hidden_.resize(static_cast<std::size_t>(n * h_));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(h_), static_cast<int>(d_),
                1.0f, x.data(), static_cast<int>(x.stride()), w1_.data(), static_cast<int>(d_), 0.0f, hidden_.data(),
                static_cast<int>(h_));
    const auto tf = static_cast<float>(t);
    for (index_t r = 0; r < n; ++r) {
      float* row = hidden_.data() + r * h_;
      for (index_t j = 0; j < h_; ++j) {
        const float a = row[j] + b1_[static_cast<std::size_t>(j)] + tf * c1_[static_cast<std::size_t>(j)];
        row[j] = 0.5f * a * (1.0f + std::tanh(0.7978845608f * (a + 0.044715f * a * a * a)));
      }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(d_), static_cast<int>(h_),
                1.0f, hidden_.data(), static_cast<int>(h_), w2_.data(), static_cast<int>(h_), 0.0f, v.data(),
                static_cast<int>(v.stride()));
    for (index_t r = 0; r < n; ++r)
      for (index_t c = 0; c < d_; ++c) v(r, c) += b2_[static_cast<std::size_t>(c)];
  }

 private:
  index_t d_, h_;
  std::vector<float> w1_, b1_, c1_, w2_, b2_, hidden_;
};

struct options {
  std::size_t experts = 8;
  index_t dim = 256;
  index_t hidden = 1024;
  index_t rows = 256;
  bool weak = true;
  long steps = 6;
  double skew = 0.35;
  std::vector<std::string> policies{"top1", "top2", "full"};
  std::vector<std::string> placements{"round-robin", "balanced"};
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) ddm::throw_error<ddm::argument_error>("ddm_bench_distributed: option ", flag, " expects a value");
    const std::string value = argv[++i];
    if (flag == "--experts") o.experts = std::stoul(value);
    else if (flag == "--dim") o.dim = std::stol(value);
    else if (flag == "--hidden") o.hidden = std::stol(value);
    else if (flag == "--rows") o.rows = std::stol(value);
    else if (flag == "--scaling" && (value == "weak" || value == "strong")) o.weak = value == "weak";
    else if (flag == "--steps") o.steps = std::stol(value);
    else if (flag == "--skew") o.skew = std::stod(value);
    else if (flag == "--policies") o.policies = split(value);
    else if (flag == "--placements") o.placements = split(value);
    else
      ddm::throw_error<ddm::argument_error>("ddm_bench_distributed: unknown option or value '", flag, " ", value,
                                            "' (expected --experts K --dim D --hidden H --rows N --scaling weak|strong "
                                            "--steps S --skew s --policies LIST --placements LIST)");
  }
  if (o.experts < 1 || o.dim < 1 || o.hidden < 1 || o.rows < 1 || o.steps < 1)
    throw ddm::argument_error("ddm_bench_distributed: --experts, --dim, --hidden, --rows and --steps expect values >= 1");
  return o;
}

// The gather of one value per rank onto every rank.
std::vector<double> per_rank(const ddm::mpi::communicator& comm, double v) {
  std::vector<double> all(static_cast<std::size_t>(comm.size()));
  MPI_Allgather(&v, 1, MPI_DOUBLE, all.data(), 1, MPI_DOUBLE, comm.get());
  return all;
}

double mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size()); }
double max_of(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const auto n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

template <class Router, class Experts>
void run(const ddm::mpi::communicator& comm, const options& o, Router router, const Experts& experts,
         const std::string& policy_name, const std::string& placement_name) {
  const int ranks = comm.size();
  const index_t total = o.weak ? o.rows * ranks : o.rows;
  const auto shard = ddm::mpi::shard_of(total, comm);
  const ddm::host_context ctx{};
  const auto policy = ddm::policy_by_name(policy_name);
  ddm::batch<float> noise(total, o.dim);
  ddm::fill_normal(ctx, noise.view(), 7);
  ddm::batch<float> x(shard.rows, o.dim);

  // The expert load: measured in a short run where each rank evaluates its own rows with every
  // expert (no exchange); the balanced placement spreads it, and it predicts each rank's load.
  std::vector<double> load;
  {
    auto local = ddm::make_routed_field<float>(experts, router, policy, ctx);
    ddm::copy(ctx, x.view(), noise.cview().subrows(shard.first, shard.rows));
    ddm::sample(ctx, ddm::sample_options{}, local, x.view(), ddm::schedules::uniform(o.steps), ddm::euler{});
    for (std::size_t n : local.expert_rows()) {
      double sum = 0, mine = static_cast<double>(n);
      MPI_Allreduce(&mine, &sum, 1, MPI_DOUBLE, MPI_SUM, comm.get());
      load.push_back(sum / static_cast<double>(o.steps));  // rows per step
    }
  }
  const auto k = o.experts;
  const auto where = placement_name == "balanced"
                         ? ddm::mpi::placement::balanced(load, ranks, (k + static_cast<std::size_t>(ranks) - 1) /
                                                                          static_cast<std::size_t>(ranks) + 1)
                         : ddm::mpi::placement::parse(placement_name, k, ranks);
  const auto predicted = where.rank_load(load);

  auto field = ddm::make_routed_field<float>(ddm::mpi::make_distributed_experts<float>(comm, where, experts, shard.first),
                                             router, policy, ctx);
  ddm::copy(ctx, x.view(), noise.cview().subrows(shard.first, shard.rows));
  // Per step: this rank's wall time and the change of its exchange statistics.
  using clock = std::chrono::steady_clock;
  std::vector<double> step_seconds, exchange, compute, evaluated, sent, sent_away, bytes_sent;
  auto last = clock::now();
  ddm::mpi::exchange_stats before{};
  auto observe = [&](const ddm::step_event<float>&) {
    const auto now = clock::now();
    const auto& s = field.experts().stats();
    step_seconds.push_back(std::chrono::duration<double>(now - last).count());
    exchange.push_back(s.exchange_seconds - before.exchange_seconds);
    compute.push_back(s.compute_seconds - before.compute_seconds);
    evaluated.push_back(static_cast<double>(s.rows_evaluated - before.rows_evaluated));
    sent.push_back(static_cast<double>(s.rows_sent - before.rows_sent));
    sent_away.push_back(static_cast<double>(s.rows_sent_away - before.rows_sent_away));
    bytes_sent.push_back(static_cast<double>(s.bytes_sent - before.bytes_sent));
    before = s;
    last = now;
  };
  MPI_Barrier(comm.get());
  last = clock::now();
  ddm::sample(ctx, ddm::sample_options{}, field, x.view(), ddm::schedules::uniform(o.steps), ddm::euler{}, observe);

  // Per step over ranks: the slowest rank's time, the load's max / mean; then over steps.
  std::vector<double> slowest, imbalance, share;
  double bytes = 0, away = 0, rows_sent = 0;
  double bytes_total = 0, away_total = 0;  // over ranks and steps: exact integers in a double
  for (std::size_t i = 0; i < step_seconds.size(); ++i) {
    slowest.push_back(max_of(per_rank(comm, step_seconds[i])));
    const auto l = per_rank(comm, evaluated[i]);
    imbalance.push_back(mean(l) > 0 ? max_of(l) / mean(l) : 1.0);
    share.push_back(mean(per_rank(comm, exchange[i] / step_seconds[i])));
    const auto b = per_rank(comm, bytes_sent[i]);
    const auto a = per_rank(comm, sent_away[i]);
    bytes += mean(b);
    away += mean(a);
    bytes_total += std::accumulate(b.begin(), b.end(), 0.0);
    away_total += std::accumulate(a.begin(), a.end(), 0.0);
    rows_sent += mean(per_rank(comm, sent[i]));
  }
  const auto compute_mean = mean(per_rank(comm, mean(compute)));
  const auto n_steps = static_cast<double>(step_seconds.size());
  if (comm.rank() != 0) return;
  std::ostringstream load_text, predicted_text;
  for (std::size_t i = 0; i < load.size(); ++i) load_text << (i ? "," : "") << load[i];
  for (std::size_t i = 0; i < predicted.size(); ++i) predicted_text << (i ? "," : "") << predicted[i];
  std::printf(
      "{\"ranks\": %d, \"scaling\": \"%s\", \"rows\": %td, \"rows_per_rank\": %.1f, \"experts\": %zu, \"dim\": %td, "
      "\"hidden\": %td, \"policy\": \"%s\", \"placement\": \"%s\", \"placement_map\": \"%s\", \"steps\": %ld, "
      "\"step_seconds_median\": %.6g, \"step_seconds_mean\": %.6g, \"exchange_share\": %.4f, "
      "\"compute_seconds_per_step\": %.6g, \"load_max_over_mean\": %.4f, \"predicted_load_max_over_mean\": %.4f, "
      "\"rows_sent_per_rank_step\": %.2f, \"rows_sent_away_per_rank_step\": %.2f, \"bytes_sent_per_rank_step\": %.1f, "
      "\"rows_sent_away_total\": %.0f, \"bytes_sent_total\": %.0f, "
      "\"expert_rows_per_step\": [%s], \"predicted_rank_rows_per_step\": [%s]}\n",
      ranks, o.weak ? "weak" : "strong", total, static_cast<double>(total) / ranks, k, o.dim, o.hidden,
      policy_name.c_str(), placement_name.c_str(), where.describe().c_str(), o.steps, median(slowest),
      mean(slowest), mean(share), compute_mean, mean(imbalance),
      mean(predicted) > 0 ? max_of(predicted) / mean(predicted) : 1.0, rows_sent / n_steps, away / n_steps,
      bytes / n_steps, away_total, bytes_total, load_text.str().c_str(), predicted_text.str().c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  ddm::mpi::environment env(argc, argv);
  const auto comm = ddm::mpi::communicator::world();
  try {
    const auto o = parse(argc, argv);
    std::vector<mlp_expert> e;
    for (std::size_t k = 0; k < o.experts; ++k) e.emplace_back(o.dim, o.hidden, 1000 + k);
    const ddm::expert_vector<mlp_expert> experts(std::move(e));
    // logits = x R^T / sqrt(D) - skew k: a row's preference is random, the prior falls with k.
    std::vector<float> r(o.experts * static_cast<std::size_t>(o.dim));
    for (std::size_t i = 0; i < r.size(); ++i)
      r[i] = static_cast<float>(ddm::philox4x32::normal(99, 0, i) / std::sqrt(static_cast<double>(o.dim)));
    auto router = ddm::router_fn(o.experts, "linear", [r, o](ddm::batch_view<const float> x, double, ddm::batch_view<float> logits) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(x.rows()), static_cast<int>(o.experts),
                  static_cast<int>(o.dim), 1.0f, x.data(), static_cast<int>(x.stride()), r.data(), static_cast<int>(o.dim),
                  0.0f, logits.data(), static_cast<int>(logits.stride()));
      for (index_t i = 0; i < x.rows(); ++i)
        for (index_t k = 0; k < logits.cols(); ++k) logits(i, k) -= static_cast<float>(o.skew * static_cast<double>(k));
    });
    for (const auto& policy : o.policies)
      for (const auto& placement : o.placements) run(comm, o, router, experts, policy, placement);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ddm_bench_distributed (rank %d): %s\n", comm.rank(), e.what());
    std::fflush(stderr);
    MPI_Abort(comm.get(), 1);
  }
  return 0;
}
