// The host backend's operations against direct double-precision implementations: the exp
// approximation, GELU and SiLU, attention with any head size, modulated LayerNorm, and the two
// patch orders (conv weight order in, channel-fastest out).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <ddm/core/rng.hpp>

#include "dit/backend_host.hpp"

namespace {

using ops = dit::backend<ddm::host_space>;
const ddm::host_context ctx{};

TEST(DitBackend, ExpApproximationIsWithinTwoUlpsOverTheFloatRange) {
  double worst = 0;
  for (double x = -87.0; x <= 88.0; x += 1e-3) {
    const auto xf = static_cast<float>(x);
    const double want = std::exp(static_cast<double>(xf));
    worst = std::max(worst, std::abs(dit::host::exp_approx(xf) - want) / want);
  }
  std::printf("[ measured ] exp_approx max relative error on [-87, 88]: %.2e\n", worst);
  EXPECT_LE(worst, 2.5e-7);
  EXPECT_GT(dit::host::exp_approx(-1e30f), 0.0f);  // clamped, no NaN
  EXPECT_TRUE(std::isfinite(dit::host::exp_approx(1e30f)));
}

// Every instruction-set path the CPU has (dit/host_isa.hpp) meets the bound; the FMA paths (AVX2,
// AVX-512) agree bit for bit, as they do the same operations per element.
TEST(DitBackend, GeluTanhAndSiluMatchTheirFormulas) {
  namespace hi = dit::host;
  const hi::isa before = hi::active_isa();
  ddm::batch<float> x(1, 4001), g(1, 4001), s(1, 4001);
  std::vector<float> g_fma, s_fma;
  for (ddm::index_t i = 0; i < x.cols(); ++i) x(0, i) = -20.0f + 0.01f * static_cast<float>(i);
  bool first_fma = true;
  for (const hi::isa path : {hi::isa::portable, hi::isa::avx2, hi::isa::avx512}) {
    if (!hi::isa_supported(path)) continue;
    hi::pin_isa(path);
    ops::gelu_tanh(ctx, x.cview(), g.view());
    ops::silu(ctx, x.cview(), s.view());
    hi::pin_isa(before);
    double wg = 0, ws = 0;
    for (ddm::index_t i = 0; i < x.cols(); ++i) {
      const double v = x(0, i);
      const double gelu = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
      const double silu = v / (1 + std::exp(-v));
      wg = std::max(wg, std::abs(g(0, i) - gelu) / std::max(1.0, std::abs(v)));
      ws = std::max(ws, std::abs(s(0, i) - silu) / std::max(1.0, std::abs(v)));
    }
    std::printf("[ measured ] %s: gelu_tanh error %.2e, silu error %.2e (relative to max(1, |x|))\n",
                hi::isa_name(path), wg, ws);
    EXPECT_LE(wg, 1e-6) << hi::isa_name(path);
    EXPECT_LE(ws, 1e-6) << hi::isa_name(path);
    if (path == hi::isa::portable) continue;
    if (first_fma) {
      g_fma.assign(g.data(), g.data() + g.size());
      s_fma.assign(s.data(), s.data() + s.size());
      first_fma = false;
    } else {
      for (ddm::index_t i = 0; i < x.cols(); ++i) {
        ASSERT_EQ(g(0, i), g_fma[static_cast<std::size_t>(i)]) << hi::isa_name(path) << " at x = " << x(0, i);
        ASSERT_EQ(s(0, i), s_fma[static_cast<std::size_t>(i)]) << hi::isa_name(path) << " at x = " << x(0, i);
      }
    }
  }
}

// softmax(q k^T / sqrt(hd)) v in double, per sample and head.
void naive_attention(const ddm::batch<float>& q, const ddm::batch<float>& k, const ddm::batch<float>& v,
                     ddm::index_t b, ddm::index_t heads, std::vector<double>& out) {
  const auto tq = q.rows() / b, tk = k.rows() / b, d = q.cols(), hd = d / heads;
  out.assign(static_cast<std::size_t>(q.rows() * d), 0.0);
  for (ddm::index_t s = 0; s < b; ++s)
    for (ddm::index_t h = 0; h < heads; ++h)
      for (ddm::index_t i = 0; i < tq; ++i) {
        std::vector<double> p(static_cast<std::size_t>(tk));
        double m = -1e300, z = 0;
        for (ddm::index_t j = 0; j < tk; ++j) {
          double dot = 0;
          for (ddm::index_t e = 0; e < hd; ++e) dot += double(q(s * tq + i, h * hd + e)) * k(s * tk + j, h * hd + e);
          p[static_cast<std::size_t>(j)] = dot / std::sqrt(double(hd));
          m = std::max(m, p[static_cast<std::size_t>(j)]);
        }
        for (auto& x : p) z += x = std::exp(x - m);
        for (ddm::index_t e = 0; e < hd; ++e) {
          double acc = 0;
          for (ddm::index_t j = 0; j < tk; ++j) acc += p[static_cast<std::size_t>(j)] * v(s * tk + j, h * hd + e);
          out[static_cast<std::size_t>((s * tq + i) * d + h * hd + e)] = acc / z;
        }
      }
}

TEST(DitBackend, AttentionMatchesADirectImplementationForHeadSizes72And64) {
  for (const auto [heads, hd, tq, tk] : {std::array<ddm::index_t, 4>{3, 72, 40, 40}, {2, 64, 33, 7}, {1, 5, 70, 3}}) {
    const ddm::index_t b = 2, d = heads * hd;
    ddm::batch<float> q(b * tq, d), k(b * tk, d), v(b * tk, d), out(b * tq, d);
    ddm::fill_normal(ctx, q.view(), 1);
    ddm::fill_normal(ctx, k.view(), 2);
    ddm::fill_normal(ctx, v.view(), 3);
    ops::attention(ctx, q.cview(), k.cview(), v.cview(), b, heads, out.view());
    std::vector<double> want;
    naive_attention(q, k, v, b, heads, want);
    double worst = 0;
    for (ddm::index_t i = 0; i < out.size(); ++i) worst = std::max(worst, std::abs(out.data()[i] - want[static_cast<std::size_t>(i)]));
    std::printf("[ measured ] attention heads=%td hd=%td Tq=%td Tk=%td: max abs error %.2e\n", heads, hd, tq, tk, worst);
    EXPECT_LE(worst, 1e-5);
  }
}

// Attention runs the kernel of the widest instruction set the CPU has (dit/host_isa.hpp). Every
// path must give the portable path's result: bit for bit between the FMA paths (AVX2, AVX-512),
// which do the same operations in the same order; within 1e-5 against the portable path, which
// (built without -march) rounds products and sums separately. 1e-5 is the accuracy bound every
// path must meet against the double-precision reference anyway, so it is checked too.
TEST(DitBackend, EveryInstructionSetTheCpuHasGivesThePortableAttention) {
  namespace hi = dit::host;
  const hi::isa before = hi::active_isa();
  std::vector<hi::isa> paths;
  for (const hi::isa i : {hi::isa::portable, hi::isa::avx2, hi::isa::avx512})
    if (hi::isa_supported(i)) paths.push_back(i);
  std::printf("[ measured ] instruction sets on this CPU: %zu of 3, active %s\n", paths.size(), hi::isa_name(before));
  for (const auto [heads, hd, tq, tk] :
       {std::array<ddm::index_t, 4>{3, 72, 40, 40}, {2, 64, 130, 67}, {1, 5, 70, 3}, {6, 64, 256, 256}}) {
    const ddm::index_t b = 2, d = heads * hd;
    ddm::batch<float> q(b * tq, d), k(b * tk, d), v(b * tk, d);
    ddm::fill_normal(ctx, q.view(), 11);
    ddm::fill_normal(ctx, k.view(), 12);
    ddm::fill_normal(ctx, v.view(), 13);
    std::vector<double> want;
    naive_attention(q, k, v, b, heads, want);
    std::vector<ddm::batch<float>> outs;
    for (const hi::isa i : paths) {
      hi::pin_isa(i);
      outs.emplace_back(b * tq, d);
      ops::attention(ctx, q.cview(), k.cview(), v.cview(), b, heads, outs.back().view());
    }
    hi::pin_isa(before);
    for (std::size_t p = 0; p < paths.size(); ++p) {
      double from_portable = 0, from_exact = 0;
      bool same_as_first_fma = true;
      for (ddm::index_t e = 0; e < outs[p].size(); ++e) {
        const float got = outs[p].data()[e];
        from_portable = std::max(from_portable, std::abs(double(got) - outs[0].data()[e]));
        from_exact = std::max(from_exact, std::abs(got - want[static_cast<std::size_t>(e)]));
        if (p > 1) same_as_first_fma = same_as_first_fma && got == outs[1].data()[e];
      }
      std::printf("[ measured ] attention %s heads=%td hd=%td Tq=%td Tk=%td: max |path - portable| %.2e, "
                  "max |path - exact| %.2e\n",
                  hi::isa_name(paths[p]), heads, hd, tq, tk, from_portable, from_exact);
      EXPECT_LE(from_portable, 1e-5) << hi::isa_name(paths[p]);
      EXPECT_LE(from_exact, 1e-5) << hi::isa_name(paths[p]);
      EXPECT_TRUE(same_as_first_fma) << hi::isa_name(paths[p]) << " differs from " << hi::isa_name(paths[1]);
    }
  }
}

TEST(DitBackend, InstructionSetChoiceRejectsUnknownNames) {
  try {
    (void)dit::host::detail::parse_isa("sse9");
    ADD_FAILURE() << "no error";
  } catch (const ddm::argument_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("DIT_HOST_ISA"), std::string::npos) << what;
    EXPECT_NE(what.find("sse9"), std::string::npos) << what;
  }
  EXPECT_EQ(dit::host::detail::parse_isa("avx2"), dit::host::isa::avx2);
  EXPECT_TRUE(dit::host::isa_supported(dit::host::isa::portable));
  EXPECT_TRUE(dit::host::isa_supported(dit::host::best_isa()));
}

