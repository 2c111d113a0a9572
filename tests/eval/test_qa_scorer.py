"""Open QA scoring: SQuAD-style EM / token F1."""

from __future__ import annotations

import pytest

from vlmem.eval.qa import exact_match_score, f1_score, normalize_answer, score_qa, score_sample


def test_normalize():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theater") == "theater"  # articles only as whole words


def test_em_f1():
    assert exact_match_score("The cat.", "cat") == 1.0
    assert exact_match_score("a dog", "cat") == 0.0
    assert f1_score("a red chair", "the red sofa") == pytest.approx(0.5)
    assert f1_score("red red chair", "red chair") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert f1_score("", "") == 1.0
    assert f1_score("the", "cat") == 0.0  # empty after normalisation
    assert f1_score("blue", "red") == 0.0


def test_max_over_references():
    assert score_sample("red sofa", ["blue chair", "red sofa"]) == (1.0, 1.0)
    em, f1 = score_sample("red chair", ["red sofa", "green chair"])
    assert em == 0.0 and f1 == pytest.approx(0.5)


def test_score_qa():
    res = score_qa(
        [
            {"id": 1, "ground_truth": "cat", "prediction": "The cat"},
            {"id": 2, "ground_truth": ["red sofa"], "prediction": "red chair", "question_type": "color"},
        ]
    )
    assert res["official"]["metrics"]["exact_match"] == pytest.approx(50.0)
    assert res["official"]["metrics"]["f1"] == pytest.approx(75.0)
    assert res["official"]["per_type"]["color"]["count"] == 1
    assert res["samples"][1]["f1"] == pytest.approx(0.5)
