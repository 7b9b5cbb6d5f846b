#!/bin/sh
# Rebuilds ddm-paradox and regenerates docs/paradox.md and docs/paradox/*.svg from its runs
# (the default run, timed, and the temperature sweep). Run from anywhere; takes a few minutes.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# The README's lean preset: ddm-paradox alone, without the tests' and benchmarks' dependencies.
cmake --preset paradox
cmake --build --preset paradox
exec python3 examples/01_paradox/make_docs.py --program build/paradox/examples/01_paradox/ddm-paradox
