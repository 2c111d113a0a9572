"""VSTI-Bench (VLM-3R) camera question families, generated when `scene.poses` is present.

Sources (VLM-3R, ``vlm_3r_data_process/src/tasks/vstibench/``): get_cam_obj_abs_dist_qa.py,
get_camera_displacement_qa.py, get_camera_movement_direction_qa_v1.py,
get_obj_obj_rel_pos_{lr,ud,nf}_qa.py; wording from ``src/question_templates.py``.

Conventions: ``scene.poses[k]`` is the camera-to-world pose of trajectory frame k (world
frame of the boxes), camera axes OpenCV-style (+x right, +y down, +z forward), as VLM-3R
assumes. Questions name frames "frame k+1 of F" with F = len(poses). Frame-level families
need the object to be visible in that frame: ``SceneObject.visible_frames`` (indices into the
same trajectory) when known, else a frustum test (centroid in front of the camera within a
60 x 46 degree field of view). Objects must be the only instance of their category in the
scene (VLM-3R asks for uniqueness among the objects visible in the frame; the scene-level
rule is stricter and never names an ambiguous category).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator

import numpy as np

from vlmem.data.qa import ENUMERATE_LIMIT, Context, Question, fmt_1, point_box_distance
from vlmem.data.scene import SceneObject

VSTI_CAMERA_OBJ_DIST_TEMPLATE = (
    "What is the approximate distance (in meters) between the camera (or the person filming) and the "
    "nearest point of the {object_name} in {frame_description}?"
)
VSTI_CAMERA_DISPLACEMENT_TEMPLATE = (
    "Approximately how far (in meters) did the camera move between {start_frame_description} and "
    "{end_frame_description}?"
)
VSTI_CAMERA_MOVEMENT_DIRECTION_TEMPLATE = (
    "During the sequence between {start_frame_description} and {end_frame_description}, what was the "
    "primary consistent direction of the camera's movement relative to its orientation at the start? "
    "The options are {choice_a}, {choice_b}, {choice_c}, and {choice_d}."
)
VSTI_OBJ_OBJ_REL_POS_NF_TEMPLATE = (
    "In {frame_description}, relative to the camera, is {obj_A_name} [Near/Far] compared to {obj_B_name}?"
)
VSTI_OBJ_OBJ_REL_POS_LR_TEMPLATE = "In {frame_description}, relative to {obj_B_name}, is {obj_A_name} to the [Left/Right]?"
VSTI_OBJ_OBJ_REL_POS_UD_TEMPLATE = "In {frame_description}, relative to {obj_B_name}, is {obj_A_name} to the [Up/Down]?"

CAM_OBJ_DIST_RANGE = (0.2, 10.0)  # get_cam_obj_abs_dist_qa.py min/max_dist_threshold
DISPLACEMENT_FRAME_GAP = (5, 30)  # get_camera_displacement_qa.py min/max_frame_diff
DISPLACEMENT_RANGE = (0.2, 10.0)  # ... min/max_displacement (m)
MOVEMENT_THRESHOLD = 1.0  # get_camera_movement_direction_qa_v1.py direction_threshold (m)
REL_POS_THRESHOLD = 0.15  # get_obj_obj_rel_pos_*_qa.py position_threshold (m)
FALLBACK_HALF_FOV = (math.radians(30.0), math.radians(23.0))  # frustum test when visibility is unknown
MOVEMENT_OPTIONS = ["Forward", "Backward", "Left", "Right"]


def _poses(ctx: Context) -> np.ndarray | None:
    poses = ctx.scene.poses
    if poses is None:
        return None
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or len(poses) < 2:
        return None
    return poses


def _valid_frames(poses: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.isfinite(poses).all(axis=(1, 2)))


def _to_camera(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """World points [N,3] -> camera coordinates with the camera-to-world `pose`."""
    return (points - pose[:3, 3]) @ pose[:3, :3]


def visibility(obj: SceneObject, poses: np.ndarray) -> np.ndarray:
    """[F] bool: is the object visible in each trajectory frame."""
    n = len(poses)
    if obj.visible_frames is not None:
        mask = np.zeros(n, dtype=bool)
        idx = obj.visible_frames[(obj.visible_frames >= 0) & (obj.visible_frames < n)]
        mask[idx] = True
        return mask
    rot, trans = poses[:, :3, :3], poses[:, :3, 3]
    cam = np.einsum("fij,fi->fj", rot, obj.centroid[None] - trans)  # R^T (p - t) per frame
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = (z > 0.1) & (np.abs(cam[:, 0]) < z * math.tan(FALLBACK_HALF_FOV[0])) & (
            np.abs(cam[:, 1]) < z * math.tan(FALLBACK_HALF_FOV[1]))
    return ok & np.isfinite(z)


def _frame_desc(k: int, n: int) -> str:
    return f"frame {k + 1} of {n}"


def _visible_singles(ctx: Context, poses: np.ndarray) -> tuple[list[str], dict[str, SceneObject], np.ndarray]:
    singles = ctx.singles()
    cats = sorted(singles)
    if not cats:
        return [], singles, np.zeros((0, len(poses)), dtype=bool)
    vis = np.stack([visibility(singles[c], poses) for c in cats])  # [C, F]
    vis &= np.isfinite(poses).all(axis=(1, 2))[None]
    return cats, singles, vis


def gen_camera_obj_abs_dist(ctx: Context) -> Iterator[Question]:
    poses = _poses(ctx)
    if poses is None:
        return
    cats, singles, vis = _visible_singles(ctx, poses)
    pairs = np.argwhere(vis)  # (category index, frame)
    lo, hi = CAM_OBJ_DIST_RANGE
    for i in ctx.rng.permutation(len(pairs)):
        c, f = int(pairs[i][0]), int(pairs[i][1])
        dist = float(point_box_distance(poses[f, :3, 3], singles[cats[c]]))
        if not lo <= dist <= hi:
            continue
        q = VSTI_CAMERA_OBJ_DIST_TEMPLATE.format(object_name=cats[c], frame_description=_frame_desc(f, len(poses)))
        yield Question(q, fmt_1(dist), "numeric")


def gen_camera_displacement(ctx: Context) -> Iterator[Question]:
    poses = _poses(ctx)
    if poses is None:
        return
    valid = _valid_frames(poses)
    gmin, gmax = DISPLACEMENT_FRAME_GAP
    pairs = [(int(valid[a]), int(valid[b])) for a in range(len(valid))
             for b in range(a + gmin, min(a + gmax, len(valid) - 1) + 1)]
    lo, hi = DISPLACEMENT_RANGE
    for i in ctx.rng.permutation(len(pairs)):
        s, e = pairs[i]
        disp = float(np.linalg.norm(poses[e, :3, 3] - poses[s, :3, 3]))
        if not lo <= disp <= hi:
            continue
        q = VSTI_CAMERA_DISPLACEMENT_TEMPLATE.format(start_frame_description=f"frame {s + 1}",
                                                     end_frame_description=_frame_desc(e, len(poses)))
        yield Question(q, fmt_1(disp), "numeric")


def movement_direction(start_pose: np.ndarray, end_pose: np.ndarray, threshold: float = MOVEMENT_THRESHOLD) -> str | None:
    """Dominant horizontal direction of the move in the start camera's frame (VLM-3R v1), or None."""
    d = start_pose[:3, :3].T @ (end_pose[:3, 3] - start_pose[:3, 3])
    dx, dz = float(d[0]), float(d[2])
    sig_x, sig_z = abs(dx) > threshold, abs(dz) > threshold
    if sig_z and (not sig_x or abs(dz) >= abs(dx)):
        return "Forward" if dz > 0 else "Backward"
    if sig_x:
        return "Right" if dx > 0 else "Left"
    return None