TEST(DitBackend, LayerNormModulateUsesEachSamplesShiftAndScale) {
  const ddm::index_t b = 3, t = 4, d = 10;
  ddm::batch<float> x(b * t, d), mod(b, 2 * d), y(b * t, d);
  ddm::fill_normal(ctx, x.view(), 4);
  ddm::fill_normal(ctx, mod.view(), 5);
  const auto shift = dit::chunk(mod.cview(), 0, d);
  const auto scale = dit::chunk(mod.cview(), 1, d);
  ops::layer_norm_modulate(ctx, x.cview(), 1e-6, shift, scale, y.view());
  double worst = 0;
  for (ddm::index_t r = 0; r < b * t; ++r) {
    double mean = 0, var = 0;
    for (ddm::index_t j = 0; j < d; ++j) mean += x(r, j) / double(d);
    for (ddm::index_t j = 0; j < d; ++j) var += (x(r, j) - mean) * (x(r, j) - mean) / double(d);
    for (ddm::index_t j = 0; j < d; ++j) {
      const double want = (x(r, j) - mean) / std::sqrt(var + 1e-6) * (1 + scale(r / t, j)) + shift(r / t, j);
      worst = std::max(worst, std::abs(y(r, j) - want));
    }
  }
  EXPECT_LE(worst, 1e-5);
}

