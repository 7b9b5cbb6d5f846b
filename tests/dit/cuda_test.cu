// The DiT models on the GPU (dit/backend_cuda.cuh):
//   - every backend operation against the host backend (or a double-precision reference) on
//     shapes the tiny models do not reach: several key tiles with ragged ends, head sizes 72,
//     64, 8, 40 and 100, strided views, misaligned operands, 16-bit weight storage;
//   - the three tiny golden models stage by stage, in float, against the PyTorch goldens (max abs
//     error <= 1e-4 and cosine >= 0.9999, as on the host) and against the host backend;
//   - bf16 and f16 weight storage against the float result on the device (looser, stated bounds);
//   - sample() through the routed tiny Paris folder (guidance inside each expert, per-sample
//     text, top-2) and through a DDPM DiT expert on the device, against the same runs on the host.
//
// GPU tests skip with the runtime's one-line reason when no device is usable.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <ddm/cuda.hpp>
#include <ddm/io/float16.hpp>
#include <ddm/io/safetensors.hpp>
#include <ddm/routing/policy.hpp>

#include "support/cuda_support.hpp"
#include "dit/backend_cuda.cuh"
#include "dit/backend_host.hpp"
#include "dit/dit_model.hpp"
#include "dit/dit_router.hpp"
#include "dit/fields.hpp"
#include "dit/paris_expert.hpp"
#include "dit/paris_routed.hpp"
#include "golden_support.hpp"

namespace {

using ddm::batch;
using ddm::batch_view;
using ddm::cuda_space;
using ddm::index_t;
using dit_test::fixture;
using host_ops = dit::backend<ddm::host_space>;
using device_ops = dit::backend<cuda_space>;

const ddm::host_context host{};

batch<float> host_noise(index_t rows, index_t cols, std::uint64_t seed, double scale = 1.0) {
  batch<float> b(rows, cols);
  ddm::fill_normal(host, b.view(), seed);
  for (index_t i = 0; i < b.size(); ++i) b.data()[i] = static_cast<float>(scale * b.data()[i]);
  return b;
}

// A device copy of a host batch with `pad` NaN columns after each row (a strided view).
template <class X>
ddm::test::device_copy<float> to_device(const ddm::cuda_context& ctx, const X& h, index_t pad = 0) {
  return ddm::test::on_device<float>(ctx, h, pad);
}

std::vector<float> to_vector(const ddm::cuda_context& ctx, batch_view<const float, cuda_space> v) {
  std::vector<float> out(static_cast<std::size_t>(v.size()));
  device_ops::download(ctx, v, out);
  return out;
}

std::vector<float> to_vector(batch_view<const float> v) {
  std::vector<float> out;
  for (index_t r = 0; r < v.rows(); ++r) out.insert(out.end(), v.row(r), v.row(r) + v.cols());
  return out;
}

// max |a - b| / (1 + |b|): absolute near 0, relative for large values.
double max_scaled_error(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double e = std::abs(double(a[i]) - b[i]) / (1.0 + std::abs(double(b[i])));
    worst = std::isnan(e) ? INFINITY : std::max(worst, e);
  }
  return worst;
}

// ---------------------------------------------------------------------------------------------
// Operations

batch<float> rounded(batch_view<const float> x, dit::weight_storage s);

struct attention_case {
  index_t batch, heads, hd, tq, tk;
};

TEST(DitCudaOps, AttentionEqualsTheHostForManyTilesHeadSizesAndStrides) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx{};
  // tq, tk past one tile of 64 with ragged ends; cross-attention shapes (tk != tq); head sizes of
  // every kernel instantiation (8: 1 column group, 40 and 64: 4, 72: 5, 100: 8).
  const attention_case cases[] = {{2, 2, 72, 130, 130}, {2, 3, 64, 64, 257}, {3, 4, 8, 17, 5},
                                  {1, 2, 40, 100, 77},  {2, 1, 100, 70, 65}};
  for (const auto& c : cases) {
    const index_t d = c.heads * c.hd;
    // q from a fused (B*Tq, 3D) matrix, k and v from a fused (B*Tk, 2D) one: strided column views.
    const auto qkv = host_noise(c.batch * c.tq, 3 * d, 11);
    const auto kv = host_noise(c.batch * c.tk, 2 * d, 12);
    const batch_view<const float> q(qkv.data(), c.batch * c.tq, d, 3 * d);
    const batch_view<const float> k(kv.data(), c.batch * c.tk, d, 2 * d);
    const batch_view<const float> v(kv.data() + d, c.batch * c.tk, d, 2 * d);
    batch<float> want(c.batch * c.tq, d);
    host_ops::attention(host, q, k, v, c.batch, c.heads, want.view());

    const auto dqkv = to_device(ctx, qkv);
    const auto dkv = to_device(ctx, kv);
    const auto dout = to_device(ctx, batch<float>(c.batch * c.tq, d), 5);  // output rows with a stride
    const batch_view<const float, cuda_space> dq(dqkv.view.data(), c.batch * c.tq, d, 3 * d);
    const batch_view<const float, cuda_space> dk(dkv.view.data(), c.batch * c.tk, d, 2 * d);
    const batch_view<const float, cuda_space> dv(dkv.view.data() + d, c.batch * c.tk, d, 2 * d);
    device_ops::attention(ctx, dq, dk, dv, c.batch, c.heads, dout.view);
    const double err = max_scaled_error(to_vector(ctx, dout.view.as_const()), to_vector(want.cview()));
    std::printf("[ measured ] attention f32  B=%td H=%td hd=%td Tq=%td Tk=%td: max |gpu - host| / (1 + |host|) = "
                "%.2e\n",
                c.batch, c.heads, c.hd, c.tq, c.tk, err);
    // Both sides round each score and weight once in float; the sums run in different orders.
    EXPECT_LE(err, 2e-5) << "hd " << c.hd;

    // 16-bit operands (tensor cores): against float attention on q, k, v rounded the same way.
    // The softmax weights are rounded too (relative error up to u = 2^-8 for bf16, 2^-11 for
    // f16), which moves an output by at most u max |v|.
    for (const auto storage : {dit::weight_storage::bf16, dit::weight_storage::f16}) {
      const auto qkv_r = rounded(qkv.cview(), storage);
      const auto kv_r = rounded(kv.cview(), storage);
      batch<float> want_r(c.batch * c.tq, d);
      host_ops::attention(host, batch_view<const float>(qkv_r.data(), c.batch * c.tq, d, 3 * d),
                          batch_view<const float>(kv_r.data(), c.batch * c.tk, d, 2 * d),
                          batch_view<const float>(kv_r.data() + d, c.batch * c.tk, d, 2 * d), c.batch, c.heads,
                          want_r.view());
      device_ops::attention(ctx, dq, dk, dv, c.batch, c.heads, dout.view, storage);
      const auto got = to_vector(ctx, dout.view.as_const());
      const auto ref = to_vector(want_r.cview());
      double vmax = 0;
      for (index_t r = 0; r < c.batch * c.tk; ++r)
        for (index_t j = 0; j < d; ++j) vmax = std::max(vmax, double(std::abs(kv_r(r, d + j))));
      const double u = storage == dit::weight_storage::bf16 ? 0x1p-8 : 0x1p-11;
      double worst = 0;
      for (std::size_t i = 0; i < got.size(); ++i) {
        const double e = std::abs(double(got[i]) - ref[i]);
        worst = std::isnan(e) ? INFINITY : std::max(worst, e);
      }
      std::printf("[ measured ] attention %-4s B=%td H=%td hd=%td Tq=%td Tk=%td: max |gpu - host on rounded q, k, v| "
                  "= %.2e (bound u max|v| = %.2e)\n",
                  dit::to_string(storage), c.batch, c.heads, c.hd, c.tq, c.tk, worst, u * vmax);
      EXPECT_LE(worst, 1.05 * u * vmax + 2e-6) << dit::to_string(storage) << " hd " << c.hd;
    }
  }
}

