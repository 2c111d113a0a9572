"""Long-horizon streams: K synthetic rooms walked one after another in one video, in the spirit
of VSI-SUPER (Cambrian-S, arXiv 2511.04670): continual counting and spatial recall over streams
far longer than what a model trains on.

Each room is the synthetic `tour` (docs/data.md): the camera stands in the middle and stops at
`stops` directions, each showing one object or bare floor. Rooms are concatenated; the stream's
frame f belongs to room f // frames_per_room. Two question families:

* `stream_counting` (numeric): "How many chairs have you seen so far, in all the rooms?" The answer
  counts the visible objects of the category in every room up to the query frame. Eval streams ask
  it at several query times (after 10%, 50% and 100% of the rooms, at the end of a room); train
  streams at the end only, so the ordinary whole-video training pipeline is right for them.
* `stream_recall` (4-option multiple choice): an unusual object (a cyan teddy bear, a category that
  never occurs otherwise) is placed in 4 rooms, each time right after an object of a different
  category on the tour ("by the chair"). "In which order did the places appear?" Asked at the
  end; the options are the true order and 3 other orders of the same 4 places. Needs K >= 4.

Every row carries `query_frame`, the stream frame after which the question is asked (VSC-style
streaming evaluation answers it after reading exactly frames 0..query_frame, docs/evaluation.md).
Stream s of K rooms of a split (0 train, 1 eval) is generated from SeedSequence(seed,
spawn_key=(STREAM_KEY, split, K, s)), its room r from spawn_key=(STREAM_KEY, split, K, s, r): deterministic, and any stream can be rebuilt alone.
The video is written room by room, so a stream of any length never sits in memory whole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vlmem.data.render import intrinsics_matrix, min_visible_pixels, render_boxes
from vlmem.data.scene import SceneObject
from vlmem.data.synthetic import (
    CATEGORIES,
    FPS,
    TOUR_RADIUS,
    layout_tour,
    resolve_categories,
    tour_poses,
    walk_defaults,
)
from vlmem.errors import UsageError

DATASET_NAME = "synthetic_stream"
STREAM_KEY = 0x5354  # keeps stream seeds apart from the room seeds of `prepare-data synthetic`
QUERY_FRACTIONS = (0.1, 0.5, 1.0)
RECALL_OBJECT = "teddy bear"
RECALL_RGB = (0, 235, 255)  # cyan: no tour category is near it
RECALL_SIZE = (0.35, 0.3, 0.45)  # width, depth, height (m)
RECALL_PLACES = 4
COUNT_TEMPLATE = "How many {category}(s) have you seen so far, in all the rooms of this walk?"
RECALL_TEMPLATE = ("A {obj} was placed in {n} different places during this walk. In which order did these "
                   "places appear?")


def _ring_object(rng: np.random.Generator, category: str, angle: float, size=None) -> SceneObject:
    """An object standing on the tour's ring at `angle`, facing the centre (+-15 degrees)."""
    cat = CATEGORIES.get(category)
    w, d, h = size if size is not None else rng.uniform(cat.size_min, cat.size_max)
    yaw = angle + np.pi / 2 + np.radians(rng.uniform(-15, 15))
    c, s = math.cos(yaw), math.sin(yaw)
    return SceneObject(category=category, instance_id=-1,
                       centroid=[TOUR_RADIUS * math.cos(angle), TOUR_RADIUS * math.sin(angle), h / 2],
                       axes_lengths=[w, d, h], normalized_axes=[[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


def recall_plan(rng: np.random.Generator, rooms: int, categories: Sequence[str]) -> dict[int, str]:
    """{room: the category the recall object stands after} for 4 rooms in stream order, or {}
    when the stream has fewer than 4 rooms or fewer than 4 categories."""
    if rooms < RECALL_PLACES or len(categories) < RECALL_PLACES:
        return {}
    where = sorted(rng.choice(rooms, size=RECALL_PLACES, replace=False).tolist())
    places = [categories[i] for i in rng.choice(len(categories), size=RECALL_PLACES, replace=False)]
    return dict(zip(where, places, strict=True))


def render_room(rng: np.random.Generator, cats, stops: int, frames: int, size: int, fov_deg: float,
                place: str | None):
    """(rgb [frames, size, size, 3], visible objects) of one tour room; with `place`, an object of
    that category and the recall object right after it take two neighbouring stops."""
    dims, angles, slots = layout_tour(rng, cats, stops)
    if place is not None:
        k = int(rng.integers(0, stops - 1))
        slots[k] = _ring_object(rng, place, angles[k])
        slots[k + 1] = _ring_object(rng, RECALL_OBJECT, angles[k + 1], RECALL_SIZE)
    poses = tour_poses(angles, slots, frames, rng)
    objects = [o for o in slots if o is not None]
    colours = [RECALL_RGB if o.category == RECALL_OBJECT else CATEGORIES[o.category].rgb for o in objects]
    result = render_boxes(dims, objects, colours, poses, intrinsics_matrix(size, size, fov_deg), size, size)
    visible = result.visible(min_visible_pixels(size, size))
    seen = []
    for j, obj in enumerate(objects):
        frames_j = np.flatnonzero(visible[:, j])
        if len(frames_j):
            obj.visible_frames, obj.first_frame = frames_j, int(frames_j[0])
            seen.append(obj)
    return result.rgb, seen


def query_frames(rooms: int, frames_per_room: int, fractions: Sequence[float]) -> list[int]:
    """The last frame of room ceil(f * rooms) for each fraction f, without repeats, in order."""
    ends = {max(1, math.ceil(f * rooms)) * frames_per_room - 1 for f in fractions}
    return sorted(ends)


def stream_questions(name: str, video: str, split: str, first_seen: list[tuple[int, str]], categories,
                     recall: dict[int, str], recall_frames: list[int], queries: list[int], total: int,
                     fps: float, rng: np.random.Generator) -> list[dict]:
    """QA rows of one stream. `first_seen`: (stream frame, category) of every object seen."""
    rows = []
    seen_at = np.array([f for f, _ in first_seen], dtype=np.int64)
    cats_seen = np.array([c for _, c in first_seen])
    for q in queries:
        for cat in categories:
            n = int(((seen_at <= q) & (cats_seen == cat)).sum())
            if n == 0:  # VSI-Bench counts only what is there (MRA is undefined for 0)
                continue
            rows.append(dict(id=f"{name}_count_{cat.replace(' ', '_')}_{q}", question_type="stream_counting",
                             question=COUNT_TEMPLATE.format(category=cat), options=None, ground_truth=str(n),
                             answer_kind="numeric", query_frame=q))
    if len(recall) == RECALL_PLACES and len(recall_frames) == RECALL_PLACES:
        truth = [f"by the {c}" for c in recall.values()]
        orders = {tuple(truth)}
        while len(orders) < 4:
            orders.add(tuple(truth[i] for i in rng.permutation(RECALL_PLACES)))
        shown = sorted(orders, key=lambda o: rng.random())
        letters = "ABCD"
        rows.append(dict(id=f"{name}_recall", question_type="stream_recall",
                         question=RECALL_TEMPLATE.format(obj=RECALL_OBJECT, n=RECALL_PLACES),
                         options=[f"{letters[i]}. {', '.join(o)}" for i, o in enumerate(shown)],
                         ground_truth=letters[shown.index(tuple(truth))], answer_kind="mc", query_frame=total - 1))
    for r in rows:
        r.update(dataset=DATASET_NAME, scene_name=name, video=video, split=split, num_frames=total,
                 duration=total / fps)
    return rows


def stream_name(split: str, rooms: int, index: int) -> str:
    return f"{split}_k{rooms:04d}_{index:04d}"


def write_stream(w, index: int, rooms: int, seed: int, frames: int, size: int, stops: int, cats, fov_deg: float,
                 fps: float, split: str, fractions: Sequence[float]) -> list[dict]:
    """Render stream `index` of `rooms` rooms into the dataset writer `w`; returns its QA rows."""
    from vlmem.data.scene import Scene
    from vlmem.data.video import VideoWriter

    key = (STREAM_KEY, int(split == "eval"), rooms, index)
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))
    names = [c.name for c in cats]
    recall = recall_plan(rng, rooms, names)
    name = stream_name(split, rooms, index)
    rel = w.video_relpath(name)
    first_seen: list[tuple[int, str]] = []
    recall_frames: list[int] = []
    objects: list[SceneObject] = []
    with VideoWriter(w.path(rel), fps) as video:
        for r in range(rooms):
            room_rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(*key, r)))
            rgb, seen = render_room(room_rng, cats, stops, frames, size, fov_deg, recall.get(r))
            video.write(rgb)
            offset = r * frames
            for obj in seen:
                obj.first_frame += offset
                obj.visible_frames = obj.visible_frames + offset
                obj.instance_id = len(objects)
                objects.append(obj)
                if obj.category == RECALL_OBJECT:
                    recall_frames.append(obj.first_frame)
                else:
                    first_seen.append((obj.first_frame, obj.category))
    total = rooms * frames
    queries = query_frames(rooms, frames, fractions) if split == "eval" else [total - 1]
    rows = stream_questions(name, rel, split, first_seen, names, recall, recall_frames, queries, total, fps, rng)
    scene = Scene(name=name, dataset=DATASET_NAME, objects=objects, room_size=0.0, room_center=[0.0, 0.0, 0.0],
                  num_frames=total, fps=fps, video=rel,
                  extras={"rooms": rooms, "frames_per_room": frames, "walk": "tour", "image_size": [size, size],
                          "category_vocabulary": names, "fov_deg": float(fov_deg), "split": split,
                          "recall_places": list(recall.values()), "recall_frames": recall_frames,
                          "query_frames": queries})
    w.write_scene(scene)
    return rows


