#!/usr/bin/env bash
# Build and run ddm's CUDA tests and benchmarks and the paradox study on a GPU machine, in one go
# (a few minutes on an H100 with 16 cores: about 2 minutes of build, about 1 minute of tests, 2 to
# 3 minutes of benchmarks, under a minute for the study on the GPU and on the host; the dit-cuda and
# routed-cuda sections add their own, see their comments).
#
#     OUT=/path/for/results bench/run_gpu_checks.sh
#     SKIP_BUILD=1 BUILD=build/default OUT=... bench/run_gpu_checks.sh   # binaries built elsewhere
#
# Environment:
#   OUT         where the results go (default ./gpu-results)
#   BUILD       build directory (default build/gpu under the repository); with SKIP_BUILD=1 the
#               binaries are expected at $BUILD/tests/ddm_test_cuda{,_routing},
#               $BUILD/bench/ddm_bench_cuda_{algebra,routing,routed}, $BUILD/bench/ddm_export_peer_data
#               and $BUILD/examples/01_paradox/ddm-paradox (they link the CUDA runtime and cuBLAS of
#               the toolkit they were built with, which the GPU machine must have)
#   CUDA_ARCH   CMAKE_CUDA_ARCHITECTURES (default 90: H100, H200)
#   SKIP_BUILD  1: use the binaries already in $BUILD (built elsewhere and carried over)
#   BENCH_REPS  repetitions of each benchmark (default 3)
#   PARADOX_DOUBLE  1: also time the default study in double on both (default 0)
#
# Needs CMake >= 3.24, nvcc, GoogleTest and Google Benchmark (as for the CPU build), Eigen and
# nlohmann_json for ddm-paradox, and Python 3 for its comparison.
#
# Results in $OUT:
#   gpu.txt                    nvidia-smi -L, the card's clocks and memory, nvcc's version
#   configure.log, build.log   the build
#   tests.txt, tests.json      ddm_test_cuda: memory, algebra, Philox, integrators ("[ measured ]"
#                              lines included)
#   tests_routing.txt/.json    ddm_test_cuda_routing: routing, the routed field, the analytic DDM,
#                              the diagnostics on device
#   cuda_algebra_bench.txt     the algebra benchmarks (fused lincomb, strided, integrator steps)
#   cuda_routing_bench.txt     the routed combine and the routed field's cost at K = 8
#   cuda_routed.*, torch_cuda* routed sampling solver x policy x K x B x D on the device, and
#                              PyTorch on the same card (see the routed-cuda section below)
#   *_bench.json               the same, as Google Benchmark JSON (repetitions, aggregates)
#   tests_mpi_device.txt       ddm_test_mpi_cuda under mpirun -np 1: the NCCL distributed experts
#                              against the single-process device run, bit for bit
#   paradox_compare.txt        ddm-paradox --device cuda against --device cpu on a small
#                              configuration in float (examples/01_paradox/compare_devices.py: sample
#                              by sample, every number within its tolerance, the same verdicts)
#   paradox_cuda.txt/.json     the default study on the GPU (float), with --out paradox_cuda/
#   paradox_host.txt/.json     the same configuration on the host (--precision float)
#   paradox_timing.txt         wall times of both, per policy and in all, and the speed-up
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
    -DDDM_BUILD_TESTS=ON -DDDM_BUILD_BENCHMARKS=ON -DDDM_BUILD_EXAMPLES=ON
}

build() {
  cmake --build "$BUILD" --target ddm_test_cuda ddm_test_cuda_routing ddm_bench_cuda_algebra \
    ddm_bench_cuda_routing ddm-paradox -j "$(nproc)"
}

# run_suite <binary name> <result name>: one process for the whole suite, so that its
# "[ measured ]" lines land in <result name>.txt.
run_suite() {
  timeout 240 "$BUILD/tests/$1" --gtest_output="json:$OUT/$2.json"
}

# run_bench <binary name> <result name>
run_bench() {
  timeout 240 "$BUILD/bench/$1" \
    --benchmark_repetitions="${BENCH_REPS:-3}" --benchmark_report_aggregates_only=true \
    --benchmark_out="$OUT/$2.json" --benchmark_out_format=json
}

