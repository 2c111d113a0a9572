"""Memory benchmarks, run by hand (not collected by pytest):

    PYTHONPATH=. /work/venv/bin/python tests/benchmarks/bench_memory.py [--quick] [--threads N]

Prints ratios measured within one run (absolute times depend on the machine and its load).
1. DualMemory.scan vs the straightforward padded version that re-projects every entry
   at every frame (B=16, N=49, D=256, 64 frames), 3 interleaved pairs (medians), outputs compared.
2. Batched scan vs the per-video Python-list oracle (B=64, N=4, D=32).
3. Per-frame cost flat in video length (1,024 vs 16,384 frames), state bytes.
4. Achieved GFLOP/s of (1) against a plain fp32 matmul.
5. TitansMemory vs titans-pytorch NeuralMemory (linear memory model), forward+backward, 5 interleaved pairs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from tests.memory.oracle import oracle_scan, padded_scan  # noqa: E402
from vlmem.memory import DualMemory, LarimarMemory, TitansMemory  # noqa: E402


def timed(fn, repeat=1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def dual_flops(B, T, N, D, L_w, L_e):
    """Multiply-adds x2 of our DualMemory.scan (reads over the filled prefix only)."""
    f = 0
    for t in range(T):
        w, e = min(t, L_w), min(t, L_e)
        f += 2 * 2 * N * D * D                      # q projections, both branches
        f += 2 * 2 * N * (w + e) * N * D            # scores + weighted values
        f += 2 * 2 * N * D * D                      # out projections
        f += 2 * (N * 2 * D * D + N * D * D)        # fusion MLP
        f += 2 * 2 * 2 * N * D * D                  # k/v projection of the two written entries
        f += 2 * e * N * D                          # cosine similarities
    return B * f


def bench_dual_vs_padded(quick):
    B, N, D, T = (4, 49, 256, 40) if quick else (16, 49, 256, 64)
    torch.manual_seed(0)
    mem = DualMemory(D, num_heads=8).eval()
    h = torch.randn(B, T, N, D)
    with torch.no_grad():
        mem.scan(h[:, :2], mem.init_state(B))  # warm-up
        ours, pad = [], []
        for _ in range(3):  # interleaved: load from other jobs hits both alike; medians
            t, (out, _) = timed(lambda: mem.scan(h, mem.init_state(B)))
            ours.append(t)
            t, ref = timed(lambda: padded_scan(mem, h))
            pad.append(t)
    t_ours, t_pad = statistics.median(ours), statistics.median(pad)
    err = (out - ref).abs().max().item()
    print(f"[1] dual scan B={B} N={N} D={D} T={T}: ours {t_ours:.3f}s, padded re-projecting {t_pad:.3f}s, "
          f"speed-up {t_pad / t_ours:.2f}x (medians of 3 interleaved; per pair "
          f"{', '.join(f'{p / o:.2f}x' for o, p in zip(ours, pad, strict=True))}), max |diff| {err:.2e}")
    return t_ours, dual_flops(B, T, N, D, mem.L_w, mem.L_e)


def bench_batched_vs_oracle(quick):
    B, N, D, T = 64, 4, 32, (12 if quick else 40)
    torch.manual_seed(0)
    mem = DualMemory(D, num_heads=8).eval()
    h = torch.randn(B, T, N, D)
    with torch.no_grad():
        mem.scan(h[:, :2], mem.init_state(B))
        t_ours, (out, _) = timed(lambda: mem.scan(h, mem.init_state(B)), repeat=2)
        t_or, ref = timed(lambda: oracle_scan(mem, h))
    print(f"[2] batched vs per-video oracle B={B} N={N} D={D} T={T}: ours {t_ours:.3f}s, oracle {t_or:.3f}s, "
          f"speed-up {t_or / t_ours:.2f}x, max |diff| {(out - ref).abs().max().item():.2e}")


def bench_flat(quick):
    """Per-frame time at `short` frames (fresh state each time) vs at `long` frames (one video,
    state carried through blocks of `short` frames), interleaved, medians. The median resists
    the load spikes of a shared machine; the whole-run ratio is printed too."""
    B, N, D = 2, 4, 32
    short, long = (256, 2048) if quick else (1024, 16384)
    torch.manual_seed(0)
    for name, mem in [("dual", DualMemory(D, num_heads=4).eval()),
                      ("titans", TitansMemory(D, num_heads=4, update="titans").eval()),
                      ("larimar", LarimarMemory(D, slots=32).eval())]:
        with torch.no_grad():
            mem.scan(torch.randn(B, 64, N, D), mem.init_state(B))
            h = torch.randn(B, short, N, D)
            st = mem.init_state(B)
            t_short, blocks = [], []
            for _ in range(long // short):  # interleaved, so both see the same machine load
                t, (_, st_short) = timed(lambda m=mem, x=h: m.scan(x, m.init_state(B)))
                t_short.append(t)
                hb = torch.randn(B, short, N, D)
                t0 = time.perf_counter()
                _, st = mem.scan(hb, st)
                blocks.append(time.perf_counter() - t0)
        med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
        r = med(blocks) / med(t_short)
        r_all = (sum(blocks) / long) / (med(t_short) / short)
        print(f"[3] {name}: per-frame {med(t_short) / short * 1e6:.0f}us @ {short} frames, "
              f"{med(blocks) / short * 1e6:.0f}us (median block) @ {long} frames: ratio {r:.3f} "
              f"(whole-run mean {r_all:.3f}, last block / first block {blocks[-1] / blocks[0]:.3f}); "
              f"state bytes {st_short.nbytes()} vs {st.nbytes()}")


def bench_gflops(t_ours, flops):
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t, _ = timed(lambda: a @ b, repeat=5)
    mm = 2 * n ** 3 / t / 1e9
    ours = flops / t_ours / 1e9
    print(f"[4] dual scan {ours:.1f} GFLOP/s vs fp32 matmul {n}^3 {mm:.1f} GFLOP/s ({100 * ours / mm:.0f}%)")


def bench_titans(quick):
    try:
        from titans_pytorch import NeuralMemory
        from titans_pytorch.memory_models import MemoryMLP
    except ImportError:
        print("[5] titans-pytorch not installed: skipped")
        return
    B, S, D, C, H = 4, 256, 128, 16, 4
    torch.manual_seed(0)
    ours = TitansMemory(D, num_heads=H, update="titans", chunk_size=C)
    ref = NeuralMemory(dim=D, chunk_size=C, heads=H, dim_head=D // H, model=MemoryMLP(D // H, depth=1))
    x = torch.randn(B, S, D)

    def run_ours():
        h = x.view(B, S // C, C, D).clone().requires_grad_()
        out, _ = ours.scan(h, ours.init_state(B))
        out.sum().backward()

    def run_ref():
        h = x.clone().requires_grad_()
        out, _ = ref(h)
        out.sum().backward()

    run_ours(), run_ref()
    pairs = [(timed(run_ours)[0], timed(run_ref)[0]) for _ in range(5)]  # interleaved
    t_o, t_r = (statistics.median(p[i] for p in pairs) for i in (0, 1))
    print(f"[5] titans fwd+bwd B={B} seq={S} dim={D} chunk={C}: ours {t_o * 1e3:.1f}ms, titans-pytorch "
          f"{t_r * 1e3:.1f}ms, ours is {t_r / t_o:.2f}x faster (medians of 5 interleaved pairs)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (1: robust on a shared machine)")
    ap.add_argument("--only", default="12345")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load avg {os.getloadavg()}")
    if "1" in args.only or "4" in args.only:
        t, f = bench_dual_vs_padded(args.quick)
        if "4" in args.only:
            bench_gflops(t, f)
    if "2" in args.only:
        bench_batched_vs_oracle(args.quick)
    if "3" in args.only:
        bench_flat(args.quick)
    if "5" in args.only:
        bench_titans(args.quick)
    print(f"load avg at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