def parse_rooms(text: str) -> list[int]:
    """"4,40,400" -> [4, 40, 400]: the train streams' rooms, then every eval length."""
    try:
        values = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--stream-rooms must be comma-separated integers (train rooms first), got {text!r}") from None
    if not values or min(values) < 1:
        raise UsageError(f"--stream-rooms needs at least one number >= 1, got {text!r}")
    return values


def prepare_stream(out: Path, rooms: Sequence[int], streams: int = 64, eval_streams: int = 4, frames: int = 8,
                   size: int = 32, seed: int = 0, stops: int = 8, categories: Sequence[str] | None = None,
                   fps: float = FPS, overwrite: bool = False, fractions: Sequence[float] = QUERY_FRACTIONS) -> dict:
    """`prepare-data synthetic --stream-rooms K_train[,K_eval...]`: `streams` train streams of
    rooms[0] rooms and `eval_streams` eval streams of each length in `rooms` (frames per room =
    `frames`, stops per room = `stops`). Returns the manifest."""
    from vlmem.data.writer import DatasetWriter
    from vlmem.progress import progress_bar

    rooms = list(rooms)
    if streams < 0 or eval_streams < 0 or streams + eval_streams == 0:
        raise UsageError(f"--scenes ({streams}) and --eval-streams ({eval_streams}) must be >= 0, one of them > 0")
    if size < 8:
        raise UsageError(f"--size must be >= 8 px, got {size}")
    names, fov_deg = walk_defaults("tour", categories, stops, frames)
    cats = resolve_categories(names)
    render_size = size + (size % 2)
    plan = [("train", rooms[0], i) for i in range(streams)]
    plan += [("eval", k, i) for k in dict.fromkeys(rooms) for i in range(eval_streams)]
    options = {"stream_rooms": rooms, "scenes": streams, "eval_streams": eval_streams, "frames_per_room": frames,
               "size": size, "render_size": render_size, "seed": seed, "stops": stops,
               "categories": [c.name for c in cats], "fps": fps, "fov_deg": fov_deg, "walk": "tour",
               "query_fractions": list(fractions)}
    with DatasetWriter(out, DATASET_NAME, overwrite, options) as w, progress_bar() as progress:
        task = progress.add_task("synthetic streams", total=sum(k for _, k, _ in plan))
        for split, k, i in plan:
            rows = write_stream(w, i, k, seed, frames, render_size, stops, cats, fov_deg, fps, split, fractions)
            if rows:
                w.add_rows(rows)
            else:
                w.skip(stream_name(split, k, i), "no object was seen in this stream")
            progress.advance(task, k)
        return w.commit()
