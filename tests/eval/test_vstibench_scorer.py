"""VSTI-Bench scorer (VLM-3R lmms-eval semantics)."""

from __future__ import annotations

import pytest

from vlmem.eval.vstibench import MCA_QUESTION_TYPES, NA_QUESTION_TYPES, score_vstibench


def _rec(i, qtype, gt, pred, **kw):
    return {"id": i, "question_type": qtype, "ground_truth": gt, "prediction": pred, **kw}


def test_mc_scored_against_mc_answer_and_overall_plain_mean():
    recs = [
        _rec(1, "camera_movement_direction", "forward", "A", mc_answer="A"),
        _rec(2, "camera_movement_direction", "forward", "forward", mc_answer="A"),  # text != letter
        _rec(3, "obj_obj_relative_pos_lr", "left", "b.", mc_answer="B"),
        _rec(4, "camera_displacement", "2.0", "3", mc_answer=None),
        _rec(5, "camera_obj_abs_dist", "1.5", "1.5"),
    ]
    res = score_vstibench(recs)
    t = res["official"]["tasks"]
    assert len(t) == 10 == len(MCA_QUESTION_TYPES + NA_QUESTION_TYPES)
    assert t["camera_movement_direction"] == pytest.approx(50.0)
    assert t["obj_obj_relative_pos_lr"] == 100.0
    assert t["camera_displacement"] == pytest.approx(10.0)  # |3-2|/2 = 0.5 -> 1/10
    assert t["camera_obj_abs_dist"] == 100.0
    assert t["obj_obj_relative_pos_nf"] is None
    assert res["official"]["overall"] == pytest.approx((0.5 + 1 + 0.1 + 1) / 4 * 100)
    assert not any("mc_answer" in w for w in res["warnings"])
    assert any("left out of overall" in w for w in res["warnings"])


def test_missing_mc_answer_falls_back_with_warning():
    res = score_vstibench([_rec(1, "camera_obj_rel_dist_v1", "A", "A")])
    assert res["official"]["overall"] == 100.0
    assert any("mc_answer" in w for w in res["warnings"])


def test_vsibench_type_rejected():
    from vlmem.errors import UsageError

    with pytest.raises(UsageError, match="valid types"):
        score_vstibench([_rec(1, "object_counting", "3", "3")])
