#!/usr/bin/env python3
"""ddm-paradox under mpirun -np N against one process: the same numbers.

Runs a small configuration as one process and under `mpirun -np N` (with --placement P) and
checks that
  - the JSON is the same, value for value (bit for bit: nlohmann_json writes doubles so that they
    read back exactly), except "timing" (wall times) and "distributed" (which ranks held which
    experts), which exist to differ;
  - the printed report is the same line for line, except the time column, the total wall time and
    the line that names the ranks;
  - "distributed" names N ranks and a placement for every policy;
  - a placement that names a rank outside the run is refused with exit code 2 and a message.
Two configurations: double with Heun, float with DPM-Solver++(2M) (the float gather path).

--system fashion-classes|fashion-kmeans|fashion-dit (the learned DDMs): their networks are GEMMs,
whose result for a row depends on how many rows share the call (OpenBLAS picks kernels by the row
count), so a distributed run is not the same bits. Then the checks are: the same verdicts, the
same routing counts (cost), the quality of the samples within 1e-4 relative; the script prints
the largest relative difference of every group of numbers (what was found, not a bound).

Exits 77 (CTest's skip) with a message when the build has no MPI or no mpirun is given, or when
a learned DDM's folder is absent.
Python standard library only.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

SKIP = 77

CONFIGS = [
    ["--samples", "50", "--steps", "6", "--permutations", "199", "--bootstrap", "50"],
    ["--samples", "37", "--steps", "5", "--permutations", "99", "--bootstrap", "20", "--precision", "float",
     "--integrator", "dpm++2m", "--policies", "top1,top2,full,confidence:0.6,full_then_top2@0.4"],
]


def mpirun_command(mpirun, np):
    cmd = [mpirun]
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version or "OpenRTE" in version:
        cmd.append("--oversubscribe")  # more ranks than this machine's cores
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-run-as-root")
    return cmd + ["-np", str(np)]


def run(cmd, expect=0):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if p.returncode != expect:
        sys.exit(f"FAIL: {' '.join(cmd)}\nexit code {p.returncode}, expected {expect}\nstderr:\n{p.stderr[-4000:]}")
    return p


def printed(text):
    """The report without what may differ: the time column, the wall time, the ranks line."""
    out = []
    lines = text.splitlines()
    in_table = False
    skip_blank = False
    for line in lines:
        if line.startswith("ranks    "):
            skip_blank = True
            continue
        if skip_blank and line == "":
            skip_blank = False
            continue
        skip_blank = False
        if "time(s)" in line:
            in_table = True
            out.append(line)
            continue
        if in_table:
            if line.strip() == "" or line.startswith("true data"):
                in_table = False
            else:
                line = line.rsplit(None, 1)[0]
        if "total wall time" in line:
            line = line.split("; total wall time")[0]
        out.append(line)
    return out


def differences(a, b, path=""):
    if type(a) is not type(b):
        return [f"{path}: {a!r} vs {b!r}"]
    if isinstance(a, dict):
        out = [f"{path}/{k}: only in one process" for k in a if k not in b]
        out += [f"{path}/{k}: only under mpirun" for k in b if k not in a]
        for k in a:
            if k in b:
                out += differences(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} entries"]
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += differences(x, y, f"{path}/{i}")
        return out
    return [] if a == b else [f"{path}: {a!r} (one process) vs {b!r} (mpirun)"]


def relative_differences(a, b, path="", out=None):
    """(group, relative difference) of every number that differs; group = the path without the
    policy's key and indices."""
    out = [] if out is None else out
    if isinstance(a, dict):
        for k in a:
            if isinstance(b, dict) and k in b:
                relative_differences(a[k], b[k], f"{path}/{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for x, y in zip(a, b):
            relative_differences(x, y, path, out)
    elif isinstance(a, (int, float)) and not isinstance(a, bool) and isinstance(b, (int, float)) and a != b:
        out.append((path, abs(a - b) / max(abs(a), abs(b))))
    return out


def learned(a, mpi):
    models = a.models
    if not os.path.isdir(os.path.join(models, a.system)):
        print(f"skipped: the {a.system} DDM folder is absent under {models}")
        return SKIP
    cfg = ["--system", a.system, "--models", models, "--samples", "48", "--steps", "4", "--permutations", "99",
           "--bootstrap", "20", "--no-out", "--quiet"]
    one_json = os.path.join(a.work, "one.json")
    many_json = os.path.join(a.work, f"np{a.np}.json")
    env_one = [a.program] + cfg + ["--json", one_json]
    run(env_one)
    run(mpi + [a.program] + cfg + ["--json", many_json, "--placement", a.placement])
    with open(one_json) as f:
        j1 = json.load(f)
    with open(many_json) as f:
        jn = json.load(f)
    failures = []
    for k, v in j1["verdicts"].items():
        if isinstance(v, bool) and jn["verdicts"].get(k) != v:
            failures.append(f"verdict {k}: {v} in one process, {jn['verdicts'].get(k)} under mpirun")
    for section in ("policies", "baselines"):
        for key, p in j1.get(section, {}).items():
            q = jn[section][key]
            if p["cost"] != q["cost"]:
                failures.append(f"{section}/{key}: cost {p['cost']} vs {q['cost']}")
            for path, r in relative_differences(p["quality"], q["quality"]):
                if r > 1e-4:
                    failures.append(f"{section}/{key}/quality{path}: relative difference {r:.2e} > 1e-4")
    groups = {}
    j1.pop("timing", None)
    jn.pop("timing", None)
    jn.pop("distributed", None)
    for path, r in relative_differences(j1, jn):
        parts = [x for x in path.split("/") if x and x not in j1.get("policies", {}) and x not in j1.get("baselines", {})]
        group = "/".join(parts)
        groups[group] = max(groups.get(group, 0.0), r)
    print(f"{a.system}, one process against mpirun -np {a.np} (--placement {a.placement}): largest relative "
          "difference per group of numbers (groups not listed are the same bits)")
    for g, r in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {r:9.2e}  {g}")
    if failures:
        print("FAIL\n" + "\n".join(failures))
        return 1
    print("ok")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--program", required=True)
    ap.add_argument("--mpirun", default="", help="mpirun (empty: this build has no MPI; the test is skipped)")
    ap.add_argument("--np", type=int, default=2)
    ap.add_argument("--placement", default="round-robin")
    ap.add_argument("--work", required=True)
    ap.add_argument("--system", default="analytic")
    ap.add_argument("--models", default="")
    a = ap.parse_args()
    if not a.mpirun:
        print("skipped: this ddm-paradox was built without MPI (CMake found no MPI, so ddm::mpi is absent)")
        return SKIP
    if not shutil.which(a.mpirun):
        print(f"skipped: mpirun '{a.mpirun}' not found")
        return SKIP
    os.makedirs(a.work, exist_ok=True)
    mpi = mpirun_command(a.mpirun, a.np)
    if a.system != "analytic":
        return learned(a, mpi)
    failures = []
    for n, cfg in enumerate(CONFIGS):
        one_json = os.path.join(a.work, f"one-{n}.json")
        many_json = os.path.join(a.work, f"np{a.np}-{n}.json")
        common = cfg + ["--no-out", "--quiet"]
        one = run([a.program] + common + ["--json", one_json])
        many = run(mpi + [a.program] + common + ["--json", many_json, "--placement", a.placement])
        with open(one_json) as f:
            j1 = json.load(f)
        with open(many_json) as f:
            jn = json.load(f)
        dist = jn.pop("distributed", None)
        if dist is None or dist.get("ranks") != a.np or dist.get("placement") != a.placement:
            failures.append(f"config {n}: JSON 'distributed' = {dist!r}, expected {a.np} ranks, placement {a.placement}")
        elif sorted(dist.get("placements", {})) != sorted(j1["policies"]):
            failures.append(f"config {n}: 'distributed.placements' has {sorted(dist.get('placements', {}))}, "
                            f"expected every policy {sorted(j1['policies'])}")
        if "distributed" in j1:
            failures.append(f"config {n}: one process wrote a 'distributed' section")
        j1.pop("timing", None)
        jn.pop("timing", None)
        d = differences(j1, jn)
        failures += [f"config {n}: JSON {x}" for x in d[:20]]
        p1, pn = printed(one.stdout), printed(many.stdout)
        if p1 != pn:
            for i, (x, y) in enumerate(zip(p1, pn)):
                if x != y:
                    failures.append(f"config {n}: printed line {i + 1} differs:\n  one:    {x}\n  mpirun: {y}")
                    break
            else:
                failures.append(f"config {n}: printed {len(p1)} vs {len(pn)} lines")
        if not any(line.startswith("ranks    ") for line in many.stdout.splitlines()):
            failures.append(f"config {n}: the report under mpirun does not name its ranks")
        print(f"config {n}: one process and mpirun -np {a.np} (--placement {a.placement}): "
              f"{len(d)} JSON differences, printed {'same' if p1 == pn else 'DIFFERENT'}")

    # A rank that does not exist in the run: refused before any work, exit 2.
    bad_map = "|".join([str(a.np)] + ["0"] * 7)  # the default K = 8 experts, the first on a rank past the last
    bad = run(mpi + [a.program] + CONFIGS[0] + ["--no-out", "--quiet", "--placement", bad_map], expect=2)
    if "--placement" not in bad.stderr:
        failures.append(f"--placement with rank {a.np}: the message does not name the option:\n{bad.stderr[-2000:]}")

    if failures:
        print("FAIL\n" + "\n".join(failures))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
