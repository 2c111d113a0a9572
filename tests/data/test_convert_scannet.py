import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_real as fx  # noqa: E402

from vlmem.data import scannet  # noqa: E402
from vlmem.data.scene import Scene  # noqa: E402
from vlmem.errors import DataError, UsageError  # noqa: E402


@pytest.fixture(autouse=True)
def _qa(monkeypatch):
    fx.patch_qa_if_missing(monkeypatch, scannet)


def test_sens_reader_roundtrip(tmp_path):
    fx.make_scannet_scene(tmp_path, "scene0001_00")
    hdr = scannet.read_sens_header(tmp_path / "scene0001_00" / "scene0001_00.sens")
    assert hdr.num_frames == 7 and hdr.color_compression == "jpeg" and hdr.depth_compression == "zlib_ushort"
    assert (hdr.color_width, hdr.color_height, hdr.depth_width, hdr.depth_height) == (40, 30, 32, 24)
    assert hdr.depth_shift == 1000.0 and hdr.sensor_name == "StructureSensor"
    np.testing.assert_allclose(hdr.intrinsic_depth[:3, :3], fx.K_DEPTH)
    assert not np.isfinite(hdr.poses[3]).all()
    colors, depths = scannet.decode_sens_frames(hdr, [0, 5])
    assert colors.shape == (2, 30, 40, 3) and depths.shape == (2, 24, 32)
    expect = fx.render_depth(fx.dense_scene_points(), fx.look_pose(fx.SCANNET_EYE, 0), fx.K_DEPTH, fx.DEPTH_HW)
    np.testing.assert_allclose(depths[0], expect, atol=1e-3)


def test_prepare_scannet_known_answers(tmp_path):
    root = fx.make_scannet_root(tmp_path)
    out = tmp_path / "out"
    manifest = scannet.prepare_scannet(root, out, frames=32)
    assert manifest["counts"]["scenes"] == 1
    assert manifest["skipped_objects"]["structural (wall/floor/ceiling)"] == 5
    assert manifest["skipped_objects"]["unknown category 'blorb'"] == 1
    scene = Scene.load_json(out / "scenes" / "scene0000_00.json")
    by_cat = scene.by_category()
    assert sorted(by_cat) == ["chair", "table"]  # desk -> table (VSI-Bench naming)
    chair, table = by_cat["chair"][0], by_cat["table"][0]
    np.testing.assert_allclose(chair.centroid, fx.CHAIR["center"], atol=0.02)
    np.testing.assert_allclose(sorted(chair.axes_lengths), sorted(fx.CHAIR["size"]), atol=0.02)
    np.testing.assert_allclose(table.centroid, fx.TABLE["center"], atol=0.02)
    np.testing.assert_allclose(table.axes_lengths, fx.TABLE["size"], atol=0.02)
    u = table.normalized_axes[0]
    assert abs(abs(u @ [np.cos(np.radians(30)), np.sin(np.radians(30)), 0]) - 1) < 1e-3
    assert abs(scene.room_size - 12.0) < 1.2
    np.testing.assert_allclose(scene.room_center, [2.0, 1.5, 1.25], atol=0.05)
    # geometry: poses are the aligned camera-to-world, invalid frame dropped
    from safetensors.numpy import load_file

    geo = load_file(str(out / "geometry" / "scene0000_00.safetensors"))
    assert geo["poses"].shape == (6, 4, 4) and geo["depth"].shape == (6, 24, 32) and geo["depth"].dtype == np.float16
    np.testing.assert_allclose(geo["poses"], np.stack(
        [fx.look_pose(fx.SCANNET_EYE, y) for y in fx.SCANNET_YAWS]), atol=1e-4)
    # depth registered to the colour camera: colour intrinsics at the depth's resolution
    k_t = np.diag([0.8, 0.8, 1.0]) @ fx.K_COLOR
    np.testing.assert_allclose(geo["intrinsics"][0], k_t, rtol=1e-6)
    truth = fx.render_depth(fx.dense_scene_points(), fx.look_pose(fx.SCANNET_EYE, 60), k_t, (24, 32))
    close = np.abs(geo["depth"][1].astype(np.float32) - truth) < 0.05
    assert close.mean() > 0.9
    assert list(geo["frame_indices"]) == [0, 1, 2, 4, 5, 6]
    # visibility: the table is ahead at yaw 0, the chair is behind (first seen at yaw 180)
    assert table.first_frame == 0 and 0 in table.visible_frames
    assert chair.first_frame == 3 and 0 not in chair.visible_frames
    # video + QA
    from vlmem.data.video import video_num_frames

    assert video_num_frames(out / "videos" / "scene0000_00.mp4") == 6
    qa = pq.read_table(out / "qa.parquet").to_pylist()
    assert qa and all(r["video"] == "videos/scene0000_00.mp4" and r["scene_name"] == "scene0000_00" for r in qa)


def test_scannet_without_label_map_and_size(tmp_path):
    root = fx.make_scannet_root(tmp_path, tsv=False)
    out = tmp_path / "out"
    scannet.prepare_scannet(root / "scans", out, frames=3, size=20)
    scene = Scene.load_json(out / "scenes" / "scene0000_00.json")
    assert sorted(scene.object_counts) == ["blorb", "chair", "table"]  # raw labels, desk -> table
    from safetensors.numpy import load_file

    geo = load_file(str(out / "geometry" / "scene0000_00.safetensors"))
    assert geo["depth"].shape == (3, 14, 20)  # longer side = size
    np.testing.assert_allclose(geo["intrinsics"][0][0, 0], 30.0 * 20 / 40, rtol=1e-5)


def test_truncated_sens_skipped_and_all_bad(tmp_path):
    root = fx.make_scannet_root(tmp_path, names=("scene0000_00", "scene0001_00"))
    sens = root / "scans" / "scene0001_00" / "scene0001_00.sens"
    sens.write_bytes(sens.read_bytes()[: sens.stat().st_size // 2])
    manifest = scannet.prepare_scannet(root, tmp_path / "out", frames=4)
    assert manifest["counts"]["scenes"] == 1
    (skip,) = manifest["skipped"]
    assert skip["item"] == "scene0001_00" and "truncated .sens" in skip["reason"] and "scene0001_00.sens" in skip["reason"]
    saved = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert saved["skipped"] == manifest["skipped"]
    # everything bad -> DataError naming the problem
    sens0 = root / "scans" / "scene0000_00" / "scene0000_00.sens"
    sens0.write_bytes(sens0.read_bytes()[:100])
    with pytest.raises(DataError, match="truncated .sens"):
        scannet.prepare_scannet(root, tmp_path / "out2", frames=4)
    assert not (tmp_path / "out2").exists()


def test_scannet_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        scannet.prepare_scannet(tmp_path / "nope", tmp_path / "out")
    root = fx.make_scannet_root(tmp_path)
    with pytest.raises(UsageError, match="scene9999_00"):
        scannet.prepare_scannet(root, tmp_path / "out", scenes=["scene9999_00"])
