#!/usr/bin/env python3
"""The cost model of expert-parallel sampling (ddm::mpi::distributed_experts), its check against
the exchange statistics of bench/distributed_bench.cpp, and a projection to a production DDM.

Model (per routed-field call, per rank; P ranks, K experts, D values of s bytes per row):

  pairs      = n * kbar                     n: the rank's rows, kbar: experts selected per row
                                            (1 top-1, 2 top-2, K full; measured otherwise)
  away       = pairs * (1 - 1/P)            a rank keeps the rows of the experts it holds; if
                                            routing does not depend on which shard a row is in,
                                            expert k's rows come from every shard alike and a
                                            1/P part stays home under ANY placement (replica
                                            shares sum to 1), so the placement moves load, not
                                            bytes
  bytes out  = away * (D s + 4)             the rows and their int32 global row indices
  bytes back = away * D s                   the velocities of the rows it evaluated for others
                                            (on average over ranks, as many as it sent away)
  plan       = (P - 1) * (K + 4) * 8        the all-to-all of per-expert row counts, call, t,
                                            placement fingerprint, width (int64)
  bytes sent per rank per call = away * (2 D s + 4) + plan    (the two agreements, one int each
                                                                way, are not counted)

Subcommands:
  check --bench-output FILE     the model against the bench's measured bytes, two ways: from the
                                measured rows sent away (an identity: it must hold to the byte,
                                on average over ranks) and a priori from n, kbar and 1 - 1/P
  check --program BENCH --mpirun MPIRUN --np P
                                runs the bench small, then the same (CTest: bench.distributed_cost)
  project                       eight DiT-XL/2 experts on eight nodes at 256 px: all-to-all time
                                against an expert's forward time, and expert parallelism against
                                replicating every expert on every node

Python standard library only.
"""

import argparse
import json
import math
import os
import subprocess
import sys

INDEX_BYTES = 4  # int32 global row index per row sent
PLAN_INTS = 4    # call, t, placement fingerprint, width, besides K counts


def bytes_per_call(away, d, s, p, k):
    return away * (2 * d * s + INDEX_BYTES) + (p - 1) * (k + PLAN_INTS) * 8


def kbar(policy, k):
    return {"top1": 1, "top2": 2, "full": k}.get(policy)


def check_rows(rows):
    """Rows of bench JSON lines -> table lines and failures."""
    out = ["| ranks | scaling | policy | placement | rows/rank | rows away/rank/step (measured) | (1 - 1/P) n kbar "
           "| bytes/rank/step measured | model from rows away | model a priori | a priori / measured |",
           "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    failures = []
    for r in rows:
        p, k, d = r["ranks"], r["experts"], r["dim"]
        s = 4  # the bench's experts are float
        measured = r["bytes_sent_per_rank_step"]
        # Over all ranks and steps the rows returned are the rows sent away: an identity in integers.
        calls = r["steps"] * p
        identity_total = (r["rows_sent_away_total"] * (2 * d * s + INDEX_BYTES) + calls * (p - 1) * (k + PLAN_INTS) * 8
                          if p > 1 else 0)
        identity = identity_total / calls
        kb = kbar(r["policy"], k)
        n = r["rows_per_rank"]
        away_prior = n * kb * (1 - 1 / p) if kb is not None else float("nan")
        prior = bytes_per_call(away_prior, d, s, p, k) if p > 1 else 0.0
        if identity_total != r["bytes_sent_total"]:
            failures.append(f"{p} ranks {r['policy']} {r['placement']}: measured {r['bytes_sent_total']:.0f} bytes over "
                            f"ranks and steps, the model from the rows sent away gives {identity_total:.0f}")
        ratio = prior / measured if measured > 0 else float("nan")
        out.append(f"| {p} | {r['scaling']} | {r['policy']} | {r['placement']} | {n:g} | "
                   f"{r['rows_sent_away_per_rank_step']:.1f} | {away_prior:.1f} | {measured:,.0f} | {identity:,.0f} | "
                   f"{prior:,.0f} | {ratio:.3f} |")
    return out, failures


def run_bench(program, mpirun, np_):
    cmd = [mpirun]
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version or "OpenRTE" in version:
        cmd += ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    cmd += ["-np", str(np_), program, "--rows", "40", "--dim", "24", "--hidden", "32", "--steps", "3"]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}\n{p.stderr[-3000:]}")
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def cmd_check(a):
    if a.bench_output:
        with open(a.bench_output) as f:
            rows = [json.loads(line) for line in f if line.startswith("{")]
    else:
        if not a.mpirun:
            print("skipped: no MPI (ddm::mpi absent)")
            return 77
        rows = run_bench(a.program, a.mpirun, a.np)
    if not rows:
        sys.exit("FAIL: no bench results")
    table, failures = check_rows(rows)
    print("\n".join(table))
    if failures:
        print("FAIL\n" + "\n".join(failures))
        return 1
    print("ok: the measured bytes are the model's, to the byte, given the rows sent away")
    return 0


