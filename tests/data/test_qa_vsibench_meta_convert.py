"""The vsibench-meta converter (`prepare_vsibench_meta`)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from vlmem.data.scene import Scene
from vlmem.data.vsibench_meta import prepare_vsibench_meta
from vlmem.data.writer import QA_SCHEMA
from vlmem.errors import DataError, UsageError

META_DIR = Path(__file__).parent / "vsibench-meta"
SCANNET = META_DIR / "scannet_meta_info_val.json"


def test_convert_real_scannet_scenes(tmp_path):
    out = tmp_path / "ds"
    manifest = prepare_vsibench_meta(SCANNET, out, seed=0)
    table = pq.read_table(out / "qa.parquet")
    assert table.schema.names == [n for n in QA_SCHEMA.names if n != "pruned"]  # pruned: VSI-Bench rows only
    rows = table.to_pylist()
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["counts"] == manifest["counts"]
    assert manifest["source"] == "vsibench-meta"
    assert manifest["counts"]["questions"] == len(rows)
    assert manifest["counts"]["scenes"] == 88 == len(list((out / "scenes").glob("*.json")))
    assert manifest["counts"]["skipped"] == 0 and manifest["skipped"] == []
    assert manifest["counts"]["by_question_type"] == dict(Counter(r["question_type"] for r in rows))
    assert {r["dataset"] for r in rows} == {"scannet"}
    assert {r["video"] for r in rows} == {""}
    assert manifest["videos"]["requested"] is False and manifest["videos"]["scenes_without_video"] == 88
    fixed = {(n["scene"], n["category"]) for n in manifest["annotation_fixes"]}
    assert ("scene0500_00", "chair") in fixed and ("scene0378_01", "printer") in fixed
    # scenes/<scene>.json reloads as the same scene and regenerates the same questions
    from vlmem.data.qa import generate_questions

    scene = Scene.load_json(out / "scenes" / "scene0500_00.json")
    assert set(scene.extras["exclude_categories"]) == {"chair", "window"}
    again = generate_questions(scene, seed=0)
    assert again == [r for r in rows if r["scene_name"] == "scene0500_00"]
    # refuses to overwrite without overwrite=True
    with pytest.raises(UsageError):
        prepare_vsibench_meta(SCANNET, out)


def _tiny_meta(tmp_path: Path) -> Path:
    data = json.loads(SCANNET.read_text())
    names = list(data)[:3]
    entries = {n: data[n] for n in names}
    broken = dict(data[names[2]])
    del broken["room_size"]
    entries["broken_scene"] = broken
    path = tmp_path / "scannet_meta_info_val.json"
    path.write_text(json.dumps(entries))
    return path


def test_bad_entries_are_skipped_with_reason(tmp_path):
    meta = _tiny_meta(tmp_path)
    manifest = prepare_vsibench_meta([meta, tmp_path / "scannet_meta_info_val.json"], tmp_path / "ds",
                                     overwrite=True)
    reasons = {s["item"]: s["reason"] for s in manifest["skipped"]}
    assert any("broken_scene" in k and "room_size" in v for k, v in reasons.items())
    assert any("duplicate scene name" in v for v in reasons.values())  # same file given twice
    assert manifest["counts"]["scenes"] == 3


def test_videos_linked_and_missing_ones_skipped(tmp_path):
    meta = _tiny_meta(tmp_path)
    names = [n for n in json.loads(meta.read_text()) if n != "broken_scene"]
    vids = tmp_path / "videos"
    (vids / "scannet").mkdir(parents=True)
    (vids / f"{names[0]}.mp4").write_bytes(b"fake0")
    (vids / "scannet" / f"{names[1]}.mp4").write_bytes(b"fake1")
    out = tmp_path / "ds"
    manifest = prepare_vsibench_meta(meta, out, videos=vids)
    rows = pq.read_table(out / "qa.parquet").to_pylist()
    assert {r["scene_name"] for r in rows} == set(names[:2])
    for r in rows:
        assert r["video"] == f"videos/{r['scene_name']}.mp4"
        assert (out / r["video"]).read_bytes() == (b"fake0" if r["scene_name"] == names[0] else b"fake1")
    reasons = {s["item"]: s["reason"] for s in manifest["skipped"]}
    assert "no video" in reasons[names[2]]
    assert manifest["videos"]["linked"] + manifest["videos"]["copied"] == 2
    assert Scene.load_json(out / "scenes" / f"{names[0]}.json").video == f"videos/{names[0]}.mp4"


def test_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        prepare_vsibench_meta(tmp_path / "missing.json", tmp_path / "ds")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="nothing usable"):
        prepare_vsibench_meta(bad, tmp_path / "ds2")
    assert not (tmp_path / "ds2").exists()
