#!/usr/bin/env bash
# Create .venv (Python 3.10+; 3.11 is what CI uses) and install vlmem with its dev tools.
# torch: the CPU wheel torch==2.13.0 is installed only when the environment has no torch,
# so a GPU machine keeps its own build (use VLMEM_NO_VENV=1 to install into the active env).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${VLMEM_NO_VENV:-0}" != "1" ]; then
  if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
  fi
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
python -m pip install -q --disable-pip-version-check --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q --disable-pip-version-check "${VLMEM_TORCH:-torch==2.13.0}"
fi
python -m pip install -q --disable-pip-version-check -e ".[dev]"
