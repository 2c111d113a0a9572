"""Report files (json + md, atomic), rich table, score_predictions_file end to end."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from vlmem.errors import UsageError
from vlmem.eval.report import print_report, score_predictions_file, write_report
from vlmem.eval.vsibench import score_vsibench

RECS = [
    {
        "id": 1,
        "question_type": "object_counting",
        "ground_truth": "4",
        "prediction": "nan",
        "dataset": "scannet",
    },
    {"id": 2, "question_type": "route_planning", "ground_truth": "B", "prediction": "(B)", "num_frames": 16},
]


def test_write_report(tmp_path):
    result = score_vsibench(RECS)
    files = write_report(result, tmp_path / "eval", "vsibench")
    data = json.loads(files["json"].read_text(encoding="utf-8"))
    assert data["official"]["overall"] == result["official"]["overall"]
    assert data["samples"][0]["parsed"] == "nan"  # non-finite floats written as strings
    assert set(data) >= {"official", "lenient", "counts", "breakdowns", "samples", "scorer", "warnings"}
    md = files["md"].read_text(encoding="utf-8")
    assert "| overall |" in md and "NOT the official" in md and "## By dataset" in md
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["vsibench.json", "vsibench.md"]


def test_print_report():
    console = Console(record=True, width=120)
    print_report(score_vsibench(RECS), console)
    text = console.export_text()
    assert "overall" in text and "object_counting" in text and "warning" in text


def test_score_predictions_file(tmp_path):
    p = tmp_path / "preds.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in RECS), encoding="utf-8")
    res = score_predictions_file(p, "vsibench", tmp_path / "out")
    assert (tmp_path / "out" / "vsibench.json").exists() and (tmp_path / "out" / "vsibench.md").exists()
    assert res["official"]["tasks"]["route_planning"] == 0.0
    assert res["lenient"]["tasks"]["route_planning"] == 100.0

    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"id": 1, "ground_truth": ["a cat"], "prediction": "cat"}), encoding="utf-8")
    res = score_predictions_file(qa, "qa", tmp_path / "out", console=Console(record=True))
    assert res["official"]["metrics"]["exact_match"] == 100.0
    assert "| overall |" in (tmp_path / "out" / "qa.md").read_text(encoding="utf-8")

    with pytest.raises(UsageError, match="unknown benchmark"):
        score_predictions_file(p, "mmbench")