// y = x w^T + bias (+ y) in double from the given float values, and the bound on a float
// computation of it: (2 (K + 2) 2^-24 + product_error) sum_k |x_k w_k| (+ the bias and y terms).
// product_error is 0 when the products are exact (float, or 16-bit operands the reference has
// already rounded), 2^-9 for TF32 (both operands rounded to 10-bit mantissas inside the product).
struct linear_reference {
  std::vector<double> y;
  std::vector<double> bound;
};

linear_reference reference_linear(batch_view<const float> x, batch_view<const float> w, const float* bias,
                                  batch_view<const float> y0, bool accumulate, double product_error) {
  linear_reference r;
  const index_t k = x.cols();
  for (index_t i = 0; i < x.rows(); ++i)
    for (index_t j = 0; j < w.rows(); ++j) {
      double s = 0, a = 0;
      for (index_t l = 0; l < k; ++l) {
        const double p = double(x.row(i)[l]) * w.row(j)[l];
        s += p;
        a += std::abs(p);
      }
      if (bias != nullptr) {
        s += bias[j];
        a += std::abs(bias[j]);
      }
      if (accumulate) {
        s += y0.row(i)[j];
        a += std::abs(y0.row(i)[j]);
      }
      r.y.push_back(s);
      r.bound.push_back((2.0 * double(k + 2) * 0x1p-24 + product_error) * a + 1e-30);
    }
  return r;
}

batch<float> rounded(batch_view<const float> x, dit::weight_storage s) {
  batch<float> out(x.rows(), x.cols());
  for (index_t i = 0; i < x.rows(); ++i)
    for (index_t j = 0; j < x.cols(); ++j) {
      const float v = x.row(i)[j];
      out(i, j) = s == dit::weight_storage::bf16   ? ddm::io::bf16_to_float(ddm::io::float_to_bf16(v))
                  : s == dit::weight_storage::f16 ? ddm::io::f16_to_float(ddm::io::float_to_f16(v))
                                                  : v;
    }
  return out;
}

// The weights of a (n, k) matrix in device memory in storage `s`.
struct device_weights {
  batch<float, cuda_space> f32;
  batch<std::uint16_t, cuda_space> words;
  dit::weight_storage storage;
  device_weights(const ddm::cuda_context& ctx, batch_view<const float> w, dit::weight_storage s) : storage(s) {
    if (s == dit::weight_storage::f32) {
      f32 = batch<float, cuda_space>(ctx, w.rows(), w.cols());
      ddm::copy(ctx, f32.view(), w);
      return;
    }
    std::vector<std::uint16_t> host_words;
    for (index_t i = 0; i < w.rows(); ++i)
      for (index_t j = 0; j < w.cols(); ++j)
        host_words.push_back(s == dit::weight_storage::bf16 ? ddm::io::float_to_bf16(w.row(i)[j])
                                                            : ddm::io::float_to_f16(w.row(i)[j]));
    words = batch<std::uint16_t, cuda_space>(ctx, w.rows(), w.cols());
    device_ops::upload(ctx, host_words, words.view());
  }
  [[nodiscard]] dit::weight_view<cuda_space> view() const {
    if (storage == dit::weight_storage::f32) return f32.cview();
    return {words.data(), words.rows(), words.cols(), words.cols(), storage};
  }
};

struct linear_case {
  index_t m, k, n;  // x (m, k), w (n, k)
  index_t x_offset;  // floats before x's first value (1: a 4-byte-aligned operand)
  bool bias_offset;  // the bias starts one float into its buffer
  bool accumulate;
};

