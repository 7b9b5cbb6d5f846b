#!/usr/bin/env bash
# Weak and strong scaling of expert-parallel sampling (ddm_bench_distributed) under mpirun -np 1,
# 2, 4, top-1 / top-2 / full routing, round-robin and balanced placement; each group of runs with
# the load average before it (uptime). Then the tables of docs/distributed.md ("Measured") and the
# cost model's check (bench/distributed_cost.py).
#
#   bench/distributed.sh [build-dir] [out-dir] [repeats]   (default build/dev, bench-out/distributed, 3)
#
# Every configuration runs `repeats` times, the groups interleaved; the tables give the fastest
# and slowest repeat's median step time, since other work on a shared machine only adds time.
#
# One OpenBLAS thread per rank, so that -np N uses N cores; on a 2-core machine -np 4 is
# oversubscribed (two ranks per core), which the tables say.
set -euo pipefail
build=${1:-build/dev}
out=${2:-bench-out/distributed}
repeats=${3:-3}
program="$build/bench/ddm_bench_distributed"
[[ -x "$program" ]] || { echo "distributed.sh: $program not built (cmake --build $build --target ddm_bench_distributed)" >&2; exit 2; }
mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"
mpirun=(mpirun -x OPENBLAS_NUM_THREADS=1)
if mpirun --version 2>&1 | grep -q "Open MPI"; then
  mpirun+=(--oversubscribe)
  [[ $(id -u) == 0 ]] && mpirun+=(--allow-run-as-root)
fi
shape=(--dim 256 --hidden 2048 --steps 6 --experts 8)
echo "{\"machine\": \"$(nproc) cores, $(uname -m)\", \"openblas_threads_per_rank\": 1}" >> "$results"
for repeat in $(seq "$repeats"); do
  for scaling in weak strong; do
    rows=256; [[ $scaling == strong ]] && rows=512
    for np in 1 2 4; do
      echo "{\"uptime\": \"$(uptime | sed 's/.*load average/load average/')\", \"before\": \"$scaling np $np\", \"repeat\": $repeat}" >> "$results"
      OPENBLAS_NUM_THREADS=1 "${mpirun[@]}" -np "$np" "$program" "${shape[@]}" --rows "$rows" --scaling "$scaling" \
        | sed "s/^{/{\"repeat\": $repeat, /" | tee -a "$results"
    done
  done
done
echo "{\"uptime\": \"$(uptime | sed 's/.*load average/load average/')\", \"before\": \"end\"}" >> "$results"
python3 "$(dirname "$0")/distributed_cost.py" table --bench-output "$results" | tee "$out/tables.md"