step gpu gpu_info 2>&1 | tee "$OUT/gpu.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
if [ "${SKIP_BUILD:-0}" != "1" ]; then
  step configure configure > "$OUT/configure.log" 2>&1 || { cat "$OUT/configure.log"; status=1; }
  if [ "$status" -eq 0 ]; then
    step build build > "$OUT/build.log" 2>&1 || { tail -n 50 "$OUT/build.log"; status=1; }
  fi
fi
for suite in ddm_test_cuda:tests ddm_test_cuda_routing:tests_routing; do
  binary="${suite%%:*}"
  name="${suite##*:}"
  if [ -x "$BUILD/tests/$binary" ]; then
    step "$name" run_suite "$binary" "$name" 2>&1 | tee "$OUT/$name.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    # On a GPU machine nothing may skip: a skip means the device was not usable.
    if grep -q "^\[  SKIPPED \]" "$OUT/$name.txt"; then
      echo "$binary: tests were skipped: the GPU was not usable (see $name.txt)" | tee -a "$summary"
      status=1
    fi
  else
    echo "no test binary at $BUILD/tests/$binary" | tee -a "$summary"
    status=1
  fi
done
# The device distributed experts (NCCL), one rank: built when MPI and NCCL were found.
if cmake --build "$BUILD" --target help 2>/dev/null | grep -q "ddm_test_mpi_cuda"; then
  if [ "${SKIP_BUILD:-0}" != "1" ]; then
    cmake --build "$BUILD" --target ddm_test_mpi_cuda -j "$(nproc)" >> "$OUT/build.log" 2>&1 || status=1
  fi
  if command -v mpirun >/dev/null 2>&1 && [ -x "$BUILD/tests/ddm_test_mpi_cuda" ]; then
    step tests_mpi_device timeout 240 mpirun --allow-run-as-root --oversubscribe -np 1 \
      "$BUILD/tests/ddm_test_mpi_cuda" 2>&1 | tee "$OUT/tests_mpi_device.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  else
    echo "no mpirun or no $BUILD/tests/ddm_test_mpi_cuda: the NCCL path was not run" | tee -a "$summary"
  fi
fi
# ==== [begin dit-cuda] DiT experts on the GPU (examples/02_dit, dit/backend_cuda.cuh) ============
# Kept in one section (another branch edits the sections above). About 2 minutes on an H100/H200:
# ~30 s of tests, ~40 s of Google Benchmark (random weights generated on the host first), ~60 s of
# comparisons with PyTorch (each writes the weights to a temporary directory and loads them in both).
# Results in $OUT:
#   tests_dit_cuda.txt/.json   ddm_test_dit_cuda: every backend operation vs the host, the golden
#                              models vs PyTorch and vs the host (f32), bf16 / f16 storage vs f32,
#                              routed and DDPM sampling on the device vs the host
#   dit_cuda_bench.txt/.json   ddm_bench_dit_cuda: one forward of DiT-B/2 and DiT-XL/2 (256 px),
#                              float and bf16 weights, batch 1 and 8: ms and TFLOP/s
#   dit_vs_pytorch.txt         bench/peers/dit_forward.py --compare: ddm and PyTorch on the same
#                              weights and inputs, same card: ms, TFLOP/s, ratio, errors vs float32
#   ddm_dit_cuda.txt           ddm-dit --device cuda on the tiny Paris fixture (when the example
#                              binary is in $BUILD: a configuration with the examples)
# Environment: DIT_COMPARE ("model:dtype:batch ..." cases for the comparison), PYTHON (python3).
# Test binaries built elsewhere find the golden fixtures of this checkout.
export DDM_DIT_FIXTURES="$repo/tests/dit/golden"
dit_build() {
  cmake --build "$BUILD" --target ddm_test_dit_cuda ddm_bench_dit_cuda -j "$(nproc)" || return 1
  # ddm-dit exists when the configuration builds the examples.
  if cmake --build "$BUILD" --target help | grep -q "ddm-dit"; then
    cmake --build "$BUILD" --target ddm-dit -j "$(nproc)"
  fi
}
dit_bench() {
  timeout 300 "$BUILD/bench/ddm_bench_dit_cuda" --benchmark_filter='shape:[12]/' \
    --benchmark_repetitions="${BENCH_REPS:-3}" --benchmark_report_aggregates_only=true \
    --benchmark_out="$OUT/dit_cuda_bench.json" --benchmark_out_format=json
}
dit_compare() {
  local rc=0 case model dtype batch work
  work="$(mktemp -d)"  # up to 2.7 GB of weights: outside $OUT, removed at the end
  for case in ${DIT_COMPARE:-DiT-XL/2:bf16:8 DiT-XL/2:f32:8 DiT-XL/2:bf16:1 DiT-B/2:bf16:8 DiT-B/2:f32:8}; do
    IFS=: read -r model dtype batch <<< "$case"
    timeout 240 "${PYTHON:-python3}" "$repo/bench/peers/dit_forward.py" --device cuda --dtype "$dtype" \
      --model "$model" --batch "$batch" --compare "$BUILD/bench/ddm_bench_dit_cuda" --workdir "$work" || rc=1
  done
  rm -rf "$work"
  return "$rc"
}
dit_example() {
  local fixture="$repo/tests/dit/golden/paris_tiny"
  timeout 120 "$BUILD/examples/02_dit/ddm-dit" --checkpoint "$fixture" --device cuda --steps 6 --batch 4 && \
    timeout 120 "$BUILD/examples/02_dit/ddm-dit" --checkpoint "$fixture" --device cuda --storage bf16 --steps 6 \
      --batch 4 --policy full
}
if [ "${SKIP_BUILD:-0}" != "1" ]; then
  step dit_build dit_build >> "$OUT/build.log" 2>&1 || { tail -n 50 "$OUT/build.log"; status=1; }
