#!/usr/bin/env python3
"""PyTorch reference for the C++ DiT models: writes tiny random checkpoints and golden outputs.

    python3 tests/dit/golden/make_golden.py            # rewrites tests/dit/golden/*

Three networks, written here independently of the C++ code, with the module names of their
checkpoints so that state_dict() gives the key names the C++ loaders expect:

  * DiT: the original class-conditional DiT (facebookresearch/DiT models.py; timm PatchEmbed,
    Attention with fused qkv and scaled_dot_product_attention, Mlp with tanh GELU).
  * ParisExpert: adaLN-single DiT with cross-attention to projected text (the module layout of
    the public Paris port: patch_embed, time_embed, text_proj, t_block, layers.N.{attn,cross_attn
    as nn.MultiheadAttention, mlp, scale_shift_table}, final_layer).
  * Router: adaLN-Zero DiT with a CLS token and an MLP head (patch_embed, time_embed, cls_token,
    layers.N.{adaLN_modulation, attn, mlp}, head).

Weights are random (default PyTorch init, plus random modulation tables), then rounded to the
storage dtype (BF16 / F16 / F32) *before* the reference forward runs, so that the C++ side, which
widens the stored values exactly, computes with the very same numbers. Each model gets a
`<name>.golden.safetensors` with its inputs (input.*) and the activation after each stage
(stage.*), all F32, and its configuration as JSON in the metadata entry "config".
"""
import json
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


# --- shared pieces --------------------------------------------------------------------------

def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden, freq=256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(freq, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.freq = freq

    @staticmethod
    def timestep_embedding(t, dim, max_period=10000):
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t):
        return self.mlp(self.timestep_embedding(t, self.freq))


def sincos_2d(dim, grid_size):
    """MAE / DiT get_2d_sincos_pos_embed (numpy float64; w goes first)."""
    gh = np.arange(grid_size, dtype=np.float32)
    gw = np.arange(grid_size, dtype=np.float32)
    grid = np.meshgrid(gw, gh)
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_size, grid_size])

    def one_d(d, pos):
        omega = np.arange(d // 2, dtype=np.float64)
        omega /= d / 2.0
        omega = 1.0 / 10000 ** omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)


def unpatchify(x, p, c):
    h = w = int(x.shape[1] ** 0.5)
    x = x.reshape(x.shape[0], h, w, p, p, c)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(x.shape[0], c, h * p, w * p)


def mlp(hidden, ratio):
    return nn.Sequential(nn.Linear(hidden, int(hidden * ratio)), nn.GELU(approximate="tanh"),
                         nn.Linear(int(hidden * ratio), hidden))


# --- the original DiT -----------------------------------------------------------------------

class PatchEmbed(nn.Module):
    def __init__(self, p, c, hidden):
        super().__init__()
        self.proj = nn.Conv2d(c, hidden, kernel_size=p, stride=p, bias=True)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):  # timm Attention, qkv_bias=True, fused SDPA path
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    def __init__(self, hidden, heads, ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden, int(hidden * ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden, bias=True))

    def forward(self, x, c):
        sh_msa, sc_msa, g_msa, sh_mlp, sc_mlp, g_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), sh_msa, sc_msa))
        return x + g_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), sh_mlp, sc_mlp))


class FinalLayer(nn.Module):
    def __init__(self, hidden, p, c_out):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, p * p * c_out, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden, bias=True))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class LabelEmbedder(nn.Module):
    def __init__(self, classes, hidden, null_class):
        super().__init__()
        self.embedding_table = nn.Embedding(classes + int(null_class), hidden)

    def forward(self, y):
        return self.embedding_table(y)


