#!/usr/bin/env bash
# Runs the test suite once per Keras backend; any failure fails the run.
# With two or more cores the first backend (JAX by default, the slowest: XLA compiles) runs on
# half of them beside the others, which run one after the other on the other half; each lane's
# thread pools are sized to its cores (oversubscribed OpenMP threads slow PyTorch many times over).
# Its output is printed when it ends.
set -u
cd "$(dirname "$0")/.."
status=0
python -m ruff check keras_tract tests tools configs benchmarks || status=1
read -r -a backends <<< "${BACKENDS:-jax tensorflow torch}"
suite() { echo "=== KERAS_BACKEND=$1"; KERAS_BACKEND=$1 python -m pytest -q "${@:2}"; }
cores=$(nproc)
if (( ${#backends[@]} < 2 || cores < 2 )) || ! command -v taskset > /dev/null; then
  for backend in "${backends[@]}"; do
    suite "$backend" "$@" || status=1
  done
  exit $status
fi
half=$((cores / 2))
export OMP_NUM_THREADS=$half
log=$(mktemp)
taskset -c "0-$((half - 1))" bash -c "$(declare -f suite); suite \"\$@\"" _ "${backends[0]}" "$@" > "$log" 2>&1 &
first=$!
for backend in "${backends[@]:1}"; do
  taskset -c "$half-$((cores - 1))" bash -c "$(declare -f suite); suite \"\$@\"" _ "$backend" "$@" || status=1
done
wait $first || status=1
cat "$log"
rm -f "$log"
exit $status
