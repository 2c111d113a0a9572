"""Synthetic rooms: the embedded default data source (no downloads).

A room is a rectangular box (3-8 m x 3-8 m, 2.5-3 m high) with furniture-like boxes of
fixed-colour categories standing on the floor, non-overlapping, rotated about the
vertical only. A camera walks through it at eye height and `render.render_boxes` gives
RGB, z-depth and per-frame visibility. World frame: metres, z up, floor at z = 0, room
centred on the origin (x in [-Lx/2, Lx/2], y in [-Ly/2, Ly/2]); `room_center` is the
centre of the room box (0, 0, H/2); `room_size` is the floor area Lx * Ly.

Walks: `sweep` turns the camera once around (360 degrees over the video) while it walks
along the room's long axis, so every object passes through view once and then leaves it
(memory matters); `orbit` circles the room looking at its centre, so objects stay in
view for long stretches; `tour` stands in the middle of the room and turns on the spot,
pausing at each of `stops` evenly spaced directions where one small object (or bare floor)
stands on a ring around the camera. A narrow field of view keeps exactly one stop in view,
so every object is seen in one stretch of frames and never again: the easiest rendering in
which counting and appearance order need every part of the video (the memory-matters
benchmark, docs/results.md).

Every scene is generated from `SeedSequence(seed, spawn_key=(index,))`, so scene i is the
same whatever the number of scenes and any scene can be regenerated alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vlmem.data.render import RenderResult, intrinsics_matrix, look_pose, min_visible_pixels, render_boxes
from vlmem.data.scene import Scene, SceneObject
from vlmem.errors import UsageError

DATASET_NAME = "synthetic"
FPS = 2.0  # nominal frame rate: a 32-frame walk lasts 16 s (appearance-order questions need > 1 s gaps)
FOV_DEG = 60.0  # horizontal (= vertical: square frames) field of view
EYE_HEIGHT = 1.5
WALKS = ("sweep", "orbit", "tour")
TOUR_FOV_DEG = 20.0  # at TOUR_RADIUS a neighbouring stop (22.5 deg away at 16 stops) stays out of view
TOUR_RADIUS = 2.5  # metres from the camera to the ring of objects
TOUR_STOPS = 16
# Narrow categories (<= 0.6 m wide) in saturated colours, one per stop; the tour default.
TOUR_CATEGORIES = ("chair", "plant", "box", "lamp", "stool")
PATH_CLEARANCE = 0.5  # metres between the camera path and any object footprint
OBJECT_GAP = 0.05  # metres between object footprints
WALL_GAP = 0.02


@dataclass(frozen=True)
class Category:
    name: str
    rgb: tuple[int, int, int]
    size_min: tuple[float, float, float]  # width, depth, height (m)
    size_max: tuple[float, float, float]
    count: tuple[int, int]  # min, max instances when the category is in a room


_CATS = [
    Category("chair", (220, 40, 40), (0.45, 0.45, 0.8), (0.6, 0.6, 1.0), (2, 4)),
    Category("table", (235, 140, 20), (0.8, 0.6, 0.7), (1.6, 1.0, 0.78), (1, 2)),
    Category("sofa", (140, 60, 200), (1.6, 0.8, 0.7), (2.2, 1.0, 0.9), (1, 1)),
    Category("bed", (245, 120, 185), (1.4, 1.9, 0.45), (2.0, 2.1, 0.6), (1, 1)),
    Category("lamp", (250, 230, 40), (0.25, 0.25, 1.2), (0.4, 0.4, 1.7), (1, 2)),
    Category("tv", (35, 35, 35), (0.9, 0.12, 0.55), (1.4, 0.2, 0.8), (1, 1)),
    Category("cabinet", (20, 170, 170), (0.6, 0.4, 0.8), (1.2, 0.6, 1.9), (1, 2)),
    Category("plant", (40, 180, 50), (0.3, 0.3, 0.5), (0.5, 0.5, 1.2), (1, 3)),
    Category("box", (40, 80, 230), (0.3, 0.3, 0.25), (0.6, 0.6, 0.5), (2, 5)),
    Category("bookshelf", (115, 65, 25), (0.8, 0.3, 1.6), (1.2, 0.4, 2.0), (1, 1)),
    Category("stool", (230, 40, 200), (0.35, 0.35, 0.45), (0.45, 0.45, 0.7), (2, 3)),
    Category("trash bin", (120, 120, 165), (0.25, 0.25, 0.3), (0.4, 0.4, 0.6), (1, 2)),
]
CATEGORIES: dict[str, Category] = {c.name: c for c in _CATS}
DEFAULT_CATEGORIES = ("chair", "table", "sofa", "bed", "lamp", "tv", "cabinet", "plant", "box", "bookshelf")


@dataclass
class SyntheticScene:
    scene: Scene
    room_dims: np.ndarray  # [3] Lx, Ly, H
    render: RenderResult
    poses: np.ndarray  # [F, 4, 4] float64 camera-to-world
    intrinsics: np.ndarray  # [3, 3]
    seed: int  # the int seed of this scene (also used for its questions)


def resolve_categories(categories: Sequence[str] | None, instances: tuple[int, int] | None = None) -> list[Category]:
    """Named categories (default: DEFAULT_CATEGORIES); `instances` = (min, max) replaces every
    category's own instance range (e.g. wider count ranges so counting needs every frame)."""
    names = list(DEFAULT_CATEGORIES if not categories else categories)
    unknown = [n for n in names if n not in CATEGORIES]
    if unknown:
        raise UsageError(f"unknown synthetic categories {unknown}: choose from {sorted(CATEGORIES)}")
    if len(set(names)) != len(names):
        raise UsageError(f"synthetic categories repeat a name: {names}")
    if instances is not None:
        lo, hi = instances
        if not 1 <= lo <= hi:
            raise UsageError(f"--instances must be MIN,MAX with 1 <= MIN <= MAX, got {lo},{hi}")
        return [replace(CATEGORIES[n], count=(lo, hi)) for n in names]
    return [CATEGORIES[n] for n in names]


