#pragma once
// The layer sequences the three networks share, written once over dit::backend<Space>:
// patch embedding, timestep embedder, the adaLN-modulated attention and MLP residual branches,
// the adaLN-Zero block they make in the DiT and its router, and cross-attention to a text sequence.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <ddm/core/algebra.hpp>
#include <ddm/core/batch.hpp>

#include "dit/backend.hpp"
#include "dit/config.hpp"
#include "dit/embeddings.hpp"
#include "dit/tensor_names.hpp"
#include "dit/weights.hpp"

namespace dit {

// Workspace slots used by the layers below; models keep their own state in slots >= model_slot.
namespace slot {
inline constexpr std::size_t normed = 0;    // (B*T, D)
inline constexpr std::size_t qkv = 1;       // (B*T, 3D) or (B*T, D) for a cross-attention query
inline constexpr std::size_t attended = 2;  // (B*T, D)
inline constexpr std::size_t branch = 3;    // (B*T, D)
inline constexpr std::size_t hidden = 4;    // (B*T, mlp) or (B*L, 2D) for cross-attention keys and values
inline constexpr std::size_t host_in = 5;   // (B, 256) timestep frequencies
inline constexpr std::size_t model = 8;
}  // namespace slot

/// A Conv2d(C, D, kernel = stride = p) patch embedding as a GEMM over patchified tokens.
template <class Space>
struct patch_embedder {
  linear_weights<Space> proj;  // (D, C*p*p): the conv weight (D, C, p, p) flattened
  patch_geometry geometry;

  static patch_embedder load(weight_reader<Space>& r, const std::string& weight, const std::string& bias,
                             const patch_geometry& g, index_t hidden) {
    const auto u = weight_reader<Space>::u;
    patch_embedder e;
    e.geometry = g;
    e.proj = r.matrix(weight, {u(hidden), u(g.channels), u(g.patch), u(g.patch)}, hidden, g.patch_values(g.channels));
    e.proj.bias = r.tensor(bias, {u(hidden)}, 1, hidden);
    return e;
  }

  /// x (B, C*H*W) -> tokens (B*T, D).
  void forward(const ddm::execution_context<Space>& ctx, batch_view<const float, Space> x, workspace<Space>& ws,
               batch_view<float, Space> tokens) const {
    using ops = backend<Space>;
    auto patches = ws.get(slot::hidden, x.rows() * geometry.tokens(), geometry.patch_values(geometry.channels));
    ops::patchify(ctx, x, geometry, patches);
    ops::linear(ctx, patches, proj.view(), proj.bias_data(), tokens);
  }
};

/// DiT's TimestepEmbedder: sinusoidal frequencies (cosine first) -> Linear -> SiLU -> Linear.
template <class Space>
struct timestep_embedder {
  linear_weights<Space> fc1;  // (D, 256)
  linear_weights<Space> fc2;  // (D, D)
  batch<float, Space> freqs;  // (1, 128): exp(-ln(10000) k / 128), computed once on the host
  index_t frequency_size = 256;

  static timestep_embedder load(weight_reader<Space>& r, const std::string& prefix, index_t hidden,
                                index_t frequency_size) {
    timestep_embedder e;
    e.fc1 = r.linear(prefix + ".0", hidden, frequency_size);
    e.fc2 = r.linear(prefix + ".2", hidden, hidden);
    e.frequency_size = frequency_size;
    const auto table = timestep_frequencies(frequency_size);
    e.freqs = batch<float, Space>(r.context(), 1, frequency_size / 2);
    backend<Space>::upload(r.context(), table, e.freqs.view());
    return e;
  }

  /// t (B model timesteps) -> out (B, D).
  void forward(const ddm::execution_context<Space>& ctx, std::span<const float> t, workspace<Space>& ws,
               batch_view<float, Space> out) const {
    using ops = backend<Space>;
    const auto b = static_cast<index_t>(t.size());
    auto f = ws.get(slot::host_in, b, frequency_size);
    ops::timestep_embedding(ctx, t, freqs.cview(), f);
    auto h = ws.get(slot::branch, b, fc1.out());
    ops::linear(ctx, f.as_const(), fc1.view(), fc1.bias_data(), h);
    ops::silu(ctx, h, h);
    ops::linear(ctx, h.as_const(), fc2.view(), fc2.bias_data(), out);
  }
};

/// The weights of one self-attention + MLP transformer block (fused qkv, PyTorch layouts).
template <class Space>
struct attention_mlp_weights {
  linear_weights<Space> qkv;   // (3D, D): rows [0, D) q, [D, 2D) k, [2D, 3D) v; head h at [h*hd, (h+1)*hd)
  linear_weights<Space> proj;  // (D, D)
  linear_weights<Space> fc1;   // (mlp, D)
  linear_weights<Space> fc2;   // (D, mlp)

