// Where the time of one DiT forward on the host backend goes: the forward's operations (the
// sequence of dit::dit_model::forward and dit/layers.hpp, at the shapes of DiT-S/2 or DiT-B/2,
// random weights) run one by one through dit::backend<host_space>, each timed, and grouped by
// kind: the GEMMs by layer (adaLN, qkv, attention projection, fc1, fc2, the stem and final
// layer), attention, and the element-wise work (LayerNorm + modulation, GELU, SiLU, residuals,
// patches). The model's own forward is timed in the same rounds, so the shares can be checked
// against it (the operations' sum should be within a few percent of it).
//
//   OMP_NUM_THREADS=1 OPENBLAS_CORETYPE=SkylakeX build/dev/bench/ddm_bench_dit_forward_split \
//       [--model DiT-S/2|DiT-B/2] [--batch 4] [--rounds 5]
//
// Prints, per kind, the median over rounds of its summed time per forward and its share of the
// median forward. Not a test: a measurement tool for docs/performance.md.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <ddm/core/rng.hpp>
#include <ddm/io/safetensors.hpp>
#include <ddm/io/safetensors_writer.hpp>

#include "dit/backend_host.hpp"
#include "support/random_dit.hpp"
#include "dit/dit_model.hpp"

namespace {

using ddm::index_t;
using ops = dit::backend<ddm::host_space>;
using clock_type = std::chrono::steady_clock;

ddm::batch<float> random_matrix(index_t rows, index_t cols, std::mt19937& gen) {
  ddm::batch<float> m(rows, cols);
  std::uniform_real_distribution<float> u(-1.0f / std::sqrt(float(cols)), 1.0f / std::sqrt(float(cols)));
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c) m(r, c) = u(gen);
  return m;
}

