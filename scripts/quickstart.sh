#!/usr/bin/env bash
# The whole loop on the embedded default (synthetic scenes + tiny models), CPU, a few minutes:
# prepare data -> train the tiny base -> VLM² phase 1 (memory only) -> evaluate -> inspect memory -> export.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${VLMEM_NO_VENV:-0}" != "1" ]; then . .venv/bin/activate; fi
set -x
rm -rf runs/tiny-base runs/tiny-phase1  # the demo's own earlier outputs
vlmem prepare-data synthetic --out data/synth --scenes 120 --frames 16 --size 64 --overwrite
vlmem train recipes/tiny/base.toml
vlmem train recipes/tiny/phase1.toml
vlmem eval vsibench --run runs/tiny-phase1
vlmem inspect-memory --run runs/tiny-phase1 --video synth_00119 --out inspect/tiny-phase1
vlmem export --run runs/tiny-phase1 --out exported/tiny-phase1 --overwrite
