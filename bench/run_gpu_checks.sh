#!/usr/bin/env bash
# Build and run ddm's CUDA tests and benchmarks on a GPU machine, in one go (a few minutes on an
# H100 with 16 cores: about 1 minute of build, under 1 minute of tests, under 1 minute of
# benchmarks).
#
#     OUT=/path/for/results bench/run_gpu_checks.sh
#
# Environment:
#   OUT         where the results go (default ./gpu-results)
#   BUILD       build directory (default build/gpu under the repository)
#   CUDA_ARCH   CMAKE_CUDA_ARCHITECTURES (default 90: H100, H200)
#   SKIP_BUILD  1: use the binaries already in $BUILD (built elsewhere and carried over)
#
# Needs CMake >= 3.24, nvcc, GoogleTest and Google Benchmark (as for the CPU build).
#
# Results in $OUT:
#   gpu.txt                    nvidia-smi -L, the card's clocks and memory, nvcc's version
#   configure.log, build.log   the build
#   tests.txt, tests.json      ddm_test_cuda (every test; "[ measured ]" lines included)
#   cuda_algebra_bench.txt     the benchmark table
#   cuda_algebra_bench.json    the same, as Google Benchmark JSON (3 repetitions, aggregates)
#   summary.txt                what ran, its status and its time
#
# The exit status is 0 only when every step succeeded.

set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-./gpu-results}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
BUILD="${BUILD:-$repo/build/gpu}"
CUDA_ARCH="${CUDA_ARCH:-90}"
export PATH="/usr/local/cuda/bin:$PATH"

status=0
summary="$OUT/summary.txt"
: > "$summary"

# step <name> <command...>: run, log status and time, remember a failure.
step() {
  local name="$1"
  shift
  local t0=$SECONDS
  "$@"
  local rc=$?
  printf '%-12s rc=%-3d %4ds\n' "$name" "$rc" "$((SECONDS - t0))" | tee -a "$summary"
  [ "$rc" -eq 0 ] || status=1
  return "$rc"
}

gpu_info() {
  nvidia-smi -L || return 1
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.memory --format=csv
  nvcc --version | tail -n 2
}

configure() {
  local generator="Unix Makefiles"
  command -v ninja > /dev/null && generator="Ninja"
  cmake -S "$repo" -B "$BUILD" -G "$generator" \
    -DCMAKE_BUILD_TYPE=Release \
    -DDDM_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" \
    -DDDM_BUILD_TESTS=ON -DDDM_BUILD_BENCHMARKS=ON -DDDM_BUILD_EXAMPLES=OFF
}

build() {
  cmake --build "$BUILD" --target ddm_test_cuda ddm_bench_cuda_algebra -j "$(nproc)"
}

tests() {
  # One process for the whole suite: its "[ measured ]" lines land in tests.txt.
  timeout 300 "$BUILD/tests/ddm_test_cuda" --gtest_output="json:$OUT/tests.json"
}

benchmarks() {
  timeout 240 "$BUILD/bench/ddm_bench_cuda_algebra" \
    --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
    --benchmark_out="$OUT/cuda_algebra_bench.json" --benchmark_out_format=json
}

step gpu gpu_info 2>&1 | tee "$OUT/gpu.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
if [ "${SKIP_BUILD:-0}" != "1" ]; then
  step configure configure > "$OUT/configure.log" 2>&1 || { cat "$OUT/configure.log"; status=1; }
  if [ "$status" -eq 0 ]; then
    step build build > "$OUT/build.log" 2>&1 || { tail -n 50 "$OUT/build.log"; status=1; }
  fi
fi
if [ -x "$BUILD/tests/ddm_test_cuda" ]; then
  step tests tests 2>&1 | tee "$OUT/tests.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  # On a GPU machine nothing may skip: a skip means the device was not usable.
  if grep -q "^\[  SKIPPED \]" "$OUT/tests.txt"; then
    echo "tests were skipped: the GPU was not usable (see tests.txt)" | tee -a "$summary"
    status=1
  fi
else
  echo "no test binary at $BUILD/tests/ddm_test_cuda" | tee -a "$summary"
  status=1
fi
if [ -x "$BUILD/bench/ddm_bench_cuda_algebra" ]; then
  step benchmarks benchmarks 2>&1 | tee "$OUT/cuda_algebra_bench.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
else
  echo "no benchmark binary at $BUILD/bench/ddm_bench_cuda_algebra" | tee -a "$summary"
  status=1
fi

echo "---- summary (results in $OUT)"
cat "$summary"
grep -h "\[  FAILED  \]\|\[  PASSED  \]\|\[  SKIPPED \] [0-9]" "$OUT/tests.txt" 2>/dev/null
exit "$status"