struct timer {
  std::map<std::string, double>& into;
  std::string kind;
  clock_type::time_point start = clock_type::now();
  ~timer() { into[kind] += std::chrono::duration<double, std::milli>(clock_type::now() - start).count(); }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_name = "DiT-S/2";
  index_t b = 4;
  int rounds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--model") model_name = argv[i + 1];
    else if (a == "--batch") b = std::stol(argv[i + 1]);
    else if (a == "--rounds") rounds = std::stoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown argument %s (expected --model, --batch, --rounds)\n", a.c_str());
      return 2;
    }
  }
  const auto c = dit::dit_config::preset(model_name);
  const index_t d = c.hidden_size;
  const index_t t = c.tokens();
  const index_t m = b * t;
  const index_t mlp = c.mlp_hidden();
  const index_t pv = c.geometry().patch_values(c.in_channels);
  const index_t out_cols = c.patch_size * c.patch_size * c.out_channels();
  const double eps = c.layer_norm_eps;
  const ddm::host_context ctx{};

  std::mt19937 gen(7);
  // One block's weights, reused by every block: the shapes (and so the GEMMs' speed) are the
  // model's; the values do not change the time.
  auto w_adaln = random_matrix(6 * d, d, gen), w_qkv = random_matrix(3 * d, d, gen), w_proj = random_matrix(d, d, gen);
  auto w_fc1 = random_matrix(mlp, d, gen), w_fc2 = random_matrix(d, mlp, gen);
  auto w_patch = random_matrix(d, pv, gen), w_t1 = random_matrix(d, c.frequency_size, gen), w_t2 = random_matrix(d, d, gen);
  auto w_fada = random_matrix(2 * d, d, gen), w_final = random_matrix(out_cols, d, gen);
  auto bias = random_matrix(1, std::max(mlp, 6 * d), gen);
  auto pos = random_matrix(1, t * d, gen);
  auto cvec = random_matrix(1, d, gen);
  auto freqs = random_matrix(1, c.frequency_size / 2, gen);

  ddm::batch<float> x(b, c.input_values());
  ddm::fill_normal(ctx, x.view(), 7);
  ddm::batch<float> patches(m, pv), xs(m, d), h(m, d), qkv(m, 3 * d), att(m, d), o(m, d), f(m, mlp), fin(m, out_cols);
  ddm::batch<float> freq_in(b, c.frequency_size), temb(b, d), th(b, d), cond(b, d), sc(b, d), mod(b, 6 * d),
      fmod(b, 2 * d), out(b, c.output_values());
  const std::vector<float> ts(static_cast<std::size_t>(b), 500.0f);
  std::vector<std::int32_t> labels(static_cast<std::size_t>(b));
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int32_t>(i * 37 % 1000);

  std::map<std::string, double> acc;
  auto one_pass = [&]() {
    {
      timer _{acc, "elementwise: patches, pos, embed"};
      ops::patchify(ctx, x.cview(), c.geometry(), patches.view());
    }
    {
      timer _{acc, "gemm: stem + final (patch, t-embed, final)"};
      ops::linear(ctx, patches.cview(), w_patch.cview(), bias.data(), xs.view());
    }
    {
      timer _{acc, "elementwise: patches, pos, embed"};
      ddm::batch_view<float> flat(xs.data(), b, t * d);
      ops::add_row_vector(ctx, flat.as_const(), pos.cview(), flat);
      ops::timestep_embedding(ctx, ts, freqs.cview(), freq_in.view());
    }
    {
      timer _{acc, "gemm: stem + final (patch, t-embed, final)"};
      ops::linear(ctx, freq_in.cview(), w_t1.cview(), bias.data(), th.view());
      ops::silu(ctx, th.cview(), th.view());
      ops::linear(ctx, th.cview(), w_t2.cview(), bias.data(), temb.view());
    }
    {
      timer _{acc, "elementwise: silu(c), residuals"};
      ops::add_row_vector(ctx, temb.cview(), cvec.cview(), cond.view());
      ops::silu(ctx, cond.cview(), sc.view());
    }
    for (index_t i = 0; i < c.depth; ++i) {
      {
        timer _{acc, "gemm: adaLN (B rows)"};
        ops::linear(ctx, sc.cview(), w_adaln.cview(), bias.data(), mod.view());
      }
      const auto mc = mod.cview();
      {
        timer _{acc, "elementwise: layer_norm_modulate"};
        ops::layer_norm_modulate(ctx, xs.cview(), eps, dit::chunk(mc, 0, d), dit::chunk(mc, 1, d), h.view());
      }
      {
        timer _{acc, "gemm: qkv"};
        ops::linear(ctx, h.cview(), w_qkv.cview(), bias.data(), qkv.view());
      }
      {
        timer _{acc, "attention"};
        const auto q = qkv.cview();
        ops::attention(ctx, dit::columns(q, 0, d), dit::columns(q, d, d), dit::columns(q, 2 * d, d), b, c.num_heads,
                       att.view());
      }
      {
        timer _{acc, "gemm: attention proj"};
        ops::linear(ctx, att.cview(), w_proj.cview(), bias.data(), o.view());
      }
      {
        timer _{acc, "elementwise: silu(c), residuals"};
        ops::gated_residual(ctx, xs.view(), dit::chunk(mc, 2, d), o.cview());
      }
      {
        timer _{acc, "elementwise: layer_norm_modulate"};
        ops::layer_norm_modulate(ctx, xs.cview(), eps, dit::chunk(mc, 3, d), dit::chunk(mc, 4, d), h.view());
      }
      {
        timer _{acc, "gemm: fc1"};
        ops::linear(ctx, h.cview(), w_fc1.cview(), bias.data(), f.view());
      }
      {
        timer _{acc, "elementwise: gelu"};
        ops::gelu_tanh(ctx, f.cview(), f.view());
      }
      {
        timer _{acc, "gemm: fc2"};
        ops::linear(ctx, f.cview(), w_fc2.cview(), bias.data(), o.view());
      }
      {
        timer _{acc, "elementwise: silu(c), residuals"};
        ops::gated_residual(ctx, xs.view(), dit::chunk(mc, 5, d), o.cview());
      }
    }
    {
      timer _{acc, "gemm: adaLN (B rows)"};
      ops::linear(ctx, sc.cview(), w_fada.cview(), bias.data(), fmod.view());
    }
    {
      timer _{acc, "elementwise: layer_norm_modulate"};
      ops::layer_norm_modulate(ctx, xs.cview(), eps, dit::chunk(fmod.cview(), 0, d), dit::chunk(fmod.cview(), 1, d),
                               h.view());
    }
    {
      timer _{acc, "gemm: stem + final (patch, t-embed, final)"};
      ops::linear(ctx, h.cview(), w_final.cview(), bias.data(), fin.view());
    }
    {
      timer _{acc, "elementwise: patches, pos, embed"};
      ops::unpatchify(ctx, fin.cview(), c.geometry(), c.out_channels(), out.view());
    }
  };

  const auto model = ddm::bench::random_dit_model(c);
  dit::workspace<ddm::host_space> ws;
  auto model_forward = [&] { model->forward(ctx, x.cview(), ts, labels, out.view(), ws); };
  model_forward();  // warm-up: workspace, thread team, BLAS buffers
  one_pass();
  acc.clear();

  std::map<std::string, std::vector<double>> per_kind;
  std::vector<double> forwards, sums;
  for (int r = 0; r < rounds; ++r) {
    const auto start = clock_type::now();
    model_forward();
    forwards.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - start).count());
    acc.clear();
    one_pass();
    double sum = 0;
    for (const auto& [k, v] : acc) {
      per_kind[k].push_back(v);
      sum += v;
    }
    sums.push_back(sum);
  }
  const double fwd = median(forwards);
  std::printf("%s batch %ld, %d thread(s), %s, kernels %s; %d rounds\n", model_name.c_str(), static_cast<long>(b),
              dit::host_threads(), dit::host_blas_name().c_str(), dit::host::isa_name(dit::host::active_isa()), rounds);
  std::printf("model forward: median %.1f ms (best %.1f); the operations one by one: median sum %.1f ms\n", fwd,
              *std::min_element(forwards.begin(), forwards.end()), median(sums));
  std::printf("%-44s %10s %8s\n", "kind", "ms", "share");
  double gemm = 0;
  for (const auto& [k, v] : per_kind) {
    const double ms = median(v);
    if (k.rfind("gemm", 0) == 0) gemm += ms;
    std::printf("%-44s %10.2f %7.1f%%\n", k.c_str(), ms, 100.0 * ms / median(sums));
  }
  std::printf("%-44s %10.2f %7.1f%%\n", "all GEMMs", gemm, 100.0 * gemm / median(sums));
  return 0;
}
