"""Question generation: VSI-Bench question families from a Scene (VSTI-Bench camera families in qa_camera).

Templates, filters and thresholds follow the generation scripts VLM-3R ships for its VSI
training data (``vlm_3r_data_process/src/tasks/vsibench/*.py``, ``src/question_templates.py``,
``src/utils/common_utils.py``; read from the verbatim copy of the VLM-3R tree in
``Zhanpeng1202/SpatialReasoner``), with VSI-Bench's benchmark wording where the two differ.
docs/data.md ("Question families") lists every family, its filter and its source.

Answer formats (VSI-Bench): counting, object size, room size, absolute distance are numeric
(null options); the rest are multiple choice with options ``"A. ..."`` and a letter ground
truth. Deterministic: the same scene + seed gives identical rows (one numpy Generator per
family, seeded from ``seed`` and a SHA-256 of the scene name and family).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from vlmem.data.scene import _CORNER_SIGNS, Scene, SceneObject
from vlmem.errors import UsageError

# -- templates (verbatim) -------------------------------------------------------------------------
OBJ_COUNT_TEMPLATE = "How many {category}(s) are in this room?"
OBJ_SIZE_TEMPLATE = (
    "What is the length of the longest dimension (length, width, or height) of the {category}, "
    "measured in centimeters?"
)
ROOM_SIZE_TEMPLATE = (
    "What is the size of this room (in square meters)? \n"
    "If multiple rooms are shown, estimate the size of the combined space."
)
OBJ_ABS_DISTANCE_TEMPLATE = (
    "Measuring from the closest point of each object, what is the direct distance between the "
    "{object1} and the {object2} (in meters)?"
)
OBJ_REL_DISTANCE_TEMPLATE = (
    "Measuring from the closest point of each object, which of these objects "
    "({choice_a}, {choice_b}, {choice_c}, {choice_d}) is the closest to the {category}?"
)
OBJ_REL_DIRECTION_HARD_TEMPLATE = (
    "If I am standing by the {positioning_object} and facing the {orienting_object}, is the "
    "{querying_object} to my front-left, front-right, back-left, or back-right?\n"
    "The directions refer to the quadrants of a Cartesian plane (if I am standing at the origin "
    "and facing along the positive y-axis)."
)
OBJ_REL_DIRECTION_MEDIUM_TEMPLATE = (
    "If I am standing by the {positioning_object} and facing the {orienting_object}, is the "
    "{querying_object} to my left, right, or back?\n"
    "An object is to my back if I would have to turn at least 135 degrees in order to face it."
)
OBJ_REL_DIRECTION_EASY_TEMPLATE = (
    "If I am standing by the {positioning_object} and facing the {orienting_object}, is the "
    "{querying_object} to the left or the right of the {orienting_object}?"
)
OBJ_PRESENCE_TEMPLATE = "Is there a {category} in this room? Answer yes or no."
OBJ_APPEARANCE_ORDER_TEMPLATE = (
    "What will be the first-time appearance order of the following categories in the video: "
    "{choice_a}, {choice_b}, {choice_c}, {choice_d}?"
)

# -- families ---------------------------------------------------------------------------------------
VSI_FAMILIES = (
    "object_counting",
    "object_size_estimation",
    "room_size_estimation",
    "object_abs_distance",
    "object_rel_distance",
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
    "obj_appearance_order",
)
CAMERA_FAMILIES = (
    "camera_obj_abs_dist",
    "camera_displacement",
    "camera_movement_direction",
    "obj_obj_relative_pos_lr",
    "obj_obj_relative_pos_ud",
    "obj_obj_relative_pos_nf",
)
ALL_FAMILIES = VSI_FAMILIES + CAMERA_FAMILIES
# Pre-training families: generated only when named (`--families`), never by default. Object
# presence asks about every category of the dataset's vocabulary (scene.extras
# "category_vocabulary", set by the synthetic generator), present or not: a dense frame-level
# objective that grounds the category names in the frames before counting.
PRETRAIN_FAMILIES = ("object_presence",)
NOT_GENERATED = {
    "route_planning": "VSI-Bench's route-planning questions were written by human annotators "
    "(Thinking in Space, appendix); no rule derives them from the scene metadata, so vlmem does "
    "not generate them",
}
# Per-scene cap when max_per_family is None: VLM-3R's `num_subsample` defaults per script.
DEFAULT_MAX_PER_FAMILY = {
    **{f: 6 for f in VSI_FAMILIES},
    "room_size_estimation": 1,
    "camera_obj_abs_dist": 6,
    "camera_displacement": 6,
    "camera_movement_direction": 5,
    "object_presence": 12,
    "obj_obj_relative_pos_lr": 9,
    "obj_obj_relative_pos_ud": 9,
    "obj_obj_relative_pos_nf": 9,
}
LETTERS = "ABCDEFGH"
# Frame rate used to turn first_frame into seconds when the scene has no fps
# (VLM-3R `common_utils.FPS_LOOKUP`).
FPS_LOOKUP = {"scannet": 24.0, "arkitscenes": 30.0, "scannetpp": 30.0}
APPEARANCE_MARGIN_S = 1  # VLM-3R SAVE_MARGIN: first appearances must differ by more than 1 s
ABS_DISTANCE_MIN = 0.2  # object_abs_distance: skip pairs closer than 0.2 m
REL_DISTANCE_MIN = 0.15  # object_rel_distance: closest option must be >= 0.15 m away
REL_DISTANCE_GAP = 0.15  # ... and no two options within 0.15 m of each other
REL_DIRECTION_PAIR_RANGE = (0.30, 5.0)  # object triples: every pair 0.3 m .. 5 m apart
REL_DIRECTION_ANGLE_MARGIN = 10.0  # degrees from a sector boundary
ENUMERATE_LIMIT = 20000  # above this many candidates, draw random candidates instead


# -- geometry: exact oriented-box distances -----------------------------------------------------------
_EDGES = np.array([(i, j) for i in range(8) for j in range(i + 1, 8)
                   if np.count_nonzero(_CORNER_SIGNS[i] != _CORNER_SIGNS[j]) == 1])  # [12, 2]


def point_box_distance(points: np.ndarray, obj: SceneObject) -> np.ndarray:
    """Euclidean distance from each point [N,3] (or [3]) to the solid oriented box (0 inside)."""
    pts = np.asarray(points, dtype=np.float64)
    local = (pts - obj.centroid) @ obj.normalized_axes.T
    half = obj.axes_lengths / 2.0
    return np.linalg.norm(local - np.clip(local, -half, half), axis=-1)


def _boxes_overlap(a: SceneObject, b: SceneObject) -> bool:
    """Separating-axis test for two oriented boxes (touching counts as overlapping)."""
    axes_a, axes_b = a.normalized_axes, b.normalized_axes
    ha, hb = a.axes_lengths / 2.0, b.axes_lengths / 2.0
    t = b.centroid - a.centroid
    cross = np.cross(axes_a[:, None, :], axes_b[None, :, :]).reshape(9, 3)
    axes = np.concatenate([axes_a, axes_b, cross])  # [15, 3]
    norms = np.linalg.norm(axes, axis=1)
    keep = norms > 1e-9
    axes = axes[keep] / norms[keep, None]
    ra = np.abs(axes @ axes_a.T) @ ha
    rb = np.abs(axes @ axes_b.T) @ hb
    return bool(np.all(np.abs(axes @ t) <= ra + rb + 1e-12))


def _segment_distances(p1: np.ndarray, d1: np.ndarray, q1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """Closest distance between segments p1+s*d1 and q1+t*d2 (s,t in [0,1]), broadcast (Ericson 5.1.9)."""
    r = p1 - q1
    a = np.sum(d1 * d1, -1)
    e = np.sum(d2 * d2, -1)
    b = np.sum(d1 * d2, -1)
    c = np.sum(d1 * r, -1)
    f = np.sum(d2 * r, -1)
    a, e, b, c, f = np.broadcast_arrays(a, e, b, c, f)
    denom = a * e - b * b
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(denom > 1e-12, np.clip((b * f - c * e) / denom, 0.0, 1.0), 0.0)
        t = (b * s + f) / e
        s = np.where(t < 0.0, np.clip(-c / a, 0.0, 1.0), np.where(t > 1.0, np.clip((b - c) / a, 0.0, 1.0), s))
        t = np.clip(t, 0.0, 1.0)
        dist = np.linalg.norm(p1 + d1 * s[..., None] - (q1 + d2 * t[..., None]), axis=-1)
    degenerate = (a < 1e-12) | (e < 1e-12)  # zero-length edges are covered by the vertex tests
    return np.where(degenerate | ~np.isfinite(dist), np.inf, dist)


def box_distance(a: SceneObject, b: SceneObject) -> float:
    """Exact closest distance between two solid oriented boxes (0 when they overlap).

    For disjoint convex polytopes the minimum is attained vertex-to-solid or edge-to-edge,
    so it is the minimum of the 16 corner-to-box distances and the 144 edge-pair distances.
    """
    if _boxes_overlap(a, b):
        return 0.0
    ca, cb = a.corners(), b.corners()
    best = min(float(point_box_distance(ca, b).min()), float(point_box_distance(cb, a).min()))
    pa, da = ca[_EDGES[:, 0]], ca[_EDGES[:, 1]] - ca[_EDGES[:, 0]]
    pb, db = cb[_EDGES[:, 0]], cb[_EDGES[:, 1]] - cb[_EDGES[:, 0]]
    edge = _segment_distances(pa[:, None], da[:, None], pb[None], db[None])
    return float(min(best, edge.min()))


# -- generation context ------------------------------------------------------------------------------
@dataclass
class Question:
    question: str
    ground_truth: str
    answer_kind: str
    options: list[str] | None = None


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def fmt_1(x: float) -> str:
    return f"{round(float(x), 1):.1f}"


@dataclass
class Context:
    scene: Scene
    rng: np.random.Generator
    cap: int
    excluded: frozenset[str] = frozenset()
    _dist: dict = field(default_factory=dict)

    # categories usable in questions (annotation-inconsistent ones are excluded)
    def groups(self) -> dict[str, list[SceneObject]]:
        return {c: objs for c, objs in self.scene.by_category().items() if c not in self.excluded}

    def singles(self) -> dict[str, SceneObject]:
        return {c: objs[0] for c, objs in self.groups().items() if len(objs) == 1}

    def obj_distance(self, a: SceneObject, b: SceneObject) -> float:
        key = (id(a), id(b)) if id(a) < id(b) else (id(b), id(a))
        if key not in self._dist:
            self._dist[key] = box_distance(a, b)
        return self._dist[key]

    def category_distance(self, cat1: str, cat2: str) -> float:
        """Closest distance between any instance of cat1 and any instance of cat2."""
        g = self.scene.by_category()
        return min(self.obj_distance(a, b) for a in g[cat1] for b in g[cat2])

    def mc(self, choices: list[str], correct: str) -> tuple[list[str], str, list[str]]:
        """Seeded shuffle: (formatted options, letter, shuffled texts)."""
        order = self.rng.permutation(len(choices))
        texts = [choices[i] for i in order]
        letter = LETTERS[texts.index(correct)]
        return [f"{LETTERS[i]}. {t}" for i, t in enumerate(texts)], letter, texts

    def shuffled(self, items: Sequence) -> list:
        return [items[i] for i in self.rng.permutation(len(items))]

    def candidates(self, space: Sequence, k: int) -> Iterator[tuple]:
        """Shuffled k-combinations of `space` (all of them, or random draws when there are many)."""
        n = len(space)
        if n < k:
            return
        if math.comb(n, k) <= ENUMERATE_LIMIT:
            yield from self.shuffled(list(itertools.combinations(space, k)))
            return
        seen: set[tuple] = set()
        for _ in range(max(200, 50 * self.cap)):
            idx = tuple(sorted(self.rng.choice(n, size=k, replace=False).tolist()))
            if idx not in seen:
                seen.add(idx)
                yield tuple(space[i] for i in idx)


# -- VSI-Bench families ------------------------------------------------------------------------------
def gen_object_counting(ctx: Context) -> Iterator[Question]:
    groups = ctx.groups()
    for cat in ctx.shuffled(sorted(groups)):
        if len(groups[cat]) > 1:  # VLM-3R get_obj_count_qa.py: skip categories with count <= 1
            yield Question(OBJ_COUNT_TEMPLATE.format(category=cat), str(len(groups[cat])), "numeric")


def gen_object_size(ctx: Context) -> Iterator[Question]:
    singles = ctx.singles()
    for cat in ctx.shuffled(sorted(singles)):
        length_cm = round(singles[cat].longest_axis * 100)
        yield Question(OBJ_SIZE_TEMPLATE.format(category=cat), str(int(length_cm)), "numeric")


def gen_room_size(ctx: Context) -> Iterator[Question]:
    if math.isfinite(ctx.scene.room_size) and ctx.scene.room_size > 0:
        yield Question(ROOM_SIZE_TEMPLATE, fmt_1(ctx.scene.room_size), "numeric")


def gen_object_abs_distance(ctx: Context) -> Iterator[Question]:
    singles = ctx.singles()
    pairs = list(itertools.combinations(sorted(singles), 2))
    for c1, c2 in ctx.shuffled(pairs):
        dist = round(ctx.obj_distance(singles[c1], singles[c2]), 1)
        if dist < ABS_DISTANCE_MIN:
            continue
        first, second = (c1, c2) if ctx.rng.random() < 0.5 else (c2, c1)
        yield Question(OBJ_ABS_DISTANCE_TEMPLATE.format(object1=first, object2=second), fmt_1(dist), "numeric")


def _rel_distance_candidates(ctx: Context, groups: dict, singles: list[str]) -> Iterator[tuple[str, tuple]]:
    """(primary, 4 option categories): all of them shuffled, or random draws when there are many."""
    others = {p: sorted(set(groups) - {p}) for p in singles}
    total = sum(math.comb(len(o), 4) for o in others.values())
    if total <= ENUMERATE_LIMIT:
        every = [(p, combo) for p in singles for combo in itertools.combinations(others[p], 4)]
        yield from ctx.shuffled(every)
        return
    seen: set = set()
    for _ in range(max(200, 50 * ctx.cap)):
        p = singles[int(ctx.rng.integers(len(singles)))]
        pool = others[p]
        combo = tuple(pool[i] for i in sorted(ctx.rng.choice(len(pool), size=4, replace=False).tolist()))
        if (p, combo) not in seen:
            seen.add((p, combo))
            yield p, combo


def gen_object_rel_distance(ctx: Context) -> Iterator[Question]:
    groups = ctx.groups()
    singles = sorted(ctx.singles())
    # VLM-3R get_obj_rel_distance_v1_qa.py: >= 5 categories and a single-instance primary
    if len(groups) < 5 or not singles:
        return
    for primary, combo in _rel_distance_candidates(ctx, groups, singles):
        choices = list(combo)
        dists = [ctx.category_distance(c, primary) for c in choices]
        if min(dists) < REL_DISTANCE_MIN:
            continue
        if any(abs(x - y) <= REL_DISTANCE_GAP for x, y in itertools.combinations(dists, 2)):
            continue
        correct = choices[int(np.argmin(dists))]
        options, letter, texts = ctx.mc(choices, correct)
        q = OBJ_REL_DISTANCE_TEMPLATE.format(choice_a=texts[0], choice_b=texts[1], choice_c=texts[2],
                                             choice_d=texts[3], category=primary)
        yield Question(q, letter, "mc", options)


def direction_angles(positioning: SceneObject, orienting: SceneObject, querying: SceneObject) -> np.ndarray | None:
    """Counter-clockwise angles (degrees, [0, 360)) in the floor plane from the facing direction
    (positioning -> orienting centroid) to the querying centroid and its 8 corners.
    VLM-3R get_obj_rel_direction_v*_qa.py `calculate_angle` (world z is up)."""
    origin = positioning.centroid[:2]
    v1 = orienting.centroid[:2] - origin
    pts = np.vstack([querying.centroid[None], querying.corners()])[:, :2] - origin
    n1, n2 = np.linalg.norm(v1), np.linalg.norm(pts, axis=1)
    if n1 < 1e-9 or (n2 < 1e-9).any():
        return None
    ang = np.arccos(np.clip(pts @ v1 / (n1 * n2), -1.0, 1.0))
    cross = v1[0] * pts[:, 1] - v1[1] * pts[:, 0]
    ang = np.where(cross >= 0.0, ang, 2 * math.pi - ang)
    return np.degrees(ang)


def rel_direction_answer(level: str, angles: np.ndarray) -> str | None:
    """The answer for one level, or None when ambiguous (the VLM-3R filters)."""
    if level == "hard":
        quadrants = angles // 90
        if np.count_nonzero(quadrants[1:] != quadrants[0]) > 2:
            return None
        if 90 - angles[0] % 90 < REL_DIRECTION_ANGLE_MARGIN:
            return None
        a = angles[0]
        return "front-right" if a >= 270 else "back-right" if a >= 180 else "back-left" if a >= 90 else "front-left"
    sectors = np.digitize(angles, bins=[0, 135, 225, 360])
    if np.count_nonzero(sectors[1:] != sectors[0]) > 2:
        return None
    if np.abs(angles[0] - np.array([0, 135, 225, 360])).min() < REL_DIRECTION_ANGLE_MARGIN:
        return None
    answer = {1: "left", 2: "back", 3: "right"}.get(int(sectors[0]))
    if level == "easy" and answer == "back":
        return None
    return answer


_DIRECTION_OPTIONS = {
    "easy": (["left", "right"], OBJ_REL_DIRECTION_EASY_TEMPLATE),
    "medium": (["left", "right", "back"], OBJ_REL_DIRECTION_MEDIUM_TEMPLATE),
    "hard": (["front-left", "front-right", "back-left", "back-right"], OBJ_REL_DIRECTION_HARD_TEMPLATE),
}


def _gen_rel_direction(level: str) -> Callable[[Context], Iterator[Question]]:
    def gen(ctx: Context) -> Iterator[Question]:
        singles = ctx.singles()
        if len(singles) < 3:
            return
        lo, hi = REL_DIRECTION_PAIR_RANGE
        triple_ok: dict[tuple, bool] = {}
        choices, template = _DIRECTION_OPTIONS[level]
        for triple in ctx.candidates(sorted(singles), 3):
            if triple not in triple_ok:
                dists = [ctx.obj_distance(singles[x], singles[y]) for x, y in itertools.combinations(triple, 2)]
                triple_ok[triple] = all(lo <= d <= hi for d in dists)
            if not triple_ok[triple]:
                continue
            t = triple
            perms = [(t[0], t[1], t[2]), (t[0], t[2], t[1]), (t[1], t[0], t[2])]
            for pos, ori, qry in ctx.shuffled(perms):
                angles = direction_angles(singles[pos], singles[ori], singles[qry])
                answer = None if angles is None else rel_direction_answer(level, angles)
                if answer is None:
                    continue
                options, letter, _ = ctx.mc(list(choices), answer)
                q = template.format(positioning_object=pos, orienting_object=ori, querying_object=qry)
                yield Question(q, letter, "mc", options)
                break  # one orientation per triple keeps the questions varied
    return gen


def first_appearance_seconds(scene: Scene, excluded: frozenset[str] = frozenset()) -> dict[str, int]:
    """Category -> first-appearance time in whole seconds (VLM-3R `calculate_first_appearance_time`)."""
    fps = scene.fps or FPS_LOOKUP.get(scene.dataset)
    if not fps:
        return {}
    times: dict[str, int] = {}
    for cat, objs in scene.by_category().items():
        frames = [o.first_frame for o in objs if o.first_frame is not None]
        if frames and cat not in excluded:
            times[cat] = round(min(frames) / fps)
    return times


def gen_appearance_order(ctx: Context) -> Iterator[Question]:
    times = first_appearance_seconds(ctx.scene, ctx.excluded)
    if len(times) < 4:
        return
    for combo in ctx.candidates(sorted(times), 4):
        if any(abs(times[a] - times[b]) <= APPEARANCE_MARGIN_S for a, b in itertools.combinations(combo, 2)):
            continue
        ordered = sorted(combo, key=lambda c: times[c])
        gt = ", ".join(ordered)
        wrong: list[str] = []
        for _ in range(100):
            s = ", ".join(ctx.shuffled(list(combo)))
            if s != gt and s not in wrong:
                wrong.append(s)
            if len(wrong) == 3:
                break
        if len(wrong) < 3:
            continue
        options, letter, _ = ctx.mc([gt, *wrong], gt)
        mention = ctx.shuffled(list(combo))
        q = OBJ_APPEARANCE_ORDER_TEMPLATE.format(choice_a=mention[0], choice_b=mention[1],
                                                 choice_c=mention[2], choice_d=mention[3])
        yield Question(q, letter, "mc", options)


def gen_object_presence(ctx: Context) -> Iterator[Question]:
    groups = ctx.groups()
    vocabulary = [c for c in ctx.scene.extras.get("category_vocabulary", []) or [] if c not in ctx.excluded]
    for cat in ctx.shuffled(sorted(vocabulary)):
        yield Question(OBJ_PRESENCE_TEMPLATE.format(category=cat), "yes" if cat in groups else "no", "open")


def _vsi_generators() -> dict[str, Callable[[Context], Iterator[Question]]]:
    return {
        "object_counting": gen_object_counting,
        "object_size_estimation": gen_object_size,
        "room_size_estimation": gen_room_size,
        "object_abs_distance": gen_object_abs_distance,
        "object_rel_distance": gen_object_rel_distance,
        "object_rel_direction_easy": _gen_rel_direction("easy"),
        "object_rel_direction_medium": _gen_rel_direction("medium"),
        "object_rel_direction_hard": _gen_rel_direction("hard"),
        "obj_appearance_order": gen_appearance_order,
    }


def generators() -> dict[str, Callable[[Context], Iterator[Question]]]:
    from vlmem.data.qa_camera import camera_generators

    return {**_vsi_generators(), **camera_generators(), "object_presence": gen_object_presence}


# -- public entry point ------------------------------------------------------------------------------
def _check_families(families: Sequence[str] | None) -> list[str]:
    if families is None:
        return list(ALL_FAMILIES)
    if isinstance(families, str):
        families = [families]
    chosen: list[str] = []
    for f in families:
        if f in NOT_GENERATED:
            raise UsageError(f"question family {f!r} is not generated: {NOT_GENERATED[f]}")
        if f not in ALL_FAMILIES + PRETRAIN_FAMILIES:
            raise UsageError(f"unknown question family {f!r}; valid families: "
                             f"{', '.join(ALL_FAMILIES + PRETRAIN_FAMILIES)}")
        if f not in chosen:
            chosen.append(f)
    return chosen


def _video_column(scene: Scene, video: str | None) -> str:
    if video is not None:
        return video
    if scene.video and not scene.video.startswith("/") and "://" not in scene.video:
        return scene.video
    return ""


def generate_questions(
    scene: Scene,
    seed: int = 0,
    families: Sequence[str] | None = None,
    split: str = "train",
    video: str | None = None,
    max_per_family: int | None = None,
) -> list[dict]:
    """QA rows (the qa.parquet shape, `vlmem.data.writer.QA_SCHEMA`) for one scene.

    `families`: subset of `ALL_FAMILIES` (default: all; camera families need `scene.poses`).
    `max_per_family`: questions per family for this scene; None = VLM-3R's per-scene default
    (`DEFAULT_MAX_PER_FAMILY`: 6, room size 1, ...). `video`: the row's video path (relative
    to the dataset folder); default: `scene.video` when it is relative, else "".
    Categories listed in `scene.extras["exclude_categories"]` (annotation inconsistencies found
    by a converter) are never asked about.
    """
    chosen = _check_families(families)
    if max_per_family is not None and max_per_family < 0:
        raise UsageError(f"max_per_family must be >= 0 (got {max_per_family})")
    table = generators()
    excluded = frozenset(scene.extras.get("exclude_categories", []) or [])
    video_col = _video_column(scene, video)
    num_frames = int(scene.num_frames) if scene.num_frames is not None else None
    duration = float(scene.duration) if scene.duration is not None else None
    rows: list[dict] = []
    for family in chosen:
        cap = DEFAULT_MAX_PER_FAMILY[family] if max_per_family is None else int(max_per_family)
        if cap == 0:
            continue
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, stable_hash(f"{scene.name}\x00{family}")])
        ctx = Context(scene=scene, rng=rng, cap=cap, excluded=excluded)
        seen: set[str] = set()
        for q in table[family](ctx):
            key = q.question + "\x00" + "|".join(sorted(q.options or []))
            if key in seen:
                continue
            seen.add(key)
            rows.append({
                "id": f"{scene.name}-{family}-{len(seen) - 1}",
                "dataset": scene.dataset,
                "scene_name": scene.name,
                "question_type": family,
                "question": q.question,
                "options": q.options,
                "ground_truth": q.ground_truth,
                "answer_kind": q.answer_kind,
                "video": video_col,
                "split": split,
                "num_frames": num_frames,
                "duration": duration,
            })
            if len(seen) >= cap:
                break
    return rows


def mc_answer_text(row: dict) -> str | None:
    """The option text behind a multiple-choice row's letter (None if the letter is not an option)."""
    for opt in row.get("options") or []:
        letter, _, text = opt.partition(". ")
        if letter == row["ground_truth"]:
            return text
    return None
