#pragma once
// The sampling run of ddm-dit, written once for both memory spaces: main.cpp instantiates it for
// the host, run_cuda.cu for a CUDA device. Values cross between the spaces only through
// ddm::copy (the noise, the text states, the per-step summaries printed, the final latents).
//
// A run on a Paris-layout folder: load the folder, build the routed field (experts with guidance inside, the DiT router,
// the policy), sample from noise with a progress printer and -- unless --diagnostics 0 -- ddm's
// routing_observer (expert disagreement and its trajectory integral, angular deviation of the
// selected and non-selected experts), then print the routing counts and the diagnostics. The
// observer runs in both spaces: on a device its instruments are the device overloads that
// <ddm/cuda.hpp> brings (ddm/cuda/diagnostics/instruments/).
//
// A run on an original DiT checkpoint (one safetensors file in the facebookresearch/DiT layout):
// read its configuration from the file (the head count from --heads or its metadata), guide it
// with the null class on --guided-channels eps channels, turn its DDPM eps into a rectified-flow
// velocity (dit::ddpm_velocity) and sample it from noise with the same progress printer.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <ddm/ddm.hpp>
#include <ddm/diagnostics/observers/routing_observer.hpp>
#include <ddm/io/safetensors.hpp>
#include <ddm/io/safetensors_writer.hpp>
#include <ddm/registry/integrators.hpp>
#include <ddm/registry/policies.hpp>
#include <ddm/routing/policy.hpp>

#include "dit/checkpoint.hpp"
#include "dit/fields.hpp"
#include "dit/paris_routed.hpp"

#ifndef DDM_DIT_FIXTURES
#define DDM_DIT_FIXTURES "tests/dit/golden"
#endif