TEST(DitCudaOps, LinearIsWithinTheRoundingBoundOfTheProductForEveryStorage) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx{};
  const linear_case cases[] = {{37, 45, 29, 0, false, false},  {37, 45, 29, 1, true, true},
                               {300, 1152, 700, 0, false, false}, {8, 256, 1152, 0, false, true},
                               {5, 16, 3, 1, false, false}};
  for (const auto storage : {dit::weight_storage::f32, dit::weight_storage::bf16, dit::weight_storage::f16}) {
    for (const auto& c : cases) {
      const index_t sx = c.k + 3;  // strided rows
      const index_t sy = c.n + 1;
      const auto xbuf = host_noise(c.m + 1, sx, 21);
      const batch_view<const float> x(xbuf.data() + c.x_offset, c.m, c.k, sx);
      const auto w = host_noise(c.n, c.k, 22, 1.0 / std::sqrt(double(c.k)));
      const auto bias_buf = host_noise(1, c.n + 1, 23);
      const float* bias = bias_buf.data() + (c.bias_offset ? 1 : 0);
      const auto y0 = host_noise(c.m, sy, 24);
      // The GPU rounds x and w to the storage type, multiplies exactly and sums in float.
      const auto xr = rounded(x, storage);
      const auto wr = rounded(w.cview(), storage);
      const auto want = reference_linear(xr.cview(), wr.cview(), bias,
                                         batch_view<const float>(y0.data(), c.m, c.n, sy), c.accumulate, 0.0);

      const auto dx = to_device(ctx, xbuf);
      const batch_view<const float, cuda_space> dxv(dx.view.data() + c.x_offset, c.m, c.k, dx.view.stride());
      const device_weights dw(ctx, w.cview(), storage);
      const auto dbias = to_device(ctx, bias_buf);
      const auto dy = to_device(ctx, y0);
      const batch_view<float, cuda_space> dyv(dy.view.data(), c.m, c.n, sy);
      device_ops::linear(ctx, dxv, dw.view(), dbias.view.data() + (c.bias_offset ? 1 : 0), dyv, c.accumulate);
      std::vector<float> got(static_cast<std::size_t>(c.m * sy));
      device_ops::download(ctx, dy.view.as_const(), got);
      double worst = 0;  // error / bound
      for (index_t i = 0; i < c.m; ++i)
        for (index_t j = 0; j < c.n; ++j) {
          const auto e = static_cast<std::size_t>(i * c.n + j);
          const double err = std::abs(double(got[static_cast<std::size_t>(i * sy + j)]) - want.y[e]);
          worst = std::isnan(err) ? INFINITY : std::max(worst, err / want.bound[e]);
        }
      std::printf("[ measured ] linear %-4s (%td x %td) x (%td x %td)^T, x offset %td, bias offset %d, accumulate %d: "
                  "max error / bound = %.3f\n",
                  dit::to_string(storage), c.m, c.k, c.n, c.k, c.x_offset, int(c.bias_offset), int(c.accumulate),
                  worst);
      EXPECT_LE(worst, 1.0) << dit::to_string(storage) << " m " << c.m << " k " << c.k << " n " << c.n;
    }
  }
}

TEST(DitCudaOps, FusedProducersEqualTheirCompositionsBitForBit) {
  // modulated_linear, gelu_linear and attention_linear write a 16-bit product operand straight
  // from the producing kernel; the same float value is rounded once either way, so the products
  // see the same operands and give the same bits as layer_norm_modulate / gelu_tanh / attention
  // followed by linear (which rounds its float input with the same rounding).
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx{};
  const index_t b = 2, t = 70, heads = 2, hd = 72, d = heads * hd, n_out = 96;
  const auto x = host_noise(b * t, d, 81, 2.0);
  const auto mod = host_noise(b, 2 * d, 82, 0.5);
  const auto qkv = host_noise(b * t, 3 * d, 83);
  const auto w = host_noise(n_out, d, 84, 1.0 / std::sqrt(double(d)));
  const auto bias = host_noise(1, n_out, 85);
  const auto dx = to_device(ctx, x);
  const auto dmod = to_device(ctx, mod);
  const auto dqkv = to_device(ctx, qkv);
  const auto dbias = to_device(ctx, bias);
  const auto shift = dit::chunk(dmod.view.as_const(), 0, d);
  const auto scale = dit::chunk(dmod.view.as_const(), 1, d);
  const auto column = [&](index_t i) { return dit::columns(dqkv.view.as_const(), i * d, d); };
  for (const auto storage : {dit::weight_storage::f32, dit::weight_storage::bf16, dit::weight_storage::f16}) {
    const device_weights dw(ctx, w.cview(), storage);
    batch<float, cuda_space> h(ctx, b * t, d), y1(ctx, b * t, n_out), y2(ctx, b * t, n_out);
    auto same = [&](const char* what) {
      const auto a = to_vector(ctx, y1.cview());
      const auto c = to_vector(ctx, y2.cview());
      std::size_t differ = 0;
      for (std::size_t i = 0; i < a.size(); ++i) differ += a[i] != c[i] ? 1 : 0;
      std::printf("[ measured ] %-16s %-4s fused vs composed: %zu of %zu outputs differ\n", what,
                  dit::to_string(storage), differ, a.size());
      EXPECT_EQ(differ, 0u) << what << " " << dit::to_string(storage);
    };
    device_ops::modulated_linear(ctx, dx.view.as_const(), 1e-6, shift, scale, dw.view(), dbias.view.data(), y1.view(),
                                 h.view());
    device_ops::layer_norm_modulate(ctx, dx.view.as_const(), 1e-6, shift, scale, h.view());
    device_ops::linear(ctx, h.cview(), dw.view(), dbias.view.data(), y2.view());
    same("modulated_linear");

    auto f1 = to_device(ctx, x);
    auto f2 = to_device(ctx, x);
    device_ops::gelu_linear(ctx, f1.view, dw.view(), dbias.view.data(), y1.view());
    device_ops::gelu_tanh(ctx, f2.view.as_const(), f2.view);
    device_ops::linear(ctx, f2.view.as_const(), dw.view(), dbias.view.data(), y2.view());
    same("gelu_linear");

    batch<float, cuda_space> a(ctx, b * t, d);
    device_ops::attention_linear(ctx, column(0), column(1), column(2), b, heads, storage, dw.view(), dbias.view.data(),
                                 y1.view(), a.view());
    device_ops::attention(ctx, column(0), column(1), column(2), b, heads, a.view(), storage);
    device_ops::linear(ctx, a.cview(), dw.view(), dbias.view.data(), y2.view());
    same("attention_linear");
  }
}

