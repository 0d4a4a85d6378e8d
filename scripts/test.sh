#!/usr/bin/env bash
# README command 2: set up (idempotent), run the benchmarks in quick mode (their targets are
# reported, not asserted as timings), then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ $# -eq 0 ]; then
  for b in benchmarks/bench_*.py; do
    echo "[bench] $b --quick"
    .venv/bin/python "$b" --quick > /tmp/interp-bench.log 2>&1 || { cat /tmp/interp-bench.log; exit 1; }
    grep -v -i -E "warn|loading weights" /tmp/interp-bench.log | tail -n 20
  done
fi
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
