"""Question generation on small hand-made scenes: distances, directions, appearance order, camera."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from vlmem.data.qa import (
    box_distance,
    direction_angles,
    generate_questions,
    mc_answer_text,
    point_box_distance,
    rel_direction_answer,
)
from vlmem.data.qa_camera import movement_direction, relative_position
from vlmem.data.scene import Scene, SceneObject
from vlmem.data.writer import validate_row

EYE = np.eye(3)


def box(cat, center, size=(0.5, 0.5, 0.5), axes=EYE, iid=0, **kw):
    return SceneObject(cat, iid, np.asarray(center, float), np.asarray(size, float), np.asarray(axes, float), **kw)


def rot_z(deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # rows are the box axes


def scene_of(objects, **kw):
    for i, o in enumerate(objects):
        o.instance_id = i
    return Scene(name=kw.pop("name", "toy"), dataset=kw.pop("dataset", "scannet"), objects=objects,
                 room_size=kw.pop("room_size", 20.04), room_center=np.zeros(3), **kw)


# -- distances -----------------------------------------------------------------------------------
def test_axis_aligned_boxes_two_metres_apart():
    a = box("sofa", (0, 0, 0.5), (1.0, 1.0, 1.0))
    b = box("tv", (3.0, 0, 0.5), (1.0, 1.0, 1.0))  # faces at x=0.5 and x=2.5
    assert box_distance(a, b) == pytest.approx(2.0)
    rows = generate_questions(scene_of([a, b]), families=["object_abs_distance"])
    assert len(rows) == 1
    r = rows[0]
    assert r["ground_truth"] == "2.0" and r["answer_kind"] == "numeric" and r["options"] is None
    assert re.fullmatch(r"Measuring from the closest point of each object, what is the direct distance between "
                        r"the (sofa|tv) and the (sofa|tv) \(in meters\)\?", r["question"])
    assert validate_row(r) is None


def test_box_distance_edge_cases():
    a = box("a", (0, 0, 0), (1, 1, 1))
    assert box_distance(a, box("b", (0.5, 0.5, 0.5), (1, 1, 1))) == 0.0  # overlap
    assert box_distance(a, box("b", (1.0, 0, 0), (1, 1, 1))) == pytest.approx(0.0, abs=1e-12)  # touching
    # corner-to-corner diagonal: gap of 1 m along x and y
    assert box_distance(a, box("b", (2, 2, 0), (1, 1, 1))) == pytest.approx(math.sqrt(2))
    # a box rotated by 45 degrees: its corner points at `a`
    b = box("b", (2.0, 0, 0), (1, 1, 1), axes=rot_z(45))
    assert box_distance(a, b) == pytest.approx(2.0 - 0.5 - math.sqrt(0.5))
    assert point_box_distance(np.array([0.0, 0.0, 3.0]), a) == pytest.approx(2.5)
    assert point_box_distance(np.zeros(3), a) == 0.0


def test_box_distance_matches_dense_sampling():
    rng = np.random.default_rng(0)
    for _ in range(25):
        boxes = []
        for _ in range(2):
            q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
            boxes.append(box("x", rng.uniform(-2, 2, 3), rng.uniform(0.2, 1.5, 3), axes=q.T))
        exact = box_distance(*boxes)
        # the closest points lie on the surfaces: sample both surfaces densely
        pts = []
        for b in boxes:
            g = np.linspace(-0.5, 0.5, 15)
            u, v = np.meshgrid(g, g)
            faces = []
            for axis in range(3):
                for sign in (-0.5, 0.5):
                    f = np.zeros((u.size, 3))
                    others = [k for k in range(3) if k != axis]
                    f[:, axis] = sign
                    f[:, others[0]], f[:, others[1]] = u.ravel(), v.ravel()
                    faces.append(f)
            local = np.concatenate(faces) * b.axes_lengths
            pts.append(b.centroid + local @ b.normalized_axes)
        d = np.sqrt(((pts[0][:, None] - pts[1][None]) ** 2).sum(-1)).min()
        if exact == 0.0:
            continue
        assert exact <= d + 1e-9 and d - exact < 0.16


# -- relative direction ---------------------------------------------------------------------------
def test_direction_hand_computed_layout():
    stand = box("bed", (0, 0, 0), (0.2, 0.2, 0.2))
    face = box("door", (0, 2, 0), (0.2, 0.2, 0.2))  # facing +y, so -x is left
    left_front = box("lamp", (-2, 1, 0), (0.2, 0.2, 0.2))  # 63.4 degrees counter-clockwise
    right_back = box("desk", (2, -1, 0), (0.2, 0.2, 0.2))  # 243.4 degrees
    behind = box("sink", (0, -3, 0), (0.6, 0.6, 0.6))  # 180 degrees: straddles back-left/back-right

    ang = direction_angles(stand, face, left_front)
    assert ang[0] == pytest.approx(math.degrees(math.atan2(2, 1)))
    assert rel_direction_answer("hard", ang) == "front-left"
    assert rel_direction_answer("medium", ang) == "left"
    assert rel_direction_answer("easy", ang) == "left"

    ang = direction_angles(stand, face, right_back)
    assert ang[0] == pytest.approx(360 - math.degrees(math.atan2(2, -1)))
    assert rel_direction_answer("hard", ang) == "back-right"
    assert rel_direction_answer("medium", ang) == "right"

    ang = direction_angles(stand, face, behind)
    assert rel_direction_answer("medium", ang) == "back"
    assert rel_direction_answer("easy", ang) is None  # easy has no "back": skipped
    assert rel_direction_answer("hard", ang) is None  # corners fall in two quadrants

    near_boundary = box("tv", (-2, 2.0 * math.tan(math.radians(3)), 0), (0.05, 0.05, 0.05))  # ~87 degrees
    assert rel_direction_answer("hard", direction_angles(stand, face, near_boundary)) is None


def _expected_direction(scene, pos, ori, qry, level):
    objs = {o.category: o for o in scene.objects}
    p, o, q = objs[pos].centroid[:2], objs[ori].centroid[:2], objs[qry].centroid[:2]
    a = (math.degrees(math.atan2(*(q - p)[::-1]) - math.atan2(*(o - p)[::-1]))) % 360
    if level == "hard":
        return ["front-left", "back-left", "back-right", "front-right"][int(a // 90)]
    return "left" if a < 135 else "back" if a < 225 else "right"


def test_direction_questions_on_a_scene():
    objs = [box("bed", (0, 0, 0.3)), box("door", (0, 3, 1.0), (0.8, 0.1, 2.0)), box("lamp", (-2.5, 1.2, 0.8)),
            box("desk", (2.0, -1.5, 0.4)), box("sink", (-1.5, -2.0, 0.9))]
    scene = scene_of(objs)
    for level, n in (("easy", 2), ("medium", 3), ("hard", 4)):
        rows = generate_questions(scene, families=[f"object_rel_direction_{level}"], max_per_family=50)
        assert rows, level
        for r in rows:
            assert validate_row(r) is None and len(r["options"]) == n
            pos, ori, qry = re.match(r"If I am standing by the (\w+) and facing the (\w+), is the (\w+) to",
                                     r["question"]).groups()
            assert mc_answer_text(r) == _expected_direction(scene, pos, ori, qry, level)


def test_no_direction_question_with_repeated_category():
    objs = [box("chair", (0, 0, 0)), box("chair", (3, 0, 0)), box("door", (0, 3, 0)), box("lamp", (-2, 1, 0))]
    assert generate_questions(scene_of(objs), families=["object_rel_direction_hard"]) == []
    rows = generate_questions(scene_of(objs), families=["object_counting", "object_size_estimation"])
    counting = [r for r in rows if r["question_type"] == "object_counting"]
    assert [(r["question"], r["ground_truth"]) for r in counting] == [("How many chair(s) are in this room?", "2")]
    assert all("chair" not in r["question"] for r in rows if r["question_type"] == "object_size_estimation")


def test_rel_distance_question():
    objs = [box("bed", (0, 0, 0)), box("lamp", (1.0, 0, 0)), box("desk", (2.0, 0, 0)), box("sink", (0, 3.0, 0)),
            box("tv", (-4.0, 0, 0)), box("tv", (0, -5.0, 0))]
    scene = scene_of(objs)
    rows = generate_questions(scene, families=["object_rel_distance"], max_per_family=100)
    assert rows
    for r in rows:
        m = re.match(r".*objects \((\w+), (\w+), (\w+), (\w+)\) is the closest to the (\w+)\?$", r["question"])
        *choices, primary = m.groups()
        assert primary != "tv"  # the primary object must be unique
        g = scene.by_category()
        d = {c: min(box_distance(x, y) for x in g[c] for y in g[primary]) for c in choices}
        assert mc_answer_text(r) == min(d, key=d.get)
        assert sorted(d.values())[1] - sorted(d.values())[0] > 0.15


# -- appearance order -----------------------------------------------------------------------------
def test_appearance_order():
    cats = ["sofa", "tv", "lamp", "desk", "sink"]
    objs = [box(c, (i, 0, 0), first_frame=48 * i) for i, c in enumerate(cats)]  # 0, 2, 4, 6, 8 s at 24 fps
    scene = scene_of(objs, fps=24.0, num_frames=600)
    rows = generate_questions(scene, families=["obj_appearance_order"], max_per_family=10)
    assert len(rows) == 5  # C(5, 4) category sets
    for r in rows:
        assert validate_row(r) is None and len(r["options"]) == 4
        mentioned = re.search(r"in the video: (.+)\?$", r["question"]).group(1).split(", ")
        assert mc_answer_text(r) == ", ".join(sorted(mentioned, key=cats.index))
        assert len({o.split(". ", 1)[1] for o in r["options"]}) == 4
        assert r["num_frames"] == 600 and r["duration"] == pytest.approx(25.0)

    # first appearances within 1 s of each other are ambiguous; unknown visibility gives nothing
    close = [box(c, (i, 0, 0), first_frame=12 * i) for i, c in enumerate(cats)]
    assert generate_questions(scene_of(close, fps=24.0), families=["obj_appearance_order"]) == []
    unknown = [box(c, (i, 0, 0)) for i, c in enumerate(cats)]
    assert generate_questions(scene_of(unknown, fps=24.0), families=["obj_appearance_order"]) == []


# -- camera families ------------------------------------------------------------------------------
def _trajectory(n=40, step=0.2, height=1.5):
    """Camera walking along world +y, looking along +y (OpenCV axes: x right, y down, z forward)."""
    rot = np.column_stack([[1, 0, 0], [0, 0, -1], [0, 1, 0]]).astype(float)
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = rot
    poses[:, :3, 3] = np.column_stack([np.zeros(n), step * np.arange(n), np.full(n, height)])
    return poses


def _camera_scene():
    poses = _trajectory()
    frames = np.arange(0, 20)  # visible while the camera is before y = 4
    objs = [box("sofa", (-1.5, 5.0, 0.4), (1.0, 1.0, 0.8), visible_frames=frames),
            box("tv", (1.5, 5.0, 1.8), (1.0, 0.2, 0.6), visible_frames=frames),
            box("plant", (0.0, 9.0, 0.3), (0.4, 0.4, 0.6), visible_frames=frames),
            box("chair", (-1.0, 3.0, 0.4), visible_frames=frames), box("chair", (1.0, 3.0, 0.4), visible_frames=frames)]
    return scene_of(objs, name="walk", poses=poses, num_frames=40, fps=10.0), poses


def test_camera_families_on_a_trajectory():
    scene, poses = _camera_scene()
    objs = {o.category: o for o in scene.objects if o.category != "chair"}
    rows = generate_questions(scene, families=["camera_obj_abs_dist", "camera_displacement",
                                               "camera_movement_direction", "obj_obj_relative_pos_lr",
                                               "obj_obj_relative_pos_ud", "obj_obj_relative_pos_nf"],
                              max_per_family=20)
    by = {}
    for r in rows:
        assert validate_row(r) is None
        assert "chair" not in r["question"]  # two chairs: never named
        by.setdefault(r["question_type"], []).append(r)
    assert set(by) == {"camera_obj_abs_dist", "camera_displacement", "camera_movement_direction",
                       "obj_obj_relative_pos_lr", "obj_obj_relative_pos_ud", "obj_obj_relative_pos_nf"}

    for r in by["camera_obj_abs_dist"]:
        cat, k = re.match(r".*nearest point of the (\w+) in frame (\d+) of 40\?$", r["question"]).groups()
        k = int(k) - 1
        assert k < 20 and r["answer_kind"] == "numeric"
        o = objs[cat]
        cam = poses[k, :3, 3]
        gap = np.maximum(np.abs(cam - o.centroid) - o.axes_lengths / 2, 0)  # axis-aligned: independent formula
        assert r["ground_truth"] == f"{round(float(np.linalg.norm(gap)), 1):.1f}"

    for r in by["camera_displacement"]:
        s, e = map(int, re.match(r".*between frame (\d+) and frame (\d+) of 40\?$", r["question"]).groups())
        assert 5 <= e - s <= 30
        assert r["ground_truth"] == f"{0.2 * (e - s):.1f}" and r["options"] is None

    for r in by["camera_movement_direction"]:
        assert mc_answer_text(r) == "Forward" and len(r["options"]) == 4
        assert r["question"].endswith(", ".join(o.split(". ", 1)[1] for o in r["options"][:3])
                                      + ", and " + r["options"][3].split(". ", 1)[1] + ".")

    expected = {("lr", "sofa", "tv"): "Left", ("lr", "tv", "sofa"): "Right",
                ("ud", "tv", "sofa"): "Up", ("ud", "sofa", "tv"): "Down",
                ("nf", "sofa", "plant"): "Near", ("nf", "plant", "sofa"): "Far",
                ("nf", "tv", "plant"): "Near", ("nf", "plant", "tv"): "Far"}
    checked = 0
    for dim in ("lr", "ud", "nf"):
        for r in by[f"obj_obj_relative_pos_{dim}"]:
            if dim == "nf":
                a, b = re.match(r".*camera, is (\w+) \[Near/Far\] compared to (\w+)\?$", r["question"]).groups()
            else:
                b, a = re.match(r".*relative to (\w+), is (\w+) to the", r["question"]).groups()
            assert len(r["options"]) == 2
            if (dim, a, b) in expected:
                assert mc_answer_text(r) == expected[(dim, a, b)], (dim, a, b, r)
                checked += 1
    assert checked >= 3


def test_camera_helpers():
    poses = _trajectory()
    assert movement_direction(poses[0], poses[10]) == "Forward"
    assert movement_direction(poses[10], poses[0]) == "Backward"
    assert movement_direction(poses[0], poses[3]) is None  # 0.6 m < 1 m threshold
    side = poses[0].copy()
    side[:3, 3] += [2.0, 0, 0]
    assert movement_direction(poses[0], side) == "Right"
    a, b = box("a", (-1, 4, 1.5)), box("b", (1, 4, 1.5))
    assert relative_position(a, b, poses[0], "lr") == "Left"
    assert relative_position(a, b, poses[0], "ud") is None
    assert relative_position(box("c", (-0.2, 4, 1.5)), box("d", (0.2, 4, 1.5)), poses[0], "lr") is None  # overlap


def test_no_camera_questions_without_poses_and_determinism():
    scene, _ = _camera_scene()
    first = generate_questions(scene, seed=3)
    assert first == generate_questions(scene, seed=3)
    scene.poses = None
    assert not [r for r in generate_questions(scene) if r["question_type"].startswith(("camera_", "obj_obj"))]


def test_video_column_and_split():
    scene = scene_of([box("sofa", (0, 0, 0)), box("tv", (3, 0, 0))], video="/abs/elsewhere.mp4")
    rows = generate_questions(scene, split="val")
    assert {r["video"] for r in rows} == {""} and {r["split"] for r in rows} == {"val"}
    scene.video = "videos/toy.mp4"
    assert {r["video"] for r in generate_questions(scene)} == {"videos/toy.mp4"}
    assert {r["video"] for r in generate_questions(scene, video="videos/x.mp4")} == {"videos/x.mp4"}
    ids = [r["id"] for r in generate_questions(scene)]
    assert all(re.fullmatch(r"toy-[a-z_]+-\d+", i) for i in ids) and len(ids) == len(set(ids))




def test_object_presence_pretraining_family():
    """Asked only when named, about every category of the vocabulary, present or not."""
    objs = [box("chair", (0, 0, 0.5), (0.5, 0.5, 1.0)), box("chair", (2, 0, 0.5), (0.5, 0.5, 1.0)),
            box("lamp", (0, 2, 0.5), (0.3, 0.3, 1.0))]
    scene = scene_of(objs, extras={"category_vocabulary": ["chair", "lamp", "box", "plant"]})
    assert not [r for r in generate_questions(scene) if r["question_type"] == "object_presence"]  # not by default
    rows = generate_questions(scene, families=["object_presence"])
    answers = {re.search(r"Is there a (\w+)", r["question"]).group(1): r["ground_truth"] for r in rows}
    assert answers == {"chair": "yes", "lamp": "yes", "box": "no", "plant": "no"}
    assert all(r["answer_kind"] == "open" and r["options"] is None for r in rows)
    for r in rows:
        validate_row(r)
    assert generate_questions(scene_of(objs), families=["object_presence"]) == []  # no vocabulary, no question