fi
if [ -x "$BUILD/tests/ddm_test_dit_cuda" ]; then
  step tests_dit_cuda timeout 240 "$BUILD/tests/ddm_test_dit_cuda" --gtest_output="json:$OUT/tests_dit_cuda.json" \
    2>&1 | tee "$OUT/tests_dit_cuda.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  if grep -q "^\[  SKIPPED \]" "$OUT/tests_dit_cuda.txt"; then
    echo "ddm_test_dit_cuda: tests were skipped: the GPU was not usable (see tests_dit_cuda.txt)" | tee -a "$summary"
    status=1
  fi
else
  echo "no test binary at $BUILD/tests/ddm_test_dit_cuda" | tee -a "$summary"
  status=1
fi
if [ -x "$BUILD/bench/ddm_bench_dit_cuda" ]; then
  step dit_bench dit_bench 2>&1 | tee "$OUT/dit_cuda_bench.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  step dit_compare dit_compare 2>&1 | tee "$OUT/dit_vs_pytorch.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
else
  echo "no benchmark binary at $BUILD/bench/ddm_bench_dit_cuda" | tee -a "$summary"
  status=1
fi
if [ -x "$BUILD/examples/02_dit/ddm-dit" ]; then
  step ddm_dit_cuda dit_example 2>&1 | tee "$OUT/ddm_dit_cuda.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
# ==== [end dit-cuda] =============================================================================
for bench in ddm_bench_cuda_algebra:cuda_algebra_bench ddm_bench_cuda_routing:cuda_routing_bench; do
  binary="${bench%%:*}"
  name="${bench##*:}"
  if [ -x "$BUILD/bench/$binary" ]; then
    step "$name" run_bench "$binary" "$name" 2>&1 | tee "$OUT/$name.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  else
    echo "no benchmark binary at $BUILD/bench/$binary" | tee -a "$summary"
    status=1
  fi
done

