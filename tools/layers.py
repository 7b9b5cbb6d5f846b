#!/usr/bin/env python3
"""The include rules of include/ddm (docs/architecture.md), checked, and the picture drawn from them.

Every header belongs to one layer: the folder under include/ddm/ (core, flow, ...), with the
diagnostics' families (diagnostics/jacobian, diagnostics/instruments, diagnostics/observers) and the
device tree (cuda, the runtime files at its top; cuda/core, cuda/routing, ...) as layers of their own.
A header may include headers of its own layer and of the layers ALLOWED names for it, nothing else:
the table below is the architecture, and this script fails on any include that breaks it, on a
cycle among the layers, and on a host header that includes a device one.

  tools/layers.py --check [--root DIR]       exit 1 with the offending includes
  tools/layers.py --svg FILE [--root DIR]    draw the layers and the includes that exist
  tools/layers.py --check --svg FILE         also fail if FILE is not what --svg would write
"""
import argparse
import collections
import pathlib
import re
import sys

# Host layers from the bottom up, then the device tree, which mirrors them. Each entry: the layers it
# may include. The device layer cuda/X may include host X and what host X may include, the CUDA
# runtime (cuda) and the device layers below it.
HOST = {
    "core": [],
    "io": ["core"],
    "flow": ["core"],
    "routing": ["core"],
    "integrators": ["core", "flow"],
    "synthetic": ["core", "flow", "routing"],
    "diagnostics/jacobian": ["core", "flow", "integrators"],
    "diagnostics/instruments": ["core", "flow", "integrators", "routing", "diagnostics/jacobian"],
    "diagnostics": ["core"],  # statistics.hpp, shared by every family
    "diagnostics/observers": ["core", "flow", "integrators", "routing", "diagnostics",
                              "diagnostics/jacobian", "diagnostics/instruments"],
    "registry": ["core", "flow", "integrators", "routing"],
    "mpi": ["core", "routing"],  # needs MPI (ddm::mpi)
}
DEVICE = {
    "cuda": ["core"],  # the runtime: context, memory, streams, launch geometry, transfers, BLAS handle
    "cuda/core": ["cuda"],
    "cuda/routing": ["cuda", "cuda/core"],
    "cuda/synthetic": ["cuda", "cuda/core", "cuda/routing"],
    "cuda/diagnostics": ["cuda", "cuda/core", "cuda/routing"],
    "cuda/mpi": ["cuda", "cuda/core"],  # needs MPI and NCCL (ddm::mpi_cuda)
}


def allowed():
    rules = {layer: set(deps) for layer, deps in HOST.items()}
    for layer, deps in DEVICE.items():
        rules[layer] = set(deps)
        host = layer.split("/", 1)[1] if "/" in layer else "core"
        for h in HOST:
            if h == host or h.startswith(host + "/"):
                rules[layer] |= {h} | set(HOST[h])
    rules["umbrella"] = set(rules)  # ddm/ddm.hpp and ddm/cuda.hpp include everything
    return rules


def layer_of(rel):
    """Layer of a header given its path relative to include/ddm."""
    parts = rel.split("/")
    if len(parts) == 1:
        return "umbrella"
    if parts[0] == "cuda":
        if len(parts) == 2:
            return "cuda/diagnostics" if parts[1].startswith("diagnostics") else "cuda"
        return "cuda/" + parts[1]
    if parts[0] == "diagnostics" and len(parts) > 2:
        return "diagnostics/" + parts[1]
    return parts[0]


def scan(root):
    inc = root / "include" / "ddm"
    edges = collections.defaultdict(list)  # (from layer, to layer) -> [(file, included)]
    for path in sorted(inc.rglob("*.hpp")):
        rel = path.relative_to(inc).as_posix()
        for m in re.finditer(r'^\s*#\s*include\s+[<"]ddm/([^">]+)[">]', path.read_text(), re.M):
            edges[(layer_of(rel), layer_of(m.group(1)))].append((rel, m.group(1)))
    return edges


def check(edges):
    rules = allowed()
    problems = []
    for (a, b), uses in sorted(edges.items()):
        if a == b:
            continue
        if a not in rules:
            problems.append(f"layer '{a}' ({uses[0][0]}) is not in tools/layers.py's table: add it there "
                            "and to docs/architecture.md")
        elif b not in rules[a]:
            for f, i in uses:
                problems.append(f"include/ddm/{f} includes ddm/{i}: layer '{a}' may not include '{b}' "
                                f"(allowed: {', '.join(sorted(rules[a])) or 'nothing'})")
    # A cycle among the layers (possible only if the table itself allows one).
    graph = collections.defaultdict(set)
    for a, b in edges:
        if a != b and a != "umbrella":
            graph[a].add(b)
    state = {}

    def visit(n, path):
        state[n] = 1
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                problems.append("cycle among layers: " + " -> ".join(path + [n, m]))
            elif m not in state:
                visit(m, path + [n])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])
    return problems


