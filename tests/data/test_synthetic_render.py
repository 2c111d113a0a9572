"""Synthetic rooms: renderer geometry vs hand computation, visibility, layout invariants, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlmem.data.render import intrinsics_matrix, look_pose, min_visible_pixels, render_boxes
from vlmem.data.scene import SceneObject
from vlmem.data.synthetic import CATEGORIES, camera_walk, resolve_categories, synthesize_scene
from vlmem.errors import UsageError

ROOM = (10.0, 10.0, 3.0)


def _box(centre, size, yaw_deg=0.0, category="box", iid=0) -> SceneObject:
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    return SceneObject(category=category, instance_id=iid, centroid=centre, axes_lengths=size,
                       normalized_axes=[[c, s, 0], [-s, c, 0], [0, 0, 1]])


def test_intrinsics_and_pose_conventions():
    K = intrinsics_matrix(64, 64, 60.0)
    assert K[0, 2] == 32 and K[1, 2] == 32
    assert K[0, 0] == pytest.approx(32 / math.tan(math.radians(30)))
    pose = look_pose((1, 2, 1.5), yaw=math.pi / 2, pitch=0.0)  # looking along +y
    np.testing.assert_allclose(pose[:3, 2], [0, 1, 0], atol=1e-12)  # camera z = forward
    np.testing.assert_allclose(pose[:3, 1], [0, 0, -1], atol=1e-12)  # camera y = down
    np.testing.assert_allclose(pose[:3, 0], [1, 0, 0], atol=1e-12)  # camera x = right
    np.testing.assert_allclose(pose[:3, 3], [1, 2, 1.5])
    R = pose[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)


def test_box_straight_ahead_projects_to_centre_with_front_face_depth():
    size = 64
    K = intrinsics_matrix(size, size, 60.0)
    pose = look_pose((0, 0, 1.5), yaw=0.0, pitch=0.0)  # looking along +x
    box = _box((3.0, 0.0, 1.5), (1.0, 1.0, 1.0))
    r = render_boxes(ROOM, [box], [(200, 100, 50)], pose[None], K, size, size)
    mask = r.instance[0] == 0
    rows, cols = np.nonzero(mask)
    # hand computation: front face at x = 2.5, half size 0.5 -> +-fx * 0.5 / 2.5 px about the centre
    half_px = K[0, 0] * 0.5 / 2.5  # 11.09
    lo, hi = math.ceil(32 - half_px - 0.5), math.floor(32 + half_px - 0.5)  # pixel centres u + 0.5 inside
    assert (cols.min(), cols.max()) == (lo, hi) == (21, 42)
    assert (rows.min(), rows.max()) == (lo, hi)
    assert cols.mean() == pytest.approx(31.5) and rows.mean() == pytest.approx(31.5)
    np.testing.assert_allclose(r.depth[0][mask], 2.5, atol=1e-5)  # z-depth of the front face
    # the wall behind (x = 5) at the middle row, left edge; floor below, ceiling above
    assert r.depth[0, 31, 0] == pytest.approx(5.0, abs=1e-5)
    assert r.instance[0, 31, 0] == -1
    bottom = r.depth[0, 63, 32]  # floor point: z-depth = 1.5 / tan(angle below the axis)
    v = (63 + 0.5 - 32) / K[1, 1]
    assert bottom == pytest.approx(1.5 / v, rel=1e-5)
    # flat shading: the front face (normal -x) gets ambient light only, uniformly
    front = r.rgb[0][mask]
    assert (front == front[0]).all()
    assert r.pixel_counts[0, 0] == mask.sum()
    assert np.isfinite(r.depth).all()


def test_rotated_box_renders_like_swapped_extents():
    size = 48
    K = intrinsics_matrix(size, size, 65.0)
    poses = np.stack([look_pose((-1.0, 0.5, 1.5), yaw=y, pitch=-0.3) for y in (0.0, 0.4, -0.5)])
    a = render_boxes(ROOM, [_box((2.0, 0.3, 0.4), (2.0, 0.6, 0.8), yaw_deg=90)], [(50, 50, 200)], poses, K, size, size)
    b = render_boxes(ROOM, [_box((2.0, 0.3, 0.4), (0.6, 2.0, 0.8), yaw_deg=0)], [(50, 50, 200)], poses, K, size, size)
    np.testing.assert_array_equal(a.instance, b.instance)
    np.testing.assert_allclose(a.depth, b.depth, atol=1e-4)


def test_occlusion_nearest_box_wins():
    K = intrinsics_matrix(32, 32, 60.0)
    pose = look_pose((0, 0, 1.0), 0.0, 0.0)
    near, far = _box((2.0, 0, 1.0), (0.4, 0.4, 0.4), iid=0), _box((4.0, 0, 1.0), (2.0, 2.0, 2.0), iid=1)
    r = render_boxes(ROOM, [far, near], [(0, 255, 0), (255, 0, 0)], pose[None], K, 32, 32)
    assert r.instance[0, 16, 16] == 1 and r.depth[0, 16, 16] == pytest.approx(1.8, abs=1e-5)
    assert r.instance[0, 16, 8] == 0 and r.depth[0, 16, 8] == pytest.approx(3.0, abs=1e-5)


def test_visibility_first_frame_of_a_hand_built_walk():
    """The camera turns 10 degrees per frame from +x toward +y; a box sits on the +y axis.

    Horizontal half-FOV 30 deg, the box spans bearing 90 +- 5.19 deg, so it enters the
    view at frame 6 (heading 60 deg) and leaves after frame 12 (heading 120 deg)."""
    size = 64
    K = intrinsics_matrix(size, size, 60.0)
    poses = np.stack([look_pose((0, 0, 1.5), yaw=math.radians(10 * k), pitch=0.0) for k in range(36)])
    box = _box((0.0, 3.0, 1.5), (0.5, 0.5, 0.5))
    r = render_boxes(ROOM, [box], [(255, 0, 0)], poses, K, size, size, max_chunk_elements=5 * size * size)
    vis = r.visible()
    assert min_visible_pixels(size, size) == 9  # max(4, ceil(0.2% of 4096))
    np.testing.assert_array_equal(np.flatnonzero(vis[:, 0]), np.arange(6, 13))
    counts = np.array([(r.instance[f] == 0).sum() for f in range(36)])
    np.testing.assert_array_equal(r.pixel_counts[:, 0], counts)


@pytest.mark.parametrize("walk", ["sweep", "orbit"])
def test_scene_invariants(walk):
    s = synthesize_scene(3, seed=11, frames=24, size=32, walk=walk)
    scene = s.scene
    lx, ly, h = s.room_dims
    assert 3 <= lx <= 8 and 3 <= ly <= 8 and 2.5 <= h <= 3
    assert scene.room_size == pytest.approx(lx * ly)
    np.testing.assert_allclose(scene.room_center, [0, 0, h / 2])
    assert scene.name == "synth_00003" and scene.num_frames == 24 and scene.fps == 2.0
    assert scene.poses.shape == (24, 4, 4)
    assert len(scene.objects) >= 3
    assert len({o.instance_id for o in scene.objects}) == len(scene.objects)
    for o in scene.objects:
        assert o.category in CATEGORIES
        assert o.min[2] == pytest.approx(0.0, abs=1e-9)  # on the floor
        assert (np.abs(o.corners()[:, :2]) <= np.array([lx, ly]) / 2 + 1e-9).all()  # inside the walls
        np.testing.assert_allclose(o.normalized_axes @ o.normalized_axes.T, np.eye(3), atol=1e-9)
        np.testing.assert_allclose(o.normalized_axes[2], [0, 0, 1])
        assert len(o.visible_frames) and o.first_frame == o.visible_frames[0]
        assert (np.diff(o.visible_frames) > 0).all() and o.visible_frames[-1] < 24
    # camera inside the room and outside every object
    cam = scene.poses[:, :3, 3]
    assert (np.abs(cam[:, :2]) < np.array([lx, ly]) / 2).all() and (cam[:, 2] > 1.0).all()
    for o in scene.objects:
        local = (cam - o.centroid) @ o.normalized_axes.T
        assert (np.abs(local[:, :2]) > o.axes_lengths[:2] / 2).any(axis=1).all()
    d = s.render.depth
    assert d.dtype == np.float32 and np.isfinite(d).all() and (d > 0).all()
    assert s.render.rgb.shape == (24, 32, 32, 3) and s.render.rgb.dtype == np.uint8


def _overlap_2d(a: SceneObject, b: SceneObject) -> bool:
    """Separating axis test on the floor footprints."""
    ca, cb = a.corners()[:, :2], b.corners()[:, :2]
    for axis in list(a.normalized_axes[:2, :2]) + list(b.normalized_axes[:2, :2]):
        pa, pb = ca @ axis, cb @ axis
        if pa.max() <= pb.min() or pb.max() <= pa.min():
            return False
    return True


def test_objects_do_not_overlap():
    for index in range(6):
        objs = synthesize_scene(index, seed=5, frames=8, size=16).scene.objects
        for i in range(len(objs)):
            for j in range(i + 1, len(objs)):
                assert not _overlap_2d(objs[i], objs[j]), (index, objs[i].category, objs[j].category)


def test_deterministic_with_seed():
    a = synthesize_scene(2, seed=7, frames=12, size=32)
    b = synthesize_scene(2, seed=7, frames=12, size=32)
    c = synthesize_scene(2, seed=8, frames=12, size=32)
    np.testing.assert_array_equal(a.render.rgb, b.render.rgb)
    np.testing.assert_array_equal(a.poses, b.poses)
    assert a.scene.to_meta_info() == b.scene.to_meta_info()
    assert a.seed == b.seed != c.seed
    assert not np.array_equal(a.render.rgb, c.render.rgb)


def test_sweep_objects_leave_view_orbit_keeps_them():
    sweep = [synthesize_scene(i, seed=1, frames=48, size=32, walk="sweep") for i in range(2)]
    orbit = [synthesize_scene(i, seed=1, frames=48, size=32, walk="orbit") for i in range(2)]
    frac = lambda ss: np.mean([len(o.visible_frames) / 48 for s in ss for o in s.scene.objects])  # noqa: E731
    assert frac(sweep) < 0.4
    assert frac(orbit) > frac(sweep)
    # sweep: one contiguous stretch of view for most objects (each passes through view once)
    runs = [int((np.diff(o.visible_frames) > 1).sum()) + 1 for s in sweep for o in s.scene.objects]
    assert np.mean(np.array(runs) == 1) >= 0.7


def test_long_video_and_category_subset():
    s = synthesize_scene(0, seed=0, frames=300, size=16, categories=["chair", "box", "sofa", "tv"])
    assert s.render.rgb.shape[0] == 300 and s.poses.shape == (300, 4, 4)
    assert {o.category for o in s.scene.objects} <= {"chair", "box", "sofa", "tv"}


def test_bad_arguments():
    with pytest.raises(UsageError, match="unknown synthetic categories"):
        resolve_categories(["chair", "unicorn"])
    with pytest.raises(UsageError, match="walk"):
        camera_walk(ROOM, 8, "teleport")
    with pytest.raises(UsageError):
        synthesize_scene(0, frames=0)


def test_layout_does_not_depend_on_frame_count():
    few = synthesize_scene(4, seed=0, frames=8, size=32).scene
    many = synthesize_scene(4, seed=0, frames=64, size=32).scene
    np.testing.assert_allclose(few.poses[0], many.poses[0])  # same walk, sampled differently
    by_id = {o.instance_id: o for o in many.objects}
    for o in few.objects:  # only objects unseen at the coarser sampling may be missing
        np.testing.assert_allclose(o.centroid, by_id[o.instance_id].centroid)


def test_tour_shows_each_object_at_its_own_stop_only():
    """The tour (memory-matters data): one narrow object or bare floor per stop, each object in
    view during its own stop's frames and never again, so one sampled frame per stop sees it."""
    from vlmem.data.synthetic import TOUR_CATEGORIES, TOUR_FOV_DEG
    from vlmem.data.video import sample_frame_indices

    s = synthesize_scene(5, seed=3, frames=64, size=32, walk="tour", stops=16, instances=(2, 5))
    scene = s.scene
    assert scene.extras["fov_deg"] == TOUR_FOV_DEG and scene.extras["unseen_objects_dropped"] == 0
    counts = {}
    for o in scene.objects:
        counts[o.category] = counts.get(o.category, 0) + 1
        assert o.category in TOUR_CATEGORIES
        stop = o.first_frame // 4
        np.testing.assert_array_equal(o.visible_frames, np.arange(4 * stop, 4 * stop + 4))
    assert all(2 <= c <= 5 for c in counts.values()) and 2 <= len(counts) <= 4
    assert s.render.visible().sum(axis=1).max() == 1  # never two objects in one frame
    sampled = sample_frame_indices(64, 16)  # lmms-eval's uniform sampling hits every stop once
    np.testing.assert_array_equal(sampled // 4, np.arange(16))
    cam = scene.poses[:, :3, 3]
    np.testing.assert_allclose(cam[:, :2], 0.0)  # turns on the spot


def test_tour_bad_stops():
    with pytest.raises(UsageError, match="stops"):
        synthesize_scene(0, frames=8, size=32, walk="tour", stops=9)
