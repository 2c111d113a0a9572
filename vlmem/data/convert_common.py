"""Helpers shared by the real-dataset converters (ScanNet, ARKitScenes, ...).

Pure numpy: 2D convex hull, minimum-area rectangle, z-rotated OBBs from points,
floor-area estimate, PLY vertex reading, per-frame visibility by projection with a
depth test, and video writing (through `vlmem.data.video` when present, PyAV otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vlmem.errors import DataError

# -- 2D geometry ---------------------------------------------------------------


def convex_hull_2d(points: np.ndarray) -> np.ndarray:
    """Convex hull of [N, 2] points, counter-clockwise, [H, 2] (Andrew's monotone chain)."""
    pts = np.unique(np.asarray(points, dtype=np.float64).reshape(-1, 2), axis=0)
    if len(pts) < 3:
        return pts
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]

    def cross(o, a, b) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in pts[::-1]:
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def polygon_area(poly: np.ndarray) -> float:
    poly = np.asarray(poly, dtype=np.float64)
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def min_area_rectangle(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Minimum-area enclosing rectangle of [N, 2] points (rotating calipers over hull edges).

    Returns (center [2], lengths [2] along (u, v), angle of u in radians).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    hull = convex_hull_2d(pts)
    if len(hull) < 3:
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        return (lo + hi) / 2, hi - lo, 0.0
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.unique(np.mod(np.arctan2(edges[:, 1], edges[:, 0]), np.pi / 2))
    best = None
    for a in angles:
        c, s = np.cos(a), np.sin(a)
        rot = np.array([[c, s], [-s, c]])  # rows: u, v
        proj = hull @ rot.T
        lo, hi = proj.min(axis=0), proj.max(axis=0)
        area = float(np.prod(hi - lo))
        if best is None or area < best[0] - 1e-12:
            best = (area, a, lo, hi, rot)
    _, a, lo, hi, rot = best
    center = ((lo + hi) / 2) @ rot
    return center, hi - lo, float(a)


def obb_from_points(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gravity-aligned oriented box of [N, 3] points (z up): rotation about z only.

    The xy footprint is the minimum-area rectangle of the points' xy; z spans min..max.
    The longer horizontal side becomes axis 0. Returns (centroid [3], axes_lengths [3],
    normalized_axes [3, 3] whose ROWS are the box axes, right-handed, third row = +z).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(pts) == 0:
        raise ValueError("no points")
    center2, lengths2, angle = min_area_rectangle(pts[:, :2])
    u = np.array([np.cos(angle), np.sin(angle), 0.0])
    v = np.array([-np.sin(angle), np.cos(angle), 0.0])
    lu, lv = float(lengths2[0]), float(lengths2[1])
    if lv > lu:
        u, v, lu, lv = v, -u, lv, lu  # keep right-handed: (v, -u, z)
    zlo, zhi = pts[:, 2].min(), pts[:, 2].max()
    centroid = np.array([center2[0], center2[1], (zlo + zhi) / 2])
    axes = np.stack([u, v, np.array([0.0, 0.0, 1.0])])
    return centroid, np.array([lu, lv, zhi - zlo]), axes


def floor_area(points_xy: np.ndarray, cell: float = 0.1, close_cells: int = 2) -> float:
    """Floor area (m^2) of a room from the xy of its mesh vertices / point cloud.

    Occupancy grid of `cell` metres, morphological closing by `close_cells` cells (bridges
    gaps such as doorways and unscanned strips), interior holes filled (furniture footprint,
    unobserved floor); cells on the outline count half (points sit on cell centres). Close to an alpha shape with alpha ~ 1/(cell*close_cells) (VSI-Bench
    used alphashape with alpha=5 on the mesh xy) and, unlike a convex hull, it does not
    count the empty corner of an L-shaped room.
    """
    xy = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) < 3:
        return 0.0
    pad = close_cells + 2
    lo = xy.min(axis=0)
    idx = np.floor((xy - lo) / cell).astype(np.int64) + pad
    shape = tuple(idx.max(axis=0) + pad + 1)
    if shape[0] * shape[1] > 25_000_000:  # absurdly large extent (bad units): fall back to the hull
        return polygon_area(convex_hull_2d(xy))
    grid = np.zeros(shape, dtype=bool)
    grid[idx[:, 0], idx[:, 1]] = True
    grid = _erode(_dilate(grid, close_cells), close_cells)
    # flood-fill the outside from the border; whatever is not outside is floor
    outside = np.zeros_like(grid)
    outside[0, :] = outside[-1, :] = outside[:, 0] = outside[:, -1] = True
    outside &= ~grid
    free = ~grid
    while True:
        grown = _dilate(outside, 1) & free
        if (grown == outside).all():
            break
        outside = grown
    inside = ~outside
    boundary = inside & _dilate(outside, 1)  # cells straddling the outline count half
    return float((inside.sum() - 0.5 * boundary.sum()) * cell * cell)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(r):
        m = out.copy()
        m[1:, :] |= out[:-1, :]
        m[:-1, :] |= out[1:, :]
        m[:, 1:] |= out[:, :-1]
        m[:, :-1] |= out[:, 1:]
        out = m
    return out


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    return ~_dilate(~mask, r)


def room_center(points: np.ndarray) -> np.ndarray:
    """Centre of the room: centre of the xy minimum-area rectangle, z mid-height."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    c2, _, _ = min_area_rectangle(pts[:, :2])
    return np.array([c2[0], c2[1], (pts[:, 2].min() + pts[:, 2].max()) / 2])


def box_surface_points(centroid, axes_lengths, normalized_axes, n: int = 6) -> np.ndarray:
    """Points on the 6 faces of an OBB (n x n per face), [6*n*n, 3]; rows of normalized_axes are axes."""
    g = np.linspace(-0.5, 0.5, n)
    a, b = np.meshgrid(g, g, indexing="ij")
    a, b = a.ravel(), b.ravel()
    faces = []
    for axis in range(3):
        o1, o2 = [i for i in range(3) if i != axis]
        for sign in (-0.5, 0.5):
            local = np.zeros((len(a), 3))
            local[:, axis] = sign
            local[:, o1] = a
            local[:, o2] = b
            faces.append(local)
    local = np.concatenate(faces) * np.asarray(axes_lengths, dtype=np.float64)
    return np.asarray(centroid, dtype=np.float64) + local @ np.asarray(normalized_axes, dtype=np.float64).reshape(3, 3)


# -- visibility ----------------------------------------------------------------


def visible_frames(points: np.ndarray, poses: np.ndarray, intrinsics: np.ndarray, depths: np.ndarray,
                   tol: float = 0.15, min_points: int = 3, min_fraction: float = 0.05,
                   max_points: int = 4000, seed: int = 0) -> np.ndarray:
    """Frame indices where an object (its world points) is seen.

    A point counts in frame f when it projects inside the depth image in front of the
    camera (z > 0.05 m), the sensor depth there is valid (> 0) and the point is not
    occluded (z <= depth + tol). The object is visible when at least `min_points` and at
    least `min_fraction` of its points count. poses: [F,4,4] camera-to-world (OpenCV
    camera: x right, y down, z forward); intrinsics [F,3,3] of the depth maps [F,H,W] (m).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(pts) > max_points:
        pts = pts[np.random.default_rng(seed).choice(len(pts), max_points, replace=False)]
    if len(pts) == 0:
        return np.zeros(0, dtype=np.int64)
    hom = np.concatenate([pts, np.ones((len(pts), 1))], axis=1)
    out = []
    height, width = depths.shape[1:3]
    need = max(min_points, int(np.ceil(min_fraction * len(pts))))
    for f in range(len(poses)):
        w2c = np.linalg.inv(np.asarray(poses[f], dtype=np.float64))
        cam = hom @ w2c.T
        z = cam[:, 2]
        front = z > 0.05
        if front.sum() < need:
            continue
        k = intrinsics[f]
        u = k[0, 0] * cam[front, 0] / z[front] + k[0, 2]
        v = k[1, 1] * cam[front, 1] / z[front] + k[1, 2]
        ui, vi = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
        inside = (ui >= 0) & (ui < width) & (vi >= 0) & (vi < height)
        if inside.sum() < need:
            continue
        d = depths[f][vi[inside], ui[inside]].astype(np.float64)
        ok = (d > 0) & (z[front][inside] <= d + tol)
        if ok.sum() >= need:
            out.append(f)
    return np.asarray(out, dtype=np.int64)


# -- frames / video --------------------------------------------------------------


def sample_indices(num_frames: int, n: int) -> np.ndarray:
    """Uniform sample of n distinct indices in [0, num_frames) (all when n >= num_frames).

    Same positions as `vlmem.data.video.sample_frame_indices` (lmms-eval's truncated linspace).
    """
    if n >= num_frames:
        return np.arange(num_frames, dtype=np.int64)
    try:
        from vlmem.data.video import sample_frame_indices
    except ImportError:
        return np.unique(np.linspace(0, num_frames - 1, n, dtype=int)).astype(np.int64)
    return np.unique(np.asarray(sample_frame_indices(num_frames, n), dtype=np.int64))


def resized_shape(height: int, width: int, size: int | None) -> tuple[int, int]:
    """(h, w) with the longer side = size (aspect kept, even dimensions for H.264)."""
    if size is None:
        h, w = height, width
    else:
        scale = size / max(height, width)
        h, w = max(2, round(height * scale)), max(2, round(width * scale))
    return h - h % 2, w - w % 2


def resize_rgb(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if img.shape[:2] == tuple(hw):
        return img
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((hw[1], hw[0]), Image.BILINEAR))


def resize_depth(depth: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize (never blends depths across edges)."""
    if depth.shape[:2] == tuple(hw):
        return depth
    h0, w0 = depth.shape[:2]
    rows = np.minimum(((np.arange(hw[0]) + 0.5) * h0 / hw[0]).astype(np.int64), h0 - 1)
    cols = np.minimum(((np.arange(hw[1]) + 0.5) * w0 / hw[1]).astype(np.int64), w0 - 1)
    return depth[rows][:, cols]


def scale_intrinsics(k: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    k = np.array(k, dtype=np.float64)
    sy, sx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
    k[0, 0] *= sx
    k[0, 2] *= sx
    k[1, 1] *= sy
    k[1, 2] *= sy
    return k


def video_fps(num_written: int, duration_s: float | None) -> float:
    """fps that keeps the video's duration equal to the recording's (min 0.1 fps)."""
    if not duration_s or duration_s <= 0:
        return 1.0
    return max(0.1, round(num_written / duration_s, 3))


# -- PLY -------------------------------------------------------------------------

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def read_ply_vertices(path: Path) -> np.ndarray:
    """x, y, z of the `vertex` element of a PLY file (ascii or binary), [N, 3] float64.

    Enough of the PLY spec for ScanNet `_vh_clean_2.ply` (binary_little_endian, vertex
    first) and ARKitScenes meshes; elements before `vertex` with list properties are
    walked through for binary files.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read PLY ({exc})") from None
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise DataError(f"{path}: not a PLY file (no 'ply' magic / 'end_header')")
    nl = data.find(b"\n", end)
    header = data[:end].decode("ascii", errors="replace").splitlines()
    body = data[nl + 1:]
    fmt = None
    elements: list[dict] = []
    for line in header:
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "format":
            fmt = tok[1]
        elif tok[0] == "element":
            elements.append({"name": tok[1], "count": int(tok[2]), "props": []})
        elif tok[0] == "property" and elements:
            if tok[1] == "list":
                elements[-1]["props"].append((tok[4], "list", _PLY_TYPES.get(tok[2]), _PLY_TYPES.get(tok[3])))
            else:
                elements[-1]["props"].append((tok[2], _PLY_TYPES.get(tok[1]), None, None))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise DataError(f"{path}: unsupported PLY format {fmt!r}")
    names = [e["name"] for e in elements]
    if "vertex" not in names:
        raise DataError(f"{path}: PLY has no 'vertex' element")
    vertex = elements[names.index("vertex")]
    pnames = [p[0] for p in vertex["props"]]
    if not {"x", "y", "z"} <= set(pnames):
        raise DataError(f"{path}: PLY vertex element lacks x/y/z properties")
    if any(p[1] is None for p in vertex["props"]):
        raise DataError(f"{path}: PLY vertex element has an unknown property type")

    if fmt == "ascii":
        lines = body.decode("ascii", errors="replace").splitlines()
        start = sum(e["count"] for e in elements[: names.index("vertex")])
        rows = lines[start:start + vertex["count"]]
        if len(rows) < vertex["count"]:
            raise DataError(f"{path}: PLY is truncated ({len(rows)} of {vertex['count']} vertices)")
        try:
            arr = np.array([[float(t) for t in r.split()[: len(pnames)]] for r in rows], dtype=np.float64)
        except ValueError as exc:
            raise DataError(f"{path}: bad ascii PLY vertex line ({exc})") from None
        arr = arr.reshape(-1, len(pnames))
        return arr[:, [pnames.index(c) for c in "xyz"]]

    endian = "<" if fmt == "binary_little_endian" else ">"
    offset = 0
    for el in elements[: names.index("vertex")]:
        offset = _skip_binary_element(path, body, offset, el, endian)
    if any(p[1] == "list" for p in vertex["props"]):
        raise DataError(f"{path}: list properties in the PLY vertex element are not supported")
    dtype = np.dtype([(p[0], endian + p[1]) for p in vertex["props"]])
    need = dtype.itemsize * vertex["count"]
    if len(body) - offset < need:
        raise DataError(f"{path}: PLY is truncated (vertex data needs {need} bytes, {len(body) - offset} left)")
    rec = np.frombuffer(body, dtype=dtype, count=vertex["count"], offset=offset)
    return np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float64)


def _skip_binary_element(path: Path, body: bytes, offset: int, el: dict, endian: str) -> int:
    if not any(p[1] == "list" for p in el["props"]):
        size = sum(np.dtype(p[1]).itemsize for p in el["props"])
        return offset + size * el["count"]
    for _ in range(el["count"]):
        for _, kind, count_t, item_t in el["props"]:
            if kind == "list":
                n = int(np.frombuffer(body, dtype=endian + count_t, count=1, offset=offset)[0])
                offset += np.dtype(count_t).itemsize + n * np.dtype(item_t).itemsize
            else:
                offset += np.dtype(kind).itemsize
        if offset > len(body):
            raise DataError(f"{path}: PLY is truncated in element {el['name']!r}")
    return offset


# -- misc --------------------------------------------------------------------------


def natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def select(items: Sequence[str], wanted: Sequence[str] | None, what: str, where: Path) -> list[str]:
    """Filter `items` by the user's list; names not found raise a UsageError naming them."""
    from vlmem.errors import UsageError

    if wanted is None:
        return list(items)
    missing = [w for w in wanted if w not in items]
    if missing:
        raise UsageError(f"{where}: {what} not found: {', '.join(missing)}")
    return [i for i in items if i in set(wanted)]


def write_converted(w, items: Sequence[Path], convert, seed: int, split: str, label: str, tally: str) -> dict[str, int]:
    """The per-scene loop shared by the ScanNet and ARKitScenes converters.

    `convert(folder, rel_video)` returns an object with `.scene`, `.frames`, `.geometry` and a
    counts dict named `tally`; a `DataError` or a scene without questions skips that item
    with its reason. Returns the summed tallies.
    """
    from vlmem.data.qa import generate_questions
    from vlmem.data.video import write_video
    from vlmem.progress import progress_bar

    totals: dict[str, int] = {}
    with progress_bar() as bar:
        task = bar.add_task(label, total=len(items))
        for d in items:
            bar.advance(task)
            rel = w.video_relpath(d.name)
            try:
                conv = convert(d, rel)
                rows = generate_questions(conv.scene, seed=seed, split=split, video=rel)
            except DataError as exc:
                w.skip(d.name, str(exc))
                continue
            for k, v in getattr(conv, tally).items():
                totals[k] = totals.get(k, 0) + v
            if not rows:
                w.skip(d.name, f"{d}: no questions could be generated from {len(conv.scene.objects)} objects")
                continue
            write_video(w.path(rel), conv.frames, conv.scene.fps)
            w.write_geometry(d.name, conv.geometry)
            w.write_scene(conv.scene)
            w.add_rows(rows)
    return totals
