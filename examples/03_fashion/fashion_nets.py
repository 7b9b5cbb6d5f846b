"""The networks of the learned Fashion-MNIST DDMs, and the on-disk format they are stored in.

This file is the contract between train.py (which writes the DDM folders) and the C++ side
(examples/03_fashion/fashion/*.hpp, which reads them): every tensor name, shape and formula the
C++ code implements is written here once. Nothing in it trains; it needs torch only.

A DDM folder (models/<name>/):
  config.json            see `make_config` below
  pca.safetensors        mean (784), components (d, 784) with orthonormal rows, scale (d) = sqrt of
                         the PCA eigenvalues: z = ((x - mean) @ components.T) / scale,
                         x = mean + (z * scale) @ components (x: 28x28 pixels in [0, 1], row-major)
  partition.safetensors  centroids (K, d): mean latent of each cluster's training images;
                         priors (K): each cluster's share of the training set;
                         oracle_latents (N, d), oracle_clusters (N, float32 cluster index): a
                         seeded subsample of the training latents, stratified so that cluster k
                         holds round(N * priors_k) of them (a sample of the training
                         distribution, priors included), for the empirical-posterior "oracle"
                         router p(k | z_t) = sum_{i in k} N(z_t; (1 - t) z_i, t^2 I) / sum_i (...)
                         (`oracle_probabilities` below; at t = 0 its limit, the nearest z_i)
                         Every tensor of this file is F32 (data, not weights).
  expert_<k>.safetensors one TimeMLP per cluster k = 0..K-1 (out_dim = d, predicts the velocity)
  monolith.safetensors   one TimeMLP of the same architecture trained on all the data
  router.safetensors     one TimeMLP with out_dim = K (logits of the cluster of x0 given z_t)
  classifier.safetensors one Classifier on clean 28x28 images (the feature space of FD)
  manifest.json          how the folder was made: command, seed, data checksums, losses, times

Rectified flow as in ddm: z_t = (1 - t) z0 + t eps, target velocity eps - z0, t in [0, 1].
"""
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

# Fashion-MNIST pixel statistics (training set, pixels in [0, 1]); the classifier's input scaling.
PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530


def timestep_embedding(t, frequencies, max_period=10000.0, time_scale=1000.0):
    """(B,) times in [0, 1] -> (B, 2 * frequencies) = [cos(a) | sin(a)],
    a_j = time_scale * t * max_period ** (-j / frequencies), j = 0 .. frequencies - 1 (DiT's order)."""
    j = torch.arange(frequencies, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(max_period) * j / frequencies)
    a = (time_scale * t.float())[:, None] * freqs[None, :]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=1)


class Block(nn.Module):
    """h + fc2(silu(fc1(LayerNorm(h)) + temb(silu(e)))): a residual MLP block, time-conditioned."""

    def __init__(self, width, hidden):
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-5)
        self.fc1 = nn.Linear(width, hidden)
        self.temb = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, h, e):
        return h + self.fc2(F.silu(self.fc1(self.norm(h)) + self.temb(F.silu(e))))