TEST(DitBackend, LayerNormAddsEpsilonToTheVarianceInsideTheRoot) {
  // With rows of unit variance, eps = 1e-6 and 1e-5 change LN's output by < 1e-5 and no tolerance
  // here or in the goldens could tell them apart. Rows with variance ~1e-6 make eps matter: the
  // output is (x - mean) / sqrt(var + eps), and ignoring eps or adding it outside the root would
  // be off by a factor of up to 3.
  const ddm::index_t b = 2, t = 3, d = 16;
  ddm::batch<float> x(b * t, d), y(b * t, d), z(b * t, d), zero(b, d);
  ddm::fill_normal(ctx, x.view(), 6);
  for (ddm::index_t i = 0; i < x.size(); ++i) x.data()[i] = 0.01f + 1e-3f * x.data()[i];
  std::fill(zero.data(), zero.data() + zero.size(), 0.0f);
  std::vector<float> first_row_by_eps;
  for (const double eps : {1e-6, 1e-5}) {
    ops::layer_norm(ctx, x.cview(), eps, nullptr, nullptr, y.view());
    ops::layer_norm_modulate(ctx, x.cview(), eps, zero.cview(), zero.cview(), z.view());
    double worst = 0;
    for (ddm::index_t r = 0; r < b * t; ++r) {
      double mean = 0, var = 0;
      for (ddm::index_t j = 0; j < d; ++j) mean += x(r, j) / double(d);
      for (ddm::index_t j = 0; j < d; ++j) var += (x(r, j) - mean) * (x(r, j) - mean) / double(d);
      for (ddm::index_t j = 0; j < d; ++j) {
        const double want = (x(r, j) - mean) / std::sqrt(var + eps);
        worst = std::max({worst, std::abs(y(r, j) - want), std::abs(z(r, j) - want)});
      }
    }
    std::printf("[ measured ] eps %.0e, row variance ~1e-6: max |LN - (x - mean) / sqrt(var + eps)| = %.2e\n", eps,
                worst);
    EXPECT_LE(worst, 1e-4);
    first_row_by_eps.push_back(std::abs(y(0, 0)));
  }
  // The regime is one where eps matters: the two outputs differ far beyond the tolerance.
  EXPECT_GT(std::abs(first_row_by_eps[0] - first_row_by_eps[1]), 1e-2 * first_row_by_eps[0]);
}

