"""The networks of the DiT tier of the learned Fashion-MNIST DDM, in pixel space, and its folder.

The contract between `train.py --arch dit` (which writes models/fashion-dit) and the C++ side
(examples/01_paradox/fashion_dit_system.hpp, which reads it through examples/02_dit's loaders):

  experts, monolith  the ORIGINAL DiT of Peebles & Xie (facebookresearch/DiT models.py), with its
                     key names, so that dit::dit_model loads them as they are: unconditional is
                     num_classes = 1 without a null row (the one label embedding is a learned
                     bias of the conditioning), learn_sigma = False, and the output is the
                     rectified-flow velocity v = eps - x0 (not DDPM eps). Network time: 1000 t.
  router             the Paris-port DiT router (dit::dit_router_model): [CLS; patch tokens],
                     adaLN-Zero blocks, nn.MultiheadAttention, head Linear-GELU-LN-GELU-Linear,
                     K logits of the cluster of x0 given (x_t, t). Network time: 1000 t.

Data: x = 2 * pixel - 1, (B, 1 * 28 * 28) row-major (NCHW with C = 1), pixels in [0, 1]. The
image is not padded: 28 is a multiple of the patch (4 -> a 7 x 7 grid of 49 tokens).
Rectified flow as in ddm: x_t = (1 - t) x0 + t eps, v = eps - x0, t in [0, 1].
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_embedding(t, dim=256, max_period=10000.0):
    """DiT's TimestepEmbedder.timestep_embedding: [cos | sin] of t * exp(-ln(max_period) k / half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=-1)


