"""Synthetic data throughput (a plain timer script, not a test).

    python tests/benchmarks/bench_synthetic.py [--scenes 8] [--frames 64] [--size 128] [--walk sweep]

Prints scenes/min for (1) layout + rendering only (`synthesize_scene`) and (2) the whole
`prepare_synthetic` (render + H.264 video + geometry + scene JSON + questions + parquet).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--walk", default="sweep")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("VLMEM_NO_PROGRESS", "1")

    from vlmem.data.synthetic import prepare_synthetic, synthesize_scene

    synthesize_scene(0, seed=args.seed, frames=4, size=16, walk=args.walk)  # warm-up (imports)
    t0 = time.perf_counter()
    objects = 0
    for i in range(args.scenes):
        objects += len(synthesize_scene(i, seed=args.seed, frames=args.frames, size=args.size,
                                        walk=args.walk).scene.objects)
    render_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        manifest = prepare_synthetic(Path(tmp) / "synth", scenes=args.scenes, frames=args.frames, size=args.size,
                                     seed=args.seed, walk=args.walk)
        full_s = time.perf_counter() - t0
        mb = sum(f.stat().st_size for f in (Path(tmp) / "synth").rglob("*") if f.is_file()) / 1e6

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible")
    print(f"{args.scenes} scenes x {args.frames} frames at {args.size}x{args.size} ({args.walk}), "
          f"{objects / args.scenes:.1f} objects/scene")
    print(f"render only:       {render_s / args.scenes:6.2f} s/scene  {60 * args.scenes / render_s:6.1f} scenes/min")
    print(f"prepare_synthetic: {full_s / args.scenes:6.2f} s/scene  {60 * args.scenes / full_s:6.1f} scenes/min  "
          f"({manifest['counts']['questions']} questions, {mb:.1f} MB on disk)")


if __name__ == "__main__":
    main()