TEST(DitCudaOps, ReleasedScratchIsAllocatedAgainAndGivesTheSameProduct) {
  // dit::release_cuda_scratch frees a stream's 16-bit operand and cuBLASLt workspace in stream
  // order; the next product on that stream allocates them afresh and computes the same bits.
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda::stream stream;  // outlives every batch below
  const ddm::cuda_context ctx = stream.context();
  const index_t m = 64, k = 96, n = 80;
  const auto x = host_noise(m, k, 91);
  const auto w = host_noise(n, k, 92, 1.0 / std::sqrt(double(k)));
  const auto dx = to_device(ctx, x);
  for (const auto storage : {dit::weight_storage::f32, dit::weight_storage::bf16}) {
    const device_weights dw(ctx, w.cview(), storage);
    batch<float, cuda_space> y1(ctx, m, n), y2(ctx, m, n);
    device_ops::linear(ctx, dx.view.as_const(), dw.view(), nullptr, y1.view());
    dit::release_cuda_scratch(ctx);
    dit::release_cuda_scratch(ctx);  // nothing left to free: a no-op
    device_ops::linear(ctx, dx.view.as_const(), dw.view(), nullptr, y2.view());
    EXPECT_EQ(to_vector(ctx, y1.cview()), to_vector(ctx, y2.cview())) << dit::to_string(storage);
  }
  dit::release_cuda_scratch(ctx);
  ctx.synchronize();
}

TEST(DitCudaOps, Tf32IsOffByDefaultAndWithinItsBoundWhenOn) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx{};
  EXPECT_FALSE(dit::cuda_tf32());
  const index_t m = 64, k = 512, n = 96;
  const auto x = host_noise(m, k, 31);
  const auto w = host_noise(n, k, 32, 1.0 / std::sqrt(double(k)));
  // TF32 keeps 10 mantissa bits of each operand (relative error up to 2^-10 each when truncated).
  const auto want = reference_linear(x.cview(), w.cview(), nullptr, {}, false, 0x1p-9);
  const auto dx = to_device(ctx, x);
  const device_weights dw(ctx, w.cview(), dit::weight_storage::f32);
  batch<float, cuda_space> dy(ctx, m, n);
  dit::set_cuda_tf32(true);
  device_ops::linear(ctx, dx.view.as_const(), dw.view(), nullptr, dy.view());
  dit::set_cuda_tf32(false);
  const auto got = to_vector(ctx, dy.cview());
  double worst = 0;
  for (std::size_t e = 0; e < got.size(); ++e) worst = std::max(worst, std::abs(got[e] - want.y[e]) / want.bound[e]);
  std::printf("[ measured ] linear with TF32: max error / TF32 bound = %.3f\n", worst);
  EXPECT_LE(worst, 1.0);
}

TEST(DitCudaOps, NormalizationResidualsAndActivationsEqualTheHost) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx{};
  const index_t b = 3, t = 37, d = 1152 + 5;  // rows not a multiple of a block's 8 warps, odd width
  const auto x = host_noise(b * t, d, 41, 3.0);
  const auto mod = host_noise(b, 3 * d, 42, 0.5);  // shift, scale, gate as strided chunks
  const auto gamma = host_noise(1, d, 43);
  const auto beta = host_noise(1, d, 44);
  const auto dx = to_device(ctx, x, 3);
  const auto dmod = to_device(ctx, mod);
  const auto dgamma = to_device(ctx, gamma);
  const auto dbeta = to_device(ctx, beta);
  auto check = [&](const char* what, const batch<float, cuda_space>& got, const batch<float>& want, double tol) {
    const double err = max_scaled_error(to_vector(ctx, got.cview()), to_vector(want.cview()));
    std::printf("[ measured ] %-22s max |gpu - host| / (1 + |host|) = %.2e\n", what, err);
    EXPECT_LE(err, tol) << what;
  };
  const auto hchunk = [&](index_t i) { return dit::chunk(mod.cview(), i, d); };
  const auto dchunk = [&](index_t i) { return dit::chunk(dmod.view.as_const(), i, d); };

  batch<float> hy(b * t, d);
  batch<float, cuda_space> dy(ctx, b * t, d);
  host_ops::layer_norm(host, x.cview(), 1e-6, gamma.data(), beta.data(), hy.view());
  device_ops::layer_norm(ctx, dx.view.as_const(), 1e-6, dgamma.view.data(), dbeta.view.data(), dy.view());
  check("layer_norm (affine)", dy, hy, 1e-5);
  host_ops::layer_norm(host, x.cview(), 1e-5, nullptr, nullptr, hy.view());
  device_ops::layer_norm(ctx, dx.view.as_const(), 1e-5, nullptr, nullptr, dy.view());
  check("layer_norm", dy, hy, 1e-5);
  host_ops::layer_norm_modulate(host, x.cview(), 1e-6, hchunk(0), hchunk(1), hy.view());
  device_ops::layer_norm_modulate(ctx, dx.view.as_const(), 1e-6, dchunk(0), dchunk(1), dy.view());
  check("layer_norm_modulate", dy, hy, 1e-5);

  // In place: y = LN(y) on the device equals the out-of-place result.
  auto in_place = to_device(ctx, x);
  device_ops::layer_norm_modulate(ctx, in_place.view.as_const(), 1e-6, dchunk(0), dchunk(1), in_place.view);
  batch<float, cuda_space> copied(ctx, b * t, d);
  ddm::copy(ctx, copied.view(), in_place.view.as_const());
  check("layer_norm_modulate in place", copied, hy, 1e-5);

  const auto r = host_noise(b * t, d, 45);
  batch<float> hx(b * t, d);
  std::copy_n(r.data(), r.size(), hx.data());
  auto dres = to_device(ctx, r);
  host_ops::gated_residual(host, hx.view(), hchunk(2), x.cview());
  device_ops::gated_residual(ctx, dres.view, dchunk(2), dx.view.as_const());
  batch<float, cuda_space> res(ctx, b * t, d);
  ddm::copy(ctx, res.view(), dres.view.as_const());
  check("gated_residual", res, hx, 1e-6);
  host_ops::gated_residual(host, hx.view(), {}, x.cview());
  device_ops::gated_residual(ctx, dres.view, {}, dx.view.as_const());
  ddm::copy(ctx, res.view(), dres.view.as_const());
  check("residual (no gate)", res, hx, 1e-6);

  host_ops::add_row_vector(host, x.cview(), gamma.cview(), hy.view());
  device_ops::add_row_vector(ctx, dx.view.as_const(), dgamma.view.as_const(), dy.view());
  check("add_row_vector", dy, hy, 1e-7);
  // The host's vectorized exp has a relative error of 2.4e-7; the device's expf / tanhf 2 ulp.
  host_ops::silu(host, x.cview(), hy.view());
  device_ops::silu(ctx, dx.view.as_const(), dy.view());
  check("silu", dy, hy, 2e-6);
  host_ops::gelu_tanh(host, x.cview(), hy.view());
  device_ops::gelu_tanh(ctx, dx.view.as_const(), dy.view());
  check("gelu_tanh", dy, hy, 2e-6);
}