class DiT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, p, c = cfg["hidden_size"], cfg["patch_size"], cfg["in_channels"]
        self.c_out = 2 * c if cfg["learn_sigma"] else c
        self.x_embedder = PatchEmbed(p, c, d)
        self.t_embedder = TimestepEmbedder(d)
        self.y_embedder = LabelEmbedder(cfg["num_classes"], d, cfg["null_class"])
        grid = cfg["input_size"] // p
        self.pos_embed = nn.Parameter(torch.from_numpy(sincos_2d(d, grid)).float().unsqueeze(0), requires_grad=False)
        self.blocks = nn.ModuleList([DiTBlock(d, cfg["num_heads"], cfg["mlp_ratio"]) for _ in range(cfg["depth"])])
        self.final_layer = FinalLayer(d, p, self.c_out)

    def forward(self, x, t, y, rec):
        x = self.x_embedder(x) + self.pos_embed
        rec["x_embed"] = x
        t = self.t_embedder(t)
        rec["t_emb"] = t
        c = t + self.y_embedder(y)
        rec["c"] = c
        for i, block in enumerate(self.blocks):
            x = block(x, c)
            rec[f"block.{i}"] = x
        x = self.final_layer(x, c)
        rec["final"] = x
        out = unpatchify(x, self.cfg["patch_size"], self.c_out)
        rec["output"] = out
        return out


# --- the Paris-style expert -----------------------------------------------------------------

class ParisLayer(nn.Module):
    def __init__(self, d, heads, ratio, eps):
        super().__init__()
        self.eps = eps
        self.scale_shift_table = nn.Parameter(torch.randn(6, d) * 0.3)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = mlp(d, ratio)

    def forward(self, x, t0, text):
        b, n, d = x.shape
        mod = self.scale_shift_table[None] + t0
        sh_msa, sc_msa, g_msa, sh_mlp, sc_mlp, g_mlp = mod.chunk(6, dim=1)
        h = F.layer_norm(x, (d,), eps=self.eps) * (1 + sc_msa) + sh_msa
        a, _ = self.attn(h, h, h, need_weights=False)
        x = x + g_msa * a
        ca, _ = self.cross_attn(x, text, text, need_weights=False)
        x = x + ca
        h = F.layer_norm(x, (d,), eps=self.eps) * (1 + sc_mlp) + sh_mlp
        return x + g_mlp * self.mlp(h)


class ParisFinal(nn.Module):
    def __init__(self, d, p, c_out):
        super().__init__()
        self.linear = nn.Linear(d, p * p * c_out)
        self.scale_shift_table = nn.Parameter(torch.randn(2, d) * 0.3)


