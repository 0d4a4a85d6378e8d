#!/usr/bin/env bash
# README command 1: set up (idempotent), then run the main job on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
CONFIG="${1:-experiments/quick.toml}"
# caches every run reads: image set, encoder features, the LMs' concept prototypes (once; ~25 min per
# LM for the quick preset on 2 cores, then read from $INTERP_CACHE)
.venv/bin/python -m interp.sweep "$CONFIG" --prepare
.venv/bin/python -m interp.run "$CONFIG"
