import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_real as fx  # noqa: E402

from vlmem.data.vlm3r import parse_human, prepare_vlm3r  # noqa: E402
from vlmem.errors import DataError, UsageError  # noqa: E402


def test_parse_human_prompts():
    q, opts = parse_human("<image>These are frames of a video.\nWhich is closest to the toilet?\nA. sink\nB. door\n"
                          "Please select the correct option from the previous choices.")
    assert q == "Which is closest to the toilet?" and opts == ["A. sink", "B. door"]
    q, opts = parse_human("<image>\nHow big is it? Please answer the question using a single word or phrase.")
    assert q == "How big is it?" and opts is None
    q, opts = parse_human("<image>\nList the steps:\nB. second\nC. third")
    assert opts is None and q.endswith("C. third")


def test_prepare_vlm3r(tmp_path):
    path, videos = fx.make_vlm3r(tmp_path)
    out = tmp_path / "out"
    manifest = prepare_vlm3r(path, videos, out)
    rows = {r["id"]: r for r in pq.read_table(out / "qa.parquet").to_pylist()}
    assert sorted(rows) == ["vlm3r_0", "vlm3r_1", "vlm3r_3"]
    r0, r1, r3 = rows["vlm3r_0"], rows["vlm3r_1"], rows["vlm3r_3"]
    assert r0["question"] == "How many chair(s) are in this room?" and r0["answer_kind"] == "numeric"
    assert r0["ground_truth"] == "2" and r0["video"] == "videos/scene0000_00.mp4" and r0["num_frames"] == 4
    assert r1["options"] == ["A. left", "B. right"] and r1["ground_truth"] == "B" and r1["answer_kind"] == "mc"
    assert r1["question"].startswith("If I am standing by the chair") and "Options" not in r1["question"]
    assert r3["answer_kind"] == "open" and r3["question_type"] == "open_qa"
    reasons = {s["item"]: s["reason"] for s in manifest["skipped"]}
    assert "missing" in reasons["record vlm3r_2"] and "scene0099_00.mp4" in reasons["record vlm3r_2"]
    assert "human -> gpt" in reasons["record vlm3r_4"]
    assert manifest["missing_videos"] == ["scannet/scene0099_00.mp4"]


def test_vlm3r_errors(tmp_path):
    path, videos = fx.make_vlm3r(tmp_path)
    with pytest.raises(UsageError):
        prepare_vlm3r(tmp_path / "none.json", videos, tmp_path / "o")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="nothing usable"):
        prepare_vlm3r(path, empty, tmp_path / "o")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops\n")
    with pytest.raises(DataError, match="bad.json"):
        prepare_vlm3r(bad, videos, tmp_path / "o2")