TEST(DitCudaOps, PatchesGathersAndTimestepsEqualTheHost) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx{};
  const dit::patch_geometry g{3, 8, 12, 4};  // non-square, 3 channels, patch 4
  const index_t b = 2;
  const auto x = host_noise(b, 3 * 8 * 12, 51);
  batch<float> tokens(b * g.tokens(), g.patch_values(3));
  host_ops::patchify(host, x.cview(), g, tokens.view());
  const auto dx = to_device(ctx, x, 2);
  const auto dtokens = to_device(ctx, tokens, 1);
  device_ops::patchify(ctx, dx.view.as_const(), g, dtokens.view);
  EXPECT_EQ(to_vector(ctx, dtokens.view.as_const()), to_vector(tokens.cview()));  // a permutation: exact

  // Tokens of 5 output channels, keeping 2.
  const auto out_tokens = host_noise(b * g.tokens(), 4 * 4 * 5, 52);
  batch<float> img(b, 2 * 8 * 12);
  host_ops::unpatchify(host, out_tokens.cview(), g, 2, img.view());
  const auto dot = to_device(ctx, out_tokens, 3);
  batch<float, cuda_space> dimg(ctx, b, 2 * 8 * 12);
  device_ops::unpatchify(ctx, dot.view.as_const(), g, 2, dimg.view());
  EXPECT_EQ(to_vector(ctx, dimg.cview()), to_vector(img.cview()));

  // 300 rows: two chunks of indices passed by value.
  const auto table = host_noise(11, 7, 53);
  std::vector<std::int32_t> rows(300);
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<std::int32_t>((i * 7 + 3) % 11);
  batch<float> gathered(300, 7);
  host_ops::gather_rows(host, table.cview(), rows, gathered.view());
  const auto dtable = to_device(ctx, table, 1);
  batch<float, cuda_space> dgathered(ctx, 300, 7);
  device_ops::gather_rows(ctx, dtable.view.as_const(), rows, dgathered.view());
  EXPECT_EQ(to_vector(ctx, dgathered.cview()), to_vector(gathered.cview()));
  rows[5] = 11;
  EXPECT_THROW(device_ops::gather_rows(ctx, dtable.view.as_const(), rows, dgathered.view()), ddm::argument_error);

  std::vector<float> t(260);
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<float>(i) * 3.847f;  // up to ~1000
  const auto freqs = dit::timestep_frequencies(256);
  batch<float> hf(1, 128);
  std::copy(freqs.begin(), freqs.end(), hf.data());
  batch<float> he(260, 256);
  host_ops::timestep_embedding(host, t, hf.cview(), he.view());
  const auto dfreqs = to_device(ctx, hf);
  batch<float, cuda_space> de(ctx, 260, 256);
  device_ops::timestep_embedding(ctx, t, dfreqs.view.as_const(), de.view());
  // The same float product; cos and sin in double on both sides (CUDA's within 2 ulp of double),
  // rounded to float: equal except for a value within 2^-50 of a rounding boundary.
  const double err = max_scaled_error(to_vector(ctx, de.cview()), to_vector(he.cview()));
  std::printf("[ measured ] timestep embedding: max |gpu - host| = %.2e\n", err);
  EXPECT_LE(err, 1.2e-7);
}

// ---------------------------------------------------------------------------------------------
// Host-side properties of the device code: these run with or without a GPU.

TEST(DitCudaIndexMath, PatchifyAndUnpatchifyKernelsReadWhatTheHostBackendReads) {
  // The kernels' index maps (gpu::patchify_source / unpatchify_source) evaluated on the
  // host against the host backend's results, element by element, on a non-square 3-channel
  // geometry with patch 4 and on DiT's own shape (4 x 8 x 8, patch 2).
  namespace cd = dit::gpu;
  for (const dit::patch_geometry g : {dit::patch_geometry{3, 8, 12, 4}, dit::patch_geometry{4, 8, 8, 2}}) {
    const index_t b = 2, t = g.tokens(), p = g.patch;
    const auto x = host_noise(b, g.channels * g.height * g.width, 91);
    batch<float> tokens(b * t, g.patch_values(g.channels));
    host_ops::patchify(host, x.cview(), g, tokens.view());
    std::size_t wrong = 0;
    for (index_t r = 0; r < tokens.rows(); ++r)
      for (index_t col = 0; col < tokens.cols(); ++col) {
        const index_t src = cd::patchify_source(r, col, t, g.grid_w(), p, g.height, g.width);
        wrong += src < 0 || src >= x.cols() || x(r / t, src) != tokens(r, col) ? 1 : 0;
      }
    EXPECT_EQ(wrong, 0u) << "patchify, patch " << p;

    const index_t c_out = 5, keep = 2;
    const auto out_tokens = host_noise(b * t, p * p * c_out, 92);
    batch<float> img(b, keep * g.height * g.width);
    host_ops::unpatchify(host, out_tokens.cview(), g, keep, img.view());
    wrong = 0;
    for (index_t s = 0; s < b; ++s)
      for (index_t e = 0; e < img.cols(); ++e) {
        const auto src = cd::unpatchify_source(s, e, t, g.grid_w(), p, g.height, g.width, c_out);
        const bool inside = src.row >= 0 && src.row < out_tokens.rows() && src.col >= 0 && src.col < out_tokens.cols();
        wrong += !inside || out_tokens(src.row, src.col) != img(s, e) ? 1 : 0;
      }
    EXPECT_EQ(wrong, 0u) << "unpatchify, patch " << p;
  }
}