  /// Block `i` of a checkpoint with layout `names`.
  static attention_mlp_weights load(weight_reader<Space>& r, const tensor_names& names, index_t i,
                                    const transformer_config& c) {
    const index_t d = c.hidden_size;
    attention_mlp_weights w;
    w.qkv = r.linear_named(names.in_block(i, names.qkv_weight), names.in_block(i, names.qkv_bias), 3 * d, d);
    w.proj = r.linear(names.in_block(i, names.attn_proj), d, d);
    w.fc1 = r.linear(names.in_block(i, names.fc1), c.mlp_hidden(), d);
    w.fc2 = r.linear(names.in_block(i, names.fc2), d, c.mlp_hidden());
    return w;
  }
};

/// x += gate * Proj(Attention(LN(x) * (1 + scale) + shift)), with fused qkv.
/// shift, scale, gate are (B, D) (any stride); gate empty means no gate.
template <class Space>
void attention_residual(const ddm::execution_context<Space>& ctx, batch_view<float, Space> x, index_t batch_size,
                        index_t heads, double eps, batch_view<const float, Space> shift,
                        batch_view<const float, Space> scale, batch_view<const float, Space> gate,
                        const linear_weights<Space>& qkv_w, const linear_weights<Space>& proj_w, workspace<Space>& ws) {
  using ops = backend<Space>;
  const index_t rows = x.rows();
  const index_t d = x.cols();
  auto h = ws.get(slot::normed, rows, d);
  auto qkv = ws.get(slot::qkv, rows, 3 * d);
  ops::modulated_linear(ctx, x.as_const(), eps, shift, scale, qkv_w.view(), qkv_w.bias_data(), qkv, h);
  auto a = ws.get(slot::attended, rows, d);
  auto o = ws.get(slot::branch, rows, d);
  ops::attention_linear(ctx, columns(qkv.as_const(), 0, d), columns(qkv.as_const(), d, d),
                        columns(qkv.as_const(), 2 * d, d), batch_size, heads, qkv_w.storage, proj_w.view(),
                        proj_w.bias_data(), o, a);
  ops::gated_residual(ctx, x, gate, o);
}

/// x += gate * FC2(GELU_tanh(FC1(LN(x) * (1 + scale) + shift))).
template <class Space>
void mlp_residual(const ddm::execution_context<Space>& ctx, batch_view<float, Space> x, double eps,
                  batch_view<const float, Space> shift, batch_view<const float, Space> scale,
                  batch_view<const float, Space> gate, const linear_weights<Space>& fc1,
                  const linear_weights<Space>& fc2, workspace<Space>& ws) {
  using ops = backend<Space>;
  const index_t rows = x.rows();
  auto h = ws.get(slot::normed, rows, x.cols());
  auto f = ws.get(slot::hidden, rows, fc1.out());
  ops::modulated_linear(ctx, x.as_const(), eps, shift, scale, fc1.view(), fc1.bias_data(), f, h);
  auto o = ws.get(slot::branch, rows, x.cols());
  ops::gelu_linear(ctx, f, fc2.view(), fc2.bias_data(), o);
  ops::gated_residual(ctx, x, gate, o);
}

/// x += OutProj(Attention(q = x W_q, k = text W_k, v = text W_v)), nn.MultiheadAttention with
/// in_proj (3D, D) split by rows into W_q, W_k, W_v. No normalization and no gate (Paris).
/// text is (B*L, D), already projected to the model width.
template <class Space>
void cross_attention_residual(const ddm::execution_context<Space>& ctx, batch_view<float, Space> x,
                              batch_view<const float, Space> text, index_t batch_size, index_t heads,
                              const linear_weights<Space>& in_proj, const linear_weights<Space>& out_proj,
                              workspace<Space>& ws) {
  using ops = backend<Space>;
  const index_t rows = x.rows();
  const index_t d = x.cols();
  const auto w = in_proj.view();
  const float* bias = in_proj.bias_data();
  auto q = ws.get(slot::qkv, rows, d);
  ops::linear(ctx, x.as_const(), w.subrows(0, d), bias, q);
  auto kv = ws.get(slot::hidden, text.rows(), 2 * d);
  ops::linear(ctx, text, w.subrows(d, 2 * d), bias == nullptr ? nullptr : bias + d, kv);
  auto a = ws.get(slot::attended, rows, d);
  auto o = ws.get(slot::branch, rows, d);
  ops::attention_linear(ctx, q.as_const(), columns(kv.as_const(), 0, d), columns(kv.as_const(), d, d), batch_size,
                        heads, in_proj.storage, out_proj.view(), out_proj.bias_data(), o, a);
  ops::gated_residual(ctx, x, batch_view<const float, Space>{}, o);
}

/// Position embedding of a checkpoint (1, T, D) when it has one, the fixed 2D sin-cos table
/// otherwise; returned as (1, T*D) for add_row_vector over (B, T*D).
template <class Space>
batch<float, Space> load_pos_embed(weight_reader<Space>& r, const std::string& name, index_t tokens, index_t hidden,
                                   index_t grid, bool required) {
  const auto u = weight_reader<Space>::u;
  if (required || r.has(name)) return r.tensor(name, {1, u(tokens), u(hidden)}, 1, tokens * hidden);
  const auto table = sincos_pos_embed_2d(hidden, grid);
  batch<float, Space> out(r.context(), 1, tokens * hidden);
  backend<Space>::upload(r.context(), table, out.view());
  return out;
}

/// Adds the (1, T*D) position table to every sample of tokens (B*T, D).
template <class Space>
void add_pos_embed(const ddm::execution_context<Space>& ctx, batch_view<float, Space> tokens, index_t batch_size,
                   const batch<float, Space>& pos) {
  batch_view<float, Space> flat(tokens.data(), batch_size, pos.cols());
  backend<Space>::add_row_vector(ctx, flat.as_const(), pos.cview(), flat);
}
/// One adaLN-Zero block of the original DiT and of the DiT router: the six modulation vectors
/// shift/scale/gate (attention), shift/scale/gate (MLP) = Linear(SiLU(c)), chunked in that order,
/// then x += gate_msa * Attn(LN(x) (1 + scale_msa) + shift_msa) and
/// x += gate_mlp * MLP(LN(x) (1 + scale_mlp) + shift_mlp).
template <class Space>
struct adaln_zero_block {
  linear_weights<Space> adaln;  // (6D, D): adaLN_modulation.1 (index 0 of the Sequential is the SiLU)
  attention_mlp_weights<Space> layers;

