"""Loading predictions: jsonl, json, parquet, lmms-eval --log_samples shapes, errors."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlmem.errors import UsageError
from vlmem.eval.predictions import load_predictions

ROWS = [
    {
        "id": 1,
        "question_type": "object_counting",
        "ground_truth": "3",
        "prediction": "3",
        "dataset": "scannet",
    },
    {
        "id": 2,
        "question_type": "route_planning",
        "ground_truth": "B",
        "prediction": "B.",
        "dataset": "arkitscenes",
    },
]


def _write_jsonl(path, objs):
    path.write_text("\n".join(json.dumps(o) for o in objs) + "\n", encoding="utf-8")


def test_jsonl(tmp_path):
    p = tmp_path / "preds.jsonl"
    _write_jsonl(p, ROWS)
    recs = load_predictions(p)
    assert recs == ROWS


def test_parquet(tmp_path):
    p = tmp_path / "preds.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), p)
    recs = load_predictions(p)
    assert [r["prediction"] for r in recs] == ["3", "B."]
    assert recs[1]["dataset"] == "arkitscenes"


def test_parquet_missing_column(tmp_path):
    p = tmp_path / "preds.parquet"
    pq.write_table(pa.Table.from_pylist([{k: v for k, v in r.items() if k != "prediction"} for r in ROWS]), p)
    with pytest.raises(UsageError, match="missing column 'prediction'"):
        load_predictions(p)


def _lmms_entry(doc_id, doc, text):
    return {
        "doc_id": doc_id,
        "doc": doc,
        "target": doc["ground_truth"],
        "arguments": [["prompt", {"max_new_tokens": 16}]],
        "resps": [[text]],
        "filtered_resps": [text],
        "vsibench_score": {**doc, "prediction": text, "accuracy": 1.0},
        "doc_hash": "x",
    }


DOC = {
    "id": 17,
    "dataset": "scannet",
    "scene_name": "scene0000_00",
    "question_type": "object_rel_distance",
    "question": "Which is closer?",
    "options": ["A. chair", "B. table"],
    "ground_truth": "A",
}


def test_lmms_eval_log_samples_jsonl(tmp_path):
    p = tmp_path / "samples_vsibench.jsonl"
    _write_jsonl(p, [_lmms_entry(0, DOC, "A.")])
    (rec,) = load_predictions(p)
    assert rec["id"] == 17 and rec["prediction"] == "A." and rec["ground_truth"] == "A"
    assert rec["question_type"] == "object_rel_distance" and rec["options"] == DOC["options"]


def test_lmms_eval_old_json_logs_and_nested_resps(tmp_path):
    doc = {k: v for k, v in DOC.items() if k != "id"}
    entry = _lmms_entry(5, doc, "B")
    entry["filtered_resps"] = [["B"]]  # nested lists are unwrapped
    p = tmp_path / "vsibench.json"
    p.write_text(json.dumps({"args": {}, "logs": [entry]}), encoding="utf-8")
    (rec,) = load_predictions(p)
    assert rec["id"] == 5 and rec["prediction"] == "B"


def test_lmms_eval_prediction_from_score_dict(tmp_path):
    entry = _lmms_entry(0, DOC, "A")
    del entry["resps"], entry["filtered_resps"]
    p = tmp_path / "s.json"
    p.write_text(json.dumps([entry]), encoding="utf-8")
    assert load_predictions(p)[0]["prediction"] == "A"


def test_missing_field_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [dict(ROWS[0], id=i) for i in range(6)] + [{"id": 7, "question_type": "x", "ground_truth": "1"}]
    _write_jsonl(tmp_path / "predictions.jsonl", rows)
    with pytest.raises(UsageError) as exc:
        load_predictions("predictions.jsonl")
    assert str(exc.value) == (
        "predictions.jsonl line 7: missing field 'prediction' (expected id, question_type, ground_truth, prediction)"
    )


def test_bad_files(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_predictions(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n{oops\n', encoding="utf-8")
    with pytest.raises(UsageError, match="line 1: missing field 'question_type'"):
        load_predictions(bad)
    bad.write_text(json.dumps(ROWS[0]) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(UsageError, match="line 2: invalid JSON"):
        load_predictions(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(UsageError, match="no predictions"):
        load_predictions(empty)
    other = tmp_path / "preds.csv"
    other.write_text("id\n", encoding="utf-8")
    with pytest.raises(UsageError, match="unsupported"):
        load_predictions(other)
