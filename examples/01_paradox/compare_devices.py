#!/usr/bin/env python3
"""ddm-paradox on a GPU against the host (Python standard library only).

    compare_devices.py --program PATH --work DIR
        runs the same small configuration in float with --device cuda and --device cpu and compares
        the two runs: sample by sample (samples.csv: each sample's NLL and integrated
        disagreement), every policy's quality, stability, alignment, disagreement and cost numbers
        within the tolerances below, and the verdicts wherever their margins are not razor thin.
        Exits 77 (CTest's SKIP_RETURN_CODE) when the program reports no usable CUDA device.
    compare_devices.py --program PATH --no-gpu
        --device cuda on a machine (or with CUDA_VISIBLE_DEVICES=-1) without a usable GPU: exit
        code 2, one line on stderr naming CUDA, nothing on stdout.
    compare_devices.py --program PATH --work DIR --candidate OTHER --candidate-device cpu
        the same comparison between two host builds (for instance one compiled with
        -march=native, whose FMA contractions round like the device's): checks the tolerances
        without a GPU.

Why the runs can differ at all: both sample in float from the same Philox noise (equal or adjacent
floats), through the analytic DDM's per-row code in double rounded to float (equal or adjacent
floats, the device's exp and log being within 2 ulp of double), with updates that nvcc contracts
into FMAs where the host rounds twice, and the disagreement through Gram matrices in float on the
device (the host subtracts directly). The runs therefore differ by a few float ulps per step,
grown by the flow over the steps. A host build compiled with -march=native, whose FMA
contractions round like the device's, differs from the plain host build by at most 3e-5 (NLL per
sample, relative to 1 + |NLL|), 7e-8 (Frechet distance, relative), 3e-6 (cumulative IQR of L_eff,
relative), 3e-8 (Delta_refine), 6e-5 (amplification, relative), and not at all in ranks and
Spearman's rho (--candidate below). The tolerances leave 30x or more above that:

  exact        field and expert evaluations, relative cost, the number of L_eff steps, and the
               observed run reproducing the plain run bit for bit on each device (counts do not
               depend on rounding: every policy evaluates a fixed number of experts per row)
  per sample   NLL within 1e-3 (1 + |NLL|), integrated disagreement within 1e-3 relative; a
               sample outside is "diverged": a routing decision at a near-tie (probabilities a
               float ulp apart) went the other way, and the two runs followed different experts
               from there. At most 1% of a policy's samples may diverge
  quality      Frechet distance 1e-4 relative; NLL 1e-4 (1 + |NLL|); coverage, precision and
               cluster coverage within one sample (1/n)
  stability    L_eff median and cumulative IQR 2e-4 relative (central differences in float: one
               ulp in v moves J u by ulp / h, h ~ cbrt(eps_float) ~ 5e-3 of the state, ~1e-5);
               Delta_refine 1e-4 absolute (in units of the data's RMS); amplification median
               2e-3 relative (the perturbation is 1e-3 of the noise, so state differences of 1e-6
               are already 1e-3 of its response)
  alignment    mean rank 1e-2 absolute (a rank changes only when two centroids are nearly
               equidistant from a sample); angular gap 1e-4 absolute
  disagreement integrated mean 2e-4 relative (the Gram route in float: D eps (|v_a| + |v_b|)^2 /
               d_ab^2 per pair, ~1e-5 for the analytic DDM's experts); Spearman rho 5e-3 absolute
               (two nearly equal scores may swap ranks)
When a policy has diverged samples, the numbers a single sample can move (means over samples,
the Frechet distance, coverage, Delta_refine) are reported and not compared; the rest still are.

Verdicts must be the same on both devices wherever every comparison a verdict rests on is
separated, in the host run, by at least 4 x the tolerance at those values and at least 2e-3
relative; thinner ones are listed as not compared.
"""

import argparse
import csv
import json
import os
import subprocess
import sys

SMALL = ["--samples", "256", "--steps", "8", "--permutations", "199", "--bootstrap", "50", "--precision", "float",
         "--quiet"]