def scene_seed_sequence(seed: int, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(int(seed), spawn_key=(int(index),))


# -- camera walk ----------------------------------------------------------------
def camera_walk(room_dims, frames: int, walk: str = "sweep", rng: np.random.Generator | None = None) -> np.ndarray:
    """Camera-to-world poses [frames, 4, 4] for a smooth walk at eye height inside the room."""
    if walk not in WALKS:
        raise UsageError(f"unknown walk {walk!r}: expected one of {WALKS}")
    if walk == "tour":
        raise UsageError("the tour's poses depend on its layout: use layout_tour + tour_poses")
    rng = rng or np.random.default_rng(0)
    lx, ly, _ = (float(x) for x in room_dims)
    t = np.arange(frames) / max(frames, 1)  # [0, 1)
    height = EYE_HEIGHT + rng.uniform(-0.1, 0.1) + 0.02 * np.sin(2 * np.pi * 3 * t + rng.uniform(0, 2 * np.pi))
    pitch = np.radians(-15.0 + 4.0 * np.sin(2 * np.pi * 2 * t + rng.uniform(0, 2 * np.pi)))
    direction = rng.choice([-1.0, 1.0])
    if walk == "sweep":
        long_x = lx >= ly
        half_len = 0.25 * (lx if long_x else ly)
        side = 0.1 * (ly if long_x else lx) * np.sin(2 * np.pi * t + rng.uniform(0, 2 * np.pi))
        along = half_len * (2 * t - 1) * rng.choice([-1.0, 1.0])
        xs, ys = (along, side) if long_x else (side, along)
        yaw = rng.uniform(0, 2 * np.pi) + direction * 2 * np.pi * t
    else:
        angle = rng.uniform(0, 2 * np.pi) + direction * 2 * np.pi * t
        xs, ys = 0.3 * lx * np.cos(angle), 0.3 * ly * np.sin(angle)
        yaw = np.arctan2(-ys, -xs) + np.radians(15.0) * np.sin(2 * np.pi * 2 * t + rng.uniform(0, 2 * np.pi))
        pitch = pitch - np.radians(5.0)
    steps = zip(xs, ys, height, yaw, pitch, strict=True)
    return np.stack([look_pose((x, y, z), a, p) for x, y, z, a, p in steps])


# -- room layout -------------------------------------------------------------------
def _footprint(cx: float, cy: float, yaw: float, w: float, d: float) -> np.ndarray:
    """[4, 2] corners of a rotated rectangle."""
    c, s = math.cos(yaw), math.sin(yaw)
    ax, ay = np.array([c, s]) * w / 2, np.array([-s, c]) * d / 2
    centre = np.array([cx, cy])
    return np.stack([centre + ax + ay, centre - ax + ay, centre - ax - ay, centre + ax - ay])


def _overlaps(cand: np.ndarray, placed: np.ndarray, gap: float) -> bool:
    """Separating-axis test of rectangle `cand` [4, 2] against every rectangle in `placed` [M, 4, 2]."""
    if not len(placed):
        return False
    edges = np.concatenate([np.diff(cand[:3], axis=0)[None].repeat(len(placed), 0), np.diff(placed[:, :3], axis=1)],
                           axis=1)  # [M, 4, 2]
    axes = edges / np.linalg.norm(edges, axis=-1, keepdims=True)
    pa = np.einsum("kc,mac->mak", cand, axes)  # [M, 4 axes, 4 corners]
    pb = np.einsum("mkc,mac->mak", placed, axes)
    separated = (pa.min(-1) >= pb.max(-1) + gap) | (pb.min(-1) >= pa.max(-1) + gap)
    return bool((~separated.any(axis=1)).any())


def _path_distance(points: np.ndarray, cx: float, cy: float, yaw: float, w: float, d: float) -> float:
    """Smallest distance from 2D points [T, 2] to the rotated rectangle."""
    c, s = math.cos(yaw), math.sin(yaw)
    rel = points - np.array([cx, cy])
    local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1]], axis=1)
    outside = np.maximum(np.abs(local) - np.array([w / 2, d / 2]), 0.0)
    return float(np.linalg.norm(outside, axis=1).min())


