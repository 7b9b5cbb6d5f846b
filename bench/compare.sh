#!/usr/bin/env bash
# The whole comparison in one command: builds ddm's benchmarks in Release, runs every suite with
# JSON output, runs the PyTorch peer (same-samples check, then timing at 1 and at 2 threads, as ddm's
# routing suite times its PyTorch configurations at 1 and 2 host threads), and rewrites the generated
# part of docs/performance.md.
#
#   bench/compare.sh            full grid (about 30 minutes on 2 cores)
#   bench/compare.sh --quick    shorter timings, one repetition (about 12 minutes; noisier)
#   bench/compare.sh --peer-only  only the PyTorch peer and the report, against the suites' last
#                               JSON (about 8 minutes), e.g. when the machine was busy meanwhile
#
# Environment: DDM_BENCH_BUILD (build directory, default build/bench-release), DDM_BENCH_RESULTS
# (JSON output, default $DDM_BENCH_BUILD/results), PYTHON (default python3; needs torch and numpy).
# Run it on an otherwise idle machine: the load average before and after is recorded in the doc.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${DDM_BENCH_BUILD:-$root/build/bench-release}
results=${DDM_BENCH_RESULTS:-$build/results}
python=${PYTHON:-python3}
mode=${1:-}
min_time=0.2
reps=3          # the routing grid (~300 benchmarks) runs 2
torch_min_time=0.5
case "$mode" in
  "") ;;
  --quick) min_time=0.05; reps=1; torch_min_time=0.1 ;;
  --peer-only) ;;  # rerun the PyTorch peer (e.g. when the machine is quieter) against the suites' JSON
  *) echo "usage: $0 [--quick | --peer-only]" >&2; exit 2 ;;
esac

load() { cut -d' ' -f1-3 /proc/loadavg | sed 's/ /, /g'; }
commit() { echo "$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo "+changes")"; }
# Busy: something else ran before a phase started (1-minute load > 0.5), or beside it (our own run
# adds about 1 to the load after; 2 while ddm or PyTorch uses two threads).
busy() {
  "$python" -c "import sys; b, a, m = map(float, sys.argv[1:]); print('true' if b > 0.5 or a > m else 'false')" \
    "${1%%,*}" "${2%%,*}" "$3"
}

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDDM_BUILD_BENCHMARKS=ON \
  -DDDM_BUILD_TESTS=OFF -DDDM_BUILD_EXAMPLES=OFF -DDDM_ENABLE_CUDA=OFF > /dev/null
cmake --build "$build" --target ddm_bench_integrators ddm_bench_routing ddm_bench_overhead \
  ddm_bench_diagnostics ddm_bench_odeint ddm_export_peer_data
mkdir -p "$results"

if [[ "$mode" != --peer-only ]]; then
  load_before=$(load)
  for suite in integrators overhead routing diagnostics odeint; do
    echo "== ddm_bench_$suite"
    r=$reps
    [[ $suite == routing && $reps -gt 2 ]] && r=2
    "$build/bench/ddm_bench_$suite" --benchmark_min_time="$min_time" --benchmark_repetitions="$r" \
      --benchmark_out="$results/$suite.json" --benchmark_out_format=json --benchmark_format=console \
      > "$results/$suite.txt"
    tail -n 3 "$results/$suite.txt"
  done
  load_after=$(load)
  cat > "$results/suites.json" << EOF
{"command": "bench/compare.sh${mode:+ $mode}", "load_before": "$load_before", "load_after": "$load_after",
 "busy": $(busy "$load_before" "$load_after" 1.5), "date": "$(date -u +%Y-%m-%dT%H:%MZ)", "commit": "$(commit)"}
EOF
elif [[ ! -f "$results/suites.json" ]]; then
  echo "$0 --peer-only: no suite results in $results; run $0 first" >&2
  exit 1
fi

echo "== PyTorch peer"
load_before=$(load)
"$build/bench/ddm_export_peer_data" "$results" > /dev/null
"$python" "$root/bench/peers/torch_ddm.py" info > "$results/torch_info.json"
"$python" "$root/bench/peers/torch_ddm.py" check --data "$results" > "$results/torch_check.jsonl" || {
  echo "the PyTorch peer does not reproduce ddm's samples:"; cat "$results/torch_check.jsonl"; exit 1; }
configs=$("$python" "$root/bench/report.py" configs --results "$results")
"$python" "$root/bench/peers/torch_ddm.py" time --data "$results" --threads 1 --min_time "$torch_min_time" \
  --configs "$configs" > "$results/torch_t1.jsonl"
"$python" "$root/bench/peers/torch_ddm.py" time --data "$results" --threads 2 --min_time "$torch_min_time" \
  --configs "$configs" > "$results/torch_t2.jsonl"
load_after=$(load)

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
cores=$(nproc)
caches=$(lscpu | sed -n 's/^\(L[23]\) cache: *\(.*\)/\1 \2/p' | paste -sd ',' | sed 's/,/, /g')
memory=$(free -g | awk '/^Mem:/ {print $2 " GiB memory"}')
compiler=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
compiler="$("$compiler" --version | head -n 1)"
benchmark=$(dpkg-query -W -f='${Version}' libbenchmark-dev 2> /dev/null || echo unknown)
cat > "$results/machine.json" << EOF
{"cpu": "$cpu", "cores": $cores, "caches": "$caches", "memory": "$memory", "compiler": "$compiler",
 "benchmark": "$benchmark", "peer_command": "bench/compare.sh${mode:+ $mode}", "load_before": "$load_before",
 "load_after": "$load_after", "busy": $(busy "$load_before" "$load_after" 2.5),
 "date": "$(date -u +%Y-%m-%dT%H:%MZ)", "commit": "$(commit)"}
EOF

"$python" "$root/bench/report.py" write --results "$results" --doc "$root/docs/performance.md"
