#!/usr/bin/env python3
"""Checks ddm-dit's command line (Python standard library only).

    check_cli.py --program PATH --work DIR [--fixtures tests/dit/golden]

Every malformed number or name exits with status 2 and the usage message (not an uncaught C++
exception, not a partial parse such as "3x" -> 3); a --text file whose 'text' or 'uncond' tensor
has the right number of values but the wrong (length, width) is refused with a message naming the
tensor; and a well-formed --text file samples (so the checks are not simply stricter than valid
input). Errors carry the program's prefix once. --help describes every flag of the usage line
with its default. With --fixtures, a copy of the tiny Paris folder whose experts hold a NaN weight
must fail with a message and leave no --out file, and an original DiT checkpoint (dit_a) samples
with its head count from --heads or from its metadata, and is refused by name without either.
"""

import argparse
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def write_f32(path, tensors):
    """A safetensors file of F32 tensors: name -> (shape, flat values)."""
    header, blobs, offset = {}, [], 0
    for name, (shape, values) in tensors.items():
        raw = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def poison(path, tensor):
    """Sets the first value of an F32, BF16 or F16 tensor of a safetensors file to NaN, in place."""
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        begin = header[tensor]["data_offsets"][0]
        nan = {"F32": struct.pack("<f", math.nan), "BF16": struct.pack("<H", 0x7FC0),
               "F16": struct.pack("<H", 0x7E00)}[header[tensor]["dtype"]]
        f.seek(8 + n + begin)
        f.write(nan)


def check_nan_weights(a):
    """One step, no diagnostics: NaN weights once gave NaN latents, exit 0 and a written --out."""
    folder = os.path.join(a.work, "paris_nan")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(os.path.join(a.fixtures, "paris_tiny"), folder)
    k = 0
    while os.path.isdir(os.path.join(folder, "expert_%d" % k)):
        poison(os.path.join(folder, "expert_%d" % k, "diffusion_pytorch_model.safetensors"), "final_layer.linear.bias")
        k += 1
    out = os.path.join(a.work, "nan_latents.safetensors")
    if os.path.exists(out):
        os.remove(out)
    r = run(a.program, ["--checkpoint", folder, "--steps", "1", "--diagnostics", "0", "--out", out])
    if r.returncode != 1 or "non-finite" not in r.stderr or os.path.exists(out):
        fail("NaN weights: exit %d, stderr %r, --out written: %s; expected exit 1, a message and no file"
             % (r.returncode, r.stderr[-300:], os.path.exists(out)))
    print("[ measured ] NaN weights in %d experts refused after sampling, nothing written" % k)


