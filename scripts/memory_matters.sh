#!/usr/bin/env bash
# The memory-matters benchmark (docs/results.md), with the toolkit's own commands only:
#   1. 64-frame synthetic tours: the camera turns on the spot and stops at 16 directions, each
#      showing one object or bare floor, so every object is in view at one stop only;
#   2. a tiny base that sees all 16 sampled frames and learns to count (object presence +
#      counting, frozen random tower; recipes/memory_matters/base.toml);
#   3. the ablation: no memory / working / episodic / dual / Titans / Larimar with only the
#      last frame in the LM's context (3 seeds each), plus the all-frames upper bound (1 seed),
#      two runs at a time, one core each;
#   4. inspect-memory on one held-out video.
# Re-running continues where it stopped (finished steps are skipped, runs resume).
#   bash scripts/memory_matters.sh           # full: see docs/results.md for the wall time (19 runs x 2,000 steps)
#   bash scripts/memory_matters.sh --quick   # smoke run: fewer scenes / steps, 1 seed
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ] && [ "${VLMEM_NO_VENV:-0}" != "1" ]; then . .venv/bin/activate; fi
MODE=full SCENES=1600 BASE_STEPS=3000 QUICK=()
if [ "${1:-}" = "--quick" ]; then MODE=quick SCENES=160 BASE_STEPS=300 QUICK=(--quick); fi
DATA="data/memory-matters-$MODE"
BASE="runs/mm-base-$MODE"
set -x
if [ ! -f "$DATA/manifest.json" ]; then
  vlmem prepare-data synthetic --out "$DATA" --scenes "$SCENES" --walk tour --stops 16 --frames 64 \
    --size 32 --instances 2,5 --families object_counting,obj_appearance_order,object_presence
fi
BASE_SET=(--set "data.root=$DATA" --set "run.output_dir=$BASE" --set "train.max_steps=$BASE_STEPS")
if [ -e "$BASE/checkpoints/last" ]; then
  vlmem train recipes/memory_matters/base.toml "${BASE_SET[@]}" --resume
else
  vlmem train recipes/memory_matters/base.toml "${BASE_SET[@]}"
fi
vlmem ablate recipes/ablate/memory_matters.toml "${QUICK[@]}" --set "data.root=$DATA" --set "train.init_from=$BASE"
LAST=$(python -c "import pyarrow.parquet as pq; t = pq.read_table('$DATA/qa.parquet').to_pylist(); \
print(max(r['scene_name'] for r in t if r['split'] == 'eval'))")
RUN="runs/ablate/memory_matters/$MODE/dual"
[ -d "$RUN" ] || RUN="${RUN}_seed0"  # one folder per seed when there are several
vlmem inspect-memory --run "$RUN" --video "$LAST" --out "inspect/memory-matters-$MODE"