def cmd_table(a):
    """The scaling tables of bench/distributed.sh's results, then the model's check."""
    with open(a.bench_output) as f:
        entries = [json.loads(line) for line in f if line.startswith("{")]
    runs = [e for e in entries if "policy" in e]
    out = []
    for e in entries:
        if "machine" in e:
            out.append(f"Machine: {e['machine']}, {e['openblas_threads_per_rank']} OpenBLAS thread per rank.")
    for scaling in ("weak", "strong"):
        out.append("")
        out.append(f"{scaling} scaling ({'rows per rank fixed' if scaling == 'weak' else 'rows in all fixed'}); "
                   "load averages (1, 5, 15 min) before each group:")
        for e in entries:
            if "uptime" in e and e["before"].startswith(scaling):
                out.append(f"- {e['before']}, repeat {e.get('repeat', 1)}: {e['uptime']}")
        out.append("")
        out.append("| ranks | rows | policy | placement | step (ms): fastest repeat | slowest | vs 1 rank (fastest) | "
                   "exchange share | load max/mean | predicted from profile | bytes sent/rank/step |")
        out.append("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
        groups = {}
        for r in runs:
            if r["scaling"] == scaling:
                groups.setdefault((r["ranks"], r["policy"], r["placement"]), []).append(r)
        fastest = {key: min(g, key=lambda r: r["step_seconds_median"]) for key, g in groups.items()}
        for (ranks, policy, placement), g in groups.items():
            r = fastest[(ranks, policy, placement)]
            slow = max(x["step_seconds_median"] for x in g)
            b = fastest.get((1, policy, placement))
            rel = f"{r['step_seconds_median'] / b['step_seconds_median']:.2f}x" if b else "-"
            note = " (oversubscribed)" if ranks > os.cpu_count() else ""
            out.append(f"| {ranks}{note} | {r['rows']} | {policy} | {placement} | "
                       f"{r['step_seconds_median'] * 1e3:.1f} | {slow * 1e3:.1f} | {rel} | {r['exchange_share']:.2f} | "
                       f"{r['load_max_over_mean']:.2f} | {r['predicted_load_max_over_mean']:.2f} | "
                       f"{r['bytes_sent_per_rank_step']:,.0f} |")
    out.append("")
    table, failures = check_rows(runs)
    out += ["The cost model against the measured bytes:", ""] + table
    print("\n".join(out))
    if failures:
        print("FAIL\n" + "\n".join(failures))
        return 1
    return 0


# ---------------------------------------------------------------------------------------------
# The projection.

# DiT-XL/2 (Peebles & Xie, "Scalable Diffusion Models with Transformers", 2023): hidden 1152,
# depth 28, 16 heads, MLP ratio 4, patch 2, 256 px images as 32x32x4 latents -> 256 tokens.
DIT_XL2 = dict(hidden=1152, depth=28, mlp_ratio=4, patch=2, latent=(4, 32, 32), params=675e6)


def dit_macs(c):
    """Multiply-accumulates of one forward on one image, from the architecture."""
    ch, h, w = c["latent"]
    tokens = (h // c["patch"]) * (w // c["patch"])
    e = c["hidden"]
    per_token = 4 * e * e + 2 * c["mlp_ratio"] * e * e      # qkv + projection, MLP
    attention = 2 * tokens * tokens * e                     # scores and the weighted sum
    adaln = e * 6 * e                                       # per image: six modulation vectors
    blocks = c["depth"] * (tokens * per_token + attention + adaln)
    embed = tokens * (ch * c["patch"] ** 2) * e             # patch embedding
    final = tokens * e * (c["patch"] ** 2 * 2 * ch) + e * 2 * e  # final linear (mean, variance) + its adaLN
    return blocks + embed + final, tokens


def cmd_project(a):
    c = DIT_XL2
    macs, tokens = dit_macs(c)
    flops = 2 * macs
    d = c["latent"][0] * c["latent"][1] * c["latent"][2]
    k = p = 8
    w_bytes = c["params"] * 2  # bf16 weights
    peak, eff, hbm = a.peak_tflops * 1e12, a.efficiency, a.hbm_tbs * 1e12
    t_row = flops / (peak * eff)      # one image through one expert, compute-bound
    t_weights = w_bytes / hbm         # reading one expert's weights once
    lines = []
    lines.append(f"DiT-XL/2 at 256 px: {tokens} tokens, {macs / 1e9:.1f} G multiply-accumulates per image forward "
                 f"(the DiT paper's '118.6 Gflops' counts these) = {flops / 1e9:.0f} GFLOP; "
                 f"{c['params'] / 1e6:.0f} M parameters = {w_bytes / 1e9:.2f} GB in bf16")
    lines.append(f"GPU assumed: {a.peak_tflops:g} TFLOP/s dense bf16 peak (NVIDIA H100 SXM5 datasheet), {eff:.0%} of it "
                 f"achieved -> {t_row * 1e3:.3f} ms per image per expert; HBM {a.hbm_tbs:g} TB/s -> "
                 f"{t_weights * 1e3:.3f} ms to read one expert's weights")
    lines.append(f"per row: D = {d} values (32x32x4 latent); all-to-all latency assumed {a.latency_us:g} us per "
                 f"collective phase, {a.phases} phases per call (plan, agreement, rows out, agreement, rows back)")
    lines.append("")
    lines.append("| link | dtype | policy | rows/node/call B | bytes/node/call | all-to-all (ms) | expert forward (ms) "
                 "| all-to-all / forward |")
    lines.append("|---|---|---|---:|---:|---:|---:|---:|")
    for gbps in (100, 400):
        bw = gbps * 1e9 / 8
        for s, name in ((2, "bf16"), (4, "fp32")):
            for policy in ("top1", "top2", "full"):
                for b in (1, 16, 128):
                    kb = kbar(policy, k)
                    away = b * kb * (1 - 1 / p)
                    nbytes = bytes_per_call(away, d, s, p, k)
                    # each node sends and receives the same amount; on a non-blocking fabric the
                    # phases run at the node's link rate
                    t_comm = nbytes / bw + a.phases * a.latency_us * 1e-6
                    t_fwd = max(b * kb * t_row, t_weights)  # the node's expert on its B kbar rows (balanced)
                    lines.append(f"| {gbps} Gb/s | {name} | {policy} | {b} | {nbytes:,.0f} | {t_comm * 1e3:.4f} | "
                                 f"{t_fwd * 1e3:.3f} | {t_comm / t_fwd:.4f} |")
    lines.append("")
    # Expert parallelism (one expert per node, rows exchanged) against replication (all K experts on
    # every node, each node evaluating its own rows). Same FLOPs; replication runs each expert on
    # B kbar / K rows (balanced routing), so at small B each of those calls reads a whole expert's
    # weights; expert parallelism pays the all-to-all and the slowest node's load (max / mean =
    # lambda, from the bench or from routing statistics).
    lines.append("Expert parallelism (EP: one expert per node) against replication (REP: all 8 experts on every node), "
                 "per routed-field call, bf16, 100 Gb/s; lambda = the busiest node's load over the mean under EP:")
    lines.append("")
    lines.append("| policy | rows/node/call B | REP (ms) | EP, lambda = 1 (ms) | EP, lambda = 1.3 (ms) | EP, lambda = 2 (ms) | "
                 "faster |")
    lines.append("|---|---:|---:|---:|---:|---:|---|")
    bw = 100e9 / 8

    def t_rep(b, kb, overhead=0.0):
        # the node's B kbar (row, expert) pairs spread over min(K, B kbar) experts, each call at
        # least one read of that expert's weights and the fixed cost of a forward call
        active = min(k, b * kb)
        return active * (max(b * kb / active * t_row, t_weights) + overhead)

    def t_ep(b, kb, lam, overhead=0.0):
        # the node's one expert on the B kbar rows all nodes route to it (P = K, balanced), the
        # busiest node lam times the mean, plus the all-to-all
        comm = bytes_per_call(b * kb * (1 - 1 / p), d, 2, p, k) / bw + a.phases * a.latency_us * 1e-6
        return max(lam * b * kb * t_row, t_weights) + overhead + comm

    def upto(b):
        return "256 (every B tried)" if b == 256 else str(b)

    crossover = {}
    for policy in ("top1", "top2", "full"):
        kb = kbar(policy, k)
        for b in (1, 2, 4, 8, 16, 64):
            rep = t_rep(b, kb)
            ep = [t_ep(b, kb, lam) for lam in (1.0, 1.3, 2.0)]
            best = "EP" if ep[1] < rep else "REP"
            lines.append(f"| {policy} | {b} | {rep * 1e3:.3f} | {ep[0] * 1e3:.3f} | {ep[1] * 1e3:.3f} | {ep[2] * 1e3:.3f} | "
                         f"{best} (lambda 1.3) |")
        crossover[policy] = (max([b for b in range(1, 257) if t_ep(b, kb, 1.0) < t_rep(b, kb)], default=0),
                             max([b for b in range(1, 257) if t_ep(b, kb, 1.0, a.call_overhead_ms * 1e-3) <
                                  t_rep(b, kb, a.call_overhead_ms * 1e-3)], default=0),
                             max([b for b in range(1, 257) if t_ep(b, kb, 1.3, a.call_overhead_ms * 1e-3) <
                                  t_rep(b, kb, a.call_overhead_ms * 1e-3)], default=0))
    lines.append("")
    lines.append("Largest rows per node per call B at which EP is faster than REP (0: never): " +
                 "; ".join(f"{pol}: B <= {upto(v[0])} (lambda 1, no call overhead), B <= {upto(v[1])} (lambda 1, "
                           f"{a.call_overhead_ms:g} ms fixed cost per forward call), B <= {upto(v[2])} (lambda 1.3, "
                           f"{a.call_overhead_ms:g} ms)" for pol, v in crossover.items()) +
                 f". Memory: REP holds {k} x {w_bytes / 1e9:.2f} = {k * w_bytes / 1e9:.1f} GB of weights per GPU, "
                 f"EP {w_bytes / 1e9:.2f} GB.")
    print("\n".join(lines))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--bench-output")
    c.add_argument("--program")
    c.add_argument("--mpirun", default="")
    c.add_argument("--np", type=int, default=2)
    t = sub.add_parser("table")
    t.add_argument("--bench-output", required=True)
    pr = sub.add_parser("project")
    pr.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100 SXM5: 989)")
    pr.add_argument("--efficiency", type=float, default=0.4, help="share of the peak a DiT forward achieves")
    pr.add_argument("--hbm-tbs", type=float, default=3.35, help="HBM bandwidth, TB/s (H100 SXM5: 3.35)")
    pr.add_argument("--latency-us", type=float, default=10.0, help="latency of one collective phase between nodes")
    pr.add_argument("--phases", type=int, default=5)
    pr.add_argument("--call-overhead-ms", type=float, default=2.0,
                    help="fixed cost of one expert forward call (kernel launches of an eager 28-block DiT), for the "
                         "second crossover")
    a = ap.parse_args()
    return {"check": cmd_check, "table": cmd_table, "project": cmd_project}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
