#pragma once
// The networks of a fashion DDM folder on the host, in float with sgemm, exactly as
// examples/03_fashion/fashion_nets.py writes them (the contract): TimeMLP (experts, monolith,
// router), the classifier whose penultimate features are the feature space of the quality
// measures, and the PCA decoder from latents to images.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include <ddm/core/batch.hpp>
#include <ddm/core/error.hpp>

#include "blas.hpp"

namespace fashion {

/// A Linear layer: weight (out, in) row-major, bias (out).
struct linear {
  index_t in = 0, out = 0;
  std::vector<float> weight;
  std::vector<float> bias;

  /// y = x W^T + b (+ y when accumulate).
  void apply(ddm::batch_view<const float> x, ddm::batch_view<float> y, bool accumulate = false) const {
    linear_no_bias(x, weight.data(), out, in, y, accumulate ? 1.0f : 0.0f);
    for (index_t r = 0; r < y.rows(); ++r) {
      float* yr = y.row(r);
      for (index_t c = 0; c < out; ++c) yr[c] += bias[static_cast<std::size_t>(c)];
    }
  }
  /// One row: y = W x + b, for the time path (one time per call), in float as the reference.
  void apply_row(const float* x, float* y) const {
    for (index_t o = 0; o < out; ++o) {
      const float* w = weight.data() + o * in;
      float s = 0.0f;
      for (index_t i = 0; i < in; ++i) s += w[i] * x[i];
      y[o] = s + bias[static_cast<std::size_t>(o)];
    }
  }
};

struct layer_norm {
  std::vector<float> weight, bias;
  float eps = 1e-5f;

  /// y = (x - mean) / sqrt(var + eps) * w + b, per row (biased variance, as torch).
  void apply(ddm::batch_view<const float> x, ddm::batch_view<float> y) const {
    const index_t n = x.cols();
    for (index_t r = 0; r < x.rows(); ++r) {
      const float* xr = x.row(r);
      double m = 0;
      for (index_t c = 0; c < n; ++c) m += xr[c];
      m /= static_cast<double>(n);
      double v = 0;
      for (index_t c = 0; c < n; ++c) v += (xr[c] - m) * (xr[c] - m);
      v /= static_cast<double>(n);
      const double inv = 1.0 / std::sqrt(v + static_cast<double>(eps));
      float* yr = y.row(r);
      for (index_t c = 0; c < n; ++c)
        yr[c] = static_cast<float>((xr[c] - m) * inv) * weight[static_cast<std::size_t>(c)] + bias[static_cast<std::size_t>(c)];
    }
  }
};

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

/// The architecture numbers of every TimeMLP of a folder (config.json "time_mlp").
struct time_mlp_config {
  index_t width = 0, depth = 0, hidden = 0, frequencies = 0;
  double max_period = 10000.0, time_scale = 1000.0, layer_norm_eps = 1e-5;
};

/// [cos(a) | sin(a)], a_j = time_scale * t * max_period^(-j / F), with fashion_nets.py's float32
/// rounding of a (the angles reach ~1000 rad, where one float ulp of a is 6e-5 of cos).
inline std::vector<float> timestep_embedding(double t, const time_mlp_config& c) {
  const auto f = static_cast<std::size_t>(c.frequencies);
  std::vector<float> e(2 * f);
  const float scaled_t = static_cast<float>(c.time_scale) * static_cast<float>(t);
  const auto nl = static_cast<float>(-std::log(c.max_period));
  for (std::size_t j = 0; j < f; ++j) {
    const float freq = std::exp((nl * static_cast<float>(j)) / static_cast<float>(f));
    const float a = scaled_t * freq;
    e[j] = static_cast<float>(std::cos(static_cast<double>(a)));
    e[f + j] = static_cast<float>(std::sin(static_cast<double>(a)));
  }
  return e;
}

/// f(z_t, t): the experts, the monolith (out = d) and the router (out = K).
class time_mlp {
 public:
  struct block {
    layer_norm norm;
    linear fc1, temb, fc2;
  };

  time_mlp_config cfg;
  index_t in_dim = 0, out_dim = 0;
  linear inp, time0, time2;
  std::vector<block> blocks;
  layer_norm out_norm;
  linear out;

  /// Scratch buffers of one caller (a field or router object owns one; they are not shared).
  struct workspace {
    std::vector<float> h, n, u;
  };

