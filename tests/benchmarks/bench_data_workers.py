"""Data wait as a fraction of step time with 0 vs 2 DataLoader workers, at a paper-like decode.

    python tests/benchmarks/bench_data_workers.py [--data DIR] [--step-ms 1000] [--steps 8] [--rounds 2]

Each sample decodes 32 frames from an mp4 and resizes them to 384 px (VLM-3R / LLaVA-Video style).
Without `--data` a synthetic dataset of 64-frame 384 px tours is written to a temp folder first.
The decoded-video LRU is off (`cache_mb=0`), as with thousands of videos where it rarely hits.
The training step is stood in for by `--step-ms` of single-thread matmuls in the main process
(a GPU step would leave the CPU cores free; here the workers share them with it). Blocks of
`--steps` steps with 0 and with 2 workers alternate, and each block counts the time spent waiting
for the next batch (what `data_wait_frac` in metrics.jsonl reports) after its first batch; the
first batch (worker start-up and one decode, once per training run) is reported apart.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vlmem.data.dataset import QADataset, SampleSpec, read_qa_table
from vlmem.data.loader import StepBatches, batch_loader, next_batch


def busy(ms: float) -> None:
    a = torch.randn(256, 256)
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        a = torch.tanh(a @ a)


def block(dataset, workers: int, start: int, steps: int, step_ms: float, batch: int) -> tuple[float, float]:
    by_video: dict[str, list[int]] = {}
    for i, r in enumerate(dataset.rows):
        by_video.setdefault(r["video"], []).append(i)
    firsts = [v[0] for v in by_video.values()]  # one row per video: every sample decodes a different video

    def micro(step):
        return [[firsts[(step * batch + j) % len(firsts)] for j in range(batch)]]

    loader = batch_loader(dataset, StepBatches(micro, start, start + steps, 1), media=True, pad_id=0,
                          num_workers=workers, prefetch_factor=2)
    t0 = time.perf_counter()
    it = iter(loader)
    next_batch(it)  # worker start-up and the first decode: once per run, reported apart
    first = time.perf_counter() - t0
    busy(step_ms)
    t0 = time.perf_counter()
    wait = 0.0
    for _ in range(steps - 1):
        w = time.perf_counter()
        next_batch(it)
        wait += time.perf_counter() - w
        busy(step_ms)
    total = time.perf_counter() - t0
    del it, loader
    return wait, total, first


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="")
    ap.add_argument("--step-ms", type=float, default=1000)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data) if args.data else Path(tmp) / "synth"
        if not args.data:
            from vlmem.cli import main as cli

            t0 = time.perf_counter()
            assert cli(["prepare-data", "synthetic", "--out", str(root), "--scenes", "6", "--frames", "64",
                        "--size", "384"]) == 0
            print(f"wrote 6 synthetic 64-frame 384 px tours in {time.perf_counter() - t0:.0f} s")
        rows = read_qa_table(root)
        dataset = QADataset(root, rows, SampleSpec(frames=32, image_size=384, geometry="none"), cache_mb=0)
        sums = {0: [0.0, 0.0, 0.0], 2: [0.0, 0.0, 0.0]}
        step = 0
        for _ in range(args.rounds):
            for workers in (0, 2):
                for k, v in enumerate(block(dataset, workers, step, args.steps, args.step_ms, args.batch)):
                    sums[workers][k] += v
                step += args.steps
    f0, f2 = sums[0][0] / sums[0][1], sums[2][0] / sums[2][1]
    n = args.rounds * (args.steps - 1)
    print(f"data wait / step time, 32 frames from mp4 at 384 px, batch {args.batch}, {args.step_ms:.0f} ms compute "
          f"per step ({args.rounds} x {args.steps - 1} alternating steps each, after the first batch): 0 workers "
          f"{f0:.1%}, 2 workers {f2:.1%}; steps/s {n / sums[0][1]:.3f} vs {n / sums[2][1]:.3f} -> "
          f"{sums[0][1] / sums[2][1]:.2f}x")
    print(f"first batch (worker start-up + one decode, once per run): {sums[0][2] / args.rounds:.2f} s with 0 workers, "
          f"{sums[2][2] / args.rounds:.2f} s with 2")


if __name__ == "__main__":
    main()