class ParisExpert(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, p = cfg["hidden_size"], cfg["patch_size"]
        t = (cfg["input_size"] // p) ** 2
        self.patch_embed = nn.Conv2d(cfg["in_channels"], d, kernel_size=p, stride=p)
        self.pos_embed = nn.Parameter(torch.randn(1, t, d) * 0.5)
        self.time_embed = TimestepEmbedder(d)
        self.text_proj = nn.Linear(cfg["text_dim"], d)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.layers = nn.ModuleList([ParisLayer(d, cfg["num_heads"], cfg["mlp_ratio"], cfg["layer_norm_eps"])
                                     for _ in range(cfg["depth"])])
        self.final_layer = ParisFinal(d, p, cfg["out_channels"])

    def forward(self, x, t, text, rec):
        b, d = x.shape[0], self.cfg["hidden_size"]
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        rec["x_embed"] = x
        t_emb = self.time_embed(t)
        rec["t_emb"] = t_emb
        t0 = self.t_block(t_emb)
        rec["t0"] = t0
        t0 = t0.reshape(b, 6, d)
        txt = self.text_proj(text)
        rec["text_proj"] = txt
        for i, layer in enumerate(self.layers):
            x = layer(x, t0, txt)
            rec[f"block.{i}"] = x
        shift, scale = (self.final_layer.scale_shift_table[None] + t_emb[:, None]).chunk(2, dim=1)
        x = F.layer_norm(x, (d,), eps=self.cfg["layer_norm_eps"]) * (1 + scale) + shift
        x = self.final_layer.linear(x)
        rec["final"] = x
        out = unpatchify(x, self.cfg["patch_size"], self.cfg["out_channels"])
        rec["output"] = out
        return out


# --- the router -----------------------------------------------------------------------------

class RouterLayer(nn.Module):
    def __init__(self, d, heads, ratio, eps):
        super().__init__()
        self.eps = eps
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = mlp(d, ratio)

    def forward(self, x, t_emb):
        b, n, d = x.shape
        mod = self.adaLN_modulation(t_emb).reshape(b, 6, d)
        sh_msa, sc_msa, g_msa, sh_mlp, sc_mlp, g_mlp = mod.chunk(6, dim=1)
        h = F.layer_norm(x, (d,), eps=self.eps) * (1 + sc_msa) + sh_msa
        a, _ = self.attn(h, h, h, need_weights=False)
        x = x + g_msa * a
        h = F.layer_norm(x, (d,), eps=self.eps) * (1 + sc_mlp) + sh_mlp
        return x + g_mlp * self.mlp(h)


class Router(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, p = cfg["hidden_size"], cfg["patch_size"]
        t = (cfg["input_size"] // p) ** 2
        self.patch_embed = nn.Conv2d(cfg["in_channels"], d, kernel_size=p, stride=p)
        self.pos_embed = nn.Parameter(torch.from_numpy(sincos_2d(d, cfg["input_size"] // p)).float().unsqueeze(0))
        self.time_embed = TimestepEmbedder(d)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d))
        self.layers = nn.ModuleList([RouterLayer(d, cfg["num_heads"], cfg["mlp_ratio"], cfg["layer_norm_eps"])
                                     for _ in range(cfg["depth"])])
        self.head = nn.Sequential(nn.Linear(d, d), nn.GELU(approximate="tanh"),
                                  nn.LayerNorm(d, eps=cfg["head_layer_norm_eps"]), nn.GELU(approximate="tanh"),
                                  nn.Linear(d, cfg["num_experts"]))
        with torch.no_grad():  # a non-trivial affine LayerNorm
            self.head[2].weight.uniform_(0.5, 1.5)
            self.head[2].bias.uniform_(-0.5, 0.5)

    def forward(self, x, t, rec):
        b = x.shape[0]
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        rec["x_embed"] = x
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)
        t_emb = self.time_embed(t)
        rec["t_emb"] = t_emb
        for i, layer in enumerate(self.layers):
            x = layer(x, t_emb)
            rec[f"block.{i}"] = x
        cls = x[:, 0]
        rec["cls"] = cls
        logits = self.head(cls)
        rec["logits"] = logits
        return logits


# --- writing ---------------------------------------------------------------------------------

STORAGE = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def round_params(model, dtype, keep=()):
    """Rounds parameters to the storage dtype, so the reference computes with stored values."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name not in keep:
                p.copy_(p.to(dtype).float())


def state_dict_as(model, dtype, drop=()):
    return {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items() if k not in drop}


def save_golden(path, cfg, inputs, rec):
    tensors = {f"input.{k}": v.detach().float().contiguous() for k, v in inputs.items()}
    tensors.update({f"stage.{k}": v.detach().float().contiguous() for k, v in rec.items()})
    save_file(tensors, path, metadata={"config": json.dumps(cfg, sort_keys=True),
                                       "torch": torch.__version__})


def make_dit(name, cfg, storage, seed, keep_pos_embed, labels, t):
    torch.manual_seed(seed)
    model = DiT(cfg).eval()
    # The fixed position table stays exact (F32), as in a DiT checkpoint; or it is left out and
    # the loader must compute the same table.
    round_params(model, STORAGE[storage], keep=("pos_embed",))
    sd = state_dict_as(model, STORAGE[storage], drop=("pos_embed",))
    if keep_pos_embed:
        sd["pos_embed"] = model.pos_embed.detach().float().contiguous()
    save_file(sd, os.path.join(HERE, f"{name}.safetensors"), metadata={"format": "pt"})
    c, s = cfg["in_channels"], cfg["input_size"]
    x = torch.randn(len(labels), c, s, s)
    y = torch.tensor(labels, dtype=torch.long)
    tt = torch.tensor(t, dtype=torch.float32)
    rec = {}
    with torch.no_grad():
        model(x, tt, y, rec)
    save_golden(os.path.join(HERE, f"{name}.golden.safetensors"), cfg,
                {"x": x, "t": tt, "y": y.float()}, rec)


def make_paris(folder, expert_cfg, router_cfg, experts, seed):
    os.makedirs(folder, exist_ok=True)
    b, s, c = 3, expert_cfg["input_size"], expert_cfg["in_channels"]
    gen = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(b, c, s, s, generator=gen)
    t = torch.tensor([999.0, 500.25, 3.5])
    text = torch.randn(b, expert_cfg["text_length"], expert_cfg["text_dim"], generator=gen)
    for k in range(experts):
        torch.manual_seed(seed + k)
        model = ParisExpert(expert_cfg).eval()
        round_params(model, torch.bfloat16)
        sub = os.path.join(folder, f"expert_{k}")
        os.makedirs(sub, exist_ok=True)
        save_file(state_dict_as(model, torch.bfloat16), os.path.join(sub, "diffusion_pytorch_model.safetensors"),
                  metadata={"format": "pt"})
        with open(os.path.join(sub, "config.json"), "w") as f:
            json.dump(expert_cfg, f, indent=2, sort_keys=True)
        rec = {}
        with torch.no_grad():
            model(x, t, text, rec)
        save_golden(os.path.join(folder, f"expert_{k}.golden.safetensors"), expert_cfg,
                    {"x": x, "t": t, "text": text}, rec)
    torch.manual_seed(seed + 50)
    router = Router(router_cfg).eval()
    round_params(router, torch.float16)
    sub = os.path.join(folder, "router")
    os.makedirs(sub, exist_ok=True)
    save_file(state_dict_as(router, torch.float16), os.path.join(sub, "pytorch_model.safetensors"),
              metadata={"format": "pt"})
    with open(os.path.join(sub, "config.json"), "w") as f:
        json.dump(router_cfg, f, indent=2, sort_keys=True)
    rec = {}
    with torch.no_grad():
        router(x, t, rec)
    save_golden(os.path.join(folder, "router.golden.safetensors"), router_cfg, {"x": x, "t": t}, rec)


def main():
    torch.set_num_threads(1)
    # DiT with one head of size 72 (DiT-XL's head size), learn_sigma, the null class, and the
    # fixed position table stored in the checkpoint.
    make_dit("dit_a", dict(input_size=8, patch_size=2, in_channels=4, hidden_size=72, depth=2, num_heads=1,
                           mlp_ratio=4.0, num_classes=10, null_class=True, learn_sigma=True),
             "BF16", seed=1, keep_pos_embed=True, labels=[3, 10, 7], t=[999.0, 500.25, 1.5])
    # DiT with four heads of 8, patch 4, three channels, no learn_sigma, no null class, and no
    # pos_embed in the file (the loader computes the table).
    make_dit("dit_b", dict(input_size=16, patch_size=4, in_channels=3, hidden_size=32, depth=2, num_heads=4,
                           mlp_ratio=4.0, num_classes=5, null_class=False, learn_sigma=False),
             "F32", seed=2, keep_pos_embed=False, labels=[0, 4], t=[0.0, 250.0])
    # A Paris-layout folder: three experts (BF16) and a router (F16).
    make_paris(os.path.join(HERE, "paris_tiny"),
               dict(input_size=8, patch_size=2, in_channels=4, out_channels=4, hidden_size=32, depth=2, num_heads=2,
                    mlp_ratio=4.0, text_dim=16, text_length=5, layer_norm_eps=1e-5),
               dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, mlp_ratio=4.0,
                    num_experts=3, layer_norm_eps=1e-5, head_layer_norm_eps=1e-5),
               experts=3, seed=3)


if __name__ == "__main__":
    main()
