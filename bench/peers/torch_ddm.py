#!/usr/bin/env python3
"""The routed sampler of ddm's benchmarks, written in PyTorch eager the way a researcher would.

The analytic DDM (ddm::synthetic::analytic_ddm): K clusters of isotropic Gaussian components
N(mu_j, s_j^2 I); rectified flow x_t = (1 - t) x0 + t eps. With var_j = (1 - t)^2 s_j^2 + t^2:

  log term_j(x) = log w_j - |x - (1 - t) mu_j|^2 / (2 var_j) - (D / 2) log var_j
  expert k      v = sum_{j in k} r_j (a_j x - b_j mu_j),  r = softmax over k's terms (in-cluster
                weights), a_j = (t - (1 - t) s_j^2) / var_j, b_j = t / var_j
  router        logits_k = logsumexp_{j in k} term_j / tau (overall weights)
  policy        top-k (renormalized) or the full ensemble (weights = p); the selected experts are
                evaluated on their rows only (gather, expert, index_add_), as a mixture-of-experts
                layer is usually written
  samplers      Euler and DPM-Solver++(2M) over uniform(N) from t = 1 to 0, with ddm's conventions
                (lambda = log1p(-t) - log t; 2M is first order on the step from t = 1, the next one,
                and the step into t = 0)

Batched torch ops only: |x - c mu|^2 is expanded as |x|^2 - 2 c x mu^T + c^2 |mu|^2 so that the
O(B J D) work is one matrix product (BLAS), and the expert's mean term is a product too.

Modes:
  check  --data DIR   reruns ddm's exported samples (bench/peers/export_peer_data.cpp) in float64
                      from the same noise and reports the largest difference
  time   --data DIR   times whole runs (float32, like a researcher's default) for a grid of
                      configurations and prints one JSON object per line
Both take --device (cpu or cuda) and --threads (0 = torch's default). On cuda every timed run ends
with torch.cuda.synchronize() before the clock is read, and check compares the GPU's float64
samples with ddm's (host) samples at the same tolerance.
"""

import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch


def load_safetensors(path):
    """A safetensors file as a dict of numpy arrays (plus '__metadata__'), without the package."""
    dtypes = {"F64": np.float64, "F32": np.float32, "I64": np.int64, "I32": np.int32}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {"__metadata__": header.pop("__metadata__", {})}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return out


class AnalyticDDM:
    def __init__(self, arrays, dtype, device):
        as_t = lambda a: torch.as_tensor(np.array(a), dtype=dtype, device=device)
        self.means = as_t(arrays["means"])                      # (J, D)
        self.scales = as_t(arrays["scales"])                    # (J)
        self.log_w = as_t(arrays["log_weights"])                # (J)
        self.log_cw = as_t(arrays["log_cluster_weights"])       # (J)
        self.begin = [int(b) for b in arrays["cluster_begin"]]  # (K + 1)
        self.K = len(self.begin) - 1
        self.D = self.means.shape[1]
        self.mu_sq = (self.means * self.means).sum(-1)          # (J)

    def _terms(self, x, t, comp, log_w):
        """(n, J') log terms of the components `comp` (a slice) for rows x (n, D)."""
        mu = self.means[comp]
        var = (1 - t) ** 2 * self.scales[comp] ** 2 + t * t                       # (J')
        d2 = (x * x).sum(-1, keepdim=True) - 2 * (1 - t) * (x @ mu.T) + (1 - t) ** 2 * self.mu_sq[comp]
        return log_w[comp] - 0.5 * d2 / var - 0.5 * self.D * torch.log(var), var

    def router_logits(self, x, t, tau=1.0):
        terms, _ = self._terms(x, t, slice(None), self.log_w)                      # (B, J)
        terms = terms - terms.max(-1, keepdim=True).values
        logits = torch.stack([torch.logsumexp(terms[:, self.begin[k]:self.begin[k + 1]], -1)
                              for k in range(self.K)], -1)                         # (B, K)
        return logits / tau

    def expert(self, k, x, t):
        comp = slice(self.begin[k], self.begin[k + 1])
        terms, var = self._terms(x, t, comp, self.log_cw)                          # (n, Jk)
        r = torch.softmax(terms, -1)
        s2 = self.scales[comp] ** 2
        abar = (r * (t - (1 - t) * s2) / var).sum(-1, keepdim=True)                # (n, 1)
        return abar * x - (r * (t / var)) @ self.means[comp]                      # (n, D)


def route(probs, policy):
    """(weights, selected) of shape (B, K) for a policy name."""
    if policy == "full":
        return probs, torch.ones_like(probs, dtype=torch.bool)
    k = {"top1": 1, "top2": 2}[policy]
    top = probs.topk(k, dim=-1).indices
    selected = torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, top, True)
    w = torch.where(selected, probs, torch.zeros_like(probs))
    return w / w.sum(-1, keepdim=True), selected


def routed_velocity(model, x, t, policy, tau=1.0):
    probs = torch.softmax(model.router_logits(x, t, tau), -1)
    w, selected = route(probs, policy)
    v = torch.zeros_like(x)
    for k in range(model.K):
        rows = selected[:, k].nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        vk = model.expert(k, x[rows], t)
        v.index_add_(0, rows, w[rows, k, None] * vk)
    return v


