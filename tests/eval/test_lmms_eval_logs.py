"""lmms-eval `--log_samples` files as each lmms-eval version writes them, thinking-in-space's
`<task>.json` logs and flat doc-bearing jsonl: all score identically.

The writers below re-enact (not copy) the code that writes each format:
* EvolvingLMMs-Lab/lmms-eval `lmms_eval/evaluator.py` (the `example` dict) and
  `lmms_eval/loggers/evaluation_tracker.py::save_results_samples` at
  v0.3.0 (754640a7: `doc` kept, `arguments` turned into a dict),
  v0.6 (e643525c, same since v0.4 b7b4b1d9: `doc` and `arguments` dropped, `resps` dropped when equal),
  v0.7 (ecfb5990: `filtered_resps` [x] flattened to x) and the current main
  (75571cfe: as v0.7, and VSI-Bench's process_results returns one key per sub-score);
* vision-x-nyu/thinking-in-space `lmms_eval/__main__.py` (51e089c): `{"args", "model_configs",
  "logs": [example, ...] sorted by doc_id, "time"}` with `doc` kept.
"""

from __future__ import annotations

import copy
import json

import pytest

from vlmem.eval.predictions import load_predictions
from vlmem.eval.vsibench import score_vsibench

DOCS = [
    {"id": 11, "dataset": "scannet", "scene_name": "scene0000_00", "question_type": "object_counting",
     "question": "How many chair(s) are in this room?", "options": None, "ground_truth": "4", "pruned": False},
    {"id": 12, "dataset": "arkitscenes", "scene_name": "41069025", "question_type": "route_planning",
     "question": "You are a robot...", "options": ["A. Turn left", "B. Turn right"], "ground_truth": "B",
     "pruned": True},
    {"id": 13, "dataset": "scannetpp", "scene_name": "0a5c013435", "question_type": "object_rel_direction_easy",
     "question": "If I am standing by the sofa...", "options": ["A. left", "B. right"], "ground_truth": "A",
     "pruned": False},
    {"id": 14, "dataset": "scannet", "scene_name": "scene0011_00", "question_type": "room_size_estimation",
     "question": "What is the size of this room?", "options": None, "ground_truth": "22.4", "pruned": False},
]
RESPONSES = ["4", "A.", "A", "20"]
CURRENT_METRIC_KEYS = ("vsibench_overall", "obj_appearance_order_accuracy", "object_abs_distance_mra",
                       "object_counting_mra", "object_rel_distance_accuracy", "object_size_estimation_mra",
                       "room_size_estimation_mra", "route_planning_accuracy", "object_rel_direction_accuracy")


def _example(doc_id: int, doc: dict, resp: str, metric_keys=("vsibench_score",)) -> dict:
    """lmms-eval evaluator.py: the per-sample dict before the logger touches it."""
    scored = {**copy.deepcopy(doc), "prediction": resp, "accuracy": 0.0}  # process_results adds fields to doc
    example = {"doc_id": doc_id, "doc": copy.deepcopy(doc), "target": doc["ground_truth"],
               "arguments": ["<prompt>", {"max_new_tokens": 16, "temperature": 0}, "test"],
               "resps": [[resp]], "filtered_resps": [resp], "doc_hash": "0" * 64}
    example.update({k: scored for k in metric_keys})
    return example


def _v03(example: dict) -> dict:  # 754640a7
    s = copy.deepcopy(example)
    s["arguments"] = {k: v for k, v in enumerate(s["arguments"][1])}
    s["input"] = example["arguments"][0]
    s["target"] = str(s["target"])
    return s


def _v06(example: dict) -> dict:  # e643525c (v0.4 .. v0.6)
    s = copy.deepcopy(example)
    s["input"] = s["arguments"][0]
    if s["filtered_resps"] == s["resps"][0] or s["filtered_resps"] == s["resps"]:
        s.pop("resps")
    s["target"] = str(s["target"])
    s.pop("arguments")
    s.pop("doc")
    return s


def _v07(example: dict) -> dict:  # ecfb5990 (v0.7) and 75571cfe (main)
    s = copy.deepcopy(example)
    s["input"] = s["arguments"][0]
    if isinstance(s["resps"], list) and len(s["resps"]) == 1:
        s["resps"] = s["resps"][0]
    if isinstance(s["filtered_resps"], list) and len(s["filtered_resps"]) == 1:
        s["filtered_resps"] = s["filtered_resps"][0]
    if s["resps"] == s["filtered_resps"]:
        s.pop("resps")
    elif isinstance(s["resps"], list) and len(s["resps"]) == 1 and s["resps"][0] == s["filtered_resps"]:
        s.pop("resps")
    s["target"] = str(s["target"])
    s.pop("arguments")
    s.pop("doc")
    return s


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _files(tmp_path):
    ex = [_example(i, d, r) for i, (d, r) in enumerate(zip(DOCS, RESPONSES, strict=True))]
    ex_now = [_example(i, d, r, CURRENT_METRIC_KEYS) for i, (d, r) in enumerate(zip(DOCS, RESPONSES, strict=True))]
    tis = {"args": {"tasks": "vsibench"}, "model_configs": {"task": "vsibench"},
           "logs": sorted(ex, key=lambda e: e["doc_id"]), "time": "20250101_000000"}
    (tmp_path / "vsibench.json").write_text(json.dumps(tis, indent=4))
    return {
        "lmms-eval v0.3": _jsonl(tmp_path / "v03_samples_vsibench.jsonl", [_v03(e) for e in ex]),
        "lmms-eval v0.6": _jsonl(tmp_path / "v06_samples_vsibench.jsonl", [_v06(e) for e in ex]),
        "lmms-eval v0.7": _jsonl(tmp_path / "v07_samples_vsibench.jsonl", [_v07(e) for e in ex]),
        "lmms-eval main": _jsonl(tmp_path / "main_samples_vsibench.jsonl", [_v07(e) for e in ex_now]),
        "thinking-in-space logs": tmp_path / "vsibench.json",
        "flat jsonl": _jsonl(tmp_path / "flat.jsonl", [{**d, "prediction": r} for d, r in zip(DOCS, RESPONSES, strict=True)]),
    }


def test_every_log_format_scores_identically(tmp_path):
    files = _files(tmp_path)
    first = json.loads(files["lmms-eval v0.6"].read_text().splitlines()[0])
    assert "doc" not in first and first["filtered_resps"] == ["4"]  # the shape that used to be rejected
    assert json.loads(files["lmms-eval main"].read_text().splitlines()[0])["filtered_resps"] == "4"
    scores = {}
    for name, path in files.items():
        records = load_predictions(path)
        assert [str(r["id"]) for r in records] == ["11", "12", "13", "14"], name
        assert [r["prediction"] for r in records] == RESPONSES, name
        result = score_vsibench(records)
        scores[name] = (result["official"]["overall"], result["debiased"]["official_overall"],
                        result["official"]["tasks"])
    reference = scores["flat jsonl"]
    for name, got in scores.items():
        assert got == reference, name
    # counting 1, route "A." vs B 0, rel-direction easy only (main raises KeyError: e6a72f rule) 1/3, room 0.8
    assert reference[0] == pytest.approx((1.0 + 0.0 + 1 / 3 + 0.8) / 4 * 100)
    assert reference[1] != reference[0]  # the pruned route-planning row is left out of the debiased score
