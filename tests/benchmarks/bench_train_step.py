"""Phase-1 step time with and without the feature cache, and data-loading throughput.

    python tests/benchmarks/bench_train_step.py [--data data/synth] [--steps 16] [--rounds 3] [--before REV]

Needs a synthetic dataset (`vlmem prepare-data synthetic --out data/synth`). Uses the tiny
phase-1 recipe's model (random init; weights do not change the cost). Prints ratios measured
in this one run: uncached and cached steps alternate (medians), so load from other jobs on a
shared machine hits both alike; a logging step (`return_info=True` plus the memory metrics, as the
training loop runs every `log_every` steps) alternates with them. Also times the frozen encoder
alone (its share of an uncached step bounds what the cache can give).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vlmem.data.dataset import QADataset, SampleSpec, collate, read_qa_table
from vlmem.model.build import build_model, dataset_texts, load_tokenizer
from vlmem.recipe import load_recipe
from vlmem.train.feature_cache import DiskFeatureCache, FeatureCache
from vlmem.train.metrics import memory_stats
from vlmem.train.params import configure_trainable, param_groups


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/synth")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--before", default="", help="git revision: also time that revision's memory (same weights)")
    ap.add_argument("--threads", type=int, default=1)  # 2 threads are slower on a shared 2-core machine
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_recipe("tiny/phase1", [f'data.root="{args.data}"', 'train.init_from=""'])
    rows = read_qa_table(Path(args.data), "train")
    tok = load_tokenizer(recipe, texts=dataset_texts(read_qa_table(Path(args.data))))
    spec = SampleSpec(recipe.data.frames, recipe.model.vision.image_size, recipe.model.geometry.source)
    bs = recipe.train.batch_size

    # data loading alone: cold (decode) and warm (LRU) samples/s
    ds = QADataset(Path(args.data), rows, spec, tok)
    t0 = time.perf_counter()
    for i in range(min(len(ds), 64)):
        ds[i]
    cold = min(len(ds), 64) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(min(len(ds), 64)):
        ds[i]
    warm = min(len(ds), 64) / (time.perf_counter() - t0)

    model = build_model(recipe, tok)
    configure_trainable(model, recipe)
    for name in ("vision", "fusion", "geometry_encoder"):  # frozen: eval mode, as in the training loop
        if getattr(model, name, None) is not None:
            getattr(model, name).eval()
    opt = torch.optim.AdamW(param_groups(model, recipe))
    batches = [collate([ds[(s * bs + j) % len(ds)] for j in range(bs)]) for s in range(args.steps)]

    def run(caches: dict) -> dict[str, float]:
        """Median step time per configuration, the configurations alternating step by step."""
        for b in batches:  # warm-up, and every video's tokens in the cache
            for name, cache in caches.items():
                step(b, cache, "logging" in name, before if "before" in name else after)
        times = {name: [] for name in caches}
        for _ in range(args.rounds):
            for b in batches:
                for name, cache in caches.items():
                    t = time.perf_counter()
                    step(b, cache, "logging" in name, before if "before" in name else after)
                    times[name].append(time.perf_counter() - t)
        return {name: statistics.median(v) for name, v in times.items()}

    def step(b, cache, log=False, memory=None):
        model.memory = memory if memory is not None else model.memory
        tokens = cache.tokens(model, b) if cache is not None else None
        loss, _, _, info = model(b["frames"], b["input_ids"], b["attention_mask"], b["labels"],
                                 geometry=b.get("geometry"), tokens=tokens, return_info=log)
        if log:  # a logging step: the memory's per-frame info reduced to metrics.jsonl's scalars
            memory_stats(info, recipe.model.memory)
        loss.backward()
        opt.step()
        opt.zero_grad()

    # memory overhead per frame vs one vision-tower forward on the same frame (inference)
    frames = batches[0]["frames"][:, 0]  # [B,3,H,W], one frame per video
    with torch.no_grad():
        h = model.vision(frames.float() / 255)
        mem = model.memory.eval()
        state = mem.init_state(h.shape[0], h.device, h.dtype, tokens_per_frame=h.shape[1])
        for _ in range(recipe.model.memory.L_e):  # fill the buffers: the steady-state cost
            _, state = mem.step(h, state)

        def per_call(fn, n=50):
            fn()
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            return (time.perf_counter() - t0) / n

        t_vis = per_call(lambda: model.vision(frames.float() / 255))
        t_mem = per_call(lambda: mem.step(h, state))
    print(f"per frame (batch {h.shape[0]}): vision tower {t_vis * 1e3:.2f} ms, dual memory step (full buffers) "
          f"{t_mem * 1e3:.2f} ms = {t_mem / t_vis:.2f}x the tower")
    mem.train()

    with torch.no_grad():  # the frozen encoder alone: what the cache removes from a step
        encode = [per_call(lambda b=b: model.encode_frames(b["frames"], b.get("geometry")), n=3) for b in batches]
    after, before = model.memory, None
    with tempfile.TemporaryDirectory() as folder:  # the disk cache (train.feature_cache_dir) beside the RAM one
        configs = {"uncached": None, "cached": FeatureCache(),
                   "disk": DiskFeatureCache(folder, {"bench": 1}, lambda video: [Path(args.data) / video])}
        configs["cached logging"] = configs["cached"]
        if args.before:  # the memory package at a git revision, same weights, for the logging step before / after
            from tests.benchmarks.before import load_memory_at

            before = load_memory_at(args.before).build_memory(recipe.model.memory, after.dim)
            before.load_state_dict(after.state_dict())
            before.train()
            configs["cached before"] = configs["cached logging before"] = configs["cached"]
        t = run(configs)
    model.memory = after
    uncached, cached, enc = t["uncached"], t["cached"], statistics.median(encode)
    print(f"disk feature cache (safetensors, fp32, memory-mapped) vs in RAM: cached step {t['disk'] * 1000:.0f} ms "
          f"vs {cached * 1000:.0f} ms = {t['disk'] / cached:.2f}x; speed-up over uncached {uncached / t['disk']:.2f}x")
    print(f"data loading: {cold:.1f} samples/s cold (decode), {warm:.1f} samples/s warm (decoded videos and token ids kept)")
    print(f"phase-1 step, batch {bs} (medians of {args.rounds} x {len(batches)} alternating steps): uncached "
          f"{uncached * 1000:.0f} ms, cached {cached * 1000:.0f} ms, speed-up {uncached / cached:.2f}x; training "
          f"needs {bs / cached:.1f} samples/s, loading gives {warm:.1f}")
    print(f"logging step (return_info, memory metrics), cached: {t['cached logging'] * 1000:.0f} ms = "
          f"{t['cached logging'] / cached:.2f}x a normal cached step")
    if before is not None:
        print(f"with the memory of {args.before} (same weights): cached {t['cached before'] * 1000:.0f} ms, logging "
              f"{t['cached logging before'] * 1000:.0f} ms = {t['cached logging before'] / t['cached before']:.2f}x")
    print(f"frozen encoder (vision + geometry + fusion, no grad) {enc * 1000:.0f} ms per batch = "
          f"{enc / uncached:.0%} of an uncached step: removing exactly it gives at most "
          f"{uncached / max(uncached - enc, 1e-9):.2f}x")


if __name__ == "__main__":
    main()
