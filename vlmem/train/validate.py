"""Held-out evaluation during training (`train.eval_every`).

Every `eval_every` steps (and after the last one) the main process answers a fixed subset
of `data.eval_split` (at most `train.eval_max_questions` questions of `data.eval_root`, else
`data.root`) greedily and scores it with the scorer `vlmem eval <eval.benchmark>` uses
(`vlmem.eval.generate.predict` + `vlmem.eval.report.scorer_for`). The scores go to
metrics.jsonl as `eval/<name>`. The subset is drawn once with the run's seed, and the
training RNG streams and train/eval module modes are restored afterwards, so a run with
validation trains exactly like one without and a resumed run stays exact.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from vlmem.data.dataset import read_qa_table

SUBSET = 0x76616C  # "val": the subset's own random stream


def held_out_rows(rows: list[dict], max_questions: int, seed: int) -> list[dict]:
    """A seeded subset of `max_questions` rows, in file order (a video's questions stay together)."""
    if len(rows) <= max_questions:
        return rows
    pick = np.random.default_rng([seed, SUBSET]).choice(len(rows), size=max_questions, replace=False)
    return [rows[i] for i in sorted(pick.tolist())]


def flat_scores(result: dict) -> dict[str, float]:
    """`eval/overall` and one `eval/<task>` per task (VSI-Bench style) or EM/F1 (qa), in percent."""
    official = result["official"]
    out = {"eval/overall": float(official["overall"])} if official.get("overall") is not None else {}
    for task, value in official.get("tasks", {}).items():
        if value is not None and result["counts"]["tasks"].get(task):
            out[f"eval/{task}"] = float(value)
    for name, value in official.get("metrics", {}).items():
        out[f"eval/{name}"] = float(value)
    out["eval/questions"] = result["counts"]["total"]
    return out


class Validator:
    def __init__(self, recipe, tokenizer):
        from vlmem.eval.generate import benchmark_question_types
        from vlmem.eval.report import scorer_for

        self.recipe, self.tokenizer = recipe, tokenizer
        self.benchmark = recipe.eval.benchmark
        self.score, _ = scorer_for(self.benchmark)
        self.root = Path(recipe.data.eval_root or recipe.data.root)
        # read up front: a missing split fails before training starts, not at the first evaluation
        rows = read_qa_table(self.root, recipe.data.eval_split, benchmark_question_types(self.benchmark, recipe))
        self.rows = held_out_rows(rows, recipe.train.eval_max_questions, recipe.run.seed)
        self.frames = recipe.eval.frames or recipe.data.frames

    def evaluate(self, model) -> dict[str, float]:
        """Scores of `model` (the unwrapped module) on the held-out subset; RNG and modes restored."""
        from vlmem.eval.generate import predict

        modes = {name: module.training for name, module in model.named_modules()}
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                model.eval()
                e = self.recipe.eval
                records = predict(model, self.tokenizer, self.recipe, self.root, self.recipe.data.eval_split,
                                  self.frames, e.max_new_tokens, e.batch_size, rows=self.rows)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            for name, module in model.named_modules():
                module.training = modes[name]
        return flat_scores(self.score(records))

    def run(self, acc, model) -> dict[str, float]:
        """Evaluate on the main process while the others wait; {} on the other processes."""
        acc.wait_for_everyone()
        scores = self.evaluate(model) if acc.is_main_process else {}
        acc.wait_for_everyone()
        return scores
