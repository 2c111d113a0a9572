"""VSI-Bench scoring with the official thinking-in-space / lmms-eval semantics.

Reference (read, re-implemented, not copied): repo `vision-x-nyu/thinking-in-space`,
file `lmms_eval/tasks/vsibench/utils.py` at commit
e6a72f397d7abf3608bb51f5edcb74753f87d234 (prompts from `vsibench.yaml`, same commit).
`docs/evaluation.md` gives the formulas and every edge case.

Official number (what the paper reports, x100):
  * MC types: first space-separated token of the prediction, trailing '.' removed, then
    stripped; case-insensitive equality with the ground-truth letter.
  * Numeric types: the same token through `float()` (None if that fails) and Mean
    Relative Accuracy over thresholds linspace(0.5, 0.95, 10):
    mean_t [ |pred - gt| / gt <= 1 - t ]; an unparseable prediction scores 0.
  * per-type mean; the three `object_rel_direction_{easy,medium,hard}` accuracies are
    averaged with equal weight; overall = unweighted mean of the task scores present.
    A subset without rel-direction questions follows the repository's main branch
    (commit 51e089c3ae69b9435e9489058610f5b3964c56a8): the task is left out of overall.
    e6a72f (a side branch, `cogmap`) counts each missing level as 0 instead; both rules are
    kept (`rule="main" | "e6a72f"`), main is the default.
  * VLM-3R-DATA's question-type names (`object_rel_direction_v1`, `object_rel_distance_v2`,
    ...) are mapped to VSI-Bench's (`canonical_question_type`).
  * records with VSI-Bench's `pruned` column also get a VSI-Bench-Debiased score (the rows
    with pruned = false, the dataset card's `test_debiased.parquet`).

A lenient parser ("(B)", "The answer is B.", "about 3.5 meters") is reported beside it
and is NOT the official number.

This module also holds the scoring engine shared with `vstibench.py` (`BenchmarkSpec`,
`score_records`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlmem.errors import DataError, UsageError

OFFICIAL_SOURCE = (
    "vision-x-nyu/thinking-in-space@e6a72f397d7abf3608bb51f5edcb74753f87d234:"
    "lmms_eval/tasks/vsibench/utils.py"
)
# The repository's main branch; its aggregation is the default (see `official_aggregate`).
MAIN_SOURCE = (
    "vision-x-nyu/thinking-in-space@51e089c3ae69b9435e9489058610f5b3964c56a8:"
    "lmms_eval/tasks/vsibench/utils.py"
)
AGGREGATION_RULES = ("main", "e6a72f")

# VLM-3R-DATA names (VITA-Group/VLM-3R vlm_3r_data_process/src/tasks/vsibench/get_obj_rel_*_qa.py):
# v1 asks front-left/front-right/back-left/back-right (VSI-Bench hard), v2 left/right/back
# (medium), v3 left/right (easy); the three rel-distance variants are one VSI-Bench type.
VLM3R_QUESTION_TYPES = {
    "object_rel_direction_v1": "object_rel_direction_hard",
    "object_rel_direction_v2": "object_rel_direction_medium",
    "object_rel_direction_v3": "object_rel_direction_easy",
    "object_rel_distance_v1": "object_rel_distance",
    "object_rel_distance_v2": "object_rel_distance",
    "object_rel_distance_v3": "object_rel_distance",
}


def canonical_question_type(qtype: str) -> str:
    """VSI-Bench's name for a question type (VLM-3R's `_v1/_v2/_v3` names mapped; others as they are)."""
    return VLM3R_QUESTION_TYPES.get(qtype, qtype)

MCA_QUESTION_TYPES = (
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
    "object_rel_distance",
    "route_planning",
    "obj_appearance_order",
)
NA_QUESTION_TYPES = (
    "object_abs_distance",
    "object_counting",
    "object_size_estimation",
    "room_size_estimation",
)
REL_DIRECTION_LEVELS = MCA_QUESTION_TYPES[:3]
REL_DIRECTION_TASK = "object_rel_direction"
# The 8 task scores, in the order the reference lists the types.
VSIBENCH_TASKS = (REL_DIRECTION_TASK,) + MCA_QUESTION_TYPES[3:] + NA_QUESTION_TYPES

ACCURACY_METRIC = "accuracy"
MRA_METRIC = "MRA:.5:.95:.05"
# Reference: num_pts = (end - start) / interval + 2 = 10.999... -> int -> 10 points.
MRA_THRESHOLDS = np.linspace(0.5, 0.95, int((0.95 - 0.5) / 0.05 + 2))

# Prompt constants (vsibench.yaml `lmms_eval_specific_kwargs.default` + utils defaults).
PRE_PROMPT = "These are frames of a video."
MCA_POST_PROMPT = "Answer with the option's letter from the given choices directly."
NA_POST_PROMPT = "Please answer the question using a single word or phrase."

LENIENT_NOTE = (
    "lenient parser: NOT the official VSI-Bench number (accepts '(B)', 'The answer is B.', "
    "'B) chair', option text, numbers inside text such as 'about 3.5 meters', number words)"
)


# --------------------------------------------------------------------------- prompt


def build_vsibench_prompt(
    question: str,
    options: Sequence[str] | None = None,
    *,
    question_type: str | None = None,
    pre_prompt: str | None = None,
    post_prompt: str | None = None,
) -> str:
    """The exact text `vsibench_doc_to_text` builds with the default kwargs.

    Numeric question (``options is None``): ``pre + "\\n" + question + "\\n" + na_post``.
    Multiple choice: ``"\\n".join([pre, question, "Options:\\n" + "\\n".join(options), mca_post])``.
    If ``question_type`` is given it decides MC vs numeric like the reference does.
    """
    pre = pre_prompt or PRE_PROMPT
    if question_type is not None:
        if question_type in NA_QUESTION_TYPES:
            is_mc = False
        elif question_type in MCA_QUESTION_TYPES:
            is_mc = True
        else:
            raise UsageError(
                f"unknown VSI-Bench question_type {question_type!r} "
                f"(valid: {', '.join(MCA_QUESTION_TYPES + NA_QUESTION_TYPES)})"
            )
    else:
        is_mc = options is not None
    if not is_mc:
        return pre + "\n" + question + "\n" + (post_prompt or NA_POST_PROMPT)
    if options is None:
        raise UsageError(f"question_type {question_type!r} is multiple choice but no options were given")
    opts = "Options:\n" + "\n".join(str(o) for o in options)
    return "\n".join([pre, question, opts, post_prompt or MCA_POST_PROMPT])


# --------------------------------------------------------------------------- official parsing


def fuzzy_match(prediction: Any) -> str:
    """Reference `fuzzy_matching`: first token of ``split(' ')``, trailing dots removed, stripped.

    Note ``" B".split(" ")[0] == ""``: a leading space yields an empty answer, exactly as
    in the reference. Non-string predictions are converted with ``str()`` (the reference
    would raise).
    """
    text = prediction if isinstance(prediction, str) else str(prediction)
    return text.split(" ")[0].rstrip(".").strip()


def to_float(value: Any) -> float | None:
    """Reference `to_float`: Python ``float()`` or None (so "1e2" -> 100.0, "nan" -> nan)."""
    try:
        return float(value)
    except Exception:
        return None


def exact_match(pred: str, target: Any) -> float:
    return 1.0 if pred.lower() == str(target).lower() else 0.0


def mean_relative_accuracy(pred: float, target: float) -> float:
    """mean over t in MRA_THRESHOLDS of [ |pred - target| / target <= 1 - t ].

    Plain Python division as in the reference: a target of 0 raises ZeroDivisionError.
    """
    dist = abs(pred - target) / target
    return float(np.mean(dist <= 1 - MRA_THRESHOLDS))


class _GroundTruthZero(Exception):
    pass


def official_numeric(prediction: Any, ground_truth: Any) -> tuple[float | None, float]:
    """(parsed prediction, score) for a numeric question, reference semantics.

    The reference evaluates ``abs(pred - gt) / gt`` and maps TypeError (pred or gt None)
    to 0. A parseable prediction against a ground truth of 0 raises ZeroDivisionError
    there (not caught); we raise `_GroundTruthZero` so the caller can report it.
    """
    pred = to_float(fuzzy_match(prediction))
    gt = to_float(ground_truth)
    if pred is None or gt is None:
        return pred, 0.0
    if gt == 0:
        raise _GroundTruthZero()
    return pred, mean_relative_accuracy(pred, gt)


def official_mc(prediction: Any, target: Any) -> tuple[str, float]:
    parsed = fuzzy_match(prediction)
    return parsed, exact_match(parsed, target)


# --------------------------------------------------------------------------- lenient parsing

_NUMBER_WORDS = {
    w: float(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_RE = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_WORD_RE = re.compile(r"[a-z]+")
_OPTION_PREFIX_RE = re.compile(r"^\s*\(?([A-Za-z])\s*[\.\):]\s*(.*)$", re.S)


def _letters_for(options: Sequence[str] | None, target: Any) -> set[str]:
    if options:
        letters = set()
        for i, opt in enumerate(options):
            m = _OPTION_PREFIX_RE.match(str(opt))
            letters.add(m.group(1).upper() if m else chr(ord("A") + i))
        return letters
    letters = set("ABCD")
    t = str(target).strip().upper()
    if len(t) == 1 and t.isalpha():
        letters |= {chr(c) for c in range(ord("A"), ord(t) + 1)}
    return letters


def _norm_words(text: str) -> str:
    return " ".join(_WORD_RE.findall(text.lower()))


def lenient_letter(prediction: Any, options: Sequence[str] | None, target: Any) -> str | None:
    """Best-effort option letter (upper case) or None. Not the official parser."""
    text = prediction if isinstance(prediction, str) else str(prediction)
    letters = _letters_for(options, target)
    cls = "[" + "".join(sorted(letters)) + "]"
    token = fuzzy_match(text)
    if token.upper() in letters and len(token) == 1:
        return token.upper()
    stripped = text.strip()
    patterns = (
        rf"^\(?({cls}|{cls.lower()})\)?[\.\):,]?$",  # "b", "(B)", "B)", "b."
        rf"\(({cls})\)",  # "... (B) ..."
        rf"(?i:answer|option|choice)\s*(?:is|:)?\s*(?i:option\s*)?\(?({cls})\b",  # "The answer is B."
        rf"^({cls})\s*[\.\):,]",  # "B) chair", "B. chair", "B: chair"
        rf"^({cls})\b",  # "B chair"
    )
    for pat in patterns:
        m = re.search(pat, stripped)
        if m:
            return m.group(1).upper()
    if options:
        pred_norm = _norm_words(stripped)
        if pred_norm:
            hits = []
            for i, opt in enumerate(options):
                m = _OPTION_PREFIX_RE.match(str(opt))
                letter = m.group(1).upper() if m else chr(ord("A") + i)
                body = _norm_words(m.group(2) if m else str(opt))
                if body and (pred_norm == body or re.search(rf"\b{re.escape(body)}\b", pred_norm)):
                    hits.append((pred_norm == body, letter))
            exact = [letter for is_exact, letter in hits if is_exact]
            if len(exact) == 1:
                return exact[0]
            if len(hits) == 1:
                return hits[0][1]
    m = re.search(rf"\b({cls})\b", stripped)
    if m and len(set(re.findall(rf"\b({cls})\b", stripped))) == 1:
        return m.group(1)
    return None


def lenient_number(prediction: Any) -> float | None:
    """Official parse if finite, else the first number in the text, else a number word."""
    text = prediction if isinstance(prediction, str) else str(prediction)
    value = to_float(fuzzy_match(text))
    if value is not None and math.isfinite(value):
        return value
    m = _NUMBER_RE.search(_THOUSANDS_RE.sub("", text))
    if m:
        value = to_float(m.group(0))
        if value is not None and math.isfinite(value):
            return value
    for word in _WORD_RE.findall(text.lower()):
        if word in _NUMBER_WORDS:
            return _NUMBER_WORDS[word]
    return None


def lenient_mc(prediction: Any, target: Any, options: Sequence[str] | None) -> tuple[str | None, float]:
    letter = lenient_letter(prediction, options, target)
    if letter is None:
        return None, 0.0
    return letter, 1.0 if letter.lower() == str(target).strip().lower() else 0.0


def lenient_numeric(prediction: Any, ground_truth: Any) -> tuple[float | None, float]:
    pred = lenient_number(prediction)
    gt = to_float(ground_truth)
    if pred is None or gt is None:
        return pred, 0.0
    if gt == 0:  # no official rule exists (the reference crashes); exact match only
        return pred, 1.0 if pred == 0 else 0.0
    return pred, mean_relative_accuracy(pred, gt)


# --------------------------------------------------------------------------- engine


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    mca_types: tuple[str, ...]
    na_types: tuple[str, ...]
    tasks: tuple[str, ...]  # task names in report order (after level combination)
    source: str
    mc_target_field: str = "ground_truth"
    combine_rel_direction: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def valid_types(self) -> tuple[str, ...]:
        return self.mca_types + self.na_types


VSIBENCH = BenchmarkSpec(
    name="vsibench",
    mca_types=MCA_QUESTION_TYPES,
    na_types=NA_QUESTION_TYPES,
    tasks=VSIBENCH_TASKS,
    source=OFFICIAL_SOURCE,
    combine_rel_direction=True,
)

REQUIRED_FIELDS = ("id", "question_type", "ground_truth", "prediction")


def _mean(values: Sequence[float]) -> float:
    # pandas Series.mean() == float64 sum / count (numpy pairwise sum).
    return float(np.asarray(values, dtype=np.float64).sum() / len(values))


def _metric_key(spec: BenchmarkSpec, qtype: str) -> str:
    return f"{qtype}_{ACCURACY_METRIC if qtype in spec.mca_types else MRA_METRIC}"


def official_aggregate(
    spec: BenchmarkSpec, scores_by_type: Mapping[str, Sequence[float]], rule: str = "main"
) -> dict[str, float]:
    """The dict the reference `vsibench_aggregate_results` builds (fractions, reference keys).

    Types are visited in sorted order (pandas groupby), the rel-direction levels are popped and
    averaged /3, then overall = sum(values) / len(values). The levels, by `rule`:

    * "main" (51e089c): combined only when the easy level is present; with no rel-direction
      questions the task is left out of overall. (main pops medium/hard without a default and
      raises KeyError when easy is present but another level is not: scored as e6a72f then.)
    * "e6a72f": always combined, a missing level counts 0.
    """
    if rule not in AGGREGATION_RULES:
        raise UsageError(f"unknown aggregation rule {rule!r}: expected one of {AGGREGATION_RULES}")
    out: dict[str, float] = {}
    for qtype in sorted(scores_by_type):
        out[_metric_key(spec, qtype)] = _mean(scores_by_type[qtype])
    if spec.combine_rel_direction:
        keys = [f"{lvl}_{ACCURACY_METRIC}" for lvl in REL_DIRECTION_LEVELS]
        if rule == "e6a72f" or keys[0] in out:
            levels = [out.pop(key, 0.0) for key in keys]
            out[f"{REL_DIRECTION_TASK}_{ACCURACY_METRIC}"] = sum(levels) / 3.0
    out["overall"] = sum(out.values()) / len(out)
    return out


def _summarise(spec: BenchmarkSpec, scores_by_type: Mapping[str, Sequence[float]], rule: str = "main") -> dict[str, Any]:
    raw = official_aggregate(spec, scores_by_type, rule)
    tasks: dict[str, float | None] = {}
    for task in spec.tasks:
        if task == REL_DIRECTION_TASK and spec.combine_rel_direction:
            key = f"{task}_{ACCURACY_METRIC}"
        else:
            key = _metric_key(spec, task)
        tasks[task] = raw[key] * 100.0 if key in raw else None
    per_type = {
        qtype: _mean(scores_by_type[qtype]) * 100.0 for qtype in spec.valid_types if qtype in scores_by_type
    }
    return {"overall": raw["overall"] * 100.0, "tasks": tasks, "per_type": per_type, "raw": raw}


def _missing(spec: BenchmarkSpec, present: set[str]) -> tuple[list[str], list[str]]:
    """(missing rel-direction levels, missing tasks that are left out of overall)."""
    levels = [lvl for lvl in REL_DIRECTION_LEVELS if lvl not in present] if spec.combine_rel_direction else []
    tasks = []
    for task in spec.tasks:
        if task == REL_DIRECTION_TASK and spec.combine_rel_direction:
            continue
        if task not in present:
            tasks.append(task)
    return levels, tasks


def length_bucket(record: Mapping[str, Any]) -> str | None:
    """VLM² long-horizon split: duration (s) <60 / 60-120 / >120, else frames <=32 / 33-64 / >64."""
    duration = to_float(record.get("duration")) if record.get("duration") is not None else None
    if duration is not None and math.isfinite(duration):
        if duration < 60:
            return "<1 min"
        if duration <= 120:
            return "1-2 min"
        return ">2 min"
    frames = to_float(record.get("num_frames")) if record.get("num_frames") is not None else None
    if frames is not None and math.isfinite(frames):
        if frames <= 32:
            return "<=32 frames"
        if frames <= 64:
            return "33-64 frames"
        return ">64 frames"
    return None


_BUCKET_ORDER = ("<1 min", "1-2 min", ">2 min", "<=32 frames", "33-64 frames", ">64 frames", "unknown")


def _check_record(i: int, rec: Any) -> None:
    if not isinstance(rec, Mapping):
        raise UsageError(
            f"record {i}: expected a mapping with fields {', '.join(REQUIRED_FIELDS)}, got {type(rec).__name__}"
        )
    for name in REQUIRED_FIELDS:
        if name not in rec or rec[name] is None:
            raise UsageError(
                f"record {i} (id={rec.get('id')!r}): missing field {name!r} "
                f"(expected {', '.join(REQUIRED_FIELDS)})"
            )


def score_records(spec: BenchmarkSpec, records: Iterable[Mapping[str, Any]], rule: str = "main") -> dict[str, Any]:
    """Score records with the given benchmark spec; see `score_vsibench` for the output."""
    records = list(records)
    if not records:
        raise UsageError(f"no predictions to score for {spec.name}")
    samples: list[dict[str, Any]] = []
    zero_gt: list[str] = []
    unknown: dict[str, list[str]] = {}
    missing_mc_target = 0
    seen: dict[str, int] = {}
    for i, rec in enumerate(records):
        _check_record(i, rec)
        qtype = str(rec["question_type"])
        if spec.combine_rel_direction:
            qtype = canonical_question_type(qtype)
        rid = str(rec["id"])
        seen[rid] = seen.get(rid, 0) + 1
        pred = rec["prediction"]
        if qtype in spec.mca_types:
            target = rec.get(spec.mc_target_field)
            if target is None:
                missing_mc_target += spec.mc_target_field != "ground_truth"
                target = rec["ground_truth"]
            parsed, score = official_mc(pred, target)
            l_parsed, l_score = lenient_mc(pred, target, rec.get("options"))
            kind = "mc"
        elif qtype in spec.na_types:
            target = rec["ground_truth"]
            try:
                parsed, score = official_numeric(pred, target)
            except _GroundTruthZero:
                zero_gt.append(rid)
                continue
            l_parsed, l_score = lenient_numeric(pred, target)
            kind = "numeric"
        else:
            unknown.setdefault(qtype, []).append(rid)
            continue
        sample = {
            "id": rec["id"],
            "question_type": qtype,
            "kind": kind,
            "ground_truth": rec["ground_truth"],
            "target": target,
            "prediction": pred,
            "parsed": parsed,
            "score": score,
            "lenient_parsed": l_parsed,
            "lenient_score": l_score,
        }
        if rec.get("dataset") is not None:
            sample["dataset"] = str(rec["dataset"])
        if rec.get("pruned") is not None:  # VSI-Bench's Iterative Bias Pruning flag
            sample["pruned"] = bool(rec["pruned"])
        bucket = length_bucket(rec)
        if bucket is not None:
            sample["length_bucket"] = bucket
        samples.append(sample)
    if unknown:
        listed = "; ".join(
            f"{t!r} (ids {', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})" for t, ids in unknown.items()
        )
        raise UsageError(
            f"{spec.name}: unknown question_type {listed}; valid types: {', '.join(spec.valid_types)}"
        )
    if zero_gt:
        raise DataError(
            f"{spec.name}: ground truth is 0 for numeric question(s) {', '.join(zero_gt[:10])}"
            f"{' ...' if len(zero_gt) > 10 else ''}: the official scorer divides by the ground truth "
            "(|pred-gt|/gt) and fails with ZeroDivisionError, so no official score exists; fix the data"
        )

    result = _aggregate_samples(spec, samples, rule)
    warnings = list(result.pop("_warnings"))
    if any("pruned" in s for s in samples):
        result["debiased"] = debiased_summary(spec, samples, rule)
    if missing_mc_target:
        warnings.append(
            f"{missing_mc_target} multiple-choice record(s) have no {spec.mc_target_field!r}; "
            "scored against 'ground_truth' instead"
        )
    dups = sorted(k for k, v in seen.items() if v > 1)
    if dups:
        warnings.append(f"{len(dups)} duplicate id(s) scored more than once: {', '.join(dups[:5])}")
    result["warnings"] = warnings + list(spec.notes)

    breakdowns: dict[str, dict[str, Any]] = {}
    if any("dataset" in s for s in samples):
        breakdowns["dataset"] = _breakdown(spec, samples, lambda s: s.get("dataset", "unknown"), None, rule)
    if any("length_bucket" in s for s in samples):
        breakdowns["video_length"] = _breakdown(
            spec, samples, lambda s: s.get("length_bucket", "unknown"), _BUCKET_ORDER, rule
        )
    result["breakdowns"] = breakdowns
    result["samples"] = samples
    return result


def debiased_summary(spec: BenchmarkSpec, samples: list[dict[str, Any]], rule: str = "main") -> dict[str, Any]:
    """VSI-Bench-Debiased: the same scoring over the rows VSI-Bench marks `pruned = false`
    (nyu-visionx/VSI-Bench `create_pq.py`: debiased = not pruned by Iterative Bias Pruning)."""
    kept = [s for s in samples if not s.get("pruned", False)]
    out: dict[str, Any] = {"count": len(kept), "pruned": len(samples) - len(kept),
                           "source": "nyu-visionx/VSI-Bench test.parquet column 'pruned' (debiased = pruned is false)"}
    if not kept:
        out.update(official_overall=None, lenient_overall=None, tasks={})
        return out
    agg = _aggregate_samples(spec, kept, rule)
    out.update(official_overall=agg["official"]["overall"], lenient_overall=agg["lenient"]["overall"],
               tasks=agg["official"]["tasks"], task_counts=agg["counts"]["tasks"])
    return out


def _aggregate_samples(spec: BenchmarkSpec, samples: list[dict[str, Any]], rule: str = "main") -> dict[str, Any]:
    official: dict[str, list[float]] = {}
    lenient: dict[str, list[float]] = {}
    for s in samples:
        official.setdefault(s["question_type"], []).append(s["score"])
        lenient.setdefault(s["question_type"], []).append(s["lenient_score"])
    present = set(official)
    counts_types = {t: len(official[t]) for t in spec.valid_types if t in official}
    counts_tasks = {}
    for task in spec.tasks:
        if task == REL_DIRECTION_TASK and spec.combine_rel_direction:
            counts_tasks[task] = sum(counts_types.get(lvl, 0) for lvl in REL_DIRECTION_LEVELS)
        else:
            counts_tasks[task] = counts_types.get(task, 0)
    missing_levels, missing_tasks = _missing(spec, present)
    warnings = []
    if missing_levels and (rule == "e6a72f" or REL_DIRECTION_LEVELS[0] in present):
        warnings.append(
            f"no samples for {', '.join(missing_levels)}: counted as 0 in the {REL_DIRECTION_TASK} "
            + ("average, as thinking-in-space e6a72f does" if rule == "e6a72f" else
               "average (thinking-in-space main raises KeyError here; scored as e6a72f does)")
        )
    elif missing_levels and len(missing_levels) < len(REL_DIRECTION_LEVELS):
        warnings.append(
            f"no samples for {', '.join(missing_levels)}: the other levels count as separate entries of "
            "overall, as thinking-in-space main does (it combines the levels only when the easy one is present)"
        )
    elif missing_levels:
        missing_tasks = [REL_DIRECTION_TASK, *missing_tasks]
    if missing_tasks:
        warnings.append(
            f"no samples for {', '.join(missing_tasks)}: left out of overall, as the official scorer "
            "does (overall is the mean of the task scores present)"
        )
    off = _summarise(spec, official, rule)
    len_ = _summarise(spec, lenient, rule)
    len_["note"] = LENIENT_NOTE
    return {
        "benchmark": spec.name,
        "scorer": {
            "source": MAIN_SOURCE if spec.combine_rel_direction and rule == "main" else spec.source,
            "aggregation": rule if spec.combine_rel_direction else "per type",
            "mra_thresholds": [float(t) for t in MRA_THRESHOLDS],
            "scale": "percent (official fractions x 100; `official.raw` holds the fractions)",
        },
        "official": off,
        "lenient": len_,
        "counts": {"total": len(samples), "per_type": counts_types, "tasks": counts_tasks},
        "missing": {"rel_direction_levels": missing_levels, "tasks": missing_tasks},
        "_warnings": warnings,
    }


def _breakdown(spec, samples, key_fn, order, rule: str = "main") -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        groups.setdefault(key_fn(s), []).append(s)
    names = sorted(groups, key=lambda g: (order.index(g) if order and g in order else len(order or ()), g))
    out = {}
    for name in names:
        agg = _aggregate_samples(spec, groups[name], rule)
        out[name] = {
            "count": agg["counts"]["total"],
            "official_overall": agg["official"]["overall"],
            "lenient_overall": agg["lenient"]["overall"],
            "tasks": agg["official"]["tasks"],
            "lenient_tasks": agg["lenient"]["tasks"],
            "task_counts": agg["counts"]["tasks"],
            "missing": agg["missing"],
        }
    return out


def score_vsibench(records: Iterable[Mapping[str, Any]], rule: str = "main") -> dict[str, Any]:
    """Score VSI-Bench predictions with the official semantics (+ a lenient variant).

    Each record needs ``id, question_type, ground_truth, prediction``; optional
    ``dataset``, ``duration`` (seconds), ``num_frames``, ``options`` (used by the lenient
    parser only).

    Returns a dict with ``official`` / ``lenient`` (each: ``overall``, ``tasks`` (the 8
    task scores, None when a task has no samples), ``per_type``, and for official
    ``raw`` = the reference's own output dict in fractions), ``counts``, ``missing``,
    ``warnings``, ``breakdowns`` (``dataset``, ``video_length``) and ``samples``
    (per-sample parsed answer and score). Scores are percentages.
    """
    return score_records(VSIBENCH, records, rule)