namespace ddm_dit {

/// The integrators --solver offers, by ddm's own names (ddm::with_integrator): the fixed-step ones a
/// DiT run is usually made with; each one more is one more instantiation of the whole run.
using solvers = ddm::integrator_list<ddm::euler, ddm::heun, ddm::dpmpp_2m>;

struct options {
  std::string checkpoint = std::string(DDM_DIT_FIXTURES) + "/paris_tiny";
  std::string policy = "top2";
  std::string solver = "euler";
  std::string device = "cpu";
  std::string storage = "f32";
  std::string text_file;
  std::string out;
  std::string png;  // fashion-dit folders: the samples as a PNG grid
  std::string placement;  // fashion-dit folders under mpirun: the experts' ranks (empty: one process)
  long steps = 20;
  long batch = 4;
  long diagnostics = 5;  // routing_observer every N steps; 0: off
  bool diagnostics_set = false;
  double cfg = 4.0;
  unsigned long long seed = 2026;
  int threads = 0;
  // An original DiT checkpoint only:
  long heads = 0;            // 0: from the checkpoint's metadata
  long class_label = -1;     // -1: sample i gets class i mod num_classes
  long guided_channels = 0;  // 0: every eps channel
};

/// Whether --checkpoint names one original DiT file (else a Paris-layout folder).
[[nodiscard]] inline bool is_dit_file(const options& o) { return std::filesystem::is_regular_file(o.checkpoint); }

/// Whether --checkpoint names a fashion-dit folder (by its config.json's format, not its name).
[[nodiscard]] inline bool is_fashion_dit_folder(const options& o) {
  const auto file = std::filesystem::path(o.checkpoint) / "config.json";
  if (!std::filesystem::is_regular_file(file)) return false;
  std::ifstream in(file);
  const auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return j.is_object() && j.contains("format") && j["format"] == "ddm-fashion-dit/1";
}

inline const char* usage_text =
    "usage: ddm-dit [--checkpoint PATH] [--device cpu|cuda] [--storage f32|bf16|f16] [--policy SPEC]\n"
    "               [--steps N] [--solver euler|heun|dpm++2m] [--batch B] [--cfg S] [--seed N] [--text FILE]\n"
    "               [--diagnostics N] [--threads N] [--out FILE] [--heads N] [--class N]\n"
    "               [--guided-channels N] [--png FILE] [--placement SPEC] [--help]\n";

[[noreturn]] inline void usage(const char* why) {
  std::fprintf(stderr, "ddm-dit: %s\n%s", why, usage_text);
  std::exit(2);
}

[[nodiscard]] inline dit::weight_storage storage_of(const std::string& s) {
  if (s == "f32") return dit::weight_storage::f32;
  if (s == "bf16") return dit::weight_storage::bf16;
  if (s == "f16") return dit::weight_storage::f16;
  usage("--storage must be f32, bf16 or f16");
}

/// The run on a CUDA device (run_cuda.cu; a build without CUDA says so and returns 1).
int run_cuda(const options& o);

// Text states on the host: from --text, or (for the random fixture) deterministic stand-ins: a
// different "prompt" per sample and one "empty prompt" row.
inline void text_tables(const options& o, const dit::paris_expert_config& c, ddm::batch<float>& text,
                        ddm::batch<float>& uncond) {
  const ddm::index_t width = c.text_values();
  if (!o.text_file.empty()) {
    const ddm::io::safetensors_file f(o.text_file);
    const auto& shape = f.info("text").shape;
    // Each dimension on its own: a (N, 154, 384) tensor has the right row width and would be read
    // as garbage tokens.
    if (shape.size() != 3 || shape[0] == 0 || shape[1] != static_cast<std::uint64_t>(c.text_length) ||
        shape[2] != static_cast<std::uint64_t>(c.text_dim))
      throw ddm::io_error(ddm::concat("--text '", o.text_file, "': tensor 'text' has shape ",
                                              dit::shape_text(shape), ", expected (N >= 1, ",
                                              c.text_length, ", ", c.text_dim, ")"));
    text = ddm::batch<float>(static_cast<ddm::index_t>(shape[0]), width);
    f.read_into("text", std::span<float>(text.data(), static_cast<std::size_t>(text.size())));
    uncond = ddm::batch<float>(1, width);
    if (f.contains("uncond")) {
      f.require_shape("uncond", {1, static_cast<std::uint64_t>(c.text_length), static_cast<std::uint64_t>(c.text_dim)});
      f.read_into("uncond", std::span<float>(uncond.data(), static_cast<std::size_t>(width)));
    } else {
      std::fprintf(stderr, "ddm-dit: no 'uncond' in %s; the unconditional branch uses zeros\n", o.text_file.c_str());
    }
    return;
  }
  text = ddm::batch<float>(o.batch, width);
  ddm::fill_normal(ddm::host_context{}, text.view(), o.seed, /*stream=*/1);
  uncond = ddm::batch<float>(1, width);
  ddm::fill_normal(ddm::host_context{}, uncond.view(), o.seed, /*stream=*/2);
}

template <class Space>
[[nodiscard]] std::shared_ptr<const ddm::batch<float, Space>> in_space(const ddm::execution_context<Space>& ctx,
                                                                       const ddm::batch<float>& host) {
  auto out = std::make_shared<ddm::batch<float, Space>>(ctx, host.rows(), host.cols());
  ddm::copy(ctx, out->view(), host.cview());
  return out;
}

template <class Space>
[[nodiscard]] ddm::batch<float> on_host(const ddm::execution_context<Space>& ctx,
                                        ddm::batch_view<const float, Space> v) {
  ddm::batch<float> out(v.rows(), v.cols());
  ddm::copy(ctx, out.view(), v);
  return out;
}

inline void print_optional(const char* format, const std::optional<double>& v) {
  if (v) {
    std::printf(format, *v);
  } else {
    std::printf("%10s", "-");
  }
}


// The routing observer's record: per measured step, the trajectory integral, the pooled angles.
template <class Observer>
void print_diagnostics(const options& o, const Observer& diagnostics) {
  std::printf("\ndiagnostics (ddm::diagnostics::routing_observer every %ld steps, %zu extra expert row "
              "evaluations)\n",
              o.diagnostics, diagnostics.expert_evaluations());
  std::printf("%5s %8s %14s %10s %10s %10s\n", "step", "t", "disagreement", "sel. angle", "other", "gap");
  for (const auto& s : diagnostics.steps()) {
    std::printf("%5zu %8.4f %14.5f ", s.step, s.t, s.disagreement_mean);
    print_optional("%10.4f", s.selected_angle);
    std::printf(" ");
    print_optional("%10.4f", s.unselected_angle);
    std::printf(" ");
    print_optional("%10.3f", s.angular_gap);
    std::printf("\n");
  }
  const auto& integral = diagnostics.integrated_disagreement();
  if (!integral.empty()) {
    double sum = 0;
    for (const double v : integral) sum += v;
    std::printf("integrated disagreement per sample: mean %.5f  min %.5f  max %.5f\n", sum / double(integral.size()),
                *std::min_element(integral.begin(), integral.end()),
                *std::max_element(integral.begin(), integral.end()));
  }
  const auto& a = diagnostics.angular();
  std::printf("angular deviation from the blended velocity (rad, pooled): selected ");
  print_optional("%.4f", a.selected_mean());
  std::printf(", not selected ");
  print_optional("%.4f", a.unselected_mean());
  std::printf(", relative gap ");
  print_optional("%.3f", a.relative_gap());
  std::printf("\n");
}

/// The end of every run: refuse non-finite latents, print their range, write --out.
template <class Space>
int finish(const options& o, const ddm::execution_context<Space>& ctx, ddm::batch_view<const float, Space> x) {
  const ddm::index_t samples = x.rows();
  const ddm::index_t values = x.cols();
  const auto final_x = on_host(ctx, x);
  // A checkpoint with NaN weights samples NaN latents without any step failing (no diagnostic
  // looks at them); refuse them before anything, a --out file above all, claims a result.
  ddm::index_t non_finite = 0;
  for (ddm::index_t i = 0; i < final_x.size(); ++i) non_finite += std::isfinite(final_x.data()[i]) ? 0 : 1;
  if (non_finite != 0)
    throw ddm::non_finite_error(ddm::concat(
        "the sampled latents hold ", non_finite, " non-finite values (NaN or infinity) of ", final_x.size(),
        ": the checkpoint's weights or the text states hold non-finite values, or the sampler diverged",
        o.out.empty() ? "" : "; nothing was written to --out"));
  double lo = 1e300, hi = -1e300, mean = 0;
  for (ddm::index_t i = 0; i < final_x.size(); ++i) {
    lo = std::min(lo, double(final_x.data()[i]));
    hi = std::max(hi, double(final_x.data()[i]));
    mean += final_x.data()[i];
  }
  std::printf("final latents: min %.3f  max %.3f  mean %.4f\n", lo, hi, mean / double(final_x.size()));
  if (!o.out.empty()) {
    ddm::io::safetensors_writer w;
    if (is_dit_file(o)) {
      w.set_metadata("cfg", std::to_string(o.cfg));
    } else {
      w.set_metadata("policy", o.policy);
    }
    w.set_metadata("checkpoint", o.checkpoint);
    w.set_metadata("steps", std::to_string(o.steps));
    w.set_metadata("device", o.device);
    w.add("latents", {static_cast<std::uint64_t>(samples), static_cast<std::uint64_t>(values)},
          std::span<const float>(final_x.data(), static_cast<std::size_t>(final_x.size())));
    w.write(o.out);
    std::printf("latents written to %s\n", o.out.c_str());
  }
  return 0;
}

template <class Space, class Field, class Integrator>
int sample_and_report(const options& o, const ddm::execution_context<Space>& ctx, Field& field,
                      const Integrator& integrator, ddm::index_t values, ddm::index_t samples) {
  namespace dd = ddm::diagnostics;
  const std::size_t k = field.num_experts();
  ddm::batch<float> noise(samples, values);
  ddm::fill_normal(ddm::host_context{}, noise.view(), o.seed);  // the same noise on every device
  ddm::batch<float, Space> x(ctx, samples, values);
  ddm::copy(ctx, x.view(), noise.cview());

  // Routing counts per call and the router's confidence (its mean top probability).
  std::vector<std::vector<std::size_t>> per_call;
  std::vector<double> mean_top_probability;
  field.add_observer([&](const ddm::routing_event<float, Space>& e) {
    per_call.emplace_back(e.rows_per_expert.begin(), e.rows_per_expert.end());
    const auto p = on_host(ctx, e.probabilities);
    double top = 0;
    for (ddm::index_t r = 0; r < p.rows(); ++r) {
      double best = 0;
      for (ddm::index_t j = 0; j < p.cols(); ++j) best = std::max(best, double(p(r, j)));
      top += best;
    }
    mean_top_probability.push_back(top / double(p.rows()));
  });
  std::printf("%5s %8s %8s %10s  rows per expert (this call)\n", "step", "t", "t_next", "|v| rms");
  auto progress = [&](const ddm::step_event<float, Space>& e) {
    const auto v = on_host(ctx, e.v);
    double s = 0;
    for (ddm::index_t i = 0; i < v.size(); ++i) s += double(v.data()[i]) * v.data()[i];
    std::printf("%5zu %8.4f %8.4f %10.4f ", e.index, e.t, e.t_next, std::sqrt(s / double(v.size())));
    if (!per_call.empty())
      for (const auto n : per_call.back()) std::printf(" %3zu", n);
    std::printf("   (router's mean top probability %.3f)\n",
                mean_top_probability.empty() ? 0.0 : mean_top_probability.back());
  };

  const auto schedule = ddm::schedules::uniform(o.steps);
  auto report_routing = [&](const ddm::sample_result& result, double seconds) {
    std::printf("\n%zu steps, %zu routed-field calls in %.2f s (%.1f ms per call%s)\n", result.steps,
                result.field_evaluations, seconds, 1e3 * seconds / double(result.field_evaluations),
                o.diagnostics > 0 ? ", diagnostics included" : "");
    std::printf("expert evaluations per routed row: %.2f of %zu (relative cost %.3f of the full ensemble)\n",
                field.relative_cost() * double(k), k, field.relative_cost());
    const auto rows = field.expert_rows();
    const auto calls = field.expert_calls();
    for (std::size_t j = 0; j < k; ++j)
      std::printf("  expert %zu: %6zu rows in %4zu calls (%5.1f%% of routed rows)\n", j, rows[j], calls[j],
                  100.0 * double(rows[j]) / double(field.rows_routed()));
  };
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  if (o.diagnostics > 0) {
    auto diagnostics = dd::make_routing_observer<float, Space>(
        ctx, field, schedule, ddm::batch_view<const float, Space>{},
        {.every = static_cast<std::size_t>(o.diagnostics), .alignment_times = {}});
    const auto result = ddm::sample(field, x, schedule, integrator, progress, diagnostics);
    report_routing(result, seconds());
    print_diagnostics(o, diagnostics);
  } else {
    const auto result = ddm::sample(field, x, schedule, integrator, progress);
    report_routing(result, seconds());
  }

  return finish(o, ctx, x.cview());
}

template <class Space, class Policy>
int with_policy(const options& o, const ddm::execution_context<Space>& ctx, const dit::paris_checkpoint<Space>& ckpt,
                Policy policy, const char* backend) {
  ddm::batch<float> text_host;
  ddm::batch<float> uncond_host;
  text_tables(o, ckpt.expert_config, text_host, uncond_host);
  const auto text = in_space(ctx, text_host);
  const auto uncond = in_space(ctx, uncond_host);
  const ddm::index_t samples = text->rows();
  const ddm::index_t values = ckpt.experts.front()->input_values();
  std::printf("%zu experts (width %td, depth %td, %td heads), router (width %td, depth %td), policy %s, "
              "guidance %.2f, %td samples, %ld %s steps, %s, %s weights\n",
              ckpt.experts.size(), ckpt.expert_config.hidden_size, ckpt.expert_config.depth,
              ckpt.expert_config.num_heads, ckpt.router_config.hidden_size, ckpt.router_config.depth,
              policy.name().c_str(), o.cfg, samples, o.steps, o.solver.c_str(), backend, o.storage.c_str());
  auto dispatch = [&](auto& field) {
    return ddm::with_integrator(
        o.solver, [&](const auto& integrator) { return sample_and_report<Space>(o, ctx, field, integrator, values, samples); },
        solvers{});
  };
  if (o.cfg == 1.0) {
    auto field = dit::make_paris_field(ckpt, text, policy, 1000.0, ctx);
    return dispatch(field);
  }
  auto field = dit::make_paris_guided_field(ckpt, text, uncond, o.cfg, policy, 1000.0, ctx);
  return dispatch(field);
}

/// Samples an original DiT checkpoint (see the header comment).
template <class Space>
int run_dit(const options& o, const ddm::execution_context<Space>& ctx, const char* backend) {
  std::printf("loading %s\n", o.checkpoint.c_str());
  dit::hyperparameters given;
  if (o.heads > 0) given.num_heads = o.heads;
  const auto model = dit::load_dit<Space>(o.checkpoint, given, ctx, storage_of(o.storage));
  const auto& c = model->config();
  if (o.class_label >= c.num_classes)
    throw ddm::argument_error(ddm::concat("--class ", o.class_label, ": the checkpoint has ", c.num_classes,
                                          " classes, expected a label in [0, ", c.num_classes, ")"));
  if (o.guided_channels > c.in_channels)
    throw ddm::argument_error(ddm::concat("--guided-channels ", o.guided_channels, ": the checkpoint's latents have ",
                                          c.in_channels, " channels, expected [0, ", c.in_channels, "]"));
  const ddm::index_t samples = o.batch;
  std::vector<std::int32_t> labels(static_cast<std::size_t>(samples));
  for (ddm::index_t i = 0; i < samples; ++i)
    labels[static_cast<std::size_t>(i)] =
        static_cast<std::int32_t>(o.class_label >= 0 ? o.class_label : i % c.num_classes);
  const ddm::index_t guided = o.guided_channels == 0 ? c.in_channels : o.guided_channels;
  std::printf("DiT (width %td, depth %td, %td heads, patch %td, %td x %td x %td latents, %td classes%s), guidance "
              "%.2f on %td of %td eps channels, %td samples, %ld %s steps, %s, %s weights\n",
              c.hidden_size, c.depth, c.num_heads, c.patch_size, c.in_channels, c.input_size, c.input_size,
              c.num_classes, c.learn_sigma ? ", learned sigma unused" : "", o.cfg, o.cfg == 1.0 ? 0 : guided,
              c.in_channels, samples, o.steps, o.solver.c_str(), backend, o.storage.c_str());
  if (o.diagnostics_set && o.diagnostics > 0)
    std::printf("(--diagnostics: a single DiT has no routing to diagnose; ignored)\n");

  ddm::batch<float> noise(samples, model->input_values());
  ddm::fill_normal(ddm::host_context{}, noise.view(), o.seed);  // the same noise on every device
  ddm::batch<float, Space> x(ctx, samples, model->input_values());
  ddm::copy(ctx, x.view(), noise.cview());
  std::printf("%5s %8s %8s %10s\n", "step", "t", "t_next", "|v| rms");
  auto progress = [&](const ddm::step_event<float, Space>& e) {
    const auto v = on_host(ctx, e.v);
    double sum = 0;
    for (ddm::index_t i = 0; i < v.size(); ++i) sum += double(v.data()[i]) * v.data()[i];
    std::printf("%5zu %8.4f %8.4f %10.4f\n", e.index, e.t, e.t_next, std::sqrt(sum / double(v.size())));
  };
  const auto schedule = ddm::schedules::uniform(o.steps);
  auto run = [&](auto field) {
    const auto start = std::chrono::steady_clock::now();
    auto go = [&](const auto& integrator) { return ddm::sample(field, x, schedule, integrator, progress); };
    const ddm::sample_result result = ddm::with_integrator(o.solver, go, solvers{});
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("\n%zu steps, %zu field calls in %.2f s (%.1f ms per call)\n", result.steps,
                result.field_evaluations, seconds, 1e3 * seconds / double(result.field_evaluations));
    return finish(o, ctx, x.cview());
  };
  // DDPM timesteps come from the VP adapter, so the fields take them as they are (time_scale 1).
  if (o.cfg == 1.0) return run(dit::ddpm_velocity(dit::dit_expert_field<Space>(model, labels, 1.0, ctx), 1e-4, ctx));
  return run(dit::ddpm_velocity(
      dit::dit_guided_field<Space>(model, labels, o.cfg, static_cast<ddm::index_t>(o.guided_channels), 1.0, ctx),
      1e-4, ctx));
}

/// Loads the folder into `ctx`'s memory and samples it (see the header comment).
template <class Space>
int run_folder(const options& o, const ddm::execution_context<Space>& ctx, const char* backend) {
  std::printf("loading %s\n", o.checkpoint.c_str());
  dit::paris_options load;
  load.storage = storage_of(o.storage);
  const auto ckpt = dit::load_paris<Space>(o.checkpoint, load, ctx);
  return with_policy(o, ctx, ckpt, ddm::policy_by_name(o.policy), backend);
}

/// A run on whatever --checkpoint names: one original DiT file, or a Paris-layout folder.
template <class Space>
int run_checkpoint(const options& o, const ddm::execution_context<Space>& ctx, const char* backend) {
  if (is_dit_file(o)) return run_dit(o, ctx, backend);
  return run_folder(o, ctx, backend);
}

}  // namespace ddm_dit
