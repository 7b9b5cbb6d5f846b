#!/usr/bin/env python3
"""PyTorch's forward of the same DiT as bench/dit_forward_bench.cpp (the reference module of
tests/dit/golden/make_golden.py), fp32 on the CPU, with a given thread count.

    python3 bench/peers/dit_forward.py --model DiT-S/2 --batch 1 --threads 2 [--iters 5]

Prints one JSON object: median and best milliseconds per forward, GFLOP/s (2 x MACs), the torch
version, its BLAS and the thread count.
"""
import argparse
import json
import os
import re
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "dit", "golden"))
from make_golden import DiT  # noqa: E402

SIZES = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}


def config(name):
    m = re.fullmatch(r"DiT-(S|B|L|XL)/(2|4|8)", name)
    if not m:
        raise SystemExit(f"--model {name}: expected DiT-{{S,B,L,XL}}/{{2,4,8}}")
    depth, hidden, heads = SIZES[m.group(1)]
    return dict(input_size=32, patch_size=int(m.group(2)), in_channels=4, hidden_size=hidden, depth=depth,
                num_heads=heads, mlp_ratio=4.0, num_classes=1000, null_class=True, learn_sigma=True)


def macs_per_sample(c):
    d, t, h = c["hidden_size"], (c["input_size"] // c["patch_size"]) ** 2, int(c["hidden_size"] * c["mlp_ratio"])
    p2 = c["patch_size"] ** 2
    block = 6 * d * d + t * (3 * d * d + 2 * t * d + d * d + 2 * d * h)
    return t * d * c["in_channels"] * p2 + (256 * d + d * d) + c["depth"] * block + 2 * d * d + t * d * p2 * 8


def blas_info():
    cfg = torch.__config__.show()
    m = re.search(r"BLAS_INFO=(\w+)", cfg)
    return m.group(1) if m else "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="DiT-S/2")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--iters", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c = config(args.model)
    model = DiT(c).eval()
    x = torch.randn(args.batch, 4, 32, 32)
    t = torch.full((args.batch,), 500.0)
    y = torch.arange(args.batch) * 37 % 1000
    times = []
    with torch.inference_mode():
        for i in range(args.iters + 2):
            start = time.perf_counter()
            model(x, t, y, {})
            if i >= 2:  # two warm-up passes
                times.append(time.perf_counter() - start)
    ms = 1e3 * statistics.median(times)
    print(json.dumps({
        "model": args.model, "batch": args.batch, "threads": torch.get_num_threads(),
        "ms_median": ms, "ms_best": 1e3 * min(times),
        "gflops": 2 * macs_per_sample(c) * args.batch / (ms * 1e-3) * 1e-9,
        "gflop": 2 * macs_per_sample(c) * args.batch * 1e-9, "ms_all": [1e3 * x for x in times],
        "torch": torch.__version__, "blas": blas_info(), "mkldnn": torch.backends.mkldnn.is_available(),
    }))


if __name__ == "__main__":
    main()