# ==== [begin routed-cuda] routed sampling on the device, and PyTorch on the same card ============
# ddm_bench_cuda_routed (bench/cuda_routed_sampling_bench.cu): every solver x policy x K over the
# device analytic DDM and the linear routed field, and Euler / 2M over B x D, with the ratio to a
# D2D copy (288 benchmarks; estimated at 1 to 3 minutes per repetition on an H100, not yet timed:
# ROUTED_REPS=1 for a first run). Then the PyTorch peer on the same card (bench/peers/torch_ddm.py
# --device cuda): its samples against ddm's from the same noise (float64), and its time per step on
# every analytic Euler / 2M x top-1 / top-2 / full, K = 8 configuration the suite ran (66; estimated
# at under a minute). bench/report.py cuda writes the tables.
# Results in $OUT:
#   cuda_routed.txt/.json      the suite (console; Google Benchmark JSON with every repetition)
#   torch_cuda_info.json       PyTorch's version, CUDA, GPU and float32 matmul precision
#   torch_cuda_check.jsonl     same samples from the same noise, per data file, solver and policy
#   torch_cuda.jsonl           PyTorch's time per step per configuration
#   cuda_routed.md             the tables; docs/performance.md takes them with
#                              python3 bench/report.py cuda --results $OUT --doc docs/performance.md
# Environment: ROUTED_REPS (repetitions, default 2), ROUTED_MIN_TIME (seconds per benchmark, default
# 0.05), ROUTED_FILTER (a --benchmark_filter, default all), TORCH_MIN_TIME (default 0.2), PYTHON.
routed_build() {
  cmake --build "$BUILD" --target ddm_bench_cuda_routed ddm_export_peer_data -j "$(nproc)"
}
routed_bench() {
  timeout 540 "$BUILD/bench/ddm_bench_cuda_routed" --benchmark_filter="${ROUTED_FILTER:-.}" \
    --benchmark_min_time="${ROUTED_MIN_TIME:-0.05}" --benchmark_repetitions="${ROUTED_REPS:-2}" \
    --benchmark_out="$OUT/cuda_routed.json" --benchmark_out_format=json
}
routed_torch() {
  local py="${PYTHON:-python3}" data configs rc=0
  data="$(mktemp -d)"  # the peer's parameters and check data (about 30 MB): outside $OUT
  "$BUILD/bench/ddm_export_peer_data" "$data" > /dev/null || { rm -rf "$data"; return 1; }
  "$py" "$repo/bench/peers/torch_ddm.py" info --device cuda > "$OUT/torch_cuda_info.json" || rc=1
  "$py" "$repo/bench/peers/torch_ddm.py" check --device cuda --data "$data" > "$OUT/torch_cuda_check.jsonl" || {
    echo "PyTorch on the GPU does not reproduce ddm's samples (torch_cuda_check.jsonl)"; rc=1; }
  cat "$OUT/torch_cuda_check.jsonl"
  configs=$("$py" "$repo/bench/report.py" configs --results "$OUT" --suite cuda_routed) || rc=1
  timeout 300 "$py" "$repo/bench/peers/torch_ddm.py" time --device cuda --data "$data" \
    --min_time "${TORCH_MIN_TIME:-0.2}" --configs "${configs:-[]}" | tee "$OUT/torch_cuda.jsonl"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
  rm -rf "$data"
  return "$rc"
}
routed_report() {
  "${PYTHON:-python3}" "$repo/bench/report.py" cuda --results "$OUT" > "$OUT/cuda_routed.md"
}
if [ "${SKIP_BUILD:-0}" != "1" ]; then
  step routed_build routed_build >> "$OUT/build.log" 2>&1 || { tail -n 50 "$OUT/build.log"; status=1; }
fi
if [ -x "$BUILD/bench/ddm_bench_cuda_routed" ]; then
  step cuda_routed routed_bench 2>&1 | tee "$OUT/cuda_routed.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  # On a GPU machine no benchmark may report an error: "no GPU" means the device was not usable,
  # any other (a stale traffic model, a device fault) is a failure of the suite.
  if grep -q "ERROR OCCURRED" "$OUT/cuda_routed.txt"; then
    echo "ddm_bench_cuda_routed: benchmarks reported errors (see cuda_routed.txt)" | tee -a "$summary"
    status=1
  fi
  if [ -x "$BUILD/bench/ddm_export_peer_data" ]; then
    step torch_cuda routed_torch 2>&1 | tee "$OUT/torch_cuda.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  else
    echo "no binary at $BUILD/bench/ddm_export_peer_data: the PyTorch comparison did not run" | tee -a "$summary"
    status=1
  fi
  step routed_md routed_report || status=1
else
  echo "no benchmark binary at $BUILD/bench/ddm_bench_cuda_routed" | tee -a "$summary"
  status=1
fi
# ==== [end routed-cuda] ==========================================================================

# The paradox study: the device against the host on a small configuration, then the default
# study on both, timed (same configuration, float on both).
paradox="$BUILD/examples/01_paradox/ddm-paradox"

