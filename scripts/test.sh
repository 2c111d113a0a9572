#!/usr/bin/env bash
# Set up .venv and run the default test suite (slow tests: add `-m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${VLMEM_NO_VENV:-0}" != "1" ]; then . .venv/bin/activate; fi
python -m pytest -q "$@"
