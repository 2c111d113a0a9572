"""VSI-Bench scorer: official semantics (thinking-in-space utils.py) + lenient parser."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlmem.errors import DataError, UsageError
from vlmem.eval.vsibench import (
    MRA_THRESHOLDS,
    VSIBENCH_TASKS,
    build_vsibench_prompt,
    fuzzy_match,
    lenient_mc,
    lenient_numeric,
    mean_relative_accuracy,
    official_mc,
    official_numeric,
    score_vsibench,
    to_float,
)


def _reference_mra(pred: float, gt: float) -> float:
    # the reference arithmetic, written out: python-float distance vs numpy thresholds
    num_pts = (0.95 - 0.5) / 0.05 + 2
    thr = np.linspace(0.5, 0.95, int(num_pts))
    return float((abs(pred - gt) / gt <= 1 - thr).mean())


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    "prediction, parsed, score",
    [
        ("B", "B", 1.0),
        ("B.", "B", 1.0),
        ("b", "b", 1.0),  # case-insensitive
        ("B. chair", "B", 1.0),  # first token "B." -> "B"
        ("B..", "B", 1.0),
        ("B\n", "B", 1.0),  # strip() after rstrip('.')
        ("B.\n", "B.", 0.0),  # rstrip('.') happens before strip(): dot survives
        (" B", "", 0.0),  # split(' ')[0] of a leading space is ''
        ("(B)", "(B)", 0.0),
        ("The answer is B.", "The", 0.0),
        ("B) chair", "B)", 0.0),
        ("C", "C", 0.0),
        ("", "", 0.0),
    ],
)
def test_official_mc_parsing(prediction, parsed, score):
    assert official_mc(prediction, "B") == (parsed, score)


@pytest.mark.parametrize(
    "prediction, letter, score",
    [
        ("(B)", "B", 1.0),
        ("The answer is B.", "B", 1.0),
        ("Answer: B", "B", 1.0),
        ("B) chair", "B", 1.0),
        (" B", "B", 1.0),
        ("b", "B", 1.0),
        ("B.\n", "B", 1.0),
        ("(A)", "A", 0.0),
        ("I don't know", None, 0.0),
    ],
)
def test_lenient_mc(prediction, letter, score):
    assert lenient_mc(prediction, "B", None) == (letter, score)


def test_lenient_mc_option_text():
    opts = ["A. table", "B. chair", "C. sofa"]
    assert lenient_mc("chair", "B", opts) == ("B", 1.0)
    assert lenient_mc("It is the sofa.", "B", opts) == ("C", 0.0)


def test_fuzzy_match_and_to_float():
    assert fuzzy_match("3.5 meters") == "3.5"
    assert fuzzy_match(3) == "3"
    assert to_float("1e2") == float("1e2") == 100.0
    assert to_float("three") is None
    assert to_float(" 4 ") == 4.0
    assert math.isnan(to_float("nan"))
    assert to_float("1_000") == 1000.0  # python float() semantics


@pytest.mark.parametrize(
    "prediction, parsed, score",
    [
        ("3.5 meters", 3.5, _reference_mra(3.5, 3.5)),
        ("3.5", 3.5, 1.0),
        ("three", None, 0.0),  # unparseable -> 0
        ("about 3.5 meters", None, 0.0),
        ("3.5m", None, 0.0),
        ("1e2", 100.0, 0.0),
        ("3.5.", 3.5, 1.0),
    ],
)
def test_official_numeric_parsing(prediction, parsed, score):
    got_parsed, got_score = official_numeric(prediction, "3.5")
    assert got_parsed == parsed and got_score == score


def test_official_numeric_nan_and_inf_score_zero():
    p, s = official_numeric("nan", "10")
    assert math.isnan(p) and s == 0.0
    assert official_numeric("inf", "10") == (math.inf, 0.0)


def test_lenient_numeric():
    assert lenient_numeric("about 3.5 meters", "3.5") == (3.5, 1.0)
    assert lenient_numeric("three", "3") == (3.0, 1.0)
    assert lenient_numeric("1,200 cm", "1200") == (1200.0, 1.0)
    assert lenient_numeric("no idea", "3") == (None, 0.0)


# ------------------------------------------------------------------ MRA


def test_mra_thresholds():
    assert len(MRA_THRESHOLDS) == 10
    np.testing.assert_array_equal(MRA_THRESHOLDS, np.linspace(0.5, 0.95, 10))


@pytest.mark.parametrize(
    "pred, gt, expected",
    [
        (10, 10, 1.0),
        (15, 10, 0.1),  # |5|/10 = 0.5 <= 1 - 0.5 only
        (5, 10, 0.1),
        (16, 10, 0.0),
        (14.5, 10, 0.1),  # 0.45 > 1 - 0.55 (= 0.44999999999999996): float boundary as in the reference
        (12, 10, 0.6),  # 0.2 > 1 - 0.8 (= 0.19999999999999996)
        (18, 20, 0.9),
        (100, -5, 1.0),  # negative gt: negative distance, always <= (reference quirk)
    ],
)
def test_mra_boundaries(pred, gt, expected):
    assert (
        mean_relative_accuracy(float(pred), float(gt)) == expected == _reference_mra(float(pred), float(gt))
    )


def test_mra_matches_reference_on_random_values():
    rng = np.random.default_rng(0)
    for _ in range(200):
        gt = float(rng.uniform(0.1, 10))
        pred = float(gt * rng.uniform(0.3, 1.7))
        assert mean_relative_accuracy(pred, gt) == _reference_mra(pred, gt)


def test_ground_truth_zero():
    # reference: abs(pred - 0) / 0 -> ZeroDivisionError (uncaught) -> we raise DataError
    recs = [{"id": 1, "question_type": "object_counting", "ground_truth": "0", "prediction": "0"}]
    with pytest.raises(DataError, match="ground truth is 0"):
        score_vsibench(recs)
    # an unparseable prediction hits the TypeError branch first -> 0, no error
    recs[0]["prediction"] = "none"
    res = score_vsibench(recs)
    assert res["samples"][0]["score"] == 0.0


# ------------------------------------------------------------------ aggregation


def _rec(i, qtype, gt, pred, **kw):
    return {"id": i, "question_type": qtype, "ground_truth": gt, "prediction": pred, **kw}


def _full_records():
    return [
        _rec(1, "object_rel_direction_easy", "A", "A"),
        _rec(2, "object_rel_direction_easy", "A", "B"),
        _rec(3, "object_rel_direction_medium", "C", "c."),
        _rec(4, "object_rel_direction_hard", "B", "B"),
        _rec(5, "object_rel_direction_hard", "B", "(B)"),
        _rec(6, "object_rel_direction_hard", "B", "A"),
        _rec(7, "object_rel_distance", "D", "D. lamp"),
        _rec(8, "route_planning", "A", "B"),
        _rec(9, "obj_appearance_order", "C", "c"),
        _rec(10, "object_abs_distance", "10", "15"),
        _rec(11, "object_counting", "4", "4"),
        _rec(12, "object_size_estimation", "100", "three"),
        _rec(13, "room_size_estimation", "20", "20 square meters"),
    ]


def test_overall_is_mean_of_8_tasks_with_equal_weight_rel_direction():
    res = score_vsibench(_full_records())
    off = res["official"]
    rel = (0.5 + 1.0 + 1.0 / 3.0) / 3.0  # easy 1/2, medium 1/1, hard 1/3 -> not the pooled 3/6
    assert off["tasks"]["object_rel_direction"] == pytest.approx(rel * 100, abs=1e-12)
    assert list(off["tasks"]) == list(VSIBENCH_TASKS) and len(VSIBENCH_TASKS) == 8
    expected = {
        "object_rel_distance": 100.0,
        "route_planning": 0.0,
        "obj_appearance_order": 100.0,
        "object_abs_distance": 10.0,
        "object_counting": 100.0,
        "object_size_estimation": 0.0,
        "room_size_estimation": 100.0,
    }
    for k, v in expected.items():
        assert off["tasks"][k] == pytest.approx(v, abs=1e-12)
    overall = (rel + 1 + 0 + 1 + 0.1 + 1 + 0 + 1) / 8
    assert off["overall"] == pytest.approx(overall * 100, abs=1e-12)
    # raw = the reference's own dict (fractions, reference key names)
    assert set(off["raw"]) == {
        "object_rel_direction_accuracy",
        "object_rel_distance_accuracy",
        "route_planning_accuracy",
        "obj_appearance_order_accuracy",
        "object_abs_distance_MRA:.5:.95:.05",
        "object_counting_MRA:.5:.95:.05",
        "object_size_estimation_MRA:.5:.95:.05",
        "room_size_estimation_MRA:.5:.95:.05",
        "overall",
    }
    assert off["raw"]["overall"] * 100 == off["overall"]
    assert off["per_type"]["object_rel_direction_hard"] == pytest.approx(100 / 3)
    assert res["counts"]["total"] == 13
    assert res["counts"]["tasks"]["object_rel_direction"] == 6
    assert res["warnings"] == []
    # lenient differs from official only where parsing differs: "(B)" and "three"
    assert res["lenient"]["per_type"]["object_rel_direction_hard"] == pytest.approx(200 / 3)
    assert res["lenient"]["tasks"]["object_size_estimation"] == 0.0  # 3 vs 100 -> still 0
    assert "NOT the official" in res["lenient"]["note"]
    s5 = next(s for s in res["samples"] if s["id"] == 5)
    assert (s5["parsed"], s5["score"], s5["lenient_parsed"], s5["lenient_score"]) == ("(B)", 0.0, "B", 1.0)


def test_missing_task_left_out_of_overall():
    recs = [r for r in _full_records() if r["question_type"] != "route_planning"]
    res = score_vsibench(recs)
    rel = (0.5 + 1.0 + 1.0 / 3.0) / 3.0
    assert res["official"]["tasks"]["route_planning"] is None
    assert res["official"]["overall"] == pytest.approx((rel + 1 + 1 + 0.1 + 1 + 0 + 1) / 7 * 100)
    assert any("route_planning" in w for w in res["warnings"])


def test_missing_rel_direction_level_counts_zero():
    recs = [r for r in _full_records() if r["question_type"] != "object_rel_direction_hard"]
    res = score_vsibench(recs)
    assert res["official"]["tasks"]["object_rel_direction"] == pytest.approx((0.5 + 1.0 + 0.0) / 3 * 100)
    assert res["missing"]["rel_direction_levels"] == ["object_rel_direction_hard"]



def test_absent_rel_direction_main_vs_e6a72f():
    """thinking-in-space main (51e089c) leaves an absent rel-direction task out of overall;
    the side-branch commit e6a72f counts it as a 0 task. vlmem follows main by default."""
    only = [_rec(1, "object_counting", "4", "4"), _rec(2, "route_planning", "A", "B")]
    main = score_vsibench(only)
    side = score_vsibench(only, rule="e6a72f")
    assert main["official"]["tasks"]["object_rel_direction"] is None
    assert main["official"]["overall"] == pytest.approx(50.0)  # (1 + 0) / 2
    assert "object_rel_direction" in main["missing"]["tasks"]
    assert "51e089c" in main["scorer"]["source"] and main["scorer"]["aggregation"] == "main"
    assert side["official"]["tasks"]["object_rel_direction"] == 0.0
    assert side["official"]["overall"] == pytest.approx(100 / 3)  # (1 + 0 + 0) / 3
    assert main["official"]["overall"] - side["official"]["overall"] == pytest.approx(50 - 100 / 3)
    # main: medium/hard without easy stay separate entries of overall (not combined)
    partial = only + [_rec(3, "object_rel_direction_hard", "A", "A")]
    res = score_vsibench(partial)
    assert res["official"]["raw"]["object_rel_direction_hard_accuracy"] == 1.0
    assert res["official"]["overall"] == pytest.approx(200 / 3)


def test_vlm3r_question_types_mapped():
    recs = [_rec(1, "object_rel_direction_v1", "A", "A"), _rec(2, "object_rel_direction_v2", "A", "B"),
            _rec(3, "object_rel_direction_v3", "A", "A"), _rec(4, "object_rel_distance_v2", "C", "C")]
    res = score_vsibench(recs)
    assert res["counts"]["per_type"] == {"object_rel_direction_hard": 1, "object_rel_direction_medium": 1,
                                         "object_rel_direction_easy": 1, "object_rel_distance": 1}
    assert res["official"]["tasks"]["object_rel_direction"] == pytest.approx(200 / 3)


def test_pruned_column_gives_debiased_score():
    recs = [_rec(1, "object_counting", "4", "4", pruned=False), _rec(2, "object_counting", "4", "8", pruned=True),
            _rec(3, "route_planning", "A", "A", pruned=False), _rec(4, "route_planning", "A", "B", pruned=True)]
    res = score_vsibench(recs)
    assert res["official"]["overall"] == pytest.approx(50.0)
    assert res["debiased"]["count"] == 2 and res["debiased"]["pruned"] == 2
    assert res["debiased"]["official_overall"] == pytest.approx(100.0)
    assert "debiased" not in score_vsibench([_rec(1, "object_counting", "4", "4")])


def test_unknown_type_and_missing_field():
    with pytest.raises(UsageError, match="unknown question_type 'foo'"):
        score_vsibench([_rec(1, "foo", "A", "A")])
    with pytest.raises(UsageError, match="missing field 'prediction'"):
        score_vsibench([{"id": 1, "question_type": "route_planning", "ground_truth": "A"}])
    with pytest.raises(UsageError, match="no predictions"):
        score_vsibench([])


def test_breakdowns_by_dataset_and_length():
    recs = [
        _rec(1, "object_counting", "4", "4", dataset="scannet", duration=30),
        _rec(2, "object_counting", "4", "8", dataset="scannet", duration=90),
        _rec(3, "object_counting", "4", "4", dataset="arkitscenes", duration=200.0),
        _rec(4, "object_counting", "4", "4", dataset="arkitscenes", num_frames=64),
        _rec(5, "object_counting", "4", "4", dataset="arkitscenes", num_frames=65),
        _rec(6, "object_counting", "4", "4", dataset="arkitscenes"),
    ]
    res = score_vsibench(recs)
    by_len = res["breakdowns"]["video_length"]
    assert list(by_len) == ["<1 min", "1-2 min", ">2 min", "33-64 frames", ">64 frames", "unknown"]
    assert by_len["1-2 min"]["count"] == 1
    # per group: counting 0 or 100; rel-direction absent -> left out of overall (thinking-in-space main)
    assert by_len["1-2 min"]["tasks"]["object_counting"] == 0.0
    assert by_len["<1 min"]["official_overall"] == pytest.approx(100.0)
    by_ds = res["breakdowns"]["dataset"]
    assert by_ds["scannet"]["count"] == 2 and by_ds["arkitscenes"]["count"] == 4
    assert by_ds["scannet"]["tasks"]["object_counting"] == pytest.approx(50.0)
    assert res["samples"][0]["length_bucket"] == "<1 min"


# ------------------------------------------------------------------ prompt


def test_prompt_matches_reference_layout():
    q = "How many chairs are in this room?"
    assert build_vsibench_prompt(q) == (
        "These are frames of a video.\n" + q + "\nPlease answer the question using a single word or phrase."
    )
    opts = ["A. chair", "B. table", "C. sofa", "D. lamp"]
    assert build_vsibench_prompt("Which is closest?", opts) == (
        "These are frames of a video.\nWhich is closest?\nOptions:\nA. chair\nB. table\nC. sofa\nD. lamp\n"
        "Answer with the option's letter from the given choices directly."
    )
    # the reference decides by question type, not by the presence of options
    assert build_vsibench_prompt(q, ["x"], question_type="object_counting").endswith("single word or phrase.")
    with pytest.raises(UsageError):
        build_vsibench_prompt(q, question_type="route_planning")