  /// y (B, out_dim) = f(z (B, in_dim), t), all rows at the same t.
  void forward(ddm::batch_view<const float> z, double t, ddm::batch_view<float> y, workspace& ws) const {
    constexpr const char* where = "fashion::time_mlp::forward";
    if (z.cols() != in_dim || y.cols() != out_dim || y.rows() != z.rows())
      ddm::throw_error<ddm::shape_error>(where, ": z is (", z.rows(), ", ", z.cols(), "), y is (", y.rows(), ", ",
                                                 y.cols(), "), expected (B, ", in_dim, ") and (B, ", out_dim, ")");
    if (!std::isfinite(t)) ddm::fail_argument(where, "t", t, "a finite time");
    const index_t b = z.rows();
    const index_t w = cfg.width, hd = cfg.hidden;
    // The time path is one row per call: e = time2(silu(time0(emb(t)))), and each block's
    // temb(silu(e)), broadcast to every row below.
    const auto emb = timestep_embedding(t, cfg);
    std::vector<float> e1(static_cast<std::size_t>(w)), e(static_cast<std::size_t>(w)), se(static_cast<std::size_t>(w));
    time0.apply_row(emb.data(), e1.data());
    for (auto& v : e1) v = silu(v);
    time2.apply_row(e1.data(), e.data());
    for (std::size_t i = 0; i < e.size(); ++i) se[i] = silu(e[i]);

    ws.h.resize(static_cast<std::size_t>(b * w));
    ws.n.resize(static_cast<std::size_t>(b * w));
    ws.u.resize(static_cast<std::size_t>(b * hd));
    const ddm::batch_view<float> h(ws.h.data(), b, w), n(ws.n.data(), b, w), u(ws.u.data(), b, hd);
    inp.apply(z, h);
    add_row(h, e.data());
    std::vector<float> te(static_cast<std::size_t>(hd));
    for (const auto& blk : blocks) {
      blk.temb.apply_row(se.data(), te.data());
      blk.norm.apply(h, n);
      blk.fc1.apply(n, u);
      add_row(u, te.data());
      for (auto& v : ws.u) v = silu(v);
      blk.fc2.apply(u, h, /*accumulate=*/true);
    }
    out_norm.apply(h, n);
    for (auto& v : ws.n) v = silu(v);
    out.apply(n, y);
  }

 private:
  static void add_row(ddm::batch_view<float> x, const float* row) {
    for (index_t r = 0; r < x.rows(); ++r) {
      float* xr = x.row(r);
      for (index_t c = 0; c < x.cols(); ++c) xr[c] += row[c];
    }
  }
};

/// The classifier on clean images (B, 784) in [0, 1]: features f = relu(fc2(relu(fc1(u)))),
/// u = (x - pixel_mean) / pixel_std, and class logits fc3(f).
struct classifier {
  linear fc1, fc2, fc3;
  float pixel_mean = 0, pixel_std = 1;

  [[nodiscard]] index_t features_dim() const noexcept { return fc2.out; }

  /// features (B, F) and, when logits is not empty, logits (B, 10).
  void forward(ddm::batch_view<const float> x, ddm::batch_view<float> features, ddm::batch_view<float> logits = {}) const {
    const index_t b = x.rows();
    std::vector<float> ub(static_cast<std::size_t>(b * fc1.in)), hb(static_cast<std::size_t>(b * fc1.out));
    const ddm::batch_view<float> u(ub.data(), b, fc1.in), h(hb.data(), b, fc1.out);
    for (index_t r = 0; r < b; ++r)
      for (index_t c = 0; c < fc1.in; ++c) u(r, c) = (x(r, c) - pixel_mean) / pixel_std;
    fc1.apply(u, h);
    for (auto& v : hb) v = std::max(v, 0.0f);
    fc2.apply(h, features);
    for (index_t r = 0; r < b; ++r)
      for (index_t c = 0; c < features.cols(); ++c) features(r, c) = std::max(features(r, c), 0.0f);
    if (logits.rows() != 0) fc3.apply(features, logits);
  }
};

/// The whitened PCA: z = ((x - mean) C^T) / scale, x = mean + (z * scale) C, C (d, 784).
struct pca {
  index_t d = 0, pixels = 784;
  std::vector<float> mean, components, scale;

  /// images (B, 784) = decode(z (B, d)), clipped to [0, 1] as the reference does.
  void decode(ddm::batch_view<const float> z, ddm::batch_view<float> images) const {
    const index_t b = z.rows();
    std::vector<float> zs(static_cast<std::size_t>(b * d));
    for (index_t r = 0; r < b; ++r)
      for (index_t c = 0; c < d; ++c) zs[static_cast<std::size_t>(r * d + c)] = z(r, c) * scale[static_cast<std::size_t>(c)];
    if (b == 0) return;
    // (B, d) x (d, 784): C is stored (d, 784), so no transpose.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(b), static_cast<int>(pixels),
                static_cast<int>(d), 1.0f, zs.data(), static_cast<int>(d), components.data(), static_cast<int>(pixels),
                0.0f, images.data(), static_cast<int>(images.stride()));
    for (index_t r = 0; r < b; ++r)
      for (index_t c = 0; c < pixels; ++c)
        images(r, c) = std::clamp(images(r, c) + mean[static_cast<std::size_t>(c)], 0.0f, 1.0f);
  }

  /// z (B, d) = encode(images (B, 784)).
  void encode(ddm::batch_view<const float> images, ddm::batch_view<float> z) const {
    const index_t b = images.rows();
    std::vector<float> xc(static_cast<std::size_t>(b * pixels));
    for (index_t r = 0; r < b; ++r)
      for (index_t c = 0; c < pixels; ++c)
        xc[static_cast<std::size_t>(r * pixels + c)] = images(r, c) - mean[static_cast<std::size_t>(c)];
    linear_no_bias(ddm::batch_view<const float>(xc.data(), b, pixels), components.data(), d, pixels, z);
    for (index_t r = 0; r < b; ++r)
      for (index_t c = 0; c < d; ++c) z(r, c) /= scale[static_cast<std::size_t>(c)];
  }
};

}  // namespace fashion
