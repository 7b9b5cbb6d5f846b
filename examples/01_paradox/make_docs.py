#!/usr/bin/env python3
"""Regenerates docs/paradox.md and docs/paradox/*.svg from runs of ddm-paradox (standard library only).

    make_docs.py --program build/default/examples/01_paradox/ddm-paradox

1. the default run (no flags but --json/--out), timed: its table, verdicts and plots;
2. the temperature sweep (--sweep-tau) at the default sizes: one summary table and a plot;
3. docs/paradox.md = examples/01_paradox/paradox.md.in with its placeholders filled:
     {{main:PATH:FORMAT}}   a number of the default run's JSON (PATH dotted, FORMAT as in Python)
     {{main:PATH:%}}        the same as a percentage
     {{TABLE}} {{QUARTILES}} {{VERDICTS}} {{SWEEP}} {{WALL}} {{MACHINE}}   generated blocks
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SWEEP = "1,1.5,2,3,4,6,8"


def run(cmd):
    print("running:", " ".join(cmd), flush=True)
    start = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - start
    if r.returncode != 0:
        sys.exit("failed (%d): %s" % (r.returncode, r.stderr))
    return r.stdout, wall


def get(doc, path):
    node = doc
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def section(stdout, start, end=None):
    """Lines of stdout from the line starting with `start` up to (not including) the one starting with `end`."""
    lines = stdout.splitlines()
    i = next(n for n, l in enumerate(lines) if l.startswith(start))
    j = len(lines) if end is None else next(n for n, l in enumerate(lines) if n > i and l.startswith(end))
    return "\n".join(lines[i:j]).rstrip()


def sweep_table(doc):
    policies = doc["config"]["policies"]
    head = "| tau | " + " | ".join("FD " + p for p in policies) + " | " + \
           " | ".join("Δrefine " + p for p in policies) + " | paradox | vs top-2 | aligned | quality falls with disagreement |"
    sep = "|" + "---:|" * (1 + 2 * len(policies)) + ":-:|:-:|:-:|:-:|"
    rows = [head, sep]
    word = lambda v: "n/a" if v is None else ("holds" if v else "no")
    for s in doc["sweep"]:
        v = s["verdicts"]
        rows.append("| %g | " % s["tau"] +
                    " | ".join("%.3g" % s["policies"][p]["quality"]["frechet"] for p in policies) + " | " +
                    " | ".join("%.2g" % s["policies"][p]["stability"]["delta_refine"] for p in policies) + " | " +
                    " | ".join(word(v[k]) for k in ("paradox", "paradox_vs_top2", "sparse_better_aligned",
                                                    "quality_falls_with_disagreement")) + " |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--program", required=True)
    a = ap.parse_args()
    program = os.path.abspath(a.program)
    work = tempfile.mkdtemp(prefix="ddm-paradox-docs-")
    main_json = os.path.join(work, "main.json")
    stdout, wall = run([program, "--quiet", "--json", main_json, "--out", os.path.join(work, "main")])
    sweep_json = os.path.join(work, "sweep.json")
    run([program, "--quiet", "--sweep-tau", SWEEP, "--json", sweep_json, "--out", os.path.join(work, "sweep")])
    with open(main_json, encoding="utf-8") as f:
        doc = json.load(f)
    with open(sweep_json, encoding="utf-8") as f:
        sweep = json.load(f)

    fig = os.path.join(ROOT, "docs", "paradox")
    os.makedirs(fig, exist_ok=True)
    for name in ("sensitivity.svg", "quality_by_disagreement.svg", "alignment.svg"):
        shutil.copy(os.path.join(work, "main", name), os.path.join(fig, name))
    shutil.copy(os.path.join(work, "sweep", "sweep_frechet.svg"), os.path.join(fig, "sweep_frechet.svg"))

    with open(os.path.join(HERE, "paradox.md.in"), encoding="utf-8") as f:
        text = f.read()
    machine = "%d cores, %s" % (os.cpu_count() or 0, os.uname().machine)
    blocks = {
        "HEADLINE": section(stdout, "headline", "policy  "),
        "TABLE": section(stdout, "policy  ", "policy          mean"),
        "QUARTILES": section(stdout, "policy          mean", "verdicts"),
        "VERDICTS": section(stdout, "verdicts", "observed"),
        "SWEEP": sweep_table(sweep),
        "WALL": "%.1f s" % wall,
        "MACHINE": machine,
    }
    for key, value in blocks.items():
        text = text.replace("{{%s}}" % key, value)

    def number(m):
        which, path, spec = m.group(1), m.group(2), m.group(3)
        value = get(doc if which == "main" else sweep, path)
        if value is None:
            return "undefined"
        if spec == "%":
            return "%.0f%%" % (100 * value)
        return format(value, spec)

    text = re.sub(r"\{\{(main|sweep):([^:}]+):([^}]*)\}\}", number, text)
    left = re.findall(r"\{\{[^}]*\}\}", text)
    if left:
        sys.exit("unfilled placeholders: %s" % left)
    with open(os.path.join(ROOT, "docs", "paradox.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print("wrote docs/paradox.md and docs/paradox/*.svg (default run: %.1f s)" % wall)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
