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

Exits 77 (CTest's skip) with a message when the build has no MPI or no mpirun is given.
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--program", required=True)
    ap.add_argument("--mpirun", default="", help="mpirun (empty: this build has no MPI; the test is skipped)")
    ap.add_argument("--np", type=int, default=2)
    ap.add_argument("--placement", default="round-robin")
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    if not a.mpirun:
        print("skipped: this ddm-paradox was built without MPI (CMake found no MPI, so ddm::mpi is absent)")
        return SKIP
    if not shutil.which(a.mpirun):
        print(f"skipped: mpirun '{a.mpirun}' not found")
        return SKIP
    os.makedirs(a.work, exist_ok=True)
    mpi = mpirun_command(a.mpirun, a.np)
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
