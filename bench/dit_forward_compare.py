#!/usr/bin/env python3
"""One DiT forward on the CPU: ddm's host backend beside PyTorch, same shapes, same threads.

    python3 bench/dit_forward_compare.py [--threads N] [--build build/default] [--batches 1 4]
                                         [--also NAME=PATH ...]

Runs build/.../bench/ddm_bench_dit_forward (OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = N) and
bench/peers/dit_forward.py (torch.set_num_threads(N)) for DiT-S/2 and DiT-B/2, and prints
milliseconds per forward and the ratio ddm / PyTorch (below 1: ddm is faster). --also adds
other builds of the bench (e.g. before=/tmp/old/bench/ddm_bench_dit_forward), run in the same
alternation, so that a change is measured against PyTorch under the same load as its baseline.
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHAPES = {"DiT-S/2": 1, "DiT-B/2": 2}


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "default"))
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--min-time", default="1")
    ap.add_argument("--rounds", type=int, default=3, help="alternations of ddm and PyTorch per shape")
    ap.add_argument("--also", nargs="*", default=[], metavar="NAME=PATH",
                    help="more ddm_bench_dit_forward executables, measured in the same alternation")
    args = ap.parse_args()
    exe = os.path.join(args.build, "bench", "ddm_bench_dit_forward")
    exes = [("ddm", exe)]
    for item in args.also:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            sys.exit(f"--also {item!r}: expected NAME=PATH")
        exes.append((name, path))
    for _, path in exes:
        if not os.path.exists(path):
            sys.exit(f"{path} not found: build the target ddm_bench_dit_forward first")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.2f}")
    # Debian's OpenBLAS may not recognize the CPU and fall back to generic kernels, or take its AVX2
    # kernels on an AVX-512 CPU (Zen 4/5); the backend says so on stderr with the OPENBLAS_CORETYPE
    # that fixes it. Apply it unless it is set.
    probe = subprocess.run([exe, "--benchmark_filter=shape:0/", "--benchmark_min_time=0.001"], env=env,
                           capture_output=True, text=True)
    m = re.search(r"OPENBLAS_CORETYPE=(\w+)", probe.stderr)
    if m and "OPENBLAS_CORETYPE" not in os.environ:
        env["OPENBLAS_CORETYPE"] = m.group(1)
        print(f"note: OpenBLAS picked kernels older than this CPU; measuring with OPENBLAS_CORETYPE={m.group(1)} "
              f"(without it, ddm's GEMMs run up to several times slower)")
    rows = []
    for model, shape in SHAPES.items():
        for b in args.batches:
            ours_runs, torch_runs, label, peer = {name: [] for name, _ in exes}, [], "", None
            # Alternate the sides, so that a burst of load on a shared machine hits all of them.
            for _ in range(args.rounds):
                for name, path in exes:
                    out = subprocess.run([path, f"--benchmark_filter=shape:{shape}/batch:{b}/isa:0/",
                                          "--benchmark_format=json", f"--benchmark_min_time={args.min_time}",
                                          "--benchmark_repetitions=3"],
                                         env=env, check=True, capture_output=True, text=True).stdout
                    runs = [x for x in json.loads(out)["benchmarks"] if x.get("run_type") == "iteration"]
                    ours_runs[name] += [x["real_time"] for x in runs]
                    if name == "ddm":
                        label = runs[0].get("label", "")
                peer = json.loads(subprocess.run(
                    [sys.executable, os.path.join(HERE, "peers", "dit_forward.py"), "--model", model, "--batch", str(b),
                     "--threads", str(args.threads), "--iters", "5"], check=True, capture_output=True, text=True).stdout)
                torch_runs += peer["ms_all"]
            for name, _ in exes:
                rows.append((name, model, b, statistics.median(ours_runs[name]), min(ours_runs[name]),
                             statistics.median(torch_runs), min(torch_runs), peer))
    peer = rows[0][7]
    print(f"ddm: {label.split(', ', 1)[-1]}")
    print(f"PyTorch {peer['torch']} (BLAS {peer['blas']}, oneDNN {peer['mkldnn']}), threads: ddm {args.threads}, "
          f"PyTorch {peer['threads']}")
    if len(exes) > 1:
        print("builds: " + ", ".join(f"{name} = {path}" for name, path in exes))
    print(f"milliseconds per forward, median (best) of {3 * args.rounds} ddm and {5 * args.rounds} PyTorch runs; "
          "ratios of the medians and of the bests; GFLOP/s of the bests")
    print(f"{'build':8} {'model':9} {'batch':>5} {'ddm ms':>16} {'torch ms':>16} {'ddm/torch':>10} {'(best)':>7} "
          f"{'ddm GFLOP/s':>12} {'torch GFLOP/s':>14}")
    for name, model, b, ms, best, tms, tbest, p in rows:
        gflop = p["gflop"]
        print(f"{name:8} {model:9} {b:5d} {ms:9.1f} ({best:5.0f}) {tms:9.1f} ({tbest:5.0f}) "
              f"{ms / tms:10.2f} {best / tbest:7.2f} {gflop / best * 1e3:12.1f} {gflop / tbest * 1e3:14.1f}")
    print(f"load average after the runs: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