# Where each layer is drawn: (row from the bottom, column). Host on the left, device on the right.
PLACE = {
    "core": (0, 0), "io": (1, 3), "flow": (1, 1), "routing": (1, 2),
    "integrators": (2, 1), "synthetic": (2, 2),
    "diagnostics/jacobian": (3, 0), "diagnostics": (3, 1), "registry": (3, 2), "mpi": (2, 3),
    "diagnostics/instruments": (4, 0), "diagnostics/observers": (5, 0),
    "cuda": (0, 4), "cuda/core": (1, 4), "cuda/routing": (2, 4), "cuda/synthetic": (3, 5),
    "cuda/diagnostics": (5, 4), "cuda/mpi": (4, 5),
}


def svg(edges):
    """The layers that exist, placed by PLACE, with an arrow from includer to included for every
    relation that is not already implied by a path through other layers (the transitive reduction),
    so that the picture shows the structure rather than every include. Device-to-host arrows dashed."""
    graph = collections.defaultdict(set)
    for a, b in edges:
        if a != b and "umbrella" not in (a, b):
            graph[a].add(b)
    present = {n for n in PLACE if n in graph or any(n in g for g in graph.values())}

    def reachable(a, skip):
        seen, todo = set(), [m for m in graph[a] if m != skip]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(graph[n])
        return seen

    box_w, box_h, gap_x, gap_y, margin = 170, 30, 26, 44, 20
    rows = 1 + max(r for r, _ in PLACE.values())
    cols = 1 + max(c for _, c in PLACE.values())
    width, height = margin * 2 + cols * (box_w + gap_x), margin * 2 + rows * (box_h + gap_y) + 20
    pos = {n: (margin + c * (box_w + gap_x), height - margin - box_h - r * (box_h + gap_y))
           for n, (r, c) in PLACE.items() if n in present}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           '<defs><marker id="a" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
           'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{margin}" y="{margin}" font-weight="bold">host (include/ddm/)</text>',
           f'<text x="{margin + 4 * (box_w + gap_x)}" y="{margin}" font-weight="bold">device (include/ddm/cuda/)</text>']
    for a in sorted(graph):
        for b in sorted(graph[a]):
            if a not in pos or b not in pos or b in reachable(a, b):
                continue
            (x1, y1), (x2, y2) = pos[a], pos[b]
            sx, ex = x1 + box_w / 2, x2 + box_w / 2
            sy, ey = (y1 + box_h, y2) if y2 > y1 else (y1 + box_h / 2, y2 + box_h / 2)
            if y2 <= y1:  # same row: side to side
                sx, ex = (x1, x2 + box_w) if x2 < x1 else (x1 + box_w, x2)
            dash = ' stroke-dasharray="5,3"' if a.startswith("cuda") and not b.startswith("cuda") else ""
            out.append(f'<line x1="{sx:.0f}" y1="{sy:.0f}" x2="{ex:.0f}" y2="{ey:.0f}" stroke="#777" '
                       f'stroke-width="1.2"{dash} marker-end="url(#a)"/>')
    for n, (x, y) in pos.items():
        fill = "#e6f4ea" if n.startswith("cuda") else "#e8f0fe"
        out.append(f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="4" fill="{fill}" stroke="#333"/>')
        out.append(f'<text x="{x + box_w / 2:.0f}" y="{y + 19}" text-anchor="middle">{n}/</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=pathlib.Path(__file__).resolve().parent.parent, type=pathlib.Path)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--svg", type=pathlib.Path)
    args = ap.parse_args()
    if not args.check and not args.svg:
        ap.error("give --check, --svg FILE or both")
    edges = scan(args.root)
    status = 0
    if args.check:
        problems = check(edges)
        for p in problems:
            print(p, file=sys.stderr)
        status = 1 if problems else 0
        if args.svg and (not args.svg.exists() or args.svg.read_text() != svg(edges)):
            print(f"{args.svg} is not the picture of the current includes: run tools/layers.py --svg {args.svg}",
                  file=sys.stderr)
            status = 1
        if status == 0:
            print(f"layers: {sum(len(u) for u in edges.values())} includes between headers follow the table")
    elif args.svg:
        args.svg.parent.mkdir(parents=True, exist_ok=True)
        args.svg.write_text(svg(edges))
    return status


if __name__ == "__main__":
    sys.exit(main())
