#!/usr/bin/env python3
"""ddm-dit under mpirun prints what one process prints (CTest example.ddm-dit.fashion.mpi*).

Runs the fashion-dit DDM once in one process and once under `mpirun -np N --placement SPEC`, both
with one thread per process, and compares:
  - every printed line from the step count to the final latents (the run's time removed): routing
    counts per expert, the cost, the latents' min, max and mean at the printed precision;
  - the --out latents value by value: equal to the bit when the experts and router give each row
    what they give it in a whole-batch call; the DiT's GEMMs (OpenBLAS picks kernels by the number
    of rows) do not, so the bound is 1e-5 of the latents' scale, and the script prints what it measured.
Standard library only (the safetensors file is read by hand).
"""
import argparse
import json
import os
import re
import struct
import subprocess
import sys


def latents(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        info = header["latents"]
        assert info["dtype"] == "F32", info
        begin, end = info["data_offsets"]
        f.seek(8 + n + begin)
        raw = f.read(end - begin)
    return struct.unpack(f"<{len(raw) // 4}f", raw)


def report(out):
    lines = out.splitlines()
    first = next(i for i, l in enumerate(lines) if re.match(r"^\d+ steps, ", l))
    last = next(i for i, l in enumerate(lines) if l.startswith("final latents"))
    kept = lines[first:last + 1]
    kept[0] = re.sub(r" in [0-9.]+ s;", ";", kept[0])
    return kept


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--program", required=True)
    ap.add_argument("--mpirun", required=True,
                    help="the launcher and its flags, '|'-separated, ending with its rank-count flag (the count follows)")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--placement", default="round-robin")
    ap.add_argument("--work", required=True)
    ap.add_argument("args", nargs=argparse.REMAINDER, help="ddm-dit's arguments, after --")
    a = ap.parse_args()
    args = [x for x in a.args if x != "--"]
    os.makedirs(a.work, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    one_out = os.path.join(a.work, "one.safetensors")
    many_out = os.path.join(a.work, f"np{a.ranks}.safetensors")
    one = subprocess.run([a.program, *args, "--out", one_out], env=env, capture_output=True, text=True)
    many = subprocess.run([*a.mpirun.split("|"), str(a.ranks), a.program, *args, "--placement", a.placement, "--out", many_out],
                          env=env, capture_output=True, text=True)
    for name, r in (("one process", one), (f"mpirun -np {a.ranks}", many)):
        if r.returncode != 0:
            sys.exit(f"{name} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    print(many.stdout)
    want, got = report(one.stdout), report(many.stdout)
    if want != got:
        sys.exit("the printed numbers differ:\none process:\n  " + "\n  ".join(want) + f"\nmpirun -np {a.ranks}:\n  " +
                 "\n  ".join(got))
    x1, x2 = latents(one_out), latents(many_out)
    scale = max(abs(v) for v in x1)
    diff = max(abs(p - q) for p, q in zip(x1, x2))
    same = sum(p == q for p, q in zip(x1, x2))
    print(f"[ measured ] {a.ranks} ranks, placement {a.placement}: {len(want)} printed lines equal; latents: "
          f"{same} of {len(x1)} values equal to the bit, max |difference| {diff:.3g} of max |x| {scale:.3g}")
    if diff > 1e-5 * scale:
        sys.exit(f"the latents differ by {diff:.3g}, more than 1e-5 of their scale {scale:.3g}")


if __name__ == "__main__":
    main()
