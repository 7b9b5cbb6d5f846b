#!/usr/bin/env python3
"""Regenerates docs/paradox.md and docs/paradox/*.svg from runs of ddm-paradox (standard library only).

    make_docs.py --program build/default/examples/01_paradox/ddm-paradox
    make_docs.py --program ... --only fashion-classes,fashion-kmeans

1. the default run (no flags but --json/--out), timed: its table, verdicts and plots;
2. the temperature sweep (--sweep-tau) at the default sizes: one summary table and a plot;
3. each learned Fashion-MNIST DDM (--system fashion-classes, fashion-kmeans) at its defaults,
   timed: its tables, verdicts, the paper's numbers beside ours, and PNG sample grids
   (docs/paradox/<system>_<row>.png);
4. docs/paradox.md = examples/01_paradox/paradox.md.in with its placeholders filled:
     {{main:PATH:FORMAT}}   a number of the default run's JSON (PATH dotted, FORMAT as in Python)
     {{main:PATH:%}}        the same as a percentage
     {{TABLE}} {{QUARTILES}} {{VERDICTS}} {{SWEEP}} {{WALL}} {{MACHINE}}   generated blocks
     {{FASHION:NAME}}       the block of system NAME, between <!-- fashion:NAME:begin/end --> markers
   The block between <!-- beyond:begin/end --> is beyond_top2.py's: the one in docs/paradox.md is kept.
--only NAME,...: run only those fashion systems and replace their blocks in the existing
docs/paradox.md (the analytic runs take minutes and do not change with the learned folders).
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


FASHION = ("fashion-classes", "fashion-kmeans", "fashion-dit")
FASHION_SWEEP = "0.5,1,2,4"
GRID_ROWS = ("top1", "top2", "full", "monolith", "oracle_top2")


def load_average():
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            return f.read().split()[0]
    except OSError:
        return "unknown"


def fashion_block(program, system, work, sweep=True):
    """The generated block of one learned system (Markdown), its PNG grids copied to docs/paradox/."""
    models = os.path.join(ROOT, "examples", "03_fashion", "models")
    folder = os.path.join(models, system)
    begin, end = "<!-- fashion:%s:begin -->" % system, "<!-- fashion:%s:end -->" % system
    if not os.path.isfile(os.path.join(folder, "config.json")):
        return "%s\n*Not generated: no DDM folder examples/03_fashion/models/%s in this tree.*\n%s" % (begin, system, end)
    out = os.path.join(work, system)
    json_path = os.path.join(work, system + ".json")
    load_before = load_average()
    stdout, wall = run([program, "--system", system, "--quiet", "--json", json_path, "--out", out])
    load_after = load_average()
    sweep_doc = None
    if sweep:
        sweep_path = os.path.join(work, system + "-sweep.json")
        run([program, "--system", system, "--quiet", "--policies", "top1,top2,full", "--sweep-tau", FASHION_SWEEP,
             "--json", sweep_path])
        with open(sweep_path, encoding="utf-8") as f:
            sweep_doc = json.load(f)
    with open(json_path, encoding="utf-8") as f:
        doc = json.load(f)
    with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    fig = os.path.join(ROOT, "docs", "paradox")
    for row in GRID_ROWS:
        shutil.copy(os.path.join(out, "samples_%s.png" % row), os.path.join(fig, "%s_%s.png" % (system, row)))
    pol, base, ref, v = doc["policies"], doc["baselines"], doc["reference"], doc["verdicts"]
    word = lambda x: "not evaluated" if x is None else ("holds" if x else "does not hold")
    num = lambda x, f=".3g": "undefined" if x is None else format(x, f)
    q = lambda p: p["quality"]
    paper = [
        "| quantity | study (Paris DDM; MNIST for the angle) | %s, default run (tau = %g) |" % (system, doc["tau"]),
        "|---|---|---|",
        "| quality, full vs top-2 | FID 47.9 vs 22.6 | FD %s vs %s (floor: %s training images encoded, %s) |"
        % (num(q(pol["full"])["frechet"]), num(q(pol["top2"])["frechet"]), doc["config"]["samples"], num(ref["frechet"])),
        "| precision / recall, full vs top-2 | not published | %s / %s vs %s / %s |"
        % (num(q(pol["full"])["precision"], ".2f"), num(q(pol["full"])["recall"], ".2f"),
           num(q(pol["top2"])["precision"], ".2f"), num(q(pol["top2"])["recall"], ".2f")),
        "| Δrefine, full vs top-2 | 0.020 vs 0.051 | %s vs %s |"
        % (num(pol["full"]["stability"]["delta_refine"], ".4f"), num(pol["top2"]["stability"]["delta_refine"], ".4f")),
        "| mean rank of selected experts | top-1 1.54, top-2 1.96 | top-1 %s, top-2 %s (full %s by construction) |"
        % (num(pol["top1"]["alignment"]["mean_rank"], ".2f"), num(pol["top2"]["alignment"]["mean_rank"], ".2f"),
           num(pol["full"]["alignment"]["mean_rank"], ".1f")),
        "| angular gap, top-2 | 43%% (10-expert MNIST), 29%% (Paris) | %s |"
        % ("undefined" if pol["top2"]["alignment"]["angular_gap"] is None
           else "%.0f%%" % (100 * pol["top2"]["alignment"]["angular_gap"])),
        "| quality vs disagreement quartiles | worsens monotonically Q1 → Q4 | %s (Spearman rho: full %s, top-2 %s) |"
        % (word(v["quality_falls_with_disagreement"]), num(pol["full"]["disagreement"]["spearman"]["rho"], ".2f"),
           num(pol["top2"]["disagreement"]["spearman"]["rho"], ".2f")),
        "| monolith (same architecture, all data) | not in the study | FD %s, Δrefine %s |"
        % (num(q(base["monolith"])["frechet"]), num(base["monolith"]["stability"]["delta_refine"], ".4f")),
        "| oracle router, full vs top-2 | not in the study | FD %s vs %s |"
        % (num(q(base["oracle_full"])["frechet"]), num(q(base["oracle_top2"])["frechet"])),
    ]
    findings = [
        "| finding | verdict |",
        "|---|---|",
        "| 1. the full ensemble is the most stable and the worst (all policies run) | %s |" % word(v["paradox"]),
        "| 1'. the same against top-2 only | %s |" % word(v["paradox_vs_top2"]),
        "| 2. sparse routing selects better-aligned experts | %s |" % word(v["sparse_better_aligned"]),
        "| 3. selected experts point closer to the blend (angular gap > 0) | %s |" % word(v["selected_experts_closer"]),
        "| 4. quality falls monotonically with disagreement | %s |" % word(v["quality_falls_with_disagreement"]),
    ]
    grid = " ".join("![%s](paradox/%s_%s.png)" % (row, system, row) for row in GRID_ROWS)
    clf = manifest.get("classifier", {}).get("test_accuracy")
    if clf is None:  # the DiT tier reuses fashion-kmeans' classifier and says so under "partition"
        clf = manifest.get("partition", {}).get("classifier_test_accuracy")
    space = ("pixel space, %d values" if system == "fashion-dit" else "latent d = %d") % doc["config"]["dim"]
    lines = [
        begin,
        "`ddm-paradox --system %s` (K = %d experts, partition `%s`, %s; folder made by `%s`, mode `%s`; "
        "classifier test accuracy %s). Wall time %.1f s on %d cores (load average %s before, %s after; the machine is "
        "shared)." % (system, doc["config"]["clusters"], doc["config"]["partition"], space,
                      manifest.get("command", "?"), manifest.get("mode", "?"), num(clf, ".4f"), wall,
                      os.cpu_count() or 0, load_before, load_after),
        "",
        "```",
        section(stdout, "policy  ", "policy          mean"),
        "```",
        "",
        "```",
        section(stdout, "policy          mean", "verdicts"),
        "```",
        "",
        "\n".join(findings),
        "",
        "\n".join(paper),
        "",
        "The learned router's logits divided by tau (`--policies top1,top2,full --sweep-tau %s`; the"
        " verdicts at each tau over these three policies):" % FASHION_SWEEP,
        "",
        sweep_table(sweep_doc) if sweep_doc else "*Not run for this block (`make_docs.py --no-sweep`).*",
        "",
        "<details><summary>every verdict with its evidence</summary>",
        "",
        "```",
        section(stdout, "verdicts", "observed"),
        "```",
        "</details>",
        "",
        "Samples (the first 64 of each row, decoded; left to right: %s):" % ", ".join(GRID_ROWS),
        "",
        grid,
        end,
    ]
    return "\n".join(lines)


def replace_blocks(text, blocks):
    for system, block in blocks.items():
        begin, end = "<!-- fashion:%s:begin -->" % system, "<!-- fashion:%s:end -->" % system
        if "{{FASHION:%s}}" % system in text:
            text = text.replace("{{FASHION:%s}}" % system, block)
        else:
            i, j = text.find(begin), text.find(end)
            if i < 0 or j < 0:
                sys.exit("docs/paradox.md has no block %s ... %s" % (begin, end))
            text = text[:i] + block + text[j + len(end):]
    return text


def keep_beyond_block(text):
    """The "Beyond top-2" block is beyond_top2.py's (its runs take half an hour): a regeneration
    keeps the one docs/paradox.md already holds."""
    begin, end = "<!-- beyond:begin -->", "<!-- beyond:end -->"
    path = os.path.join(ROOT, "docs", "paradox.md")
    if not os.path.exists(path):
        return text
    with open(path, encoding="utf-8") as f:
        old = f.read()
    i, j = old.find(begin), old.find(end)
    k, m = text.find(begin), text.find(end)
    if i < 0 or j < 0 or k < 0 or m < 0:
        return text
    return text[:k] + old[i:j + len(end)] + text[m + len(end):]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--program", required=True)
    ap.add_argument("--only", help="comma-separated fashion systems: regenerate only their blocks")
    ap.add_argument("--no-sweep", action="store_true", help="with --only: skip the fashion systems' tau sweeps")
    a = ap.parse_args()
    program = os.path.abspath(a.program)
    work = tempfile.mkdtemp(prefix="ddm-paradox-docs-")
    os.makedirs(os.path.join(ROOT, "docs", "paradox"), exist_ok=True)
    if a.only:
        blocks = {s: fashion_block(program, s, work, not a.no_sweep) for s in a.only.split(",")}
        path = os.path.join(ROOT, "docs", "paradox.md")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        with open(path, "w", encoding="utf-8") as f:
            f.write(replace_blocks(text, blocks))
        print("replaced the blocks of %s in docs/paradox.md" % a.only)
        shutil.rmtree(work)
        return
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
    text = replace_blocks(text, {s: fashion_block(program, s, work) for s in FASHION})

    def number(m):
        which, path, spec = m.group(1), m.group(2), m.group(3)
        value = get(doc if which == "main" else sweep, path)
        if value is None:
            return "undefined"
        if spec == "%":
            return "%.0f%%" % (100 * value)
        return format(value, spec)

    text = re.sub(r"\{\{(main|sweep):([^:}]+):([^}]*)\}\}", number, text)
    text = keep_beyond_block(text)
    left = re.findall(r"\{\{[^}]*\}\}", text)
    if left:
        sys.exit("unfilled placeholders: %s" % left)
    with open(os.path.join(ROOT, "docs", "paradox.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print("wrote docs/paradox.md and docs/paradox/*.svg (default run: %.1f s)" % wall)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
