#!/usr/bin/env python3
"""Checks ddm-paradox end to end (Python standard library only).

    check_json.py --program PATH --work DIR    run a small configuration and check its JSON:
        it parses, holds every field documented in docs/paradox.md (the schema table between the
        "schema:begin" and "schema:end" markers) with the documented type, every verdict equals the
        one recomputed here from the numbers in the file, and the CSV and SVG outputs exist and
        parse.
        A second run of the same configuration must give the same JSON outside `timing`.
    check_json.py --program PATH --bad-flags [--work DIR]   bad command lines (size flags beyond
        their bounds included) exit non-zero with the usage message; --help exits 0; with --work,
        unwritable --json / --out paths are refused before the study and leave no JSON behind.
    check_json.py --program PATH --work DIR --system fashion-classes [--models DIR]
        the same for a learned Fashion-MNIST DDM (a small run): the schema table with the
        fashion systems' changes (the "schema-fashion" table of docs/paradox.md), the baselines'
        rows, the recall, and a PNG sample grid per row. Exits 77 (skipped) when the DDM folder
        is not in the tree.
"""

import argparse
import csv
import json
import math
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(HERE, "..", "..", "docs", "paradox.md")

SMALL = ["--clusters", "4", "--dim", "4", "--components", "2", "--samples", "160", "--steps", "8",
         "--tau", "3", "--permutations", "199", "--bootstrap", "50", "--sweep-tau", "1,3", "--quiet"]

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


# ------------------------------------------------------------------------------------------------
# The documented schema

