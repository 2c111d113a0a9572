"""Prediction time of `vlmem eval` with the memory scanned once per distinct video in a batch
against once per question (the path before), interleaved in one run.

    python tests/benchmarks/bench_eval.py [--data data/synth] [--recipe tiny/phase1] [--rounds 3]

Needs a synthetic dataset (`vlmem prepare-data synthetic --out data/synth`); answers the recipe's
eval split with the recipe's model (random init: weights do not change the cost) at eval batch
size, generating `--tokens` new tokens. Both paths share the encode per video; they differ only in
the memory scans. Prints medians over `--rounds` alternating passes, the scans each path ran and
whether their answers agree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from vlmem.data.dataset import read_qa_table
from vlmem.eval import generate as gen
from vlmem.model.build import build_model, dataset_texts, load_tokenizer
from vlmem.recipe import load_recipe


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/synth")
    ap.add_argument("--recipe", default="tiny/phase1")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=4, help="max new tokens per answer")
    ap.add_argument("--max-samples", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe, [f'data.root="{args.data}"', 'train.init_from=""'])
    tok = load_tokenizer(recipe, texts=dataset_texts(read_qa_table(Path(args.data))))
    model = build_model(recipe, tok).eval()
    frames = recipe.eval.frames or recipe.data.frames
    scans = []
    scan = model.memory.scan
    model.memory.scan = lambda h, *a, **k: scans.append(h.shape[0]) or scan(h, *a, **k)
    per_video = gen._context_once_per_video

    def per_question(m, b):  # before: the encode shared per video, the scan run for every question
        return {"tokens": gen._encode_once_per_video(m, b)}

    def predict(path):
        gen._context_once_per_video = path
        scans.clear()
        t0 = time.perf_counter()
        records = gen.predict(model, tok, recipe, Path(args.data), recipe.eval.split, frames, args.tokens,
                              recipe.eval.batch_size, args.max_samples)
        return time.perf_counter() - t0, sum(scans), records

    paths = {"per video": per_video, "per question": per_question}
    for path in paths.values():  # warm-up (and the decoded videos in the dataset's cache alike)
        predict(path)
    times = {name: [] for name in paths}
    rows = {}
    for _ in range(args.rounds):
        for name, path in paths.items():
            t, n, records = predict(path)
            times[name].append(t)
            rows[name] = (n, records)
    med = {k: statistics.median(v) for k, v in times.items()}
    (n_video, fast), (n_question, slow) = rows["per video"], rows["per question"]
    same = [r["prediction"] for r in fast] == [r["prediction"] for r in slow]
    print(f"torch {torch.__version__}, {args.threads} thread(s), recipe {args.recipe}, {len(fast)} questions over "
          f"{len({r['scene_name'] for r in fast})} videos, eval batch {recipe.eval.batch_size}, {frames} frames, "
          f"medians of {args.rounds} alternating passes, load average {os.getloadavg()[0]:.1f}")
    print(f"memory scans (rows scanned): per video {n_video}, per question {n_question}; answers identical: {same}")
    print(f"prediction: per video {med['per video']:.2f} s, per question {med['per question']:.2f} s = "
          f"{med['per question'] / med['per video']:.2f}x faster")


if __name__ == "__main__":
    main()