def lam(t):
    if t >= 1:
        return -math.inf
    return math.log1p(-t) - math.log(t) if t > 0 else math.inf


def euler(field, x, ts):
    for i in range(len(ts) - 1):
        x = x + (ts[i + 1] - ts[i]) * field(x, ts[i])
    return x


def dpmpp_2m(field, x, ts):
    old_d, l_prev, usable = None, None, False
    for i in range(len(ts) - 1):
        t, tn = ts[i], ts[i + 1]
        d = x - t * field(x, t)
        l = lam(t)
        a, b = tn / t, (t - tn) / t
        if tn == 0 or not usable:
            x = a * x + b * d
        else:
            c = 1 / (2 * ((l - l_prev) / (lam(tn) - l)))
            x = a * x + b * (1 + c) * d - b * c * old_d
        old_d, l_prev, usable = d, l, math.isfinite(l)
    return x


SAMPLERS = {"euler": euler, "dpm++2m": dpmpp_2m}


def uniform(n):
    """ddm::schedules::uniform(n): t_i = 1 + (0 - 1) i / n, the last exactly 0."""
    return [1.0 + (0.0 - 1.0) * i / n for i in range(n)] + [0.0]


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def check(args):
    results = []
    for name in sorted(os.listdir(args.data)):
        if not name.startswith("check_"):
            continue
        arrays = load_safetensors(os.path.join(args.data, name))
        meta = arrays["__metadata__"]
        model = AnalyticDDM(arrays, torch.float64, args.device)
        noise = torch.as_tensor(np.array(arrays["noise"]), device=args.device)
        for key in sorted(k for k in arrays if k.startswith("sample/")):
            _, solver, policy = key.split("/")
            field = lambda x, t: routed_velocity(model, x, t, policy, float(meta["tau"]))
            got = SAMPLERS[solver](field, noise.clone(), uniform(int(meta["steps"]))).cpu().numpy()
            want = arrays[key]
            diff = np.abs(got - want)
            row_ok = (diff.max(-1) <= args.tolerance * (1 + np.abs(want).max(-1)))
            results.append({"file": name, "solver": solver, "policy": policy, "max_abs_diff": float(diff.max()),
                            "rows": int(want.shape[0]), "rows_within_tolerance": int(row_ok.sum())})
    for r in results:
        print(json.dumps(r))
    bad = [r for r in results if r["rows_within_tolerance"] != r["rows"]]
    return 1 if bad or not results else 0


def time_configs(args):
    dtype = torch.float32
    configs = json.loads(args.configs)
    models = {}
    for cfg in configs:
        key = (cfg["K"], cfg["D"])
        if key not in models:
            arrays = load_safetensors(os.path.join(args.data, f"model_K{cfg['K']}_D{cfg['D']}.safetensors"))
            models[key] = AnalyticDDM(arrays, dtype, args.device)
        model = models[key]
        gen = torch.Generator(device=args.device).manual_seed(2026)
        noise = torch.randn(cfg["B"], cfg["D"], generator=gen, dtype=dtype, device=args.device)
        ts = uniform(cfg["steps"])
        field = lambda x, t: routed_velocity(model, x, t, cfg["policy"])
        sampler = SAMPLERS[cfg["solver"]]
        with torch.inference_mode():
            sampler(field, noise.clone(), ts)  # warm-up
            sync(args.device)
            runs = []
            deadline = time.perf_counter() + args.min_time
            while len(runs) < args.repeats or (time.perf_counter() < deadline and len(runs) < 100):
                t0 = time.perf_counter()
                sampler(field, noise.clone(), ts)
                sync(args.device)
                runs.append(time.perf_counter() - t0)
        out = dict(cfg)
        out.update({"threads": torch.get_num_threads(), "device": args.device, "dtype": "float32",
                    "runs": len(runs), "s_per_step_min": min(runs) / cfg["steps"],
                    "s_per_step_median": float(np.median(runs)) / cfg["steps"]})
        print(json.dumps(out), flush=True)
    return 0


def info(args):
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device,
           "float32_matmul_precision": torch.get_float32_matmul_precision(),
           "config": torch.__config__.show(), "parallel": torch.__config__.parallel_info()}
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            sys.exit("torch_ddm.py: --device cuda, but torch.cuda.is_available() is False")
        out.update({"cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(args.device),
                    "allow_tf32": torch.backends.cuda.matmul.allow_tf32})
    print(json.dumps(out))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["check", "time", "info"])
    p.add_argument("--data", help="directory written by ddm_export_peer_data")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    p.add_argument("--tolerance", type=float, default=1e-9, help="check: per-row relative tolerance")
    p.add_argument("--configs", default="[]", help="time: JSON list of {K, B, D, solver, policy, steps}")
    p.add_argument("--repeats", type=int, default=5, help="time: timed runs at least")
    p.add_argument("--min_time", type=float, default=0.5, help="time: seconds of timed runs at least")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    # float32 products in float32 (no TF32 on the GPU), as ddm computes: the default, made explicit
    # so that a site configuration cannot change what is compared.
    torch.set_float32_matmul_precision("highest")
    return {"check": check, "time": time_configs, "info": info}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
