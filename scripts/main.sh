#!/usr/bin/env bash
# README command 1: set up (idempotent), then run the main job on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python -m interp.run "${1:-experiments/quick.toml}"