TEST(DitCudaIndexMath, UnpatchifyRefusesAnImageThatIsNotWholePatches) {
  // H = 9 with p = 2: the last pixel row maps past the last token row of the last sample, so the
  // device unpatchify must refuse the geometry before it launches anything (the host backend
  // leaves those pixels unwritten). The views stand for device memory and are never touched.
  const dit::patch_geometry g{1, 9, 8, 2};
  const index_t b = 2, c_out = 1;
  const auto last = dit::gpu::unpatchify_source(b - 1, 9 * 8 - 1, g.tokens(), g.grid_w(), g.patch, g.height,
                                                        g.width, c_out);
  EXPECT_GE(last.row, b * g.tokens());
  std::vector<float> tokens(static_cast<std::size_t>(b * g.tokens() * 4));
  std::vector<float> image(static_cast<std::size_t>(b * 9 * 8));
  const batch_view<const float, cuda_space> dtokens(tokens.data(), b * g.tokens(), 4);
  const batch_view<float, cuda_space> dimage(image.data(), b, 9 * 8);
  EXPECT_THROW(device_ops::unpatchify(ddm::cuda_context{}, dtokens, g, 1, dimage), ddm::shape_error);
}

TEST(DitCudaIndexMath, AlignmentToldToCublasLtDividesTheAddressAndThePitch) {
  // cuBLASLt is told the largest power of two (<= 256) that divides a matrix's address and row
  // pitch; an overstatement would let it pick a kernel with wider loads than the rows allow.
  const std::uintptr_t bases[] = {0x10000, 0x10004, 0x10010, 0x10100, 0x10002};
  const std::size_t pitches[] = {0, 4, 90, 192, 4096, 2304, 4608};
  for (const auto base : bases)
    for (const auto pitch : pitches) {
      const auto a = dit::gpu::alignment_of(reinterpret_cast<const void*>(base), pitch);
      EXPECT_TRUE(a >= 1 && a <= 256 && (a & (a - 1)) == 0) << a;
      EXPECT_EQ(base % a, 0u) << "base " << base << " pitch " << pitch;
      EXPECT_EQ(pitch % a, 0u) << "base " << base << " pitch " << pitch;
      const std::size_t twice = 2 * std::size_t{a};
      EXPECT_TRUE(a == 256 || base % twice != 0 || pitch % twice != 0) << "base " << base << " pitch " << pitch;
    }
}

// ---------------------------------------------------------------------------------------------
// The golden models

// The stages a device forward reports, copied to the host.
struct device_recorder {
  ddm::cuda_context ctx;
  std::map<std::string, std::vector<float>> stages;
  dit::stage_hook<cuda_space> hook() {
    return [this](std::string_view name, batch_view<const float, cuda_space> v) {
      stages[std::string(name)] = to_vector(ctx, v);
    };
  }
};

// Every golden stage: device vs PyTorch within the golden bounds (those of the host test), and
// device vs host within a few float roundings of the stage's scale.
void expect_device_stages(const ddm::io::safetensors_file& golden, const device_recorder& dev,
                          const dit_test::stage_recorder& cpu, const std::string& model) {
  std::size_t compared = 0;
  for (const auto& t : golden.tensors()) {
    if (t.name.rfind("stage.", 0) != 0) continue;
    const std::string stage = t.name.substr(6);
    const auto it = dev.stages.find(stage);
    if (it == dev.stages.end()) {
      ADD_FAILURE() << model << ": the device forward did not report stage '" << stage << "'";
      continue;
    }
    const auto want = golden.read<float>(t.name);
    const auto a = dit_test::compare(it->second, want);
    const auto h = dit_test::compare(it->second, cpu.stages.at(stage));
    double scale = 1;
    for (const float v : cpu.stages.at(stage)) scale = std::max(scale, double(std::abs(v)));
    std::printf("[ measured ] %-9s %-10s gpu vs PyTorch: max abs %.2e cos %.9f | gpu vs cpu: max abs %.2e cos %.9f\n",
                model.c_str(), stage.c_str(), a.max_abs, a.cosine, h.max_abs, h.cosine);
    EXPECT_LE(a.max_abs, 1e-4) << model << " stage " << stage;
    EXPECT_GE(a.cosine, 0.9999) << model << " stage " << stage;
    // Float on both sides, sums in other orders: a few float roundings of the stage's scale.
    EXPECT_LE(h.max_abs, 1e-5 * scale) << model << " stage " << stage;
    EXPECT_GE(h.cosine, 1 - 1e-6) << model << " stage " << stage;
    ++compared;
  }
  EXPECT_GT(compared, 3u);
}

// bf16 / f16 storage against the float stages of the device: relative L2 error and cosine.
void expect_storage_close(const std::map<std::string, std::vector<float>>& got,
                          const std::map<std::string, std::vector<float>>& f32, const std::string& model,
                          dit::weight_storage storage) {
  // Operands rounded to 8 (bf16) or 11 (f16) significant bits: up to 2^-8 and 2^-11 relative per
  // value, a few times that after two blocks of products and normalizations.
  const double rel_bound = storage == dit::weight_storage::bf16 ? 3e-2 : 1e-2;
  const double cos_bound = storage == dit::weight_storage::bf16 ? 0.999 : 0.9999;
  for (const auto& [stage, want] : f32) {
    const auto& v = got.at(stage);
    double diff = 0, norm = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
      diff += (double(v[i]) - want[i]) * (double(v[i]) - want[i]);
      norm += double(want[i]) * want[i];
    }
    const double rel = std::sqrt(diff / std::max(norm, 1e-300));
    const double cos = dit_test::compare(v, want).cosine;
    std::printf("[ measured ] %-9s %-10s %s vs f32 on the gpu: relative L2 %.2e cos %.7f\n", model.c_str(),
                stage.c_str(), dit::to_string(storage), rel, cos);
    EXPECT_LE(rel, rel_bound) << model << " stage " << stage << " " << dit::to_string(storage);
    EXPECT_GE(cos, cos_bound) << model << " stage " << stage << " " << dit::to_string(storage);
  }
}

