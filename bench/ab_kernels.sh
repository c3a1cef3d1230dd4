#!/usr/bin/env bash
# Interleaved A/B of kernel-source variants on layers A-I (bench/layer_times.py).
#
#   bench/ab_kernels.sh THREADS LAYERS ROUNDS DIR...
#   bench/ab_kernels.sh 1 BFG 3 /tmp/kv_base /tmp/kv_new
#
# SCRIPT=bench/blocked_layers.py times the blocked kernels instead of layer_times.py.
# Each DIR holds copies of kernels/*.py (a variant). Round by round, each variant's files
# are copied over kernels/ and layer_times.py runs with a Numba cache folder of its own
# (so switching variants does not recompile every time); kernels/ is restored at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
threads=$1; layers=$2; rounds=$3; shift 3
keep=$(mktemp -d)
cp "$here"/kernels/*.py "$keep"/
trap 'cp "$keep"/*.py "$here"/kernels/; rm -rf "$keep"' EXIT
for _ in $(seq "$rounds"); do
  for v in "$@"; do
    cp "$v"/*.py "$here"/kernels/
    printf '%s ' "$(basename "$v")"
    NUMBA_CACHE_DIR="${TMPDIR:-/tmp}/jitconv-ab-$(basename "$v")" \
      "${PYTHON:-python}" "$here"/"${SCRIPT:-bench/layer_times.py}" "$threads" "$layers"
  done
done