def documented_fields(marker="schema", minimum=20):
    """(path, type) pairs from the schema table of docs/paradox.md between <!-- marker:begin/end -->."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"<!-- %s:begin -->(.*?)<!-- %s:end -->" % (marker, marker), text, re.S)
    if not m:
        raise SystemExit("docs/paradox.md has no schema table between <!-- %s:begin --> and <!-- %s:end -->"
                         % (marker, marker))
    fields = []
    for line in m.group(1).splitlines():
        # Cells split on unescaped pipes; `number\|null` is one cell meaning number or null.
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        fields.append((cells[0].strip("`"), cells[1].strip("`")))
    if len(fields) < minimum:
        raise SystemExit("docs/paradox.md's %s table lists only %d fields" % (marker, len(fields)))
    return fields


def fashion_fields():
    """The main table with the fashion table applied: a listed path overrides the type of the
    same path, `absent` removes it (and it must not be there), new paths are added."""
    fields = dict(documented_fields())
    absent = []
    for path, spec in documented_fields("schema-fashion", 5):
        if spec == "absent":
            fields.pop(path, None)
            absent.append(path)
        else:
            fields[path] = spec
    return list(fields.items()), absent


def type_ok(value, spec):
    for t in spec.split("|"):
        t = t.strip()
        if t == "null" and value is None:
            return True
        if t == "number" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return True
        if t == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t == "string" and isinstance(value, str):
            return True
        if t == "boolean" and isinstance(value, bool):
            return True
        if t == "array" and isinstance(value, list):
            return True
        if t == "object" and isinstance(value, dict):
            return True
    return False


def resolve(doc, path):
    """Every (concrete path, value) that `path` names: <name> and <verdict> are any key, [] any element."""
    out = [("", doc)]
    for part in path.split("."):
        nxt = []
        is_list = part.endswith("[]")
        key = part[:-2] if is_list else part
        for where, node in out:
            if key.startswith("<") and key.endswith(">"):
                if not isinstance(node, dict) or not node:
                    fail("%s: expected a non-empty object for %s" % (where or "<root>", key))
                    continue
                items = [(where + "." + k, v) for k, v in node.items()]
            else:
                if not isinstance(node, dict) or key not in node:
                    fail("missing field %s%s" % (where + "." if where else "", key))
                    continue
                items = [((where + "." if where else "") + key, node[key])]
            for w, v in items:
                if is_list:
                    if not isinstance(v, list):
                        fail("%s: expected an array" % w)
                        continue
                    nxt.extend(("%s[%d]" % (w, i), e) for i, e in enumerate(v))
                else:
                    nxt.append((w, v))
        out = nxt
    return out


def check_schema(doc, fields):
    for path, spec in fields:
        for where, value in resolve(doc, path):
            if not type_ok(value, spec):
                fail("%s = %r, documented as %s" % (where, value, spec))


# ------------------------------------------------------------------------------------------------
# The verdicts, recomputed

def recompute(run, k):
    pol = run["policies"]
    full = pol.get("full")
    others = [v for key, v in pol.items() if key != "full"]
    out = {}

    def lowest(get):
        if full is None or not others:
            return None
        return all(get(full) < get(o) for o in others)

    delta = lambda p: p["stability"]["delta_refine"]
    leff = lambda p: p["stability"]["l_eff_median"]
    ciqr = lambda p: p["stability"]["l_eff_cumulative_iqr"]
    amp = lambda p: p["stability"]["amplification_median"]
    fd = lambda p: p["quality"]["frechet"]
    out["lowest_delta_refine"] = lowest(delta)
    out["lowest_l_eff"] = lowest(leff)
    out["lowest_cumulative_iqr"] = lowest(ciqr)
    out["lowest_amplification"] = lowest(amp)
    out["worst_quality"] = None if full is None or not others else all(fd(full) > fd(o) for o in others)
    parts = [out["lowest_delta_refine"], out["lowest_l_eff"], out["worst_quality"]]
    out["paradox"] = None if None in parts else all(parts)
    top2 = pol.get("top2")
    if full is None or top2 is None:
        out["paradox_vs_top2"] = None
    else:
        out["paradox_vs_top2"] = delta(full) < delta(top2) and leff(full) < leff(top2) and fd(full) > fd(top2)

    full_rank = full["alignment"]["mean_rank"] if full is not None and full["alignment"]["mean_rank"] is not None \
        else (k + 1) / 2
    sparse = [pol[key] for key in ("top1", "top2") if key in pol]
    if not sparse:
        out["sparse_better_aligned"] = None
    else:
        out["sparse_better_aligned"] = all(p["alignment"]["mean_rank"] is not None and
                                           p["alignment"]["mean_rank"] < full_rank for p in sparse)
    if top2 is None or top2["alignment"]["angular_gap"] is None:
        out["selected_experts_closer"] = None
    else:
        out["selected_experts_closer"] = top2["alignment"]["angular_gap"] > 0

    mono = {}
    for key, p in pol.items():
        q = [b["nll_mean"] for b in p["disagreement"]["quartiles"]]
        mono[key] = all(q[i] > q[i - 1] for i in range(1, len(q)))
        if p["disagreement"]["monotonic"] != mono[key]:
            fail("policies.%s.disagreement.monotonic = %s, but its quartiles %s say %s"
                 % (key, p["disagreement"]["monotonic"], q, mono[key]))
    out["quality_falls_with_disagreement"] = all(mono.values()) if mono else None
    out["monotonic_by_policy"] = mono
    return out


def check_verdicts(run, k, where):
    expect = recompute(run, k)
    got = run["verdicts"]
    for key, value in expect.items():
        if got.get(key) != value:
            fail("%s.verdicts.%s = %r, but the numbers give %r" % (where, key, got.get(key), value))
    for key in got:
        if key not in expect and key != "details":
            fail("%s.verdicts.%s is not recomputed by this checker" % (where, key))
    for key, d in got.get("details", {}).items():
        if d.get("holds") != got.get(key):
            fail("%s.verdicts.details.%s.holds disagrees with verdicts.%s" % (where, key, key))


def check_invariants(run, k, steps, where, ties=False):
    """Properties that hold by construction: they catch a mislabelled or mis-wired number.
    ties: the router can tie exactly (the oracle's empirical posterior at t = 1 is the clusters'
    shares of the oracle subsample, equal for equal-sized clusters); ddm keeps every expert tied
    at a policy's boundary, so top-k then costs between k and K per call."""
    heun_evals = 2 * steps - 1
    for key, p in run["policies"].items():
        c = p["cost"]
        if c["field_evaluations"] != heun_evals:
            fail("%s.%s: %d field evaluations, expected 2N - 1 = %d for Heun" % (where, key, c["field_evaluations"], heun_evals))
        per_call = {"top1": 1, "top2": 2, "full": k}.get(key)
        evals = c["expert_evaluations_per_sample"]
        if per_call is not None and not ties and abs(evals - per_call * heun_evals) > 1e-9:
            fail("%s.%s: %g expert evaluations per sample, expected %d" % (where, key, evals, per_call * heun_evals))
        if per_call is not None and ties and not per_call * heun_evals - 1e-9 <= evals <= k * heun_evals + 1e-9:
            fail("%s.%s: %g expert evaluations per sample, expected %d to %d (ties keep every tied expert)"
                 % (where, key, evals, per_call * heun_evals, k * heun_evals))
        if not p["observed_run_bit_identical"]:
            fail("%s.%s: the observed run did not reproduce the plain run" % (where, key))
        if len(p["stability"]["l_eff_steps"]) != steps:
            fail("%s.%s: %d L_eff steps, expected %d" % (where, key, len(p["stability"]["l_eff_steps"]), steps))
        if sum(q["count"] for q in p["disagreement"]["quartiles"]) <= 0:
            fail("%s.%s: empty disagreement quartiles" % (where, key))
    full = run["policies"].get("full")
    if full is not None:
        if full["alignment"]["angular_gap"] is not None:
            fail("%s.full: the angular gap must be undefined (null): no expert is left unselected" % where)
        if full["alignment"]["mean_rank"] != (k + 1) / 2:
            fail("%s.full: mean rank %r, expected (K + 1) / 2 = %g" % (where, full["alignment"]["mean_rank"], (k + 1) / 2))
        if abs(full["cost"]["relative_cost"] - 1) > 1e-12:
            fail("%s.full: relative cost %g, expected 1" % (where, full["cost"]["relative_cost"]))


