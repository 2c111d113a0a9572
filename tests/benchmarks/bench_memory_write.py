"""Memory forward + backward per frame once the buffers are full, before vs after a change, the
share of the profile spent zero-filling, adding and copying tensors (autograd's buffer copies), and
the cost of a logging step (`return_info=True`) against a normal one.

    python tests/benchmarks/bench_memory_write.py [--before f7a9e08] [--repeats 5] [--threads 1]

The tiny phase-1 recipe's dual memory (D=64, 4 heads, 64 tokens per frame, L_w=4, L_e=8), batch 8.
Each measurement continues a state whose buffers are full (8 frames scanned without gradient) for
T=8 and T=64 frames with autograd, then backward of a scalar of the outputs. `before` is the memory
package at a git revision (tests/benchmarks/before.py), `after` today's; all four cases (before /
after x T=8 / 64) are interleaved `--repeats` times and medians printed, so load from other jobs hits
them alike. Outputs and gradients of before and after are compared first. The copy share comes from
three torch.profiler passes per case (median): self CPU time of aten::fill_ / zero_ (zero-fill), aten::add /
add_ (gradient accumulation), aten::copy_ / clone (copies), over all ops' self CPU time.
Logging step: a training step's scan (fresh state, T=8 frames as the tiny recipe) forward +
backward with and without `return_info`, before and after, interleaved; the ratio is per version.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from tests.benchmarks.before import load_memory_at  # noqa: E402
from vlmem import memory as after  # noqa: E402

B, N, D, H, LW, LE = 8, 64, 64, 4, 4, 8
GROUPS = {"zero-fill": ("aten::fill_", "aten::zero_"), "add": ("aten::add", "aten::add_"),
          "copy": ("aten::copy_", "aten::clone")}


def build(package):
    torch.manual_seed(0)
    return package.DualMemory(D, num_heads=H, L_w=LW, L_e=LE, dropout=0.0)


def full_state(mem):
    torch.manual_seed(1)
    with torch.no_grad():
        return mem.scan(torch.randn(B, LE, N, D), mem.init_state(B, tokens_per_frame=N))[1]


def fwd_bwd(mem, state, h):
    out, st = mem.scan(h, state)
    loss = out.square().mean() + st.e_k.square().mean() + st.w_v.square().mean()
    loss.backward()
    return out.detach(), h.grad


def case(mem, T):
    state = full_state(mem)
    torch.manual_seed(2)
    h = torch.randn(B, T, N, D)

    def run():
        mem.zero_grad(set_to_none=True)
        x = h.clone().requires_grad_(True)
        out, _ = fwd_bwd(mem, state, x)
        return out, x.grad, [p.grad.clone() for p in mem.parameters()]
    return run


def logging_case(mem, info, T=8):
    torch.manual_seed(3)
    h = torch.randn(B, T, N, D)

    def run():
        mem.zero_grad(set_to_none=True)
        x = h.clone().requires_grad_(True)
        res = mem.scan(x, mem.init_state(B, tokens_per_frame=N), return_info=info)
        res[0].square().mean().backward()
    return run


def interleaved_medians(cases: dict, repeats: int) -> dict:
    """Seconds per call of each case: one warm-up each, then `repeats` rounds over all cases in turn."""
    for run in cases.values():
        run()
    times = {k: [] for k in cases}
    for _ in range(repeats):
        for k, run in cases.items():
            t0 = time.perf_counter()
            run()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def shares(run, passes: int = 3) -> dict[str, float]:
    """Median over `passes` profiled calls of each group's share of all ops' self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    out = {g: [] for g in GROUPS}
    for _ in range(passes):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        ev = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in ev)
        for g, names in GROUPS.items():
            out[g].append(sum(e.self_cpu_time_total for e in ev if e.key in names) / total)
    return {g: statistics.median(v) for g, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", default="f7a9e08", help="git revision of the 'before' memory package")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    before = load_memory_at(args.before)
    mems = {"before": build(before), "after": build(after)}
    cases = {(v, T): case(mems[v], T) for v in mems for T in (8, 64)}
    for T in (8, 64):  # same outputs and gradients
        (o1, g1, p1), (o2, g2, p2) = cases["before", T](), cases["after", T]()
        diff = max([(o1 - o2).abs().max(), (g1 - g2).abs().max(), *[(a - b).abs().max() for a, b in zip(p1, p2, strict=True)]])
        print(f"T={T}: max abs diff before/after (outputs, input and parameter grads) {float(diff):.2e}")
    med = interleaved_medians(cases, args.repeats)
    prof = {k: shares(run) for k, run in cases.items()}
    print(f"torch {torch.__version__}, {args.threads} thread(s), B={B} N={N} D={D} L_w={LW} L_e={LE}, "
          f"medians of {args.repeats} interleaved repeats, load average {os.getloadavg()[0]:.1f}")
    print("| version | T | fwd+bwd ms / frame | T=64 / T=8 per frame | zero-fill | add | copy | all three |")
    print("|---|---|---|---|---|---|---|---|")
    for v in mems:
        for T in (8, 64):
            s = prof[v, T]
            ratio = (med[v, 64] / 64) / (med[v, 8] / 8)
            print(f"| {v} | {T} | {med[v, T] / T * 1e3:.2f} | {ratio:.2f}x | {s['zero-fill']:.1%} | {s['add']:.1%} | "
                  f"{s['copy']:.1%} | {sum(s.values()):.1%} |")
    for T in (8, 64):
        print(f"T={T}: after is {med['before', T] / med['after', T]:.2f}x faster than before (per frame)")
    logging = {(v, info): logging_case(mems[v], info) for v in mems for info in (False, True)}
    med = interleaved_medians(logging, args.repeats)
    print(f"logging step (return_info=True) / normal step, memory forward + backward, T=8 from a fresh state, "
          f"load average {os.getloadavg()[0]:.1f}:")
    for v in mems:
        print(f"  {v}: {med[v, True] * 1e3:.1f} / {med[v, False] * 1e3:.1f} ms = {med[v, True] / med[v, False]:.2f}x")


if __name__ == "__main__":
    main()
