"""prepare_synthetic: a complete dataset folder, atomic, decodable, deterministic."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pyarrow.parquet as pq
import pytest

from vlmem.data.scene import Scene
from vlmem.data.synthetic import prepare_synthetic, synthesize_scene
from vlmem.data.video import read_frames, video_num_frames
from vlmem.errors import UsageError

TINY = dict(scenes=3, frames=8, size=32, seed=0)


def _fake_generate_questions(scene, seed=0, families=None, split="train", video=None, max_per_family=None):
    return [{"id": f"{scene.name}-count-{cat}", "dataset": scene.dataset, "scene_name": scene.name,
             "question_type": "object_counting", "question": f"How many {cat}(s) are in this room?",
             "options": None, "ground_truth": str(n), "answer_kind": "numeric", "video": video, "split": split}
            for cat, n in scene.object_counts.items()]


@pytest.fixture
def fake_qa(monkeypatch):
    """prepare_synthetic's own plumbing, independent of the question generator."""
    module = types.ModuleType("vlmem.data.qa")
    module.generate_questions = _fake_generate_questions
    monkeypatch.setitem(sys.modules, "vlmem.data.qa", module)
    return module


def test_writes_a_complete_dataset(tmp_path, fake_qa):
    out = tmp_path / "synth"
    manifest = prepare_synthetic(out, **TINY)
    assert manifest["source"] == "synthetic" and manifest["counts"]["scenes"] == 3
    assert (out / "manifest.json").is_file() and (out / "qa.parquet").is_file()
    assert json.loads((out / "manifest.json").read_text())["options"]["walk"] == "sweep"
    rows = pq.read_table(out / "qa.parquet").to_pylist()
    assert rows and {r["scene_name"] for r in rows} == {"synth_00000", "synth_00001", "synth_00002"}
    splits = {r["scene_name"]: r["split"] for r in rows}
    assert splits == {"synth_00000": "train", "synth_00001": "train", "synth_00002": "eval"}  # last 25% held out
    assert all(r["num_frames"] == 8 and r["duration"] == pytest.approx(4.0) for r in rows)

    from safetensors.numpy import load_file

    for i in range(3):
        name = f"synth_{i:05d}"
        video = out / "videos" / f"{name}.mp4"
        assert video_num_frames(video) == 8
        g = load_file(str(out / "geometry" / f"{name}.safetensors"))
        assert g["poses"].shape == (8, 4, 4) and g["poses"].dtype == np.float32
        assert g["intrinsics"].shape == (8, 3, 3) and g["depth"].shape == (8, 32, 32)
        assert np.isfinite(g["depth"].astype(np.float32)).all()
        scene = Scene.load_json(out / "scenes" / f"{name}.json")
        assert scene.video == f"videos/{name}.mp4" and scene.num_frames == 8 and scene.dataset == "synthetic"
        assert all(o.first_frame is not None for o in scene.objects)
        # the stored data equal a fresh render of the same scene (deterministic, scenes independent)
        fresh = synthesize_scene(i, seed=0, frames=8, size=32)
        assert scene.to_meta_info()["object_bbox"] == fresh.scene.to_meta_info()["object_bbox"]
        np.testing.assert_allclose(g["poses"], fresh.poses, atol=1e-6)
        np.testing.assert_allclose(g["depth"].astype(np.float32), fresh.render.depth, rtol=2e-3, atol=2e-3)
        decoded = read_frames(video, np.arange(8))
        err = np.abs(decoded.astype(int) - fresh.render.rgb.astype(int)).mean()
        assert err < 6, (name, err)
    assert not list(tmp_path.glob(".*"))  # no temp folders left


def test_existing_out_needs_overwrite(tmp_path, fake_qa):
    out = tmp_path / "synth"
    prepare_synthetic(out, **{**TINY, "scenes": 1})
    with pytest.raises(UsageError, match="already exists"):
        prepare_synthetic(out, **{**TINY, "scenes": 1})
    manifest = prepare_synthetic(out, **{**TINY, "scenes": 2}, overwrite=True)
    assert manifest["counts"]["scenes"] == 2


def test_interrupted_run_leaves_nothing(tmp_path, fake_qa, monkeypatch):
    calls = []

    def failing(scene, **kwargs):
        calls.append(scene.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return _fake_generate_questions(scene, **kwargs)

    monkeypatch.setattr(fake_qa, "generate_questions", failing)
    out = tmp_path / "synth"
    with pytest.raises(KeyboardInterrupt):
        prepare_synthetic(out, **TINY)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_bad_options(tmp_path, fake_qa):
    with pytest.raises(UsageError, match="walk"):
        prepare_synthetic(tmp_path / "a", **TINY, walk="teleport")
    with pytest.raises(UsageError, match="categories"):
        prepare_synthetic(tmp_path / "b", **TINY, categories=["dragon"])
    assert list(tmp_path.iterdir()) == []


def test_with_the_real_question_generator(tmp_path):
    qa = pytest.importorskip("vlmem.data.qa")
    if not hasattr(qa, "generate_questions"):
        pytest.skip("vlmem.data.qa.generate_questions not available yet")
    out = tmp_path / "synth"
    manifest = prepare_synthetic(out, **{**TINY, "frames": 16})
    rows = pq.read_table(out / "qa.parquet").to_pylist()
    assert manifest["counts"]["questions"] == len(rows) > 0
    types_ = {r["question_type"] for r in rows}
    assert {"object_counting", "room_size_estimation"} <= types_
    assert all(r["video"] == f"videos/{r['scene_name']}.mp4" for r in rows)
    again = prepare_synthetic(tmp_path / "again", **{**TINY, "frames": 16})
    rows2 = pq.read_table(tmp_path / "again" / "qa.parquet").to_pylist()
    assert [(r["id"], r["question"], r["ground_truth"]) for r in rows] == \
        [(r["id"], r["question"], r["ground_truth"]) for r in rows2]
    assert again["counts"] == manifest["counts"]
