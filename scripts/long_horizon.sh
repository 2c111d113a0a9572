#!/usr/bin/env bash
# The long-horizon benchmark (docs/results.md "Long horizon"), with the toolkit's own commands only:
#   1. synthetic streams (`prepare-data synthetic --stream-rooms`): tour rooms of 8 frames walked one
#      after another; train streams of 4 rooms (32 frames), eval streams of 4, 40 and 400 rooms
#      (32 / 320 / 3,200 frames: 1x, 10x, 100x the training length); continual counting asked at
#      10% / 50% / 100% of each stream, 4-place recall at the end;
#   2. a tiny base without memory that sees all 32 frames of a train stream
#      (recipes/long_horizon/base.toml);
#   3. the ablation: none (uniform sampling of 32 frames) / working / episodic / dual / Titans /
#      Larimar / surprise with only the last frame in the LM's context (3 seeds each), each
#      evaluated with `vlmem eval stream` (one memory scan per stream, answers at the query times);
#   4. one table and one plot over all variants: score, ms per frame and RSS against stream length.
# Re-running continues where it stopped (finished steps are skipped, runs resume).
#   bash scripts/long_horizon.sh           # full (3 seeds)
#   bash scripts/long_horizon.sh --quick   # smoke run: 4- and 40-room streams, 1 seed, few steps
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ] && [ "${VLMEM_NO_VENV:-0}" != "1" ]; then . .venv/bin/activate; fi
MODE=full ROOMS=4,40,400 STREAMS=512 EVAL_STREAMS=4 BASE_STEPS=1500 QUICK=()
if [ "${1:-}" = "--quick" ]; then MODE=quick ROOMS=4,40 STREAMS=32 EVAL_STREAMS=1 BASE_STEPS=10 QUICK=(--quick); fi
DATA="data/long-horizon-$MODE"
BASE="runs/lh-base-$MODE"
set -x
if [ ! -f "$DATA/manifest.json" ]; then
  vlmem prepare-data synthetic --out "$DATA" --stream-rooms "$ROOMS" --scenes "$STREAMS" \
    --eval-streams "$EVAL_STREAMS" --frames 8 --stops 8 --size 32
fi
BASE_SET=(--set "data.root=$DATA" --set "run.output_dir=$BASE" --set "train.max_steps=$BASE_STEPS")
if [ -e "$BASE/checkpoints/last" ]; then
  vlmem train recipes/long_horizon/base.toml "${BASE_SET[@]}" --resume
else
  vlmem train recipes/long_horizon/base.toml "${BASE_SET[@]}"
fi
vlmem ablate recipes/ablate/long_horizon.toml "${QUICK[@]}" --set "data.root=$DATA" --set "train.init_from=$BASE"
python - "runs/ablate/long_horizon/$MODE" <<'PY'
import sys
from pathlib import Path

from vlmem.eval.stream import compare

root = Path(sys.argv[1])
names = ["none", "working", "episodic", "dual", "titans", "larimar", "surprise"]
runs = {n: sorted(p for p in root.iterdir() if p.name == n or p.name.startswith(n + "_seed")) for n in names}
means = compare(runs, root / "compare")
print((root / "compare" / "long_horizon.md").read_text())
print(f"plot: {root / 'compare' / 'long_horizon.png'}")
PY