def _frame_pairs(ctx: Context, valid: np.ndarray) -> Iterator[tuple[int, int]]:
    n = len(valid)
    if n * (n - 1) // 2 <= ENUMERATE_LIMIT:
        pairs = list(itertools.combinations(range(n), 2))
        for i in ctx.rng.permutation(len(pairs)):
            a, b = pairs[i]
            yield int(valid[a]), int(valid[b])
        return
    seen: set = set()
    for _ in range(max(200, 50 * ctx.cap)):
        a, b = sorted(ctx.rng.choice(n, size=2, replace=False).tolist())
        if (a, b) not in seen:
            seen.add((a, b))
            yield int(valid[a]), int(valid[b])


def gen_camera_movement_direction(ctx: Context) -> Iterator[Question]:
    poses = _poses(ctx)
    if poses is None:
        return
    for s, e in _frame_pairs(ctx, _valid_frames(poses)):
        answer = movement_direction(poses[s], poses[e])
        if answer is None:
            continue
        options, letter, texts = ctx.mc(list(MOVEMENT_OPTIONS), answer)
        q = VSTI_CAMERA_MOVEMENT_DIRECTION_TEMPLATE.format(
            start_frame_description=f"frame {s + 1}", end_frame_description=_frame_desc(e, len(poses)),
            choice_a=texts[0], choice_b=texts[1], choice_c=texts[2], choice_d=texts[3])
        yield Question(q, letter, "mc", options)