NO_GPU_EXIT = 2
SKIP = 77

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def run(program, device, work, name):
    os.makedirs(work, exist_ok=True)
    json_path = os.path.join(work, name + ".json")
    out_dir = os.path.join(work, name)
    cmd = [program, "--device", device] + SMALL + ["--json", json_path, "--out", out_dir]
    print("running:", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r, json_path, out_dir


def load_samples(out_dir):
    """policy -> list of (integrated disagreement, nll) per sample, in sample order."""
    per = {}
    with open(os.path.join(out_dir, "samples.csv"), newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            per.setdefault(row["policy"], []).append((float(row["integrated_disagreement"]), float(row["nll"])))
    return per


# (path in a policy's JSON, kind, tolerance, moved by a single sample)
#   rel: |a - b| <= tol * max(|a|, |b|)      abs: |a - b| <= tol      nll: |a - b| <= tol * (1 + |a|)
#   per_n: |a - b| <= tol / n                exact: a == b
CHECKS = [
    ("quality.frechet", "rel", 1e-4, True),
    ("quality.nll", "nll", 1e-4, True),
    ("quality.coverage", "per_n", 1.0, True),
    ("quality.precision", "per_n", 1.0, True),
    ("quality.cluster_coverage", "per_n", 1.0, True),
    ("stability.l_eff_median", "rel", 2e-4, False),
    ("stability.l_eff_cumulative_iqr", "rel", 2e-4, False),
    ("stability.delta_refine", "abs", 1e-4, True),
    ("stability.amplification_median", "rel", 2e-3, False),
    ("alignment.mean_rank", "abs", 1e-2, False),
    ("alignment.angular_gap", "abs", 1e-4, False),
    ("disagreement.integrated_mean", "rel", 2e-4, True),
    ("disagreement.spearman.rho", "abs", 5e-3, False),
    ("cost.field_evaluations", "exact", 0, False),
    ("cost.expert_evaluations_per_sample", "exact", 0, False),
    ("cost.relative_cost", "exact", 0, False),
    ("cost.diagnostic_expert_evaluations_per_sample", "exact", 0, False),
]
TOLERANCE = {path: (kind, tol) for path, kind, tol, _ in CHECKS}


def get(doc, path):
    for part in path.split("."):
        doc = doc[part]
    return doc


def allowed(kind, tol, a, b, n):
    """The largest |a - b| the tolerance accepts at these values."""
    if kind == "exact":
        return 0.0
    if kind == "rel":
        return tol * max(abs(a), abs(b))
    if kind == "nll":
        return tol * (1 + abs(a))
    if kind == "per_n":
        return tol / n
    return tol


def within(kind, tol, a, b, n):
    if a is None or b is None:
        return a is None and b is None
    if kind == "exact":
        return a == b
    return abs(a - b) <= allowed(kind, tol, a, b, n) * (1 + 1e-12)


def compare_samples(ref, cand):
    """policy -> number of diverged samples."""
    diverged = {}
    for key, rs in ref.items():
        cs = cand.get(key)
        if cs is None or len(cs) != len(rs):
            fail("samples.csv: policy %s has %s samples on the candidate, %d on the host"
                 % (key, None if cs is None else len(cs), len(rs)))
            diverged[key] = len(rs)
            continue
        bad = []
        worst_nll = worst_dis = 0.0
        for i, ((ri, rn), (ci, cn)) in enumerate(zip(rs, cs)):
            dn = abs(rn - cn) / (1 + abs(rn))
            di = abs(ri - ci) / max(abs(ri), abs(ci), 1e-300)
            if dn > 1e-3 or di > 1e-3:
                bad.append(i)
            else:
                worst_nll = max(worst_nll, dn)
                worst_dis = max(worst_dis, di)
        diverged[key] = len(bad)
        print("[ measured ] %-15s samples: %d of %d diverged%s; the others within %.1e (NLL, relative to 1 + |NLL|) "
              "and %.1e (integrated disagreement, relative)"
              % (key, len(bad), len(rs), (" " + str(bad[:10])) if bad else "", worst_nll, worst_dis))
        if len(bad) > 0.01 * len(rs):
            fail("policy %s: %d of %d samples diverged (more than 1%%)" % (key, len(bad), len(rs)))
    return diverged


def compare_numbers(ref, cand, n, diverged):
    for key, rp in ref["policies"].items():
        cp = cand["policies"].get(key)
        if cp is None:
            fail("policy %s is missing on the candidate" % key)
            continue
        for side, p in (("host", rp), ("candidate", cp)):
            if not p["observed_run_bit_identical"]:
                fail("%s: the observed run did not reproduce the plain run on the %s" % (key, side))
        if len(rp["stability"]["l_eff_steps"]) != len(cp["stability"]["l_eff_steps"]):
            fail("%s: %d L_eff steps on the host, %d on the candidate"
                 % (key, len(rp["stability"]["l_eff_steps"]), len(cp["stability"]["l_eff_steps"])))
        for path, kind, tol, single in CHECKS:
            a, b = get(rp, path), get(cp, path)
            if single and diverged.get(key, 0) > 0:
                print("  %-15s %-46s host %-12s candidate %-12s (not compared: %d diverged samples)"
                      % (key, path, fmt(a), fmt(b), diverged[key]))
                continue
            ok = within(kind, tol, a, b, n)
            diff = None if a is None or b is None else abs(a - b)
            print("  %-15s %-46s host %-12s candidate %-12s |diff| %-10s %s %g %s"
                  % (key, path, fmt(a), fmt(b), fmt(diff), kind, tol, "ok" if ok else "FAIL"))
            if not ok:
                fail("%s %s: host %r, candidate %r (%s tolerance %g)" % (key, path, a, b, kind, tol))


def fmt(v):
    return "null" if v is None else ("%.6g" % v if isinstance(v, (int, float)) else str(v))


def separation(path, a, b, n):
    """How far apart a and b are, in units of what a verdict on them needs: >= 1 is wide enough."""
    kind, tol = TOLERANCE[path]
    needed = max(4 * allowed(kind, tol, a, b, n), 2e-3 * max(abs(a), abs(b)), 1e-300)
    return abs(a - b) / needed


def verdict_margins(doc, k, n):
    """verdict -> the thinnest separation among the comparisons it rests on (None: not evaluated)."""
    pol = doc["policies"]
    full = pol.get("full")
    top2 = pol.get("top2")
    others = [p for key, p in pol.items() if key != "full"]
    out = {}

    def against(path, group):
        if full is None or not group:
            return None
        return min(separation(path, get(full, path), get(o, path), n) for o in group)

    out["lowest_delta_refine"] = against("stability.delta_refine", others)
    out["lowest_l_eff"] = against("stability.l_eff_median", others)
    out["worst_quality"] = against("quality.frechet", others)
    out["lowest_cumulative_iqr"] = against("stability.l_eff_cumulative_iqr", others)
    out["lowest_amplification"] = against("stability.amplification_median", others)
    parts = [out["lowest_delta_refine"], out["lowest_l_eff"], out["worst_quality"]]
    out["paradox"] = None if None in parts else min(parts)
    if top2 is None or full is None:
        out["paradox_vs_top2"] = None
    else:
        out["paradox_vs_top2"] = min(against(p, [top2]) for p in
                                     ("stability.delta_refine", "stability.l_eff_median", "quality.frechet"))
    full_rank = full["alignment"]["mean_rank"] if full is not None and full["alignment"]["mean_rank"] is not None \
        else (k + 1) / 2
    ranks = [pol[key]["alignment"]["mean_rank"] for key in ("top1", "top2") if key in pol]
    out["sparse_better_aligned"] = None if not ranks or None in ranks else \
        min(separation("alignment.mean_rank", r, full_rank, n) for r in ranks)
    gap = top2["alignment"]["angular_gap"] if top2 is not None else None
    out["selected_experts_closer"] = None if gap is None else separation("alignment.angular_gap", gap, 0.0, n)
    mono = []
    for key, p in pol.items():
        q = [b["nll_mean"] for b in p["disagreement"]["quartiles"]]
        m = min(separation("quality.nll", q[i], q[i - 1], n) for i in range(1, len(q)))
        out["monotonic:" + key] = m
        mono.append(m)
    out["quality_falls_with_disagreement"] = min(mono) if mono else None
    return out


def compare_verdicts(ref, cand, k, n):
    margins = verdict_margins(ref, k, n)
    compared = thin = 0
    for key, m in sorted(margins.items()):
        if key.startswith("monotonic:"):
            policy = key.split(":", 1)[1]
            a = ref["verdicts"]["monotonic_by_policy"].get(policy)
            b = cand["verdicts"]["monotonic_by_policy"].get(policy)
        else:
            a, b = ref["verdicts"].get(key), cand["verdicts"].get(key)
        if m is None or m >= 1:
            compared += 1
            same = a == b
            print("  verdict %-34s host %-5s candidate %-5s margin %s %s"
                  % (key, a, b, "n/a" if m is None else "%.1fx" % m, "ok" if same else "FAIL"))
            if not same:
                fail("verdict %s: host %r, candidate %r (separation %s times the needed one)" % (key, a, b, m))
        else:
            thin += 1
            print("  verdict %-34s host %-5s candidate %-5s margin %.2fx: razor thin, not compared" % (key, a, b, m))
    print("[ measured ] verdicts: %d compared, %d razor thin" % (compared, thin))


def compare(program, candidate, device, work):
    cand_run, cand_json, cand_out = run(candidate, device, work, device if candidate == program else "candidate")
    if cand_run.returncode == NO_GPU_EXIT and "no usable CUDA device" in cand_run.stderr:
        print("SKIPPED: " + cand_run.stderr.strip())
        sys.exit(SKIP)
    if cand_run.returncode != 0:
        fail("candidate run: exit %d: %s" % (cand_run.returncode, cand_run.stderr))
        return
    ref_run, ref_json, ref_out = run(program, "cpu", work, "host")
    if ref_run.returncode != 0:
        fail("host run: exit %d: %s" % (ref_run.returncode, ref_run.stderr))
        return
    print(cand_run.stdout.splitlines()[2] if cand_run.stdout else "")
    with open(ref_json, encoding="utf-8") as f:
        ref = json.load(f)
    with open(cand_json, encoding="utf-8") as f:
        cand = json.load(f)
    for key in ("clusters", "dim", "samples", "steps", "integrator", "tau", "seed", "precision", "policies"):
        if ref["config"][key] != cand["config"][key]:
            fail("config.%s differs: %r vs %r" % (key, ref["config"][key], cand["config"][key]))
    if cand["config"]["device"] != device:
        fail("the candidate ran on %r, expected %r" % (cand["config"]["device"], device))
    n = ref["config"]["samples"]
    k = ref["config"]["clusters"]
    diverged = compare_samples(load_samples(ref_out), load_samples(cand_out))
    compare_numbers(ref, cand, n, diverged)
    compare_verdicts(ref, cand, k, n)
    print("[ measured ] wall time: host %.2f s, %s %.2f s"
          % (ref["timing"]["wall_seconds"], device, cand["timing"]["wall_seconds"]))


def no_gpu(program):
    r = subprocess.run([program, "--device", "cuda", "--samples", "16", "--steps", "2", "--policies", "top1", "--quiet"],
                       capture_output=True, text=True)
    lines = r.stderr.strip().splitlines()
    print("exit %d, stderr: %r" % (r.returncode, r.stderr))
    if r.returncode != NO_GPU_EXIT:
        fail("--device cuda without a usable GPU: exit %d, expected %d" % (r.returncode, NO_GPU_EXIT))
    if len(lines) != 1 or "CUDA" not in lines[0] or not lines[0].startswith("ddm-paradox: --device cuda: "):
        fail("expected one line on stderr, 'ddm-paradox: --device cuda: ...' naming CUDA, got %r" % r.stderr)
    if r.stdout:
        fail("expected nothing on stdout, got %r" % r.stdout[:200])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--program", required=True)
    ap.add_argument("--work")
    ap.add_argument("--no-gpu", action="store_true")
    ap.add_argument("--candidate", help="the program whose run is compared with --program's host run (default: --program)")
    ap.add_argument("--candidate-device", default="cuda")
    a = ap.parse_args()
    if a.no_gpu:
        no_gpu(a.program)
    else:
        if not a.work:
            raise SystemExit("--work DIR is required")
        compare(a.program, a.candidate or a.program, a.candidate_device, a.work)
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
