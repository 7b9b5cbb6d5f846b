#!/usr/bin/env python3
"""PyTorch's forward of the same DiT as bench/dit_forward_bench.cpp and bench/dit_cuda_bench.cu
(the reference module of tests/dit/golden/make_golden.py: timm-style attention through
F.scaled_dot_product_attention), on the CPU or a CUDA device.

    python3 bench/peers/dit_forward.py --model DiT-S/2 --batch 1 --threads 2 [--iters 5]
    python3 bench/peers/dit_forward.py --device cuda --dtype bf16 --model DiT-XL/2 --batch 8
    python3 bench/peers/dit_forward.py --device cuda --dtype bf16 --model DiT-XL/2 --batch 8 \\
        --compare build/default/bench/ddm_bench_dit_cuda

Without --compare it prints one JSON object: median and best milliseconds per forward, GFLOP/s
(2 x the multiply-accumulates), the torch version, its BLAS and the thread count (CPU) or the
card (CUDA).

--dtype bf16 / f16 (CUDA only) times the model converted to that dtype (weights and activations,
PyTorch's usual half-precision inference; the timestep frequencies are cast to the model's dtype
before its first Linear). f32 keeps TF32 off in matrix products and convolutions unless --tf32.

--compare EXE writes the model's weights (rounded to --dtype, saved in that dtype) and inputs to
safetensors files, runs `EXE --forward` (ddm's CUDA backend with --dtype as its weight storage) on
them, and prints both times, their ratio, the TFLOP/s of each, and the error of each output
against the float32 forward of the same rounded weights (TF32 off), then one JSON line.
"""
import argparse
import copy
import json
import math
import os
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "dit", "golden"))
import make_golden  # noqa: E402
from make_golden import DiT  # noqa: E402

SIZES = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


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


def timestep_forward(self, t):
    # The reference module's embedding with two changes for a device and half precision: the
    # frequencies are computed on the CPU (as there, and as ddm does) and moved to t's device, and
    # the embedding is cast to the model's dtype before its first Linear (the original DiT has the
    # same limitation without autocast).
    half = self.freq // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(0, half, dtype=torch.float32, device="cpu") / half)
    args = t[:, None].float() * freqs.to(t.device)[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return self.mlp(emb.to(self.mlp[0].weight.dtype))


make_golden.TimestepEmbedder.forward = timestep_forward


def inputs(c, batch, device):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 4, c["input_size"], c["input_size"], generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g).float()
    y = torch.arange(batch) * 37 % 1000
    return x.to(device), t.to(device), y.to(device)


def time_cpu(model, x, t, y, iters):
    times = []
    with torch.inference_mode():
        for i in range(iters + 2):
            start = time.perf_counter()
            model(x, t, y, {})
            if i >= 2:  # two warm-up passes
                times.append(time.perf_counter() - start)
    return [1e3 * s for s in times]


def time_cuda(model, x, t, y, iters):
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ms = []
    with torch.inference_mode():
        for i in range(iters + 3):
            start.record()
            model(x, t, y, {})
            stop.record()
            stop.synchronize()
            if i >= 3:  # three warm-up passes
                ms.append(start.elapsed_time(stop))
    return ms


# A minimal safetensors writer and reader (the format of huggingface/safetensors: a little-endian
# u64 header length, a JSON header padded with spaces, the tensors' bytes contiguous from offset 0),
# so that the comparison needs no package beyond torch.
ST_NAMES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}


def save_tensors(tensors, path):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": ST_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def load_f32(path, name):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        info = header[name]
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: tensor '{name}' is {info['dtype']}, expected F32")
        begin, end = info["data_offsets"]
        f.seek(8 + n + begin)
        data = bytearray(f.read(end - begin))
    return torch.frombuffer(data, dtype=torch.float32).reshape(info["shape"])