_REL_POS = {
    # family: (camera axis, options [A smaller coordinate, A larger coordinate], template)
    "lr": (0, ["Left", "Right"], VSTI_OBJ_OBJ_REL_POS_LR_TEMPLATE),
    "ud": (1, ["Up", "Down"], VSTI_OBJ_OBJ_REL_POS_UD_TEMPLATE),
    "nf": (2, ["Near", "Far"], VSTI_OBJ_OBJ_REL_POS_NF_TEMPLATE),
}


def relative_position(a: SceneObject, b: SceneObject, pose: np.ndarray, dim: str,
                      threshold: float = REL_POS_THRESHOLD) -> str | None:
    """Where A is relative to B along one camera axis (box corners separated by > threshold), or None."""
    axis, options, _ = _REL_POS[dim]
    ca, cb = _to_camera(a.corners(), pose)[:, axis], _to_camera(b.corners(), pose)[:, axis]
    if cb.min() - ca.max() > threshold:
        return options[0]
    if ca.min() - cb.max() > threshold:
        return options[1]
    return None


def _gen_rel_pos(dim: str) -> Callable[[Context], Iterator[Question]]:
    def gen(ctx: Context) -> Iterator[Question]:
        poses = _poses(ctx)
        if poses is None:
            return
        cats, singles, vis = _visible_singles(ctx, poses)
        _, options_text, template = _REL_POS[dim]
        frames = np.flatnonzero(vis.sum(axis=0) >= 2)
        for f in ctx.rng.permutation(frames):
            f = int(f)
            visible = [cats[c] for c in np.flatnonzero(vis[:, f])]
            pairs = list(itertools.combinations(visible, 2))
            for i in ctx.rng.permutation(len(pairs)):
                a, b = pairs[i] if ctx.rng.random() < 0.5 else pairs[i][::-1]
                answer = relative_position(singles[a], singles[b], poses[f], dim)
                if answer is None:
                    continue
                options, letter, _ = ctx.mc(list(options_text), answer)
                q = template.format(frame_description=_frame_desc(f, len(poses)), obj_A_name=a, obj_B_name=b)
                yield Question(q, letter, "mc", options)
                break  # one question per frame keeps the frames varied
    return gen


def camera_generators() -> dict[str, Callable[[Context], Iterator[Question]]]:
    return {
        "camera_obj_abs_dist": gen_camera_obj_abs_dist,
        "camera_displacement": gen_camera_displacement,
        "camera_movement_direction": gen_camera_movement_direction,
        "obj_obj_relative_pos_lr": _gen_rel_pos("lr"),
        "obj_obj_relative_pos_ud": _gen_rel_pos("ud"),
        "obj_obj_relative_pos_nf": _gen_rel_pos("nf"),
    }
