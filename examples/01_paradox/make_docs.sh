#!/bin/sh
# Rebuilds ddm-paradox and regenerates docs/paradox.md and docs/paradox/*.svg from its runs
# (the default run, timed, and the temperature sweep). Run from anywhere; takes a few minutes.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
[ -d build/default ] || cmake --preset default
cmake --build --preset default --target ddm-paradox
exec python3 examples/01_paradox/make_docs.py --program build/default/examples/01_paradox/ddm-paradox