# ------------------------------------------------------------------------------------------------

def run_small(program, work):
    os.makedirs(work, exist_ok=True)
    json_path = os.path.join(work, "paradox.json")
    out_dir = os.path.join(work, "out")
    cmd = [program] + SMALL + ["--json", json_path, "--out", out_dir]
    print("running:", " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    print(r.stdout)
    if r.returncode != 0:
        fail("exit code %d: %s" % (r.returncode, r.stderr))
        return
    with open(json_path, encoding="utf-8") as f:
        doc = json.load(f)  # raises on invalid JSON (NaN would be invalid too)
    # The same run again: everything but the `timing` object must be the same, bit for bit.
    again_path = os.path.join(work, "paradox_again.json")
    r2 = subprocess.run([program] + SMALL + ["--json", again_path], capture_output=True, text=True)
    if r2.returncode != 0:
        fail("second run: exit code %d: %s" % (r2.returncode, r2.stderr))
    else:
        with open(again_path, encoding="utf-8") as f:
            again = json.load(f)
        if {k: v for k, v in doc.items() if k != "timing"} != {k: v for k, v in again.items() if k != "timing"}:
            fail("two runs of the same configuration differ outside the `timing` object")
        print("[ measured ] a second run matches outside `timing`")
    fields = documented_fields()
    check_schema(doc, fields)
    print("[ measured ] %d documented fields checked" % len(fields))
    k = doc["config"]["clusters"]
    steps = doc["config"]["steps"]
    check_verdicts(doc, k, "<root>")
    check_invariants(doc, k, steps, "policies")
    if [s["tau"] for s in doc["sweep"]] != [1, 3]:
        fail("sweep taus %r, expected [1, 3]" % [s["tau"] for s in doc["sweep"]])
    for i, s in enumerate(doc["sweep"]):
        check_verdicts(s, k, "sweep[%d]" % i)
        check_invariants(s, k, steps, "sweep[%d]" % i)
    if doc["sweep"][1]["policies"] != doc["policies"]:
        fail("sweep[1] (tau = 3) differs from the main run at tau = 3")
    # Every verdict appears on stdout with its word.
    for key, value in doc["verdicts"].items():
        if key in ("details", "monotonic_by_policy"):
            continue
        word = "not evaluated" if value is None else ("holds" if value else "does not hold")
        claim = doc["verdicts"]["details"][key]["claim"]
        if "[%s]" % word not in r.stdout or claim not in r.stdout:
            fail("stdout does not show verdict %s as [%s]" % (key, word))
    for name in ("policies.csv", "sensitivity.csv", "quality_by_disagreement.csv", "alignment.csv", "samples.csv",
                 "sweep.csv"):
        with open(os.path.join(out_dir, name), newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if len(rows) < 2:
            fail("%s has no data rows" % name)
    for name in ("sensitivity.svg", "quality_by_disagreement.svg", "alignment.svg", "sweep_frechet.svg"):
        ET.parse(os.path.join(out_dir, name))
    run_gated(program, work)


def run_gated(program, work):
    """The gated policies and --sweep-switch: one row per key, named as ddm names the policy, the
    gated ones costing between top-1 and top-2, and full_then_top2@S the same run as
    full_then_top2 with --t-switch S."""
    base = SMALL[:SMALL.index("--sweep-tau")] + ["--quiet", "--no-out"]
    path = os.path.join(work, "gated.json")
    r = subprocess.run([program] + base + ["--policies", "top1,top2,confidence:0.7,ratio:0.3,full_then_top2,top2_then_top1",
                                           "--sweep-switch", "0.25,0.75", "--json", path], capture_output=True, text=True)
    if r.returncode != 0:
        fail("gated run: exit code %d: %s" % (r.returncode, r.stderr))
        return
    with open(path, encoding="utf-8") as f:
        pol = json.load(f)["policies"]
    want = {"top1", "top2", "confidence:0.7", "ratio:0.3", "full_then_top2@0.25", "full_then_top2@0.75",
            "top2_then_top1@0.25", "top2_then_top1@0.75"}
    if set(pol) != want:
        fail("gated run: policies %r, expected %r" % (sorted(pol), sorted(want)))
        return
    names = {"confidence:0.7": "confidence_adaptive(0.7)", "ratio:0.3": "ratio_gated(0.3)",
             "full_then_top2@0.25": "scheduled(t > 0.25: full_ensemble; t <= 0.25: top_2)",
             "top2_then_top1@0.75": "scheduled(t > 0.75: top_2; t <= 0.75: top_1)"}
    for key, name in names.items():
        if pol[key]["policy"] != name:
            fail("gated run: policies.%s.policy = %r, expected %r" % (key, pol[key]["policy"], name))
    evals = lambda key: pol[key]["cost"]["expert_evaluations_per_sample"]
    for key in ("confidence:0.7", "ratio:0.3", "top2_then_top1@0.25", "top2_then_top1@0.75"):
        if not evals("top1") <= evals(key) <= evals("top2"):
            fail("gated run: %s costs %g expert evaluations per sample, expected between top1's %g and top2's %g"
                 % (key, evals(key), evals("top1"), evals("top2")))
    if not evals("full_then_top2@0.75") < evals("full_then_top2@0.25"):
        fail("gated run: the earlier switch to top-2 (0.75) should cost less than the later one (0.25)")
    if not evals("top2_then_top1@0.75") < evals("top2_then_top1@0.25"):
        fail("gated run: the earlier switch to top-1 (0.75) should cost less than the later one (0.25)")
    path2 = os.path.join(work, "switch.json")
    r = subprocess.run([program] + base + ["--policies", "full_then_top2", "--t-switch", "0.25", "--json", path2],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail("--t-switch run: exit code %d: %s" % (r.returncode, r.stderr))
        return
    with open(path2, encoding="utf-8") as f:
        plain = json.load(f)["policies"]["full_then_top2"]
    if plain["quality"] != pol["full_then_top2@0.25"]["quality"] or plain["cost"] != pol["full_then_top2@0.25"]["cost"]:
        fail("full_then_top2@0.25 differs from full_then_top2 with --t-switch 0.25")
    print("[ measured ] gated policies and --sweep-switch: %s" %
          ", ".join("%s %g evals" % (k, evals(k)) for k in sorted(pol)))


def bad_flags(program):
    cases = [["--nope"], ["--samples", "abc"], ["--samples"], ["--integrator", "rk4"], ["--device", "tpu"],
             ["--policies", "top0"], ["--policies", "top3x"], ["--precision", "half"], ["--tau", "0"], ["--t-switch", "1.5"], ["--sweep-tau", "1,x"], ["--quiet=1"],
             # beyond int: narrowing would wrap (K = 2, D = 1) and run silently
             ["--clusters", "4294967298"], ["--dim", "4294967297"], ["--components", "4294967297"],
             ["--system", "mnist"], ["--models"],
             # the gated policies' parameters and the switch times
             ["--policies", "confidence:1.5"], ["--policies", "ratio:x"], ["--policies", "confidence:"],
             ["--policies", "top1@0.3"], ["--policies", "full_then_top2@1"], ["--policies", "top2_then_top1_then_full@0.3"],
             ["--policies", "top2_then_top1@0"], ["--sweep-switch", "0.3,1.2"],
             ["--policies", "top1,top2", "--sweep-switch", "0.3"]]
    for args in cases:
        r = subprocess.run([program] + args, capture_output=True, text=True)
        if r.returncode == 0 or "usage: ddm-paradox" not in r.stderr:
            fail("%s: exit %d, stderr %r; expected a non-zero exit and the usage message" % (args, r.returncode, r.stderr[:200]))
    # Size flags beyond their documented bound, or together beyond the machine's memory: refused at
    # once (these once ran for minutes, crashed, or failed as "vector::reserve" / bad_alloc).
    huge = [(["--samples", "2305843009213693952"], "--samples"), (["--samples", "1152921504606846976"], "--samples"),
            (["--permutations", "9223372036854775807"], "--permutations"), (["--clusters", "2147483647"], "--clusters"),
            (["--steps", "9223372036854775807"], "--steps"), (["--bootstrap", "9223372036854775807"], "--bootstrap"),
            (["--leff-every", "9223372036854775807"], "--leff-every"),
            (["--samples", "100000000", "--dim", "1048576"], "--samples 100000000, --dim 1048576")]
    for args, named in huge:
        r = subprocess.run([program] + args, capture_output=True, text=True, timeout=60)
        if r.returncode != 2 or named not in r.stderr:
            fail("%s: exit %d, stderr %r; expected exit 2 naming %s" % (args, r.returncode, r.stderr[:200], named))
    cases.extend(a for a, _ in huge)
    r = subprocess.run([program, "--help"], capture_output=True, text=True)
    if r.returncode != 0 or "usage: ddm-paradox" not in r.stdout:
        fail("--help: exit %d; expected 0 and the usage message on stdout" % r.returncode)
    r = subprocess.run([program, "--device", "cuda", "--samples", "16", "--steps", "2", "--policies", "top1", "--quiet"],
                       capture_output=True, text=True)
    if r.returncode != 0 and "CUDA" not in r.stderr:
        fail("--device cuda failed without naming CUDA: %r" % r.stderr)
    print("[ measured ] %d bad command lines refused; --device cuda: exit %d (%s)"
          % (len(cases), r.returncode, r.stderr.strip()[:120]))


def bad_outputs(program, work):
    """Unwritable --json or --out: refused before the study runs, and no JSON left claiming success."""
    os.makedirs(work, exist_ok=True)
    ok_json = os.path.join(work, "ok.json")
    blocker = os.path.join(work, "a_file")
    for path in (ok_json, ok_json + ".partial"):
        if os.path.exists(path):
            os.remove(path)
    with open(blocker, "w") as f:
        f.write("not a directory\n")
    cases = [(["--json", ok_json, "--out", os.path.join(blocker, "sub")], "--out"),
             (["--json", os.path.join(blocker, "x.json")], "--json"),
             (["--json", work], "--json")]
    for args, named in cases:
        r = subprocess.run([program] + SMALL + args, capture_output=True, text=True, timeout=60)
        if r.returncode != 2 or named not in r.stderr or "cannot" not in r.stderr and "is a directory" not in r.stderr \
                and "is not a directory" not in r.stderr:
            fail("%s: exit %d, stderr %r; expected exit 2 naming %s" % (args, r.returncode, r.stderr[:200], named))
        if "model    K =" in r.stdout:
            fail("%s: the study ran before the output path was refused" % args)
        for path in (ok_json, ok_json + ".partial"):
            if os.path.exists(path):
                fail("%s: %s was left behind" % (args, path))
    print("[ measured ] %d unwritable outputs refused before the study, nothing left behind" % len(cases))


def run_fashion(program, work, system, models):
    folder = os.path.join(models, system)
    if not os.path.isfile(os.path.join(folder, "config.json")):
        print("SKIP: no DDM folder %s (examples/03_fashion/train.py writes it)" % folder)
        return 77
    os.makedirs(work, exist_ok=True)
    json_path = os.path.join(work, "paradox.json")
    out_dir = os.path.join(work, "out")
    cmd = [program, "--system", system, "--models", models, "--samples", "64", "--steps", "8", "--permutations", "99",
           "--bootstrap", "50", "--quiet", "--json", json_path, "--out", out_dir]
    print("running:", " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    print(r.stdout)
    if r.returncode != 0:
        fail("exit code %d: %s" % (r.returncode, r.stderr))
        return 1
    with open(json_path, encoding="utf-8") as f:
        doc = json.load(f)
    fields, absent = fashion_fields()
    check_schema(doc, fields)
    for path in absent:
        head, _, last = path.rpartition(".")
        for where, node in (resolve(doc, head) if head else [("", doc)]):
            if isinstance(node, dict) and last in node:
                fail("%s.%s is documented as absent for the fashion systems" % (where, last))
    print("[ measured ] %d documented fields checked, %d absent" % (len(fields), len(absent)))
    k = doc["config"]["clusters"]
    steps = doc["config"]["steps"]
    if doc["config"]["system"] != system:
        fail("config.system = %r, expected %r" % (doc["config"]["system"], system))
    check_verdicts(doc, k, "<root>")
    check_invariants(doc, k, steps, "policies")
    base = doc["baselines"]
    if sorted(base) != ["monolith", "oracle_full", "oracle_top1", "oracle_top2"]:
        fail("baselines %r, expected monolith, oracle_top1, oracle_top2, oracle_full" % sorted(base))
    oracle = {key[len("oracle_"):]: p for key, p in base.items() if key.startswith("oracle_")}
    check_invariants({"policies": oracle}, k, steps, "baselines(oracle)", ties=True)
    mono = base.get("monolith", {})
    heun_evals = 2 * steps - 1
    if mono.get("cost", {}).get("expert_evaluations_per_sample") != heun_evals:
        fail("baselines.monolith: %r network evaluations per sample, expected %d"
             % (mono.get("cost", {}).get("expert_evaluations_per_sample"), heun_evals))
    if mono.get("alignment", {}).get("mean_rank") is not None or mono.get("disagreement", {}).get("quartiles"):
        fail("baselines.monolith: a single network has no alignment rank and no disagreement quartiles")
    for key, p in list(doc["policies"].items()) + list(base.items()):
        q = p["quality"]
        for m in ("precision", "recall"):
            if not 0 <= q[m] <= 1:
                fail("%s: quality.%s = %r, expected a share in [0, 1]" % (key, m, q[m]))
        if abs(sum(q["cluster_share"]) - 1) > 1e-9 or len(q["cluster_share"]) != 10:
            fail("%s: quality.cluster_share must be 10 class shares summing to 1" % key)
        png = os.path.join(out_dir, "samples_%s.png" % key)
        try:
            with open(png, "rb") as f:
                if f.read(8) != b"\x89PNG\r\n\x1a\n":
                    fail("%s is not a PNG file" % png)
        except OSError:
            fail("no sample grid %s" % png)
    for name in ("policies.csv", "sensitivity.csv", "quality_by_disagreement.csv", "alignment.csv", "samples.csv"):
        with open(os.path.join(out_dir, name), newline="", encoding="utf-8") as f:
            if len(list(csv.reader(f))) < 2:
                fail("%s has no data rows" % name)
    r = subprocess.run([program, "--system", system, "--models", models, "--device", "cuda"], capture_output=True, text=True)
    if r.returncode != 2 or "analytic system only" not in r.stderr:
        fail("--system %s --device cuda: exit %d, %r; expected exit 2 and a message" % (system, r.returncode, r.stderr))
    r = subprocess.run([program, "--system", system, "--models", os.path.join(work, "no-such-folder")], capture_output=True,
                       text=True)
    if r.returncode != 1 or "config.json" not in r.stderr:
        fail("a missing --models folder: exit %d, %r; expected exit 1 naming config.json" % (r.returncode, r.stderr))
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--program", required=True)
    ap.add_argument("--work")
    ap.add_argument("--bad-flags", action="store_true")
    ap.add_argument("--system", default="analytic")
    ap.add_argument("--models", default=os.path.join(HERE, "..", "03_fashion", "models"))
    a = ap.parse_args()
    if a.system != "analytic":
        if not a.work:
            raise SystemExit("--work DIR is required")
        if run_fashion(a.program, a.work, a.system, a.models) == 77 and not failures:
            return 77
    elif a.bad_flags:
        bad_flags(a.program)
        if a.work:
            bad_outputs(a.program, a.work)
    else:
        if not a.work:
            raise SystemExit("--work DIR is required")
        run_small(a.program, a.work)
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