def error(got, ref):
    d = (got.double() - ref.double())
    return {"max_abs": d.abs().max().item(), "rel_l2": (d.norm() / ref.double().norm()).item()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="DiT-S/2")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="f32", choices=list(DTYPES))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--iters", type=int, default=None, help="timed forwards (default 7 on the CPU, 20 on CUDA)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in float32 products (default off)")
    ap.add_argument("--compare", metavar="EXE", help="ddm_bench_dit_cuda: run its --forward on the same weights")
    ap.add_argument("--workdir", help="where --compare writes its files (default: a temporary directory)")
    args = ap.parse_args()
    if args.device == "cpu" and (args.dtype != "f32" or args.compare):
        raise SystemExit("--dtype bf16 / f16 and --compare need --device cuda")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False")
    iters = args.iters or (7 if args.device == "cpu" else 20)
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32  # the patch embedding is a convolution
    torch.manual_seed(0)
    c = config(args.model)
    dtype = DTYPES[args.dtype]
    with torch.device(args.device):
        ref = DiT(c)
    ref = ref.to(args.device).eval()
    flop = 2 * macs_per_sample(c) * args.batch
    x, t, y = inputs(c, args.batch, args.device)

    if args.device == "cpu":
        ms = time_cpu(ref, x, t, y, iters)
        print(json.dumps({
            "model": args.model, "batch": args.batch, "threads": torch.get_num_threads(),
            "ms_median": statistics.median(ms), "ms_best": min(ms),
            "gflops": flop / (statistics.median(ms) * 1e-3) * 1e-9, "gflop": flop * 1e-9, "ms_all": ms,
            "torch": torch.__version__, "blas": blas_info(), "mkldnn": torch.backends.mkldnn.is_available(),
        }))
        return

    # The float32 reference holds the weights rounded to the compared dtype, so that every side
    # computes with the same numbers; the timed model is that reference converted to the dtype.
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(p.to(dtype).float())
    timed = ref if dtype == torch.float32 else copy.deepcopy(ref).to(dtype)
    xt = x.to(dtype)
    ms = time_cuda(timed, xt, t, y, iters)
    card = torch.cuda.get_device_name()
    result = {"model": args.model, "batch": args.batch, "dtype": args.dtype, "tf32": args.tf32, "device": card,
              "torch": torch.__version__, "torch_ms_median": statistics.median(ms), "torch_ms_best": min(ms),
              "torch_tflops": flop / (statistics.median(ms) * 1e-3) * 1e-12, "torch_ms_all": ms}
    if not args.compare:
        print(json.dumps(result))
        return

    with torch.inference_mode():
        want = ref(x, t, y, {}).float()
        torch_out = timed(xt, t, y, {}).float()
    result["torch_error"] = error(torch_out, want)
    work = args.workdir or tempfile.mkdtemp(prefix="ddm_dit_compare_")
    os.makedirs(work, exist_ok=True)
    weights = os.path.join(work, "weights.safetensors")
    ins = os.path.join(work, "inputs.safetensors")
    out = os.path.join(work, "output.safetensors")
    save_tensors({k: v.to(dtype) for k, v in ref.state_dict().items()}, weights)
    save_tensors({"x": x.float(), "t": t.float(), "y": y.float()}, ins)
    cmd = [args.compare, "--forward", "--model", args.model, "--batch", str(args.batch), "--storage", args.dtype,
           "--weights", weights, "--inputs", ins, "--output", out, "--iters", str(iters)]
    if args.tf32:
        cmd.append("--tf32")
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.stderr.write(run.stderr)
        raise SystemExit(f"{' '.join(cmd)} failed with status {run.returncode}")
    ours = json.loads(run.stdout.strip().splitlines()[-1])
    got = load_f32(out, "output").to(want.device)
    result.update({"ddm_ms_median": ours["ms_median"], "ddm_ms_best": ours["ms_best"],
                   "ddm_tflops": flop / (ours["ms_median"] * 1e-3) * 1e-12, "ddm_ms_all": ours["ms_all"],
                   "ddm_error": error(got, want), "ratio": ours["ms_median"] / result["torch_ms_median"]})
    if not args.workdir:
        for f in (weights, ins, out):
            os.remove(f)
        os.rmdir(work)
    e, te = result["ddm_error"], result["torch_error"]
    print(f"{args.model} batch {args.batch} {args.dtype} on {card} (PyTorch {torch.__version__}, TF32 "
          f"{'on' if args.tf32 else 'off'}): ddm {ours['ms_median']:.2f} ms ({result['ddm_tflops']:.1f} TFLOP/s) | "
          f"PyTorch {result['torch_ms_median']:.2f} ms ({result['torch_tflops']:.1f} TFLOP/s) | "
          f"ddm/PyTorch {result['ratio']:.2f}")
    print(f"  error against the float32 forward of the same weights: ddm max abs {e['max_abs']:.2e} rel L2 "
          f"{e['rel_l2']:.2e} | PyTorch {args.dtype} max abs {te['max_abs']:.2e} rel L2 {te['rel_l2']:.2e}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