class TimeMLP(nn.Module):
    """f(z_t, t), architecture "time_mlp": experts, the monolith (out_dim = d) and the router (K).

        e = time.2(silu(time.0(timestep_embedding(t))))          (B, width)
        h = inp(z) + e                                           (B, width)
        h = blocks.i(h, e)  for i = 0 .. depth - 1
        y = out(silu(out_norm(h)))                               (B, out_dim)

    Tensor names (safetensors keys) are the module's state_dict names: inp.weight (width, in_dim),
    inp.bias, time.0.weight (width, 2F), time.0.bias, time.2.weight (width, width), time.2.bias,
    blocks.i.{norm.weight, norm.bias, fc1.weight (hidden, width), fc1.bias, temb.weight
    (hidden, width), temb.bias, fc2.weight (width, hidden), fc2.bias}, out_norm.weight,
    out_norm.bias, out.weight (out_dim, width), out.bias. nn.Linear computes x @ W.T + b.
    """

    def __init__(self, in_dim, out_dim, width, depth, hidden, frequencies):
        super().__init__()
        self.frequencies = frequencies
        self.inp = nn.Linear(in_dim, width)
        self.time = nn.Sequential(nn.Linear(2 * frequencies, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList([Block(width, hidden) for _ in range(depth)])
        self.out_norm = nn.LayerNorm(width, eps=1e-5)
        self.out = nn.Linear(width, out_dim)

    def forward(self, z, t):
        if t.dim() == 0:
            t = t.expand(z.shape[0])
        e = self.time(timestep_embedding(t, self.frequencies))
        h = self.inp(z) + e
        for b in self.blocks:
            h = b(h, e)
        return self.out(F.silu(self.out_norm(h)))


class Classifier(nn.Module):
    """Architecture "mlp_classifier" on clean images x (B, 784) in [0, 1]:

        u = (x - PIXEL_MEAN) / PIXEL_STD
        f = relu(fc2(relu(fc1(u))))        (B, features): the feature space of FD, precision, recall
        logits = fc3(f)                    (B, 10)

    Keys: fc1.weight (hidden, 784), fc1.bias, fc2.weight (features, hidden), fc2.bias,
    fc3.weight (10, features), fc3.bias.
    """

    def __init__(self, hidden=512, features=128, classes=10):
        super().__init__()
        self.fc1 = nn.Linear(784, hidden)
        self.fc2 = nn.Linear(hidden, features)
        self.fc3 = nn.Linear(features, classes)
        self.drop = nn.Dropout(0.2)

    def features(self, x):
        u = (x - PIXEL_MEAN) / PIXEL_STD
        return F.relu(self.fc2(self.drop(F.relu(self.fc1(u)))))

    def forward(self, x):
        return self.fc3(self.features(x))


def make_config(name, partition, latent_dim, num_experts, net, classifier, extra=None):
    """config.json of a DDM folder. `net` = dict(width, depth, hidden, frequencies) of every
    TimeMLP in the folder; `classifier` = dict(hidden, features)."""
    cfg = {
        "format": "ddm-fashion-ddm/1",
        "name": name,
        "partition": partition,  # "classes" or "kmeans"
        "num_experts": num_experts,
        "latent_dim": latent_dim,
        "image": {"height": 28, "width": 28, "channels": 1, "range": [0.0, 1.0]},
        "flow": "rectified: z_t = (1 - t) z0 + t eps, v = eps - z0; experts predict v",
        "time_mlp": {**net, "max_period": 10000.0, "time_scale": 1000.0, "layer_norm_eps": 1e-5},
        "classifier": {"arch": "mlp_classifier", **classifier, "classes": 10,
                       "pixel_mean": PIXEL_MEAN, "pixel_std": PIXEL_STD},
        "files": {
            "pca": "pca.safetensors",
            "partition": "partition.safetensors",
            "experts": [f"expert_{k}.safetensors" for k in range(num_experts)],
            "monolith": "monolith.safetensors",
            "router": "router.safetensors",
            "classifier": "classifier.safetensors",
        },
    }
    if extra:
        cfg.update(extra)
    return cfg


def encode(x, pca):
    """Pixels (B, 784) in [0, 1] -> latents (B, d) with the whitened PCA `pca` (a dict of tensors)."""
    return ((x - pca["mean"]) @ pca["components"].T) / pca["scale"]


def decode(z, pca):
    """Latents (B, d) -> pixels (B, 784), not clipped (callers clip to [0, 1] for images)."""
    return pca["mean"] + (z * pca["scale"]) @ pca["components"]


def oracle_probabilities(z, t, latents, clusters, num_experts):
    """The empirical posterior p(k | z_t) over the subsample (latents (N, d), clusters (N,)):
    log-weights -|z - (1 - t) z_i|^2 / (2 t^2) (the Gaussian's normalizer is the same for every i),
    summed per cluster with logsumexp, so that no weight underflows to an all-zero row.
    At t = 0 the posterior is the limit t -> 0: all mass on the cluster of the nearest z_i."""
    t = float(t)
    d2 = torch.cdist(z.double(), (1.0 - t) * latents.double()).square()    # (B, N)
    idx = clusters.long()
    if t == 0.0:
        nearest = idx[d2.argmin(dim=1)]
        return F.one_hot(nearest, num_experts).to(z.dtype)
    logw = -d2 / (2.0 * t * t)
    per_cluster = torch.full((z.shape[0], num_experts), -math.inf, dtype=torch.float64)
    for k in range(num_experts):
        sel = idx == k
        if sel.any():
            per_cluster[:, k] = torch.logsumexp(logw[:, sel], dim=1)
    return torch.softmax(per_cluster, dim=1).to(z.dtype)


def _read_f32(path):
    from safetensors.torch import load_file
    if not os.path.isfile(path):
        raise FileNotFoundError(f"DDM folder file '{path}' does not exist")
    return {k: v.float() for k, v in load_file(path).items()}


def _load_net(net, path):
    state = _read_f32(path)
    expected = set(net.state_dict().keys())
    if set(state.keys()) != expected:
        raise ValueError(f"'{path}': tensors {sorted(set(state) ^ expected)} differ from the architecture's names")
    for k, v in net.state_dict().items():
        if state[k].shape != v.shape:
            raise ValueError(f"'{path}': tensor '{k}' has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
    net.load_state_dict(state)
    return net.eval()


def load_folder(folder):
    """Read a DDM folder (F16 on disk -> f32): dict(config, pca, partition, experts, monolith,
    router, classifier). Raises naming the file and tensor when something does not match."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("format") != "ddm-fashion-ddm/1":
        raise ValueError(f"'{folder}/config.json': format {cfg.get('format')!r}, expected 'ddm-fashion-ddm/1'")
    d, K, files = cfg["latent_dim"], cfg["num_experts"], cfg["files"]
    m = cfg["time_mlp"]
    arch = dict(width=m["width"], depth=m["depth"], hidden=m["hidden"], frequencies=m["frequencies"])
    path = lambda name: os.path.join(folder, name)
    pca = _read_f32(path(files["pca"]))
    part = _read_f32(path(files["partition"]))
    experts = [_load_net(TimeMLP(d, d, **arch), path(f)) for f in files["experts"]]
    c = cfg["classifier"]
    return {
        "config": cfg,
        "pca": pca,
        "partition": part,
        "experts": experts,
        "monolith": _load_net(TimeMLP(d, d, **arch), path(files["monolith"])),
        "router": _load_net(TimeMLP(d, K, **arch), path(files["router"])),
        "classifier": _load_net(Classifier(hidden=c["hidden"], features=c["features"]), path(files["classifier"])),
    }
