#!/usr/bin/env bash
# The rows that need a GPU, in one call with a time budget:
#
#   bash experiments/gpu_rows.sh OUT_DIR [SECONDS]      # default 480 s
#
# 1. docs/benchmarks.md's GPU table (skipped with GPU_BENCH=0):
#    `python -m experiments.parallel_benchmark` at batch 128 (one device, so
#    no pipeline rows) -> OUT_DIR/parallel/.
# 2. RESULTS.md's GPU experiments (configs with needs = "gpu"; the names in
#    GPU_EXPERIMENTS, default fashion_mnist_resnet18_gpu), seed after seed,
#    each seed of every method before the next seed -> JSON files under
#    OUT_DIR/results/<experiment>/, also packed as OUT_DIR/results.tgz after
#    every seed (what finished survives a stop at the budget). Unpack into
#    experiments/results/ and run `python -m experiments.make_table`.
#
# Runs from the repository root (the scripts run as `python -m experiments.X`;
# bll_jax is found there or installed). The compiled programs are cached
# across the sweep's processes (JAX_COMPILATION_CACHE_DIR): seeds after the
# first compile little.
set -u -o pipefail
out=${1:?usage: bash experiments/gpu_rows.sh OUT_DIR [SECONDS]}
budget=${2:-480}
experiments=${GPU_EXPERIMENTS:-fashion_mnist_resnet18_gpu}
results=${RESULTS_DIR:-$out/results}
mkdir -p "$out" "$results"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/bll-jax-cache}
start=$SECONDS
left() { echo $((budget - (SECONDS - start))); }

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  $py -c 'import jax; print("jax", jax.__version__, jax.devices())'
} 2>&1 | tee "$out/machine.txt"

if [[ ${GPU_BENCH:-1} != 0 ]]; then
  echo "== parallel benchmark ($(left) s left)"
  timeout "$(( $(left) * 2 / 5 ))" $py -m experiments.parallel_benchmark \
    --batch-size "${BENCH_BATCH:-128}" --repeats 20 --out "$out/parallel" \
    ${BENCH_ARGS:-} || echo "parallel benchmark: exit $?"
fi

for seed in ${GPU_SEEDS:-0 1 2}; do
  if (( $(left) < 30 )); then echo "budget spent before seed $seed"; break; fi
  echo "== sweep seed $seed ($(left) s left)"
  timeout "$(left)" $py -m experiments.sweep $experiments --seeds "$seed" \
    --results "$results" ${SWEEP_ARGS:-} || echo "sweep seed $seed: exit $?"
  tar czf "$out/results.tgz" -C "$results" .
done
echo "== done in $((SECONDS - start)) s"
