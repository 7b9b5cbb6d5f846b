#!/usr/bin/env python3
"""A tiny fashion DDM folder with seeded random weights, and its golden outputs, for the C++
agreement tests (tests/fashion/fashion_test.cpp) while no trained folder exists, and as a small
fixture that stays when one does.

    python3 tests/fashion/make_forward_golden.py   # needs PyTorch; writes tests/fashion/golden/tiny*

The folder follows examples/03_fashion/fashion_nets.py (the contract) at a toy size (d = 8, K = 3,
width 16, depth 2); the golden file has the layout of the contract's golden files (z, expert.<k>.t<tt>,
monolith.t<tt>, router.t<tt>, oracle.t<tt>, images, features, class_logits, sample.<policy>.<integrator>),
computed here in float32 by PyTorch eager code written from the contract's formulas, independently
of the C++ code.
"""
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples", "03_fashion"))
import fashion_nets as fn  # noqa: E402

D, K, N_PER = 8, 3, 12
NET = dict(width=16, depth=2, hidden=24, frequencies=8)
CLF = dict(hidden=32, features=12)
TIMES = (1.0, 0.5, 0.05)
STEPS = 10


def main():
    torch.manual_seed(1234)
    out = os.path.join(HERE, "golden", "tiny")
    os.makedirs(out, exist_ok=True)
    half = lambda sd: {k: v.detach().to(torch.float16).contiguous() for k, v in sd.items()}
    # Weights go through F16 as the trained folders do; the golden uses the F16 values read back.
    experts = [fn.TimeMLP(D, D, **NET) for _ in range(K)]
    mono = fn.TimeMLP(D, D, **NET)
    router = fn.TimeMLP(D, K, **NET)
    clf = fn.Classifier(**CLF)
    # Non-zero LayerNorm affine and larger outputs, so that every tensor matters in the test.
    for net in experts + [mono, router]:
        with torch.no_grad():
            for name, p in net.named_parameters():
                if "norm" in name:
                    p.add_(0.2 * torch.randn_like(p))
                if name.startswith("out."):
                    p.mul_(4.0)
    mods = {f"expert_{k}.safetensors": e for k, e in enumerate(experts)}
    mods.update({"monolith.safetensors": mono, "router.safetensors": router, "classifier.safetensors": clf})
    for fname, m in mods.items():
        save_file(half(m.state_dict()), os.path.join(out, fname))
        m.load_state_dict({k: v.float() for k, v in half(m.state_dict()).items()})
        m.eval()
    comps, _ = torch.linalg.qr(torch.randn(784, D))
    pca = {"mean": 0.3 * torch.rand(784), "components": comps.T.contiguous(), "scale": 1.0 + torch.rand(D)}
    save_file(half(pca), os.path.join(out, "pca.safetensors"))
    pca = {k: v.to(torch.float16).float() for k, v in pca.items()}
    lat = torch.randn(K * N_PER, D) + 2.0 * torch.randn(K, D).repeat_interleave(N_PER, 0)
    clusters = torch.arange(K).repeat_interleave(N_PER).float()
    part = {"centroids": torch.stack([lat[clusters == k].mean(0) for k in range(K)]),
            "priors": torch.full((K,), 1.0 / K), "oracle_latents": lat, "oracle_clusters": clusters}
    save_file(half(part), os.path.join(out, "partition.safetensors"))
    part = {k: v.to(torch.float16).float() for k, v in part.items()}
    cfg = fn.make_config("tiny", "classes", D, K, NET, CLF)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

    g = {}
    z = torch.randn(16, D, generator=torch.Generator().manual_seed(0))
    g["z"] = z
    with torch.no_grad():
        for tt in TIMES:
            t = torch.tensor(tt)
            for k, e in enumerate(experts):
                g[f"expert.{k}.t{tt}"] = e(z, t)
            g[f"monolith.t{tt}"] = mono(z, t)
            g[f"router.t{tt}"] = router(z, t)
            g[f"oracle.t{tt}"] = oracle(z, tt, part)
        x = (pca["mean"] + (z * pca["scale"]) @ pca["components"]).clamp(0, 1)
        g["images"] = x
        g["features"] = clf.features(x)
        g["class_logits"] = clf(x)
        for policy in ("top1", "top2", "full"):
            for integ in ("euler", "heun"):
                g[f"sample.{policy}.{integ}"] = sample(z, experts, router, policy, integ)
    meta = {"steps": str(STEPS), "tau": "1", "seed": "0", "torch": torch.__version__, "folder": "tiny"}
    save_file({k: v.float().contiguous() for k, v in g.items()}, os.path.join(HERE, "golden", "tiny.safetensors"), meta)


def oracle(z, t, part):
    """p(k | z_t) of the empirical subsample, in log space (float64 here, as the C++ computes)."""
    zi = part["oracle_latents"].double()
    d2 = ((z.double()[:, None, :] - (1 - t) * zi[None]) ** 2).sum(-1)
    lw = -d2 / (2 * t * t)
    c = part["oracle_clusters"].long()
    lk = torch.stack([torch.logsumexp(lw[:, c == k], dim=1) for k in range(K)], 1)
    return torch.softmax(lk, 1).float()


def routed(z, t, experts, router, policy):
    p = torch.softmax(router(z, torch.tensor(t)), 1)
    if policy == "full":
        w = p
    else:
        kk = 1 if policy == "top1" else 2
        # stable sort: ties to the lowest index, as ddm's top-k
        idx = torch.sort(-p, dim=1, stable=True).indices[:, :kk]
        w = torch.zeros_like(p).scatter(1, idx, p.gather(1, idx))
        w = w / w.sum(1, keepdim=True)
    v = torch.stack([e(z, torch.tensor(t)) for e in experts], 1)  # (B, K, D)
    return (w[:, :, None] * v).sum(1)


def sample(z, experts, router, policy, integ):
    ts = [1.0 - i / STEPS for i in range(STEPS + 1)]
    x = z.clone()
    for i in range(STEPS):
        t0, t1 = ts[i], ts[i + 1]
        h = t1 - t0
        v0 = routed(x, t0, experts, router, policy)
        if integ == "euler" or t1 == 0.0:
            x = x + h * v0
        else:
            x1 = x + h * v0
            v1 = routed(x1, t1, experts, router, policy)
            x = x + 0.5 * h * (v0 + v1)
    return x


if __name__ == "__main__":
    main()