def layout_room(rng: np.random.Generator, categories: Sequence[Category], path_xy: np.ndarray,
                room_dims, tries: int = 40) -> list[SceneObject]:
    """Place objects of a random subset of `categories`: on the floor, inside the walls,
    non-overlapping, and at least PATH_CLEARANCE from the camera path `path_xy` [T, 2]."""
    lx, ly, _ = (float(x) for x in room_dims)
    n_cats = len(categories)
    k = int(rng.integers(min(4, n_cats), n_cats + 1))
    chosen = [categories[i] for i in sorted(rng.choice(n_cats, size=k, replace=False))]
    objects: list[SceneObject] = []
    placed: list[np.ndarray] = []
    for cat in chosen:
        count = int(rng.integers(cat.count[0], cat.count[1] + 1))
        for _ in range(count):
            w, d, h = rng.uniform(cat.size_min, cat.size_max)
            for _attempt in range(tries):
                if rng.random() < 0.75:
                    yaw = rng.integers(0, 4) * np.pi / 2 + np.radians(rng.uniform(-15, 15))
                else:
                    yaw = rng.uniform(-np.pi, np.pi)
                cx = rng.uniform(-lx / 2, lx / 2)
                cy = rng.uniform(-ly / 2, ly / 2)
                fp = _footprint(cx, cy, yaw, w, d)
                if (np.abs(fp[:, 0]) > lx / 2 - WALL_GAP).any() or (np.abs(fp[:, 1]) > ly / 2 - WALL_GAP).any():
                    continue
                if _path_distance(path_xy, cx, cy, yaw, w, d) < PATH_CLEARANCE:
                    continue
                if _overlaps(fp, np.stack(placed) if placed else np.zeros((0, 4, 2)), OBJECT_GAP):
                    continue
                c, s = math.cos(yaw), math.sin(yaw)
                objects.append(SceneObject(category=cat.name, instance_id=len(objects), centroid=[cx, cy, h / 2],
                                           axes_lengths=[w, d, h],
                                           normalized_axes=[[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]))
                placed.append(fp)
                break
    return objects


def layout_walk(rng: np.random.Generator, categories: Sequence[Category], walk: str, frames: int,
                need: int) -> tuple[np.ndarray, np.ndarray, list[SceneObject]]:
    """Room dims, camera poses and objects for `sweep` / `orbit`: up to 20 room draws, the first
    with `need` objects placed (else the fullest)."""
    best = None
    for _attempt in range(20):
        dims = np.array([rng.uniform(3.0, 8.0), rng.uniform(3.0, 8.0), rng.uniform(2.5, 3.0)])
        # The same walk sampled densely for the clearance check: the layout does not depend on `frames`.
        state = rng.bit_generator.state
        path_xy = camera_walk(dims, 256, walk, rng)[:, :2, 3]
        rng.bit_generator.state = state
        poses = camera_walk(dims, frames, walk, rng)
        objects = layout_room(rng, categories, path_xy, dims)
        if best is None or len(objects) > len(best[2]):
            best = (dims, poses, objects)
        if len(objects) >= need:
            break
    return best


def walk_defaults(walk: str, categories: Sequence[str] | None, stops: int, frames: int) -> tuple[list, float]:
    """(categories, field of view) a walk renders with: the tour's narrow categories and 20 degree
    view unless categories are named. Checks the tour's `stops`."""
    if walk != "tour":
        return list(categories or []), FOV_DEG
    if not 1 <= stops <= frames:
        raise UsageError(f"--stops must be between 1 and --frames ({frames}), got {stops}")
    return list(categories or TOUR_CATEGORIES), TOUR_FOV_DEG


# -- the tour: one object per stop on a ring around the camera ---------------------
def layout_tour(rng: np.random.Generator, categories: Sequence[Category], stops: int) -> tuple[np.ndarray, list]:
    """Room dims and `stops` slots (a SceneObject or None for bare floor) on a ring of radius
    TOUR_RADIUS around the room centre, in the order the camera turns past them.

    2-4 of `categories` are in the room, each with its own count range, as many as fit; the
    slots left over show bare floor. Objects face the centre (+-15 degrees)."""
    side = rng.uniform(2 * TOUR_RADIUS + 1.2, 2 * TOUR_RADIUS + 2.5)
    dims = np.array([side, side * rng.uniform(0.95, 1.05), rng.uniform(2.5, 3.0)])
    n_cats = len(categories)
    k = int(rng.integers(min(2, n_cats), min(4, n_cats) + 1))
    chosen = [categories[i] for i in rng.choice(n_cats, size=k, replace=False)]
    wanted: list[Category] = []
    for cat in chosen:
        count = int(rng.integers(cat.count[0], cat.count[1] + 1))
        if len(wanted) + count <= stops:
            wanted += [cat] * count
    slots: list = [None] * stops
    start = rng.uniform(0, 2 * np.pi)
    direction = rng.choice([-1.0, 1.0])
    angles = start + direction * 2 * np.pi * np.arange(stops) / stops
    wanted = [wanted[i] for i in rng.permutation(len(wanted))]  # categories interleave along the ring
    for slot, cat in zip(sorted(rng.choice(stops, size=len(wanted), replace=False)), wanted, strict=True):
        w, d, h = rng.uniform(cat.size_min, cat.size_max)
        a = angles[slot]
        yaw = a + np.pi / 2 + np.radians(rng.uniform(-15, 15))
        c, sn = math.cos(yaw), math.sin(yaw)
        slots[slot] = SceneObject(category=cat.name, instance_id=-1, centroid=[TOUR_RADIUS * math.cos(a),
                                  TOUR_RADIUS * math.sin(a), h / 2], axes_lengths=[w, d, h],
                                  normalized_axes=[[c, sn, 0.0], [-sn, c, 0.0], [0.0, 0.0, 1.0]])
    for i, obj in enumerate(o for o in slots if o is not None):  # ids in the order the camera meets them
        obj.instance_id = i
    return dims, angles, slots


def tour_poses(angles: np.ndarray, slots: list, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Camera-to-world poses [frames, 4, 4]: stop k holds frames [k*F/S, (k+1)*F/S), looking at
    slot k's object (or the floor where it would stand) with a slow +-2 degree pan."""
    stops = len(angles)
    height = EYE_HEIGHT + rng.uniform(-0.1, 0.1)
    edges = np.round(np.arange(stops + 1) * frames / stops).astype(int)
    poses = []
    for k in range(stops):
        n = edges[k + 1] - edges[k]
        target_z = slots[k].centroid[2] if slots[k] is not None else 0.4
        pitch = -math.atan2(height - target_z, TOUR_RADIUS)
        pan = np.radians(2.0) * (np.linspace(-1, 1, n) if n > 1 else np.zeros(1))
        poses += [look_pose((0.0, 0.0, height), angles[k] + p, pitch) for p in pan]
    return np.stack(poses)


# -- one scene -------------------------------------------------------------------
def synthesize_scene(index: int, seed: int = 0, frames: int = 32, size: int = 64,
                     categories: Sequence[str] | None = None, walk: str = "sweep", fov_deg: float | None = None,
                     fps: float = FPS, min_objects: int = 3,
                     instances: tuple[int, int] | None = None, stops: int = TOUR_STOPS) -> SyntheticScene:
    """Generate, lay out and render scene `index` (name `synth_{index:05d}`) deterministically from `seed`.

    `size` is the frame width and height; objects never visible (fewer than
    `min_visible_pixels` in every frame) are dropped from the Scene annotation. `fov_deg`
    defaults to FOV_DEG (TOUR_FOV_DEG for the tour); `stops` is used by the tour only.
    """
    if frames < 1:
        raise UsageError(f"frames must be >= 1, got {frames}")
    if size < 8:
        raise UsageError(f"size must be >= 8 px, got {size}")
    names, walk_fov = walk_defaults(walk, categories, stops, frames)
    cats = resolve_categories(names, instances)
    fov_deg = fov_deg or walk_fov
    ss = scene_seed_sequence(seed, index)
    rng = np.random.default_rng(ss)
    K = intrinsics_matrix(size, size, fov_deg)
    if walk == "tour":
        dims, angles, slots = layout_tour(rng, cats, stops)
        poses = tour_poses(angles, slots, frames, rng)
        objects = [o for o in slots if o is not None]
    else:
        dims, poses, objects = layout_walk(rng, cats, walk, frames, min(min_objects, sum(c.count[1] for c in cats)))
    result = render_boxes(dims, objects, [CATEGORIES[o.category].rgb for o in objects], poses, K, size, size)
    visible = result.visible(min_visible_pixels(size, size))
    kept = []
    for j, obj in enumerate(objects):
        frames_j = np.flatnonzero(visible[:, j])
        if len(frames_j):
            obj.visible_frames = frames_j
            obj.first_frame = int(frames_j[0])
            kept.append(obj)
    name = f"synth_{index:05d}"
    scene = Scene(
        name=name, dataset=DATASET_NAME, objects=kept, room_size=float(dims[0] * dims[1]),
        room_center=[0.0, 0.0, dims[2] / 2], num_frames=frames, fps=fps, poses=poses,
        extras={"room_dims": [float(x) for x in dims], "walk": walk, "image_size": [size, size],
                "category_vocabulary": [c.name for c in cats],
                "fov_deg": float(fov_deg), "unseen_objects_dropped": len(objects) - len(kept)},
    )
    return SyntheticScene(scene=scene, room_dims=dims, render=result, poses=poses, intrinsics=K,
                          seed=int(ss.generate_state(1)[0]))


# -- dataset -------------------------------------------------------------------
def prepare_synthetic(out: Path, scenes: int = 8, frames: int = 32, size: int = 64, seed: int = 0,
                      categories: Sequence[str] | None = None, walk: str = "sweep", overwrite: bool = False,
                      eval_fraction: float = 0.25, families: Sequence[str] | None = None,
                      fps: float = FPS, instances: tuple[int, int] | None = None, stops: int = TOUR_STOPS) -> dict:
    """Render `scenes` synthetic rooms into a dataset folder `out` (DESIGN section 3); returns the manifest.

    Scenes are `synth_00000`...; the last round(scenes * eval_fraction) are split "eval",
    the rest "train". Odd `size` is rounded up to even (H.264 yuv420p) for video, depth
    and intrinsics alike. Depth is stored as float16 metres. `fps` is the nominal frame
    rate written into the videos and scenes (it sets the seconds of appearance-order questions).
    """
    from vlmem.data.qa import generate_questions
    from vlmem.data.video import write_video
    from vlmem.data.writer import DatasetWriter
    from vlmem.progress import progress_bar

    if scenes < 1:
        raise UsageError(f"--scenes must be >= 1, got {scenes}")
    if not 0.0 <= eval_fraction <= 1.0:
        raise UsageError(f"--eval-fraction must be in [0, 1], got {eval_fraction}")
    if walk not in WALKS:
        raise UsageError(f"unknown --walk {walk!r}: expected one of {WALKS}")
    if size < 8:
        raise UsageError(f"--size must be >= 8 px, got {size}")
    if frames < 1:
        raise UsageError(f"--frames must be >= 1, got {frames}")
    if not fps > 0:
        raise UsageError(f"fps must be > 0, got {fps}")
    names, fov_deg = walk_defaults(walk, categories, stops, frames)
    cats = [c.name for c in resolve_categories(names, instances)]
    render_size = size + (size % 2)
    n_eval = int(round(scenes * eval_fraction))
    options = {"scenes": scenes, "frames": frames, "size": size, "render_size": render_size, "seed": seed,
               "categories": cats, "walk": walk, "eval_fraction": eval_fraction,
               "families": list(families) if families else None, "fps": fps, "fov_deg": fov_deg,
               "depth_dtype": "float16", "instances": list(instances) if instances else None,
               **({"stops": stops} if walk == "tour" else {})}
    with DatasetWriter(out, DATASET_NAME, overwrite, options) as w, progress_bar() as progress:
        task = progress.add_task("synthetic scenes", total=scenes)
        for i in range(scenes):
            split = "eval" if i >= scenes - n_eval else "train"
            synth = synthesize_scene(i, seed=seed, frames=frames, size=render_size, categories=cats, walk=walk,
                                     fps=fps, instances=instances, stops=stops)
            scene = synth.scene
            rel = w.video_relpath(scene.name)
            write_video(w.path(rel), synth.render.rgb, fps=fps)
            w.write_geometry(scene.name, {
                "poses": synth.poses.astype(np.float32),
                "intrinsics": np.repeat(synth.intrinsics[None].astype(np.float32), frames, axis=0),
                "depth": synth.render.depth.astype(np.float16),
            })
            scene.video = rel
            scene.extras["split"] = split
            w.write_scene(scene)
            rows = generate_questions(scene, seed=synth.seed, split=split, video=rel, families=families)
            for row in rows:
                row.setdefault("num_frames", frames)
                row.setdefault("duration", frames / fps)
            if rows:
                w.add_rows(rows)
            else:
                w.skip(scene.name, "no question could be generated for this room")
            progress.advance(task)
        return w.commit()