def with_metadata(source, target, metadata):
    """A copy of a safetensors file with `metadata` (str -> str) as its '__metadata__'."""
    with open(source, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(target, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def check_help(a):
    """Every flag of the usage line has a paragraph in --help that states its default."""
    r = run(a.program, ["--help"])
    if r.returncode != 0:
        fail("--help: exit %d" % r.returncode)
        return
    usage = r.stdout[:r.stdout.index("\n\n")] if "\n\n" in r.stdout else r.stdout
    flags = sorted(set(re.findall(r"\[(--[a-z-]+)", usage)))
    paragraphs = {}
    current = None
    for line in r.stdout.splitlines():
        m = re.match(r"^  (--[a-z-]+)", line)
        if m:
            current = m.group(1)
            paragraphs[current] = line
        elif current and line.startswith("    "):
            paragraphs[current] += " " + line.strip()
        else:
            current = None
    for flag in flags:
        if flag not in paragraphs:
            fail("--help does not describe %s" % flag)
        elif "default" not in paragraphs[flag]:
            fail("--help does not give the default of %s: %r" % (flag, paragraphs[flag]))
    if len(flags) < 17:
        fail("the usage line names only %d flags: %s" % (len(flags), flags))
    print("[ measured ] --help describes %d flags, each with its default" % len(flags))


def check_dit_file(a):
    """An original DiT checkpoint: the head count from --heads or the metadata, else refused."""
    dit = os.path.join(a.fixtures, "dit_a.safetensors")
    common = ["--checkpoint", dit, "--steps", "2", "--batch", "2"]
    r = run(a.program, common + ["--heads", "1"])
    if r.returncode != 0 or "DiT (width 72, depth 2, 1 heads" not in r.stdout or "final latents" not in r.stdout:
        fail("dit_a with --heads 1: exit %d, stdout %r, stderr %r" % (r.returncode, r.stdout[-300:], r.stderr[-300:]))
    r = run(a.program, common)
    if r.returncode != 1 or "--heads N" not in r.stderr:
        fail("dit_a without a head count: exit %d, stderr %r; expected exit 1 naming --heads" %
             (r.returncode, r.stderr[-300:]))
    tagged = os.path.join(a.work, "dit_a_with_heads.safetensors")
    with_metadata(dit, tagged, {"format": "pt", "num_heads": "1"})
    r = run(a.program, ["--checkpoint", tagged, "--steps", "2", "--batch", "2", "--guided-channels", "3"])
    if r.returncode != 0 or "1 heads" not in r.stdout or "on 3 of 4 eps channels" not in r.stdout:
        fail("dit_a with num_heads in its metadata: exit %d, stdout %r, stderr %r" %
             (r.returncode, r.stdout[-300:], r.stderr[-300:]))
    refused = [(["--heads", "1", "--class", "10"], 1, "--class 10"),
               (["--heads", "1", "--guided-channels", "5"], 1, "--guided-channels 5"),
               (["--heads", "5"], 1, "not divisible by num_heads 5"),
               (["--heads", "1", "--policy", "top1"], 2, "--policy and --text are for Paris-layout folders"),
               (["--heads", "0"], 2, "--heads expects an integer")]
    for args, code, message in refused:
        r = run(a.program, common + args)
        if r.returncode != code or message not in r.stderr:
            fail("%s: exit %d, stderr %r; expected exit %d and %r" % (args, r.returncode, r.stderr[-300:], code, message))
    r = run(a.program, ["--heads", "2"])
    if r.returncode != 2 or "are for an original DiT checkpoint" not in r.stderr:
        fail("--heads with a folder: exit %d, stderr %r" % (r.returncode, r.stderr[-300:]))
    print("[ measured ] an original DiT checkpoint sampled (head count from --heads and from metadata), "
          "%d misuses refused" % (len(refused) + 2))


def run(program, args):
    return subprocess.run([program] + args, capture_output=True, text=True, timeout=120)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--program", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--fixtures", default="")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)

    bad = [["--steps", "abc"], ["--steps", "3x"], ["--steps", "0"], ["--batch", "99999999999"], ["--batch", ""],
           ["--cfg", "nan"], ["--cfg", "inf"], ["--cfg", "7.5.1"], ["--seed", "-1"], ["--threads", "abc"],
           ["--diagnostics", "-1"], ["--policy", "top0"], ["--solver", "rk4"], ["--device", "tpu"], ["--steps"],
           ["--nope"]]
    for args in bad:
        r = run(a.program, args)
        if r.returncode != 2 or "usage: ddm-dit" not in r.stderr:
            fail("%s: exit %d, stderr %r; expected exit 2 and the usage message" % (args, r.returncode, r.stderr[-200:]))
    # Size flags beyond their bounds: refused at once with the flag's name (--batch 2147483647 once
    # ran into bad_alloc after the load).
    for args in (["--steps", "2147483647"], ["--batch", "2147483647"]):
        r = run(a.program, args)
        if r.returncode != 2 or args[0] not in r.stderr:
            fail("%s: exit %d, stderr %r; expected exit 2 naming %s" % (args, r.returncode, r.stderr[-200:], args[0]))
        bad.append(args)
    print("[ measured ] %d bad command lines checked" % len(bad))

    # The fixture's experts take text (5, 16): 80 values per prompt.
    length, width = 5, 16
    values = [0.01 * i for i in range(2 * length * width)]
    cases = [
        ("text_transposed.safetensors", {"text": ([2, width, length], values)}, "tensor 'text' has shape [2, 16, 5]"),
        ("text_regrouped.safetensors", {"text": ([2, 10, 8], values)}, "tensor 'text' has shape [2, 10, 8]"),
        ("uncond_regrouped.safetensors",
         {"text": ([2, length, width], values), "uncond": ([1, 10, 8], values[:length * width])},
         "tensor 'uncond': has shape [1, 10, 8]"),
    ]
    for name, tensors, message in cases:
        path = os.path.join(a.work, name)
        write_f32(path, tensors)
        r = run(a.program, ["--text", path, "--steps", "1", "--diagnostics", "0"])
        if r.returncode != 1 or message not in r.stderr:
            fail("%s: exit %d, stderr %r; expected exit 1 and %r" % (name, r.returncode, r.stderr[-300:], message))
        if "ddm-dit: ddm-dit:" in r.stderr:
            fail("%s: the message repeats the program's prefix: %r" % (name, r.stderr[-300:]))
    good = os.path.join(a.work, "text_good.safetensors")
    write_f32(good, {"text": ([2, length, width], values), "uncond": ([1, length, width], values[:length * width])})
    r = run(a.program, ["--text", good, "--steps", "1", "--diagnostics", "0"])
    if r.returncode != 0 or "2 samples" not in r.stdout:
        fail("a well-formed --text file: exit %d, stderr %r" % (r.returncode, r.stderr[-300:]))
    print("[ measured ] %d malformed --text files refused, a well-formed one sampled" % len(cases))

    check_help(a)
    if a.fixtures:
        check_nan_weights(a)
        check_dit_file(a)

    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
