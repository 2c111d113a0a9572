"""Streaming evaluation scoring: MRA / MC per record, breakdown by stream length and query time,
the comparison table and plot over runs and seeds."""

import json

import pytest

from vlmem.eval.stream import compare, query_position, score_streams, write_stream_report


def _rec(n, q, kind, gt, pred, qtype):
    return {"num_frames": n, "query_frame": q, "answer_kind": kind, "ground_truth": gt, "prediction": pred,
            "question_type": qtype}


RECORDS = [
    _rec(32, 31, "numeric", "10", "10", "stream_counting"),   # MRA 1
    _rec(32, 7, "numeric", "4", "2", "stream_counting"),      # |2-4|/4 = 0.5 -> 0.1 (only threshold 0.5)
    _rec(32, 31, "mc", "B", "B", "stream_recall"),            # 1
    _rec(320, 319, "numeric", "100", "50", "stream_counting"),  # 0.1
    _rec(320, 159, "mc", "A", "C", "stream_recall"),          # 0
]


def test_scores_by_length_and_query():
    res = score_streams([dict(r) for r in RECORDS], perf={32: {"ms_per_frame": 2.0, "rss_mb": 100.0}})
    short, long = res["by_length"]["32"], res["by_length"]["320"]
    assert short["stream_counting"] == pytest.approx(55.0) and short["stream_recall"] == 100.0
    assert short["overall"] == pytest.approx(77.5) and short["questions"] == 3 and short["ms_per_frame"] == 2.0
    assert long["stream_counting"] == pytest.approx(10.0) and long["stream_recall"] == 0.0
    assert res["official"]["per_type"]["stream_counting"] == pytest.approx((100 + 10 + 10) / 3)
    assert res["official"]["metrics"] == {"frames_32": pytest.approx(77.5), "frames_320": pytest.approx(5.0)}
    assert res["counting_by_query"] == {"10%": pytest.approx(10.0), "100%": pytest.approx(55.0)}


def test_query_position_labels():
    assert query_position({"query_frame": 7, "num_frames": 32}) == "10%"  # after room 1 of 4: 25%
    assert query_position({"query_frame": 159, "num_frames": 320}) == "50%"
    assert query_position({"query_frame": 3199, "num_frames": 3200}) == "100%"


def test_report_and_compare_over_seeds(tmp_path):
    for name, preds in (("a_seed0", "10"), ("a_seed1", "9"), ("b", "1")):
        recs = [dict(r, prediction=preds if r["answer_kind"] == "numeric" else r["prediction"]) for r in RECORDS]
        res = score_streams(recs, perf={32: {"ms_per_frame": 1.0, "rss_mb": 10.0}, 320: {"ms_per_frame": 1.5,
                                                                                         "rss_mb": 10.0}})
        res["memory"] = name
        files = write_stream_report(res, tmp_path / name / "eval")
        assert json.loads(files["json"].read_text())["by_length"]["32"]["questions"] == 3
        assert files["png"].stat().st_size > 1000 and "| 320 |" in files["md"].read_text()
    means = compare({"a": [tmp_path / "a_seed0", tmp_path / "a_seed1"], "b": [tmp_path / "b"],
                     "missing": [tmp_path / "nope"]}, tmp_path / "cmp")
    assert set(means) == {"a", "b"} and means["a"][32] > means["b"][32]
    md = (tmp_path / "cmp" / "long_horizon.md").read_text()
    assert "| a | 2 |" in md and (tmp_path / "cmp" / "long_horizon.png").stat().st_size > 1000