std::vector<std::int32_t> labels_of(const ddm::io::safetensors_file& g) {
  std::vector<std::int32_t> y;
  for (const float v : g.read<float>("input.y")) y.push_back(static_cast<std::int32_t>(v));
  return y;
}

void run_dit(const std::string& name) {
  const ddm::cuda_context ctx{};
  const ddm::io::safetensors_file golden(fixture(name + ".golden.safetensors"));
  const ddm::io::safetensors_file weights(fixture(name + ".safetensors"));
  const auto config = dit_test::dit_config_of(dit_test::config_of(golden));
  const auto x = golden.read<float>("input.x");
  const auto t = golden.read<float>("input.t");
  const auto y = labels_of(golden);
  const auto b = static_cast<index_t>(t.size());

  const dit::dit_model<> cpu_model(config, weights);
  dit_test::stage_recorder cpu;
  {
    batch<float> out(b, cpu_model.output_values());
    dit::workspace<ddm::host_space> ws;
    const auto hook = cpu.hook();
    cpu_model.forward({}, batch_view<const float>(x.data(), b, cpu_model.input_values()), t, y, out.view(), ws, -1,
                      &hook);
  }
  std::map<std::string, std::vector<float>> f32;
  for (const auto storage : {dit::weight_storage::f32, dit::weight_storage::bf16, dit::weight_storage::f16}) {
    const dit::dit_model<cuda_space> model(config, weights, true, ctx, storage);
    const auto dx = to_device(ctx, batch_view<const float>(x.data(), b, model.input_values()));
    batch<float, cuda_space> out(ctx, b, model.output_values());
    dit::workspace<cuda_space> ws(ctx);
    device_recorder dev{ctx, {}};
    const auto hook = dev.hook();
    model.forward(ctx, dx.view.as_const(), t, y, out.view(), ws, -1, &hook);
    if (storage == dit::weight_storage::f32) {
      expect_device_stages(golden, dev, cpu, name);
        f32 = dev.stages;
    } else {
      expect_storage_close(dev.stages, f32, name, storage);
    }
  }
}

TEST(DitCudaGolden, HeadSize72WithLearnSigmaNullClassAndStoredPositions) {
  DDM_TEST_REQUIRE_GPU();
  run_dit("dit_a");
}

TEST(DitCudaGolden, FourHeadsPatch4ThreeChannelsAndComputedPositions) {
  DDM_TEST_REQUIRE_GPU();
  run_dit("dit_b");
}

TEST(DitCudaGolden, ParisExpertsMatchPyTorchAndTheHost) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx{};
  for (int k = 0; k < 3; ++k) {
    const std::string name = "expert_" + std::to_string(k);
    const ddm::io::safetensors_file golden(fixture("paris_tiny/" + name + ".golden.safetensors"));
    const ddm::io::safetensors_file weights(fixture("paris_tiny/" + name + "/diffusion_pytorch_model.safetensors"));
    const auto config = dit_test::paris_config_of(dit_test::config_of(golden));
    const auto x = golden.read<float>("input.x");
    const auto t = golden.read<float>("input.t");
    const auto text = golden.read<float>("input.text");
    const auto b = static_cast<index_t>(t.size());
    const dit::paris_expert<> cpu_model(config, weights);
    dit_test::stage_recorder cpu;
    {
      batch<float> out(b, cpu_model.output_values());
      dit::workspace<ddm::host_space> ws;
      const auto hook = cpu.hook();
      cpu_model.forward({}, batch_view<const float>(x.data(), b, cpu_model.input_values()), t,
                        batch_view<const float>(text.data(), b, config.text_values()), out.view(), ws, &hook);
    }
    std::map<std::string, std::vector<float>> f32;
    for (const auto storage : {dit::weight_storage::f32, dit::weight_storage::bf16, dit::weight_storage::f16}) {
      const dit::paris_expert<cuda_space> model(config, weights, true, ctx, storage);
      const auto dx = to_device(ctx, batch_view<const float>(x.data(), b, model.input_values()));
      const auto dtext = to_device(ctx, batch_view<const float>(text.data(), b, config.text_values()));
      batch<float, cuda_space> out(ctx, b, model.output_values());
      dit::workspace<cuda_space> ws(ctx);
      device_recorder dev{ctx, {}};
      const auto hook = dev.hook();
      model.forward(ctx, dx.view.as_const(), t, dtext.view.as_const(), out.view(), ws, &hook);
      if (storage == dit::weight_storage::f32) {
        expect_device_stages(golden, dev, cpu, name);
        f32 = dev.stages;
      } else {
        expect_storage_close(dev.stages, f32, name, storage);
      }
    }
  }
}

