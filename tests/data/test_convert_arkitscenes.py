import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_real as fx  # noqa: E402

from vlmem.data import arkitscenes  # noqa: E402
from vlmem.data.scene import Scene  # noqa: E402
from vlmem.errors import DataError, UsageError  # noqa: E402


@pytest.fixture(autouse=True)
def _qa(monkeypatch):
    fx.patch_qa_if_missing(monkeypatch, arkitscenes)


def test_rodrigues_matches_axis_angle():
    r = fx.rot_z(30) @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0.0]])
    np.testing.assert_allclose(arkitscenes.rodrigues(fx.axis_angle(r)), r, atol=1e-9)


def test_traj_is_inverted(tmp_path):
    c2w = fx.look_pose((1.0, 2.0, 1.5), 40)
    w2c = np.linalg.inv(c2w)
    line = " ".join(str(x) for x in [12.5, *fx.axis_angle(w2c[:3, :3]), *w2c[:3, 3]])
    (tmp_path / "t.traj").write_text(line + "\n")
    stamps, poses = arkitscenes.read_traj(tmp_path / "t.traj")
    assert stamps.tolist() == [12.5]
    np.testing.assert_allclose(poses[0], c2w, atol=1e-9)


def test_prepare_arkitscenes_known_answers(tmp_path):
    root = fx.make_arkit_root(tmp_path)
    out = tmp_path / "out"
    manifest = arkitscenes.prepare_arkitscenes(root, out, frames=32)
    assert manifest["counts"]["scenes"] == 1 and not manifest["skipped"]
    scene = Scene.load_json(out / "scenes" / "41069025.json")
    assert scene.object_counts == {"chair": 1, "table": 1, "blorb": 1}
    table = scene.by_category()["table"][0]
    np.testing.assert_allclose(table.centroid, fx.TABLE["center"])
    np.testing.assert_allclose(table.axes_lengths, fx.TABLE["size"])
    # rows of normalizedAxes are the box axes: the first axis points along yaw 30 deg
    np.testing.assert_allclose(table.normalized_axes[0], [np.cos(np.radians(30)), np.sin(np.radians(30)), 0], atol=1e-9)
    assert abs(scene.room_size - 12.0) < 1.2 and scene.extras["room_size_from"] == "mesh"
    from safetensors.numpy import load_file

    geo = load_file(str(out / "geometry" / "41069025.safetensors"))
    expect = np.stack([fx.look_pose(fx.ARKIT_EYE, y) for y in fx.ARKIT_YAWS])
    np.testing.assert_allclose(geo["poses"], expect, atol=1e-5)  # nearest traj entry, inverted
    np.testing.assert_allclose(geo["intrinsics"][0], fx.ARKIT_K)
    assert geo["depth"].shape == (5, 24, 32)
    chair = scene.by_category()["chair"][0]
    assert table.first_frame == 0 and chair.first_frame is not None and chair.first_frame >= 2
    qa = pq.read_table(out / "qa.parquet").to_pylist()
    assert qa and all(r["video"] == "videos/41069025.mp4" for r in qa)


def test_arkit_single_video_folder_without_mesh(tmp_path):
    split = tmp_path / "Validation"
    split.mkdir()
    fx.make_arkit_video(split, "47331606", with_mesh=False)
    out = tmp_path / "out"
    arkitscenes.prepare_arkitscenes(split / "47331606", out, frames=3, size=16)
    scene = Scene.load_json(out / "scenes" / "47331606.json")
    assert scene.extras["room_size_from"] == "depth" and scene.room_size > 1.0
    from safetensors.numpy import load_file

    geo = load_file(str(out / "geometry" / "47331606.safetensors"))
    assert geo["poses"].shape == (3, 4, 4) and geo["depth"].shape == (3, 12, 16)


def test_arkit_bad_inputs(tmp_path):
    root = fx.make_arkit_root(tmp_path, vids=("41069025", "41069042"))
    bad = root / "3dod" / "Training" / "41069042" / "41069042_frames" / "lowres_wide.traj"
    bad.write_text("1.0 2.0 3.0\n")
    manifest = arkitscenes.prepare_arkitscenes(root, tmp_path / "out", frames=2)
    assert manifest["counts"]["scenes"] == 1
    (skip,) = manifest["skipped"]
    assert skip["item"] == "41069042" and "lowres_wide.traj" in skip["reason"] and "7" in skip["reason"]
    (root / "3dod" / "Training" / "41069025" / "41069025_3dod_annotation.json").write_text("{not json")
    with pytest.raises(DataError, match="nothing usable"):
        arkitscenes.prepare_arkitscenes(root, tmp_path / "out2", frames=2)
    with pytest.raises(UsageError):
        arkitscenes.prepare_arkitscenes(tmp_path / "missing", tmp_path / "out3")
    with pytest.raises(UsageError, match="999"):
        arkitscenes.prepare_arkitscenes(root, tmp_path / "out4", videos=["999"])
