#!/usr/bin/env bash
# Runs the test suite once per Keras backend; any failure fails the run.
set -u
cd "$(dirname "$0")/.."
status=0
python -m ruff check keras_tract tests tools configs benchmarks || status=1
for backend in ${BACKENDS:-jax tensorflow torch}; do
  echo "=== KERAS_BACKEND=$backend"
  KERAS_BACKEND=$backend python -m pytest -q "$@" || status=1
done
exit $status
