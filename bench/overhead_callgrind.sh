#!/usr/bin/env bash
# The sampler's overhead in instructions: ddm_bench_overhead under valgrind --tool=callgrind, each
# side's instructions (inclusive, of its out-of-line run function) over the hand-written loop's.
# Instruction counts do not move with the load on the machine, which wall-clock medians do by
# more than the effect measured.
#
#   bench/overhead_callgrind.sh                  this tree
#   bench/overhead_callgrind.sh --before REV     also the library as of REV (this bench compiled
#                                                against REV's include/), as "before" rows
#
# The bench is compiled here with g++ -O3 -mavx2 -mfma (valgrind has no AVX-512, so not
# -march=native as the CMake build does). Only the timed runs count (the bench's warm-up runs
# go through other instances of the same functions), one per side and iteration, so the ratio of
# inclusive totals is the ratio per warm run.
# Environment: DDM_CALLGRIND_OUT (work directory, default build/callgrind), DDM_CALLGRIND_CASES
# (space-separated benchmark names without the "overhead/" prefix, default the grid below).
# Prints a markdown table on stdout; the raw callgrind files stay in the work directory.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${DDM_CALLGRIND_OUT:-$root/build/callgrind}
before=
case "${1:-}" in
  "") ;;
  --before) before=${2:?--before needs a git revision} ;;
  *) echo "usage: $0 [--before REV]" >&2; exit 2 ;;
esac
mkdir -p "$out"

# B x D = 64 (one row) and upwards; the analytic DDM only up to 64 x 1024, where it already costs
# seconds of callgrind time per run.
cases=${DDM_CALLGRIND_CASES:-"
linear/euler/top2/K:8/B:1/D:64 linear/dpm++2m/top2/K:8/B:1/D:64
linear/euler/top2/K:8/B:64/D:64 linear/dpm++2m/top2/K:8/B:64/D:64
linear/euler/top2/K:8/B:64/D:1024 linear/dpm++2m/top2/K:8/B:64/D:1024
linear/euler/top2/K:8/B:1024/D:1024 linear/dpm++2m/top2/K:8/B:1024/D:1024
analytic/euler/top2/K:8/B:1/D:64 analytic/dpm++2m/top2/K:8/B:1/D:64
analytic/euler/top2/K:8/B:64/D:64 analytic/dpm++2m/top2/K:8/B:64/D:64
analytic/dpm++2m/top2/K:8/B:64/D:1024"}

build() {  # build INCLUDE_ROOT BINARY: this tree's bench against the headers of INCLUDE_ROOT
  g++ -std=c++20 -O3 -DNDEBUG -mavx2 -mfma -I"$1/include" -I"$root/bench" \
    "$root/bench/overhead_bench.cpp" "$root/bench/support/bench_main.cpp" -lbenchmark -lpthread -o "$2"
}

# Inclusive instructions of every function whose name contains $2, summed, in callgrind file $1.
inclusive() {
  callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
    awk -v f="$2" 'index($0, f) { gsub(",", "", $1); s += $1 } END { printf "%.0f\n", s }'
}

trees=(after)
build "$root" "$out/bench_after"
if [[ -n "$before" ]]; then
  rm -rf "$out/src_before" && mkdir -p "$out/src_before"
  git -C "$root" archive "$before" | tar -x -C "$out/src_before"
  build "$out/src_before" "$out/bench_before"
  trees=(before after)
fi

pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == 0 || b == 0) print "-"; else printf "%+.1f%%\n", 100 * (a / b - 1) }'; }

echo "| case | tree | hand Ir / run | \`ddm::sampler\` | \`ddm::sample()\` | \`ddm::sample()\`, context with a workspace |"
echo "|---|---|---|---|---|---|"
for c in $cases; do
  for tree in "${trees[@]}"; do
    file="$out/$(echo "$c" | tr '/:+' '___').$tree.out"
    valgrind --tool=callgrind --callgrind-out-file="$file" "$out/bench_$tree" \
      --benchmark_filter="^overhead/${c//+/\\+}/" --benchmark_min_time=0 >/dev/null 2>&1
    hand=$(inclusive "$file" "hand_sampler_run<true")
    kept=$(inclusive "$file" "ddm_kept_run<true")
    fresh=$(inclusive "$file" "ddm_sampler_run<true")
    pooled=$(inclusive "$file" "ddm_workspace_run<true")
    # Timed runs per side, from the hand side's call count.
    calls=$(callgrind_annotate --tree=caller "$file" 2>/dev/null | grep -B1 '\* .*hand_sampler_run<true' | head -1 |
      sed -E 's/.*\(([0-9]+)x\).*/\1/' || true)
    per=$([[ "$calls" =~ ^[0-9]+$ && "$calls" -gt 0 ]] && echo $((hand / calls)) || echo "?")
    echo "| $c | $tree | $per | $(pct "$kept" "$hand") | $(pct "$fresh" "$hand") | $(pct "$pooled" "$hand") |"
  done
done
