"""Phase-1 step time with and without the feature cache, and data-loading throughput.

    python tests/benchmarks/bench_train_step.py [--data data/synth] [--steps 20]

Needs a synthetic dataset (`vlmem prepare-data synthetic --out data/synth`). Uses the tiny
phase-1 recipe's model (random init; weights do not change the cost). Prints ratios measured
in this one run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from vlmem.data.dataset import QADataset, SampleSpec, collate, read_qa_table
from vlmem.model.build import build_model, dataset_texts, load_tokenizer
from vlmem.recipe import load_recipe
from vlmem.train.loop import FeatureCache
from vlmem.train.params import configure_trainable, param_groups


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/synth")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
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
    model.vision.eval()
    opt = torch.optim.AdamW(param_groups(model, recipe))
    batches = [collate([ds[(s * bs + j) % len(ds)] for j in range(bs)]) for s in range(args.steps)]

    def run(cache: FeatureCache | None) -> float:
        for b in batches[:2]:  # warm-up (and fill the cache for the videos seen)
            step(b, cache)
        if cache is not None:
            for b in batches:
                cache.tokens(model, b)
        t = time.perf_counter()
        for b in batches:
            step(b, cache)
        return (time.perf_counter() - t) / len(batches)

    def step(b, cache):
        tokens = cache.tokens(model, b) if cache is not None else None
        loss = model(b["frames"], b["input_ids"], b["attention_mask"], b["labels"], geometry=b.get("geometry"),
                     tokens=tokens)[0]
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

    uncached = run(None)
    cached = run(FeatureCache())
    print(f"data loading: {cold:.1f} samples/s cold (decode), {warm:.1f} samples/s warm (LRU)")
    print(f"phase-1 step, batch {bs}: uncached {uncached * 1000:.0f} ms, cached {cached * 1000:.0f} ms, "
          f"speed-up {uncached / cached:.2f}x; training needs {bs / cached:.1f} samples/s, loading gives {warm:.1f}")


if __name__ == "__main__":
    main()