  /// Block `i` of a checkpoint with layout `names`.
  static adaln_zero_block load(weight_reader<Space>& r, const tensor_names& names, index_t i,
                               const transformer_config& c) {
    const index_t d = c.hidden_size;
    adaln_zero_block w;
    w.adaln = r.linear(names.in_block(i, "adaLN_modulation.1"), 6 * d, d);
    w.layers = attention_mlp_weights<Space>::load(r, names, i, c);
    return w;
  }

  /// x (B*T, D) through the block, given silu_c = SiLU(c) (B, D), shared by every block; `mod`
  /// (B, 6D) receives the modulation vectors.
  void forward(const ddm::execution_context<Space>& ctx, batch_view<float, Space> x, index_t batch_size,
               const transformer_config& c, batch_view<const float, Space> silu_c, batch_view<float, Space> mod,
               workspace<Space>& ws) const {
    const index_t d = c.hidden_size;
    backend<Space>::linear(ctx, silu_c, adaln.view(), adaln.bias_data(), mod);
    const auto m = mod.as_const();
    attention_residual(ctx, x, batch_size, c.num_heads, c.layer_norm_eps, chunk(m, 0, d), chunk(m, 1, d),
                       chunk(m, 2, d), layers.qkv, layers.proj, ws);
    mlp_residual(ctx, x, c.layer_norm_eps, chunk(m, 3, d), chunk(m, 4, d), chunk(m, 5, d), layers.fc1, layers.fc2,
                 ws);
  }
};

/// What every DiT has before its blocks: the patch embedding, the position table (the
/// checkpoint's, or computed when it has none) and the timestep embedder.
template <class Space>
struct stem_weights {
  patch_embedder<Space> patch_embed;
  batch<float, Space> pos_embed;  // (1, T*D)
  timestep_embedder<Space> time_embed;

  static stem_weights load(weight_reader<Space>& r, const tensor_names& names, const transformer_config& c) {
    const index_t d = c.hidden_size;
    stem_weights w;
    w.patch_embed = patch_embedder<Space>::load(r, tensor_names::join(names.patch_embed, "weight"),
                                                tensor_names::join(names.patch_embed, "bias"), c.geometry(), d);
    w.pos_embed = load_pos_embed(r, std::string(names.pos_embed), c.tokens(), d, c.input_size / c.patch_size, false);
    w.time_embed = timestep_embedder<Space>::load(r, std::string(names.time_embed), d, c.frequency_size);
    return w;
  }

  /// x (B, C*H*W) -> tokens (B*T, D) with positions added.
  void embed(const ddm::execution_context<Space>& ctx, batch_view<const float, Space> x, workspace<Space>& ws,
             batch_view<float, Space> tokens) const {
    patch_embed.forward(ctx, x, ws, tokens);
    add_pos_embed(ctx, tokens, x.rows(), pos_embed);
  }
};

}  // namespace dit
