"""Blind baselines (vlmem/eval/baselines.py): chance, best constant MRA, trained-on marks, reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vlmem.eval.baselines import (
    ORACLE,
    baseline_scores,
    baselines_for,
    best_constant,
    mra_of_constant,
    qa_baselines,
    spec_baselines,
)
from vlmem.eval.report import score_predictions_file
from vlmem.eval.vsibench import VSIBENCH, mean_relative_accuracy


def test_mra_of_constant_is_the_official_mra():
    targets = [1.0, 2.0, 3.5, 10.0]
    for c in (0.7, 2.0, 3.0, 9.5):
        assert mra_of_constant(c, targets) == pytest.approx(np.mean([mean_relative_accuracy(c, t) for t in targets]))


def test_best_constant_of_a_hand_made_set():
    # one answer: answering it exactly scores 1.0
    assert best_constant([4.0]) == 4.0 and mra_of_constant(4.0, [4.0]) == 1.0
    # {2, 2, 100}: answering 2 scores (1 + 1 + 0) / 3; no number scores more (100 is too far from 2)
    c = best_constant([2.0, 2.0, 100.0])
    assert mra_of_constant(c, [2.0, 2.0, 100.0]) == pytest.approx(2 / 3)
    # {4, 6}: answering 4 scores (1 + 0.4) / 2 = 0.7; 4.2 does better, 0.05 from 4 (10/10 thresholds, the
    # official float comparison included) and 0.3 from 6 (5/10): 0.75. An exhaustive grid agrees.
    grid = np.linspace(0.5, 12, 23001)
    brute = max(mra_of_constant(x, [4.0, 6.0]) for x in grid)
    c = best_constant([4.0, 6.0])
    assert mra_of_constant(4.0, [4.0, 6.0]) == pytest.approx(0.7)
    assert mra_of_constant(c, [4.0, 6.0]) == pytest.approx(brute) == pytest.approx(0.75)


def test_best_constant_beats_a_grid_on_random_answers():
    rng = np.random.default_rng(0)
    answers = rng.lognormal(1.0, 0.6, size=200)
    c = best_constant(answers)
    grid = np.linspace(answers.min() / 2, answers.max(), 4000)
    assert mra_of_constant(c, answers) >= max(mra_of_constant(x, answers) for x in grid) - 1e-12


def _mc(i, qtype, n_options):
    return {"id": str(i), "question_type": qtype, "ground_truth": "A", "prediction": "A",
            "options": [f"{chr(65 + k)}. x" for k in range(n_options)]}


def _num(i, qtype, gt):
    return {"id": str(i), "question_type": qtype, "ground_truth": str(gt), "prediction": "1"}


def test_chance_and_constant_per_task_and_trained_marks():
    records = [_mc(0, "object_rel_distance", 4), _mc(1, "object_rel_distance", 2),
               _mc(2, "object_rel_direction_easy", 2),
               _num(3, "object_counting", 4), _num(4, "object_counting", 6), _num(5, "room_size_estimation", 20)]
    train = [{"question_type": "object_counting", "ground_truth": "4"}] * 3
    b = spec_baselines(VSIBENCH, records, train, trained_types=["object_counting"])
    t = b["tasks"]
    assert t["object_rel_distance"]["chance"] == pytest.approx(100 * (1 / 4 + 1 / 2) / 2)
    # the official aggregation: the three rel-direction levels averaged with equal weight (missing -> 0)
    assert t["object_rel_direction"]["chance"] == pytest.approx(100 * 0.5 / 3)
    assert t["object_rel_direction"]["constant"] is None and t["object_counting"]["chance"] is None
    # counting: the constant comes from the training answers (4), scored on the evaluated 4 and 6
    assert t["object_counting"]["constant_value"] == 4.0
    assert t["object_counting"]["constant_source"] == "training split"
    assert t["object_counting"]["constant"] == pytest.approx(100 * (1.0 + mean_relative_accuracy(4.0, 6.0)) / 2)
    # no training answers of room size: chosen on the evaluated questions, and said so
    assert t["room_size_estimation"]["constant_source"] == ORACLE and t["room_size_estimation"]["constant"] == 100.0
    assert t["route_planning"]["chance"] is None and t["route_planning"]["constant"] is None
    assert t["object_counting"]["trained"] and not t["object_rel_distance"]["trained"]
    assert b["trained_tasks"] == ["object_counting"]
    # overall: the official aggregate of the per-task baselines
    tasks = [t["object_rel_distance"]["chance"], t["object_rel_direction"]["chance"],
             t["object_counting"]["constant"], t["room_size_estimation"]["constant"]]
    assert b["overall"] == pytest.approx(np.mean(tasks))


def test_qa_constant_is_the_most_frequent_training_answer():
    records = [{"id": "1", "question_type": "color", "ground_truth": "red", "prediction": "x"},
               {"id": "2", "question_type": "color", "ground_truth": "blue", "prediction": "x"}]
    train = [{"question_type": "color", "ground_truth": g} for g in ("red", "red", "blue")]
    b = qa_baselines(records, train, ["color"])
    assert b["per_type"]["color"]["constant"] == "red"
    assert b["per_type"]["color"]["exact_match"] == 50.0 and b["per_type"]["color"]["trained"]


def test_reports_and_ablation_rows_carry_baselines(tmp_path):
    records = [_mc(0, "object_rel_distance", 4), _num(1, "object_counting", 3), _num(2, "object_counting", 3)]
    path = tmp_path / "preds.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = score_predictions_file(path, "vsibench", out_dir=tmp_path / "out")
    md = (tmp_path / "out" / "vsibench.md").read_text()
    assert "chance / best const." in md and "## Baselines" in md and ORACLE in md
    saved = json.loads((tmp_path / "out" / "vsibench.json").read_text())
    assert saved["baselines"]["tasks"]["object_rel_distance"]["chance"] == 25.0
    assert saved["baselines"]["tasks"]["object_counting"]["constant"] == 100.0
    flat, trained = baseline_scores(result)
    assert flat["object_rel_distance"] == 25.0 and flat["overall"] == pytest.approx(62.5) and trained == set()
    # without a run nothing is marked trained; through baselines_for the same numbers come back
    assert baselines_for("vsibench", records)["tasks"] == result["baselines"]["tasks"]


def test_ablation_markdown_has_a_baseline_row(tmp_path):
    from vlmem.ablate import write_tables

    rows = [{"variant": "full", "seed": 0, "overall": 40.0, "object_counting": 40.0, "minutes": 1.0}]
    write_tables(rows, tmp_path, ({"overall": 30.5, "object_counting": 30.5}, {"object_counting"}))
    md = (tmp_path / "ablation.md").read_text()
    assert "| *blind baseline* | - | 30.50 | 30.50 | - | - |" in md
    assert "object_counting*" in md and "trained on" in md