def sincos_pos_embed_2d(dim, grid):
    """MAE / DiT get_2d_sincos_pos_embed (no CLS row): token i * grid + j is
    [sin(j w) | cos(j w) | sin(i w) | cos(i w)], w_k = 10000^(-k / (dim / 4))."""
    gh = np.arange(grid, dtype=np.float32)
    gw = np.arange(grid, dtype=np.float32)
    g = np.meshgrid(gw, gh)  # w goes first, as in DiT
    g = np.stack(g, axis=0).reshape(2, 1, grid, grid)

    def one(d, pos):
        omega = np.arange(d // 2, dtype=np.float64) / (d / 2.0)
        omega = 1.0 / 10000 ** omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([one(dim // 2, g[0]), one(dim // 2, g[1])], axis=1)
    return torch.from_numpy(emb).float()


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden, frequency_size=256):
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t):
        return self.mlp(timestep_embedding(t, self.frequency_size))


class Attention(nn.Module):
    """timm's Attention: fused qkv (rows q, k, v; head h at [h hd, (h + 1) hd) in each), proj."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(a.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c):
        sm, cm, gm, sp, cp, gp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gm.unsqueeze(1) * self.attn(modulate(self.norm1(x), sm, cm))
        return x + gp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), sp, cp))


class FinalLayer(nn.Module):
    def __init__(self, dim, patch, out_channels):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch * patch * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class PatchEmbed(nn.Module):
    def __init__(self, patch, channels, dim):
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, T, D), token i * grid + j


class LabelEmbedder(nn.Module):
    """num_classes = 1 and no null row: the one row is a learned bias added to the time embedding."""

    def __init__(self, dim):
        super().__init__()
        self.embedding_table = nn.Embedding(1, dim)


class DiT(nn.Module):
    """The original DiT (module and key names of facebookresearch/DiT), unconditional, velocity out.
    Keys: x_embedder.proj.{weight (D, C, p, p), bias}, pos_embed (1, T, D) fixed sin-cos (stored),
    t_embedder.mlp.{0,2}.*, y_embedder.embedding_table.weight (1, D), blocks.N.{attn.qkv, attn.proj,
    mlp.fc1, mlp.fc2, adaLN_modulation.1}.*, final_layer.{linear, adaLN_modulation.1}.*."""

    def __init__(self, input_size=28, patch=4, channels=1, hidden=96, depth=3, heads=4, mlp_ratio=4.0):
        super().__init__()
        self.input_size, self.patch, self.channels = input_size, patch, channels
        self.x_embedder = PatchEmbed(patch, channels, hidden)
        grid = input_size // patch
        self.pos_embed = nn.Parameter(sincos_pos_embed_2d(hidden, grid)[None], requires_grad=False)
        self.t_embedder = TimestepEmbedder(hidden)
        self.y_embedder = LabelEmbedder(hidden)
        self.blocks = nn.ModuleList([DiTBlock(hidden, heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden, patch, channels)
        self._init()

    def _init(self):
        # DiT's initialize_weights: xavier linears, adaLN-Zero (modulations and output zeroed).
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for b in self.blocks:
            nn.init.zeros_(b.adaLN_modulation[-1].weight)
            nn.init.zeros_(b.adaLN_modulation[-1].bias)
        for m in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x, t):
        """x (B, C*H*W) flat, t (B,) in [0, 1] (ddm time; the network sees 1000 t) -> v (B, C*H*W)."""
        b = x.shape[0]
        s, p, c_ = self.input_size, self.patch, self.channels
        h = self.x_embedder(x.reshape(b, c_, s, s)) + self.pos_embed
        c = self.t_embedder(1000.0 * t) + self.y_embedder.embedding_table.weight[0]
        for blk in self.blocks:
            h = blk(h, c)
        h = self.final_layer(h, c)                                    # (B, T, p*p*C)
        g = s // p
        h = h.reshape(b, g, g, p, p, c_).permute(0, 5, 1, 3, 2, 4)    # DiT's unpatchify: channel fastest
        return h.reshape(b, c_ * s * s)


class RouterBlock(nn.Module):
    """A Paris-port router layer: adaLN-Zero over nn.MultiheadAttention and a GELU(tanh) MLP,
    LayerNorms without affine (F.layer_norm, eps 1e-5)."""

    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(approximate="tanh"),
                                 nn.Linear(int(dim * mlp_ratio), dim))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.dim = dim

    def forward(self, x, c):
        sm, cm, gm, sp, cp, gp = self.adaLN_modulation(c).chunk(6, dim=1)
        h = modulate(F.layer_norm(x, (self.dim,), eps=1e-5), sm, cm)
        x = x + gm.unsqueeze(1) * self.attn(h, h, h, need_weights=False)[0]
        return x + gp.unsqueeze(1) * self.mlp(modulate(F.layer_norm(x, (self.dim,), eps=1e-5), sp, cp))


class DiTRouter(nn.Module):
    """Keys: patch_embed.{weight, bias}, pos_embed (1, T, D), time_embed.mlp.{0,2}.*, cls_token
    (1, 1, D), layers.N.{adaLN_modulation.1, attn.in_proj_weight, attn.in_proj_bias, attn.out_proj,
    mlp.0, mlp.2}.*, head.{0, 2 (LayerNorm, eps 1e-5), 4}.*."""

    def __init__(self, num_experts, input_size=28, patch=4, channels=1, hidden=64, depth=2, heads=4,
                 mlp_ratio=4.0):
        super().__init__()
        self.input_size, self.patch, self.channels = input_size, patch, channels
        self.patch_embed = nn.Conv2d(channels, hidden, kernel_size=patch, stride=patch)
        self.pos_embed = nn.Parameter(sincos_pos_embed_2d(hidden, input_size // patch)[None], requires_grad=False)
        self.time_embed = TimestepEmbedder(hidden)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.layers = nn.ModuleList([RouterBlock(hidden, heads, mlp_ratio) for _ in range(depth)])
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(approximate="tanh"),
                                  nn.LayerNorm(hidden, eps=1e-5), nn.GELU(approximate="tanh"),
                                  nn.Linear(hidden, num_experts))
        nn.init.normal_(self.cls_token, std=0.02)
        for blk in self.layers:
            nn.init.zeros_(blk.adaLN_modulation[-1].weight)
            nn.init.zeros_(blk.adaLN_modulation[-1].bias)

    def forward(self, x, t):
        b = x.shape[0]
        s = self.input_size
        h = self.patch_embed(x.reshape(b, self.channels, s, s)).flatten(2).transpose(1, 2) + self.pos_embed
        h = torch.cat([self.cls_token.expand(b, -1, -1), h], dim=1)
        c = self.time_embed(1000.0 * t)
        for blk in self.layers:
            h = blk(h, c)
        return self.head(h[:, 0])


def to_pixels(x):
    """Model space (2 * pixel - 1) -> pixels in [0, 1], clipped: what the classifier sees."""
    return ((x + 1.0) * 0.5).clamp(0.0, 1.0)