paradox_compare() {
  python3 "$repo/examples/01_paradox/compare_devices.py" --program "$paradox" --work "$OUT/paradox-compare"
  local rc=$?
  # On a GPU machine the comparison may not skip (77): the device was not usable.
  [ "$rc" -eq 77 ] && echo "the comparison skipped: the GPU was not usable"
  return "$rc"
}

# paradox_run <name> <flags...>: the default study with <flags>, its wall time in <name>.wall
paradox_run() {
  local name="$1"
  shift
  local t0 t1
  t0=$(date +%s.%N)
  timeout 300 "$paradox" "$@" --json "$OUT/$name.json" --out "$OUT/$name" > "$OUT/$name.txt"
  local rc=$?
  t1=$(date +%s.%N)
  echo "$t0 $t1" | awk '{printf "%.2f\n", $2 - $1}' > "$OUT/$name.wall"
  return "$rc"
}

paradox_timing() {
  python3 - "$OUT" "$@" <<'PY'
import json, os, sys
out, pairs = sys.argv[1], sys.argv[2:]
for pair in pairs:
    cuda, host = pair.split(":")
    docs = {}
    for name in (cuda, host):
        with open(os.path.join(out, name + ".json")) as f:
            docs[name] = json.load(f)
        with open(os.path.join(out, name + ".wall")) as f:
            docs[name]["process_wall"] = float(f.read())
    c, h = docs[cuda], docs[host]
    print("%s vs %s: %d samples, %d steps, %s, K = %d, D = %d, %s" % (cuda, host, c["config"]["samples"],
          c["config"]["steps"], c["config"]["integrator"], c["config"]["clusters"], c["config"]["dim"],
          c["config"]["precision"]))
    print("%-16s %12s %12s %9s   %12s %12s %9s" % ("policy", "sample host", "sample cuda", "speed-up",
                                                  "study host", "study cuda", "speed-up"))
    for key in h["policies"]:
        hp, cp = h["timing"]["policies"][key], c["timing"]["policies"][key]
        print("%-16s %11.3fs %11.3fs %8.1fx   %11.2fs %11.2fs %8.1fx" % (key, hp["sampling_seconds"],
              cp["sampling_seconds"], hp["sampling_seconds"] / cp["sampling_seconds"], hp["study_seconds"],
              cp["study_seconds"], hp["study_seconds"] / cp["study_seconds"]))
    print("whole program: host %.1f s, cuda %.1f s (speed-up %.1fx); in-program wall time host %.1f s, cuda %.1f s"
          % (h["process_wall"], c["process_wall"], h["process_wall"] / c["process_wall"], h["timing"]["wall_seconds"],
             c["timing"]["wall_seconds"]))
    same = all(h["verdicts"][k] == c["verdicts"][k] for k in h["verdicts"] if k != "details")
    print("verdicts identical: %s\n" % ("yes" if same else "no (see paradox_compare.txt for the tolerances)"))
PY
}

if [ -x "$paradox" ]; then
  step paradox_cmp paradox_compare > "$OUT/paradox_compare.txt" 2>&1
  tail -n 3 "$OUT/paradox_compare.txt"
  step paradox_cuda paradox_run paradox_cuda --device cuda
  step paradox_host paradox_run paradox_host --device cpu --precision float
  pairs="paradox_cuda:paradox_host"
  if [ "${PARADOX_DOUBLE:-0}" = "1" ]; then
    step paradox_cuda64 paradox_run paradox_cuda_double --device cuda --precision double
    step paradox_host64 paradox_run paradox_host_double --device cpu --precision double
    pairs="$pairs paradox_cuda_double:paradox_host_double"
  fi
  # shellcheck disable=SC2086
  paradox_timing $pairs 2>&1 | tee "$OUT/paradox_timing.txt"
else
  echo "no ddm-paradox binary at $paradox" | tee -a "$summary"
  status=1
fi

echo "---- summary (results in $OUT)"
cat "$summary"
grep -H "\[  FAILED  \]\|\[  PASSED  \]\|\[  SKIPPED \] [0-9]" "$OUT/tests.txt" "$OUT/tests_routing.txt" \
  "$OUT/tests_dit_cuda.txt" 2>/dev/null
exit "$status"
