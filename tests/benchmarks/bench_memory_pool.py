"""Cost of `model.memory.pool = 2` at paper shape: the dual memory on 2 x 2 pooled tokens vs all of them.

    python tests/benchmarks/bench_memory_pool.py [--rounds 5] [--train-frames 8] [--threads 1]

Paper shape: one video, a 27 x 27 = 729-token SigLIP-so400m grid of width 1152 per frame, 8 heads,
L_w 8, L_e 32 (full buffers: an episodic attention ~40 x 729 = 29k keys wide per frame unpooled).
Pooled, the memory sees 13 x 13 = 169 tokens per frame. Prints, as ratios in this one run:
1. inference time per frame with full buffers (one `step`, pooling included), interleaved;
2. state bytes per video (constant in video length);
3. a training scan (forward + backward) of `--train-frames` frames from empty buffers, interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vlmem.memory import DualMemory
from vlmem.model.vlm import pool_grid


def state_bytes(state) -> int:
    return sum(v.element_size() * v.nelement() for _, v in state.items())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--train-frames", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    grid, dim, L_w, L_e = (27, 27), 1152, 8, 32
    mem = DualMemory(dim, 8, L_w, L_e, dropout=0.0)
    frame = torch.randn(1, 1, grid[0] * grid[1], dim)

    def tokens_for(pool: int) -> torch.Tensor:
        return pool_grid(frame, grid, pool)[:, 0] if pool > 1 else frame[:, 0]

    # 1. inference per frame at full buffers
    mem.eval()
    states = {}
    with torch.no_grad():
        for pool in (1, 2):
            h = tokens_for(pool)
            state = mem.init_state(1, tokens_per_frame=h.shape[1])
            for _ in range(L_e + 1):  # fill both buffers (episodic replacement active from here on)
                _, state = mem.step(h + 0.1 * torch.randn_like(h), state)
            states[pool] = state
        per_frame = {1: [], 2: []}
        for _ in range(args.rounds):
            for pool in (1, 2):
                t0 = time.perf_counter()
                mem.step(tokens_for(pool), states[pool])
                per_frame[pool].append(time.perf_counter() - t0)
    t1, t2 = statistics.median(per_frame[1]), statistics.median(per_frame[2])
    b1, b2 = state_bytes(states[1]), state_bytes(states[2])
    n2 = tokens_for(2).shape[1]
    print(f"dual memory, paper shape (B=1, D={dim}, 8 heads, L_w {L_w}, L_e {L_e}, full buffers), {args.threads} thread(s):")
    print(f"  inference per frame: 729 tokens {t1 * 1e3:.0f} ms, pooled {n2} tokens {t2 * 1e3:.0f} ms -> "
          f"{t1 / t2:.2f}x faster pooled (medians of {args.rounds} interleaved)")
    print(f"  state per video: {b1 / 2**20:.1f} MiB vs {b2 / 2**20:.1f} MiB pooled -> {b1 / b2:.2f}x smaller (fp32)")

    # 3. training: forward + backward over a short video from empty buffers
    mem.train()
    video = torch.randn(1, args.train_frames, grid[0] * grid[1], dim)
    train_times = {1: [], 2: []}
    for _ in range(max(1, args.rounds // 2)):
        for pool in (1, 2):
            h = (pool_grid(video, grid, pool) if pool > 1 else video).requires_grad_(True)
            t0 = time.perf_counter()
            out, _ = mem.scan(h, mem.init_state(1, tokens_per_frame=h.shape[2]))
            out.float().pow(2).mean().backward()
            train_times[pool].append(time.perf_counter() - t0)
            mem.zero_grad(set_to_none=True)
    r1, r2 = statistics.median(train_times[1]), statistics.median(train_times[2])
    print(f"  training scan of {args.train_frames} frames (forward + backward): {r1:.2f} s vs {r2:.2f} s pooled -> "
          f"{r1 / r2:.2f}x faster pooled")


if __name__ == "__main__":
    main()