TEST(DitBackend, PatchifyUsesConvOrderAndUnpatchifyChannelFastestOrder) {
  const dit::patch_geometry g{3, 4, 6, 2};  // C = 3, H = 4, W = 6, p = 2: a 2 x 3 grid
  ddm::batch<float> x(2, 3 * 4 * 6);
  for (ddm::index_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i);
  ddm::batch<float> tokens(2 * g.tokens(), 12);
  ops::patchify(ctx, x.cview(), g, tokens.view());
  // Sample 1, token (row 1, column 2) = 5; entry (c = 2, py = 1, px = 0) is pixel (3, 4) of channel 2.
  EXPECT_EQ(tokens(g.tokens() + 5, 2 * 4 + 1 * 2 + 0), x(1, (2 * 4 + 3) * 6 + 4));
  // Unpatchify reads (py, px, c): build tokens in that order by hand and expect the image back.
  ddm::batch<float> back(2 * g.tokens(), 12);
  for (ddm::index_t r = 0; r < back.rows(); ++r)
    for (ddm::index_t c = 0; c < 3; ++c)
      for (ddm::index_t q = 0; q < 4; ++q) back(r, q * 3 + c) = tokens(r, c * 4 + q);
  ddm::batch<float> img(2, 3 * 4 * 6);
  ops::unpatchify(ctx, back.cview(), g, 3, img.view());
  for (ddm::index_t i = 0; i < img.size(); ++i) ASSERT_EQ(img.data()[i], x.data()[i]) << i;
  // Keeping 2 of 3 channels drops the last one.
  ddm::batch<float> two(2, 2 * 4 * 6);
  ops::unpatchify(ctx, back.cview(), g, 2, two.view());
  EXPECT_EQ(two(1, 2 * 24 - 1), x(1, 2 * 24 - 1));
}

TEST(DitBackend, LinearAddsBiasAndAccumulates) {
  ddm::batch<float> x(2, 3), w(4, 3), y(2, 4);
  for (ddm::index_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(i + 1);
  for (ddm::index_t i = 0; i < w.size(); ++i) w.data()[i] = static_cast<float>(i % 5) - 2.0f;
  const float bias[4] = {0.5f, -1.0f, 2.0f, 0.0f};
  ops::linear(ctx, x.cview(), w.cview(), bias, y.view());
  for (ddm::index_t r = 0; r < 2; ++r)
    for (ddm::index_t o = 0; o < 4; ++o) {
      float want = bias[o];
      for (ddm::index_t i = 0; i < 3; ++i) want += x(r, i) * w(o, i);
      EXPECT_FLOAT_EQ(y(r, o), want);
    }
  const float before = y(1, 2);
  ops::linear(ctx, x.cview(), w.cview(), nullptr, y.view(), /*accumulate=*/true);
  EXPECT_FLOAT_EQ(y(1, 2), 2 * before - bias[2]);
  ddm::batch<float> wrong(4, 2);
  EXPECT_THROW(ops::linear(ctx, x.cview(), wrong.cview(), nullptr, y.view()), ddm::shape_error);
}

}  // namespace
