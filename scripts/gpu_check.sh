#!/usr/bin/env bash
# Paper-shape device check (docs/performance.md): VLM² phase-1/2/3 training steps at the paper's
# dimensions with random weights — SigLIP-so400m-shape tower (1152 wide, 27x27 patches), Qwen2-0.5B
# and Qwen2-7B-shape LMs with few layers, CUT3R-shape cached features, 32 frames, L_w 8, L_e 32,
# bf16 autocast, gradient checkpointing. Prints step time, peak GPU memory and the memory module's share.
# Needs one CUDA GPU and the project's venv (bash scripts/setup.sh). About 2-4 minutes on one H100/H200.
# On a CPU it falls back to the small shapes (what CI runs): bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=${PYTHON:-python3}; fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device: running the small (CPU) shapes"
  exec "$PY" tests/benchmarks/bench_paper_shape.py --small --steps 1
fi
"$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
timeout "${GPU_CHECK_TIMEOUT:-240}" "$PY" tests/benchmarks/bench_paper_shape.py --lm 0.5b --lm-layers 2 --vision-layers 2 --steps 3
timeout "${GPU_CHECK_TIMEOUT:-240}" "$PY" tests/benchmarks/bench_paper_shape.py --lm 7b --lm-layers 2 --vision-layers 2 --steps 3
