"""Blind baselines on the evaluated questions, and which task families the run trained on.

* chance (multiple choice): 1 / number of options, averaged per question, aggregated into
  tasks exactly like the official scores (the three rel-direction levels averaged /3);
* best constant (numeric, MRA): the one number that maximises the official Mean Relative
  Accuracy over the training split's answers of that question type (the run's training
  folders, every type of the split, whether the run trained on it or not), scored with the same MRA on the evaluated questions. Without training answers of
  a type the constant is chosen on the evaluated questions themselves, an oracle: an upper
  bound for any constant answer. `source` says which;
* best constant (open QA): the most frequent training answer of the type, scored EM / F1;
* trained: the question types (and tasks) of the run's training rows.

Numbers are percentages like the scores beside them (docs/evaluation.md "Baselines").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ORACLE = "evaluated questions (oracle: no training answers of this type)"


def chance(options: Sequence[Any] | None) -> float | None:
    """Expected accuracy of a uniform guess among the options; None without options."""
    return 1.0 / len(options) if options is not None and len(options) else None


def mra_of_constant(constant: float, targets: Sequence[float]) -> float:
    """Mean over questions of the official MRA of answering `constant` (the reference's formula)."""
    from vlmem.eval.vsibench import MRA_THRESHOLDS

    g = np.asarray(targets, dtype=np.float64)
    dist = np.abs(constant - g) / g
    return float((dist[:, None] <= 1 - MRA_THRESHOLDS[None, :]).mean())


def best_constant(answers: Sequence[float]) -> float:
    """The number that maximises the mean MRA over `answers` (all > 0).

    Answering c scores 1/10 for each answer g and threshold t with c in [g(1-e), g(1+e)],
    e = 1 - t: the mean MRA is a sum of interval indicators, so its maximum is attained at some
    interval's left end (or between two touching ends). Candidates are ranked by counting the
    intervals that hold them (sorted ends, O(n log n)); the best few are re-scored with the
    official formula, which decides."""
    from vlmem.eval.vsibench import MRA_THRESHOLDS

    g = np.asarray(answers, dtype=np.float64)
    g = g[np.isfinite(g) & (g > 0)]
    if not len(g):
        raise ValueError("no positive answers to fit a constant to")
    e = 1 - MRA_THRESHOLDS
    lo, hi = (g[:, None] * (1 - e)).ravel(), (g[:, None] * (1 + e)).ravel()
    ends = np.unique(np.concatenate([lo, hi]))
    candidates = np.unique(np.concatenate([g, ends, (ends[1:] + ends[:-1]) / 2]))
    lo_sorted, hi_sorted = np.sort(lo), np.sort(hi)
    held = np.searchsorted(lo_sorted, candidates, side="right") - np.searchsorted(hi_sorted, candidates, side="left")
    is_answer = np.isin(candidates, g)
    top = candidates[np.lexsort((~is_answer, -held))[:32]]
    scores = np.asarray([mra_of_constant(c, g) for c in top])
    # among equal scores prefer an answer that occurs (a count of 2, not 2.1), else the smallest
    best = top[scores == scores.max()]
    answers = best[np.isin(best, g)]
    return float(answers[0] if len(answers) else best.min())


def most_frequent(answers: Sequence[Any]) -> str:
    """The most frequent answer (ties: the first seen)."""
    return Counter(str(a) for a in answers).most_common(1)[0][0]


def training_rows(recipe) -> tuple[list[dict], list[dict]]:
    """(every row of the run's training split, the rows it trained on): data.roots or data.root,
    data.train_split; the second also narrowed by data.question_types and max_samples like
    training. Empty when the folders are not on this machine."""
    from vlmem.data.dataset import read_qa_table, select_rows
    from vlmem.data.mixing import training_roots
    from vlmem.errors import VlmemError

    d = recipe.data
    split: list[dict] = []
    trained: list[dict] = []
    for root in training_roots(recipe):
        try:
            rows = read_qa_table(Path(root), d.train_split)
            split += rows
            trained += select_rows(rows, Path(root) / "qa.parquet", None, d.question_types, d.max_samples)
        except VlmemError:
            continue
    return split, trained


def _numeric_answers(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Finite non-zero numeric answers per type (what the official MRA can score)."""
    from vlmem.eval.vsibench import to_float

    out: dict[str, list[float]] = {}
    for r in rows:
        value = to_float(r.get("ground_truth"))
        if value is not None and np.isfinite(value) and value != 0:
            out.setdefault(str(r["question_type"]), []).append(value)
    return out


def _task_of(qtype: str) -> str:
    from vlmem.eval.vsibench import REL_DIRECTION_LEVELS, REL_DIRECTION_TASK

    return REL_DIRECTION_TASK if qtype in REL_DIRECTION_LEVELS else qtype


def spec_baselines(spec, records: Sequence[Mapping[str, Any]], train_rows: Sequence[Mapping[str, Any]] = (),
                   trained_types: Sequence[str] = ()) -> dict[str, Any]:
    """Per-task chance and best-constant scores (percent) of VSI-Bench-style `records`."""
    from vlmem.eval.vsibench import _summarise

    train_answers = _numeric_answers(train_rows)
    eval_answers = _numeric_answers([r for r in records if r["question_type"] in spec.na_types])
    mc: dict[str, list[float]] = {}
    no_options = set()
    for r in records:
        if r["question_type"] in spec.mca_types:
            p = chance(r.get("options"))
            if p is None:
                no_options.add(r["question_type"])
            else:
                mc.setdefault(r["question_type"], []).append(p)
    numeric: dict[str, list[float]] = {}
    constants: dict[str, dict[str, Any]] = {}
    for qtype, targets in eval_answers.items():
        fit_on, source = (train_answers[qtype], "training split") if train_answers.get(qtype) else (targets, ORACLE)
        try:
            c = best_constant(fit_on)
        except ValueError:  # no positive answers: MRA of a constant is not defined usefully
            continue
        numeric[qtype] = [mra_of_constant(c, [t]) for t in targets]
        constants[qtype] = {"value": c, "source": source, "fit_on": len(fit_on)}
    chance_tasks = _summarise(spec, mc)["tasks"] if mc else {}
    constant_tasks = _summarise(spec, numeric)["tasks"] if numeric else {}
    blind = _summarise(spec, {**mc, **numeric}) if mc or numeric else None
    tasks = {}
    trained = set(trained_types)
    # the official aggregate fills a missing rel-direction task with 0: keep only tasks with questions
    with_mc, with_numeric = {_task_of(t) for t in mc}, {_task_of(t) for t in numeric}
    for task in spec.tasks:
        entry = {"chance": chance_tasks.get(task) if task in with_mc else None,
                 "constant": constant_tasks.get(task) if task in with_numeric else None,
                 "trained": any(_task_of(t) == task for t in trained)}
        if task in constants:
            entry.update(constant_value=constants[task]["value"], constant_source=constants[task]["source"],
                         constant_fit_on=constants[task]["fit_on"])
        tasks[task] = entry
    notes = []
    if no_options:
        notes.append(f"no options in the records of {', '.join(sorted(no_options))}: chance not computed")
    return {"tasks": tasks, "overall": blind["overall"] if blind else None,
            "trained_types": sorted(trained), "trained_tasks": sorted({_task_of(t) for t in trained}),
            "note": "chance = 1/options per question; best constant = the MRA-optimal number of the training "
                    "split's answers of the type (else of the evaluated questions: oracle); overall = the "
                    "official aggregate of chance (MC) and constant (numeric) tasks", "warnings": notes}


def qa_baselines(records: Sequence[Mapping[str, Any]], train_rows: Sequence[Mapping[str, Any]] = (),
                 trained_types: Sequence[str] = ()) -> dict[str, Any]:
    """Per-type EM / F1 (percent) of answering the type's most frequent training answer."""
    from vlmem.eval.qa import score_sample

    by_type: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_type.setdefault(str(r.get("question_type") or "all"), []).append(r)
    train_by_type: dict[str, list[Any]] = {}
    for r in train_rows:
        train_by_type.setdefault(str(r.get("question_type") or "all"), []).append(r["ground_truth"])
    per_type, all_scores = {}, []
    for qtype, rows in sorted(by_type.items()):
        pool, source = (train_by_type[qtype], "training split") if train_by_type.get(qtype) else \
            ([r["ground_truth"] if isinstance(r["ground_truth"], str) else list(r["ground_truth"])[0] for r in rows], ORACLE)
        answer = most_frequent(pool)
        scores = [score_sample(answer, r["ground_truth"]) for r in rows]
        all_scores += scores
        per_type[qtype] = {"constant": answer, "constant_source": source, "constant_fit_on": len(pool),
                           "exact_match": 100.0 * float(np.mean([s[0] for s in scores])),
                           "f1": 100.0 * float(np.mean([s[1] for s in scores])),
                           "trained": qtype in set(trained_types)}
    return {"per_type": per_type, "overall": 100.0 * float(np.mean([s[1] for s in all_scores])),
            "metrics": {"exact_match": 100.0 * float(np.mean([s[0] for s in all_scores])),
                        "f1": 100.0 * float(np.mean([s[1] for s in all_scores]))},
            "trained_types": sorted(set(trained_types)),
            "note": "best constant = the most frequent training answer of the type (else of the evaluated "
                    "questions: oracle), scored with EM / token F1", "warnings": []}


def baselines_for(benchmark: str, records: Sequence[Mapping[str, Any]], recipe=None) -> dict[str, Any]:
    """Baselines of a benchmark's records; with a run's `recipe`, constants come from its training
    split and the trained families are marked."""
    train_rows, trained_rows = training_rows(recipe) if recipe is not None else ([], [])
    trained = sorted({str(r["question_type"]) for r in trained_rows})
    if benchmark == "qa":
        return qa_baselines(records, train_rows, trained)
    import importlib

    module = importlib.import_module(f"vlmem.eval.{benchmark}")
    spec = getattr(module, benchmark.upper())
    return spec_baselines(spec, [r for r in records if r["question_type"] in spec.valid_types], train_rows, trained)


def baseline_scores(result: Mapping[str, Any]) -> tuple[dict[str, float | None], set[str]]:
    """An eval result's baselines in the flat keys of an ablation row (`vlmem.ablate._score_of`),
    and the keys of the task families the run trained on."""
    b = result.get("baselines") or {}
    flat: dict[str, float | None] = {}
    trained: set[str] = set()
    if "tasks" in b:
        counts = (result.get("counts") or {}).get("tasks", {})
        for task, entry in b["tasks"].items():
            value = entry["chance"] if entry.get("chance") is not None else entry.get("constant")
            if counts.get(task, 0) > 0 and value is not None:
                flat[task] = value
            if entry.get("trained"):
                trained.add(task)
        present = [v for v in flat.values() if v is not None]
        flat["official_overall"] = b.get("overall")
        flat["overall"] = sum(present) / len(present) if present else None  # mean over tasks with questions
    elif "per_type" in b:
        for qtype, entry in b["per_type"].items():
            flat[f"{qtype}/em"], flat[f"{qtype}/f1"] = entry["exact_match"], entry["f1"]
            if entry.get("trained"):
                trained |= {f"{qtype}/em", f"{qtype}/f1"}
        flat.update(b.get("metrics", {}))
        flat["overall"] = b.get("overall")
    return flat, trained
