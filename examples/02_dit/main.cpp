// Sampling a DDM of DiT experts: a Paris-layout folder (expert_k/diffusion_pytorch_model.safetensors
// and router/pytorch_model.safetensors) becomes one ddm velocity field -- the experts, the DiT
// router and a routing policy combined by ddm::routed_field -- and is integrated from noise
// (t = 1) to data (t = 0) while an observer reports which experts the router picked.
//
//   ddm-dit [--checkpoint DIR] [--policy top1|top2|full] [--steps N] [--solver euler|heun|dpm2m]
//           [--batch B] [--cfg S] [--seed N] [--text FILE] [--threads N] [--out FILE]
//
// Without --checkpoint it runs the tiny random-weight fixture of the tests (three experts and a
// router of width 32), which exercises every piece but makes no images. With real Paris weights,
// pass CLIP ViT-L/14 text states in a safetensors file (--text) holding "text" (N, 77, 768) and
// optionally "uncond" (1, 77, 768) (the empty prompt), computed with the Python text encoder; the
// sampled latents (--out) decode with the sd-vae-ft-mse VAE after division by 0.18215.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <ddm/ddm.hpp>
#include <ddm/io/safetensors.hpp>
#include <ddm/io/safetensors_writer.hpp>
#include <ddm/routing/policy.hpp>

#include "dit/backend_host.hpp"
#include "dit/paris_routed.hpp"

#ifndef DDM_DIT_FIXTURES
#define DDM_DIT_FIXTURES "tests/dit/golden"
#endif

namespace {

struct options {
  std::string checkpoint = std::string(DDM_DIT_FIXTURES) + "/paris_tiny";
  std::string policy = "top2";
  std::string solver = "euler";
  std::string text_file;
  std::string out;
  long steps = 20;
  long batch = 4;
  double cfg = 4.0;
  unsigned long long seed = 2026;
  int threads = 0;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "ddm-dit: %s\nusage: ddm-dit [--checkpoint DIR] [--policy top1|top2|full] [--steps N] "
               "[--solver euler|heun|dpm2m] [--batch B] [--cfg S] [--seed N] [--text FILE] [--threads N] "
               "[--out FILE]\n",
               why);
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value after " + a).c_str());
      return argv[++i];
    };
    if (a == "--checkpoint") o.checkpoint = value();
    else if (a == "--policy") o.policy = value();
    else if (a == "--solver") o.solver = value();
    else if (a == "--steps") o.steps = std::stol(value());
    else if (a == "--batch") o.batch = std::stol(value());
    else if (a == "--cfg") o.cfg = std::stod(value());
    else if (a == "--seed") o.seed = std::stoull(value());
    else if (a == "--text") o.text_file = value();
    else if (a == "--threads") o.threads = std::stoi(value());
    else if (a == "--out") o.out = value();
    else usage(("unknown argument " + a).c_str());
  }
  if (o.steps < 1 || o.batch < 1) usage("--steps and --batch must be >= 1");
  return o;
}

// Text states: from --text, or (for the random fixture) deterministic stand-ins: a different
// "prompt" per sample and one "empty prompt" row.
void text_tables(const options& o, const dit::paris_expert_config& c, std::shared_ptr<ddm::batch<float>>& text,
                 std::shared_ptr<ddm::batch<float>>& uncond) {
  const ddm::index_t width = c.text_values();
  if (!o.text_file.empty()) {
    const ddm::io::safetensors_file f(o.text_file);
    const auto& shape = f.info("text").shape;
    if (shape.size() != 3 || static_cast<ddm::index_t>(shape[1] * shape[2]) != width)
      throw ddm::io_error(ddm::detail::concat("ddm-dit: '", o.text_file, "': tensor 'text' must be (N, ",
                                              c.text_length, ", ", c.text_dim, ")"));
    const auto n = static_cast<ddm::index_t>(shape[0]);
    text = std::make_shared<ddm::batch<float>>(n, width);
    f.read_into("text", std::span<float>(text->data(), static_cast<std::size_t>(text->size())));
    uncond = std::make_shared<ddm::batch<float>>(1, width);
    if (f.contains("uncond")) {
      f.read_into("uncond", std::span<float>(uncond->data(), static_cast<std::size_t>(width)));
    } else {
      std::fprintf(stderr, "ddm-dit: no 'uncond' in %s; the unconditional branch uses zeros\n", o.text_file.c_str());
    }
    return;
  }
  text = std::make_shared<ddm::batch<float>>(o.batch, width);
  ddm::fill_normal(ddm::host_context{}, text->view(), o.seed, /*stream=*/1);
  uncond = std::make_shared<ddm::batch<float>>(1, width);
  ddm::fill_normal(ddm::host_context{}, uncond->view(), o.seed, /*stream=*/2);
}

