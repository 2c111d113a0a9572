"""Open-ended QA scoring: exact match and token F1 with SQuAD-style normalisation.

normalize(s) = white_space_fix(remove_articles(remove_punc(lower(s)))), where
remove_punc drops every character in `string.punctuation` and remove_articles replaces
the whole words a / an / the by a space. F1 is the SQuAD token-overlap F1; when either
side has no tokens, F1 = 1 if both are empty else 0 (SQuAD v2 rule). A list ground truth
means several references: the per-sample EM and F1 are each the max over references.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from vlmem.errors import UsageError

REQUIRED_FIELDS = ("id", "ground_truth", "prediction")
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: Any) -> str:
    s = str(text).lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match_score(prediction: Any, reference: Any) -> float:
    return 1.0 if normalize_answer(prediction) == normalize_answer(reference) else 0.0


def f1_score(prediction: Any, reference: Any) -> float:
    pred_tokens = normalize_answer(prediction).split()
    ref_tokens = normalize_answer(reference).split()
    if not pred_tokens or not ref_tokens:
        return 1.0 if pred_tokens == ref_tokens else 0.0
    common = Counter(pred_tokens) & Counter(ref_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def _references(ground_truth: Any) -> list[Any]:
    if isinstance(ground_truth, str):
        return [ground_truth]
    if isinstance(ground_truth, Sequence) or hasattr(ground_truth, "tolist"):
        refs = list(ground_truth.tolist() if hasattr(ground_truth, "tolist") else ground_truth)
        return refs or [""]
    return [ground_truth]


def score_sample(prediction: Any, ground_truth: Any) -> tuple[float, float]:
    refs = _references(ground_truth)
    pred = "" if prediction is None else prediction
    return max(exact_match_score(pred, r) for r in refs), max(f1_score(pred, r) for r in refs)


def score_qa(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """EM / token-F1 (percent) overall and per ``question_type`` (if present), + per-sample."""
    records = list(records)
    if not records:
        raise UsageError("no predictions to score for qa")
    samples = []
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise UsageError(f"record {i}: expected a mapping with fields {', '.join(REQUIRED_FIELDS)}")
        for name in REQUIRED_FIELDS:
            if name not in rec or rec[name] is None:
                raise UsageError(
                    f"record {i} (id={rec.get('id')!r}): missing field {name!r} "
                    f"(expected {', '.join(REQUIRED_FIELDS)})"
                )
        em, f1 = score_sample(rec["prediction"], rec["ground_truth"])
        gt = rec["ground_truth"]
        samples.append(
            {
                "id": rec["id"],
                "question_type": str(rec.get("question_type") or "all"),
                "ground_truth": gt.tolist() if hasattr(gt, "tolist") else gt,
                "prediction": rec["prediction"],
                "normalized_prediction": normalize_answer(rec["prediction"]),
                "exact_match": em,
                "f1": f1,
            }
        )
    by_type: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        by_type.setdefault(s["question_type"], []).append(s)

    def _m(rows, key):
        return float(np.asarray([r[key] for r in rows], dtype=np.float64).mean() * 100.0)

    return {
        "benchmark": "qa",
        "scorer": {
            "source": "SQuAD v1.1/v2.0 evaluate script semantics (normalize_answer, token F1)",
            "scale": "percent",
        },
        "official": {
            "overall": _m(samples, "f1"),
            "metrics": {"exact_match": _m(samples, "exact_match"), "f1": _m(samples, "f1")},
            "per_type": {
                t: {"exact_match": _m(rows, "exact_match"), "f1": _m(rows, "f1"), "count": len(rows)}
                for t, rows in sorted(by_type.items())
            },
        },
        "counts": {"total": len(samples), "per_type": {t: len(r) for t, r in sorted(by_type.items())}},
        "warnings": [],
        "breakdowns": {},
        "samples": samples,
    }