TEST(DitCudaGolden, RouterMatchesPyTorchAndTheHost) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx{};
  const ddm::io::safetensors_file golden(fixture("paris_tiny/router.golden.safetensors"));
  const ddm::io::safetensors_file weights(fixture("paris_tiny/router/pytorch_model.safetensors"));
  const auto config = dit_test::router_config_of(dit_test::config_of(golden));
  const auto x = golden.read<float>("input.x");
  const auto t = golden.read<float>("input.t");
  const auto b = static_cast<index_t>(t.size());
  const dit::dit_router_model<> cpu_model(config, weights);
  dit_test::stage_recorder cpu;
  {
    batch<float> logits(b, config.num_experts);
    dit::workspace<ddm::host_space> ws;
    const auto hook = cpu.hook();
    cpu_model.forward({}, batch_view<const float>(x.data(), b, cpu_model.input_values()), t, logits.view(), ws, &hook);
  }
  std::map<std::string, std::vector<float>> f32;
  for (const auto storage : {dit::weight_storage::f32, dit::weight_storage::bf16, dit::weight_storage::f16}) {
    const dit::dit_router_model<cuda_space> model(config, weights, true, ctx, storage);
    const auto dx = to_device(ctx, batch_view<const float>(x.data(), b, model.input_values()));
    batch<float, cuda_space> logits(ctx, b, config.num_experts);
    dit::workspace<cuda_space> ws(ctx);
    device_recorder dev{ctx, {}};
    const auto hook = dev.hook();
    model.forward(ctx, dx.view.as_const(), t, logits.view(), ws, &hook);
    if (storage == dit::weight_storage::f32) {
      expect_device_stages(golden, dev, cpu, "router");
        f32 = dev.stages;
    } else {
      expect_storage_close(dev.stages, f32, "router", storage);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Sampling on the device

TEST(DitCudaSampling, RoutedGuidedParisSampleEqualsTheHostRun) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda::stream stream;  // a stream of its own: the field, experts and sampler share it
  const ddm::cuda_context ctx = stream.context();
  const auto host_ckpt = dit::load_paris(fixture("paris_tiny"));
  const auto dev_ckpt = dit::load_paris<cuda_space>(fixture("paris_tiny"), {}, ctx);
  const index_t b = 5;
  const index_t n = host_ckpt.experts[0]->input_values();
  const index_t width = host_ckpt.expert_config.text_values();
  auto text = std::make_shared<batch<float>>(host_noise(b, width, 61));
  auto uncond = std::make_shared<batch<float>>(host_noise(1, width, 62));
  auto dtext = std::make_shared<batch<float, cuda_space>>(ctx, b, width);
  auto duncond = std::make_shared<batch<float, cuda_space>>(ctx, 1, width);
  ddm::copy(ctx, dtext->view(), text->cview());
  ddm::copy(ctx, duncond->view(), uncond->cview());

  auto hfield = dit::make_paris_guided_field(host_ckpt, std::shared_ptr<const batch<float>>(text),
                                             std::shared_ptr<const batch<float>>(uncond), 3.0, ddm::top_2());
  auto dfield = dit::make_paris_guided_field(dev_ckpt, std::shared_ptr<const batch<float, cuda_space>>(dtext),
                                             std::shared_ptr<const batch<float, cuda_space>>(duncond), 3.0,
                                             ddm::top_2(), 1000.0, ctx);
  auto hx = host_noise(b, n, 63);
  batch<float, cuda_space> dx(ctx, b, n);
  ddm::copy(ctx, dx.view(), hx.cview());
  const auto schedule = ddm::schedules::uniform(6);
  ddm::sample(hfield, hx, schedule, ddm::euler{});
  ddm::sample(dfield, dx, schedule, ddm::euler{});
  const auto got = to_vector(ctx, dx.cview());
  double worst = 0, scale = 1;
  for (index_t i = 0; i < hx.size(); ++i) {
    worst = std::max(worst, std::abs(double(got[static_cast<std::size_t>(i)]) - hx.data()[i]));
    scale = std::max(scale, double(std::abs(hx.data()[i])));
  }
  std::printf("[ measured ] routed guided Paris sample, 6 Euler steps, top-2: max |gpu - cpu| = %.2e (max |x| %.2f)\n",
              worst, scale);
  // The same routing decisions (router logits differ by float roundings only) ...
  const auto as_vector = [](auto span) { return std::vector<std::size_t>(span.begin(), span.end()); };
  EXPECT_EQ(as_vector(dfield.expert_rows()), as_vector(hfield.expert_rows()));
  EXPECT_EQ(as_vector(dfield.expert_calls()), as_vector(hfield.expert_calls()));
  // ... and the same trajectory up to float roundings of each step.
  EXPECT_LE(worst, 1e-4 * scale);
}

TEST(DitCudaSampling, DdpmDitExpertSampleEqualsTheHostRun) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda::stream stream;
  const ddm::cuda_context ctx = stream.context();
  const ddm::io::safetensors_file golden(fixture("dit_a.golden.safetensors"));
  const ddm::io::safetensors_file weights(fixture("dit_a.safetensors"));
  const auto config = dit_test::dit_config_of(dit_test::config_of(golden));
  const auto hmodel = std::make_shared<const dit::dit_model<>>(config, weights);
  const auto dmodel = std::make_shared<const dit::dit_model<cuda_space>>(config, weights, true, ctx);
  const std::vector<std::int32_t> labels{3, -1, 7, 0};
  auto hfield = dit::ddpm_velocity(dit::dit_expert_field<>(hmodel, labels));
  auto dfield = dit::ddpm_velocity(dit::dit_expert_field<cuda_space>(dmodel, labels, 1.0, ctx), 1e-4, ctx);
  const index_t n = hmodel->input_values();
  auto hx = host_noise(4, n, 71);
  batch<float, cuda_space> dx(ctx, 4, n);
  ddm::copy(ctx, dx.view(), hx.cview());
  const auto schedule = ddm::schedules::uniform(5);
  ddm::sample(hfield, hx, schedule, ddm::heun{});
  ddm::sample(dfield, dx, schedule, ddm::heun{});
  const auto got = to_vector(ctx, dx.cview());
  double worst = 0, scale = 1;
  for (index_t i = 0; i < hx.size(); ++i) {
    worst = std::max(worst, std::abs(double(got[static_cast<std::size_t>(i)]) - hx.data()[i]));
    scale = std::max(scale, double(std::abs(hx.data()[i])));
  }
  std::printf("[ measured ] DDPM DiT (head size 72) sample, 5 Heun steps: max |gpu - cpu| = %.2e (max |x| %.2f)\n",
              worst, scale);
  EXPECT_LE(worst, 1e-4 * scale);
}

}  // namespace