template <class Field, class Integrator>
int run(const options& o, Field& field, const Integrator& integrator, ddm::index_t values, ddm::index_t samples) {
  const std::size_t k = field.num_experts();
  ddm::batch<float> x(samples, values);
  ddm::fill_normal(ddm::host_context{}, x.view(), o.seed);

  // Routing diagnostics: per call, the experts' row counts and the router's confidence.
  std::vector<std::vector<std::size_t>> per_call;
  std::vector<double> mean_top_probability;
  field.add_observer([&](const ddm::routing_event<float>& e) {
    per_call.emplace_back(e.rows_per_expert.begin(), e.rows_per_expert.end());
    double top = 0;
    for (ddm::index_t r = 0; r < e.probabilities.rows(); ++r) {
      double best = 0;
      for (ddm::index_t j = 0; j < e.probabilities.cols(); ++j) best = std::max(best, double(e.probabilities(r, j)));
      top += best;
    }
    mean_top_probability.push_back(top / double(e.probabilities.rows()));
  });
  std::printf("%5s %8s %8s %10s  rows per expert (this call)\n", "step", "t", "t_next", "|v| rms");
  auto progress = [&](const ddm::step_event<float>& e) {
    double s = 0;
    for (ddm::index_t r = 0; r < e.v.rows(); ++r)
      for (ddm::index_t j = 0; j < e.v.cols(); ++j) s += double(e.v(r, j)) * e.v(r, j);
    std::printf("%5zu %8.4f %8.4f %10.4f ", e.index, e.t, e.t_next, std::sqrt(s / double(e.v.size())));
    if (!per_call.empty())
      for (const auto n : per_call.back()) std::printf(" %3zu", n);
    std::printf("   (router's mean top probability %.3f)\n", mean_top_probability.empty() ? 0.0 : mean_top_probability.back());
  };

  const auto start = std::chrono::steady_clock::now();
  const auto result = ddm::sample(field, x, ddm::schedules::uniform(o.steps), integrator, progress);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::printf("\n%zu steps, %zu routed-field calls in %.2f s (%.1f ms per call)\n", result.steps,
              result.field_evaluations, seconds, 1e3 * seconds / double(result.field_evaluations));
  std::printf("expert evaluations per routed row: %.2f of %zu (relative cost %.3f of the full ensemble)\n",
              field.relative_cost() * double(k), k, field.relative_cost());
  const auto rows = field.expert_rows();
  const auto calls = field.expert_calls();
  for (std::size_t j = 0; j < k; ++j)
    std::printf("  expert %zu: %6zu rows in %4zu calls (%5.1f%% of routed rows)\n", j, rows[j], calls[j],
                100.0 * double(rows[j]) / double(field.rows_routed()));
  double lo = 1e300, hi = -1e300, mean = 0;
  for (ddm::index_t i = 0; i < x.size(); ++i) {
    lo = std::min(lo, double(x.data()[i]));
    hi = std::max(hi, double(x.data()[i]));
    mean += x.data()[i];
  }
  std::printf("final latents: min %.3f  max %.3f  mean %.4f\n", lo, hi, mean / double(x.size()));
  if (!o.out.empty()) {
    ddm::io::safetensors_writer w;
    w.set_metadata("policy", o.policy);
    w.set_metadata("steps", std::to_string(o.steps));
    w.add("latents", {static_cast<std::uint64_t>(samples), static_cast<std::uint64_t>(values)},
          std::span<const float>(x.data(), static_cast<std::size_t>(x.size())));
    w.write(o.out);
    std::printf("latents written to %s\n", o.out.c_str());
  }
  return 0;
}

template <class Policy>
int with_policy(const options& o, const dit::paris_checkpoint<ddm::host_space>& ckpt, Policy policy) {
  std::shared_ptr<ddm::batch<float>> text;
  std::shared_ptr<ddm::batch<float>> uncond;
  text_tables(o, ckpt.expert_config, text, uncond);
  const ddm::index_t samples = text->rows();
  const ddm::index_t values = ckpt.experts.front()->input_values();
  std::printf("%zu experts (width %td, depth %td, %td heads), router (width %td, depth %td), policy %s, "
              "guidance %.2f, %td samples, %ld %s steps, %d threads\n",
              ckpt.experts.size(), ckpt.expert_config.hidden_size, ckpt.expert_config.depth,
              ckpt.expert_config.num_heads, ckpt.router_config.hidden_size, ckpt.router_config.depth,
              policy.name().c_str(), o.cfg, samples, o.steps, o.solver.c_str(), dit::host_threads());
  auto dispatch = [&](auto& field) {
    if (o.solver == "euler") return run(o, field, ddm::euler{}, values, samples);
    if (o.solver == "heun") return run(o, field, ddm::heun{}, values, samples);
    if (o.solver == "dpm2m") return run(o, field, ddm::dpmpp_2m{}, values, samples);
    usage("--solver must be euler, heun or dpm2m");
  };
  if (o.cfg == 1.0) {
    auto field = dit::make_paris_field(ckpt, std::shared_ptr<const ddm::batch<float>>(text), policy);
    return dispatch(field);
  }
  auto field = dit::make_paris_guided_field(ckpt, std::shared_ptr<const ddm::batch<float>>(text),
                                            std::shared_ptr<const ddm::batch<float>>(uncond), o.cfg, policy);
  return dispatch(field);
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  try {
    if (o.threads > 0) dit::set_host_threads(o.threads);
    std::printf("loading %s\n", o.checkpoint.c_str());
    const auto ckpt = dit::load_paris(o.checkpoint);
    if (o.policy == "top1") return with_policy(o, ckpt, ddm::top_1());
    if (o.policy == "top2") return with_policy(o, ckpt, ddm::top_2());
    if (o.policy == "full") return with_policy(o, ckpt, ddm::full_ensemble{});
    usage("--policy must be top1, top2 or full");
  } catch (const ddm::error& e) {
    std::fprintf(stderr, "ddm-dit: %s\n", e.message());
    return 1;
  }
}
