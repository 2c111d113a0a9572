"""ARKitScenes (3DOD raw layout) -> vlmem dataset folder (DESIGN section 3).

Layout (apple/ARKitScenes, `download_data.py 3dod`), per video under `3dod/{Training,Validation}/`:
  <vid>/<vid>_3dod_annotation.json        data[].label, data[].segments.obbAligned
                                          {centroid, axesLengths, normalizedAxes}
  <vid>/<vid>_3dod_mesh.ply               (optional) reconstructed mesh, used for the room size
  <vid>/<vid>_frames/lowres_wide/<vid>_<timestamp>.png       RGB
  <vid>/<vid>_frames/lowres_depth/<vid>_<timestamp>.png      uint16 depth, millimetres
  <vid>/<vid>_frames/lowres_wide_intrinsics/<vid>_<timestamp>.pincam   "w h fx fy cx cy"
  <vid>/<vid>_frames/lowres_wide.traj     "timestamp rx ry rz tx ty tz" per line: world-to-camera
                                          (axis-angle rotation, translation in metres)

Poses are inverted to camera-to-world; each frame takes the traj entry nearest in time.
`normalizedAxes` is used as-is: ARKitScenes' own `compute_box_3d` builds corners as
`rotmat.T @ local`, i.e. the ROWS of the row-major 3x3 are the box axes, our convention.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlmem.data.convert_common import (
    box_surface_points,
    floor_area,
    natural_key,
    read_ply_vertices,
    resize_depth,
    resize_rgb,
    resized_shape,
    room_center,
    sample_indices,
    scale_intrinsics,
    select,
    video_fps,
    visible_frames,
    write_converted,
)
from vlmem.data.scene import Scene, SceneObject
from vlmem.data.writer import DatasetWriter
from vlmem.errors import DataError, UsageError

SOURCE = "arkitscenes"
MAX_POSE_GAP_S = 0.1  # a frame whose nearest traj entry is farther than this has no pose
RENAME = {"tv_monitor": "tv"}  # ARKitScenes taxonomy -> VSI-Bench meta_info names


def rodrigues(rvec: np.ndarray) -> np.ndarray:
    """Axis-angle vector -> 3x3 rotation matrix (what cv2.Rodrigues computes)."""
    rvec = np.asarray(rvec, dtype=np.float64).reshape(3)
    theta = float(np.linalg.norm(rvec))
    if theta < 1e-12:
        return np.eye(3)
    k = rvec / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * (kx @ kx)


def read_traj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps [N], camera-to-world [N,4,4]) from a `.traj` file (lines are world-to-camera)."""
    stamps, poses = [], []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read trajectory ({exc})") from None
    for i, line in enumerate(lines):
        tok = line.split()
        if not tok:
            continue
        if len(tok) != 7:
            raise DataError(f"{path}: line {i + 1} has {len(tok)} columns, expected 7 (timestamp rx ry rz tx ty tz)")
        try:
            vals = [float(t) for t in tok]
        except ValueError:
            raise DataError(f"{path}: line {i + 1} is not numeric") from None
        if not np.all(np.isfinite(vals)):
            raise DataError(f"{path}: line {i + 1} has a non-finite value (nan / inf): {line.strip()!r}")
        w2c = np.eye(4)
        w2c[:3, :3] = rodrigues(vals[1:4])
        w2c[:3, 3] = vals[4:7]
        stamps.append(vals[0])
        poses.append(np.linalg.inv(w2c))
    if not stamps:
        raise DataError(f"{path}: empty trajectory")
    order = np.argsort(stamps)
    return np.asarray(stamps)[order], np.stack(poses)[order]


def read_pincam(path: Path) -> tuple[tuple[int, int], np.ndarray]:
    """((h, w), K 3x3) from a `.pincam` file: `width height fx fy cx cy`."""
    try:
        vals = [float(v) for v in Path(path).read_text().split()]
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read intrinsics ({exc})") from None
    if len(vals) != 6:
        raise DataError(f"{path}: expected 6 numbers (w h fx fy cx cy), got {len(vals)}")
    w, h, fx, fy, cx, cy = vals
    return (int(h), int(w)), np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])


def frame_timestamp(png: Path) -> float:
    return float(png.stem.rsplit("_", 1)[-1])


def video_dirs(root: Path) -> list[Path]:
    """Video folders under root: a split folder, `3dod/`, the dataset root, or one video folder."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"--root {root} does not exist or is not a folder")

    def is_video(d: Path) -> bool:
        return (d / f"{d.name}_frames").is_dir() or (d / f"{d.name}_3dod_annotation.json").is_file()

    if is_video(root):
        return [root]
    bases = [root]
    for sub in ("3dod", "raw"):
        if (root / sub).is_dir():
            bases = [root / sub]
            break
    splits = [b / s for b in bases for s in ("Training", "Validation") if (b / s).is_dir()] or bases
    found = [d for s in splits for d in s.iterdir() if d.is_dir() and is_video(d)]
    if not found:
        raise DataError(f"{root}: no ARKitScenes video folders found; expected <root>/3dod/Training/<video_id>/"
                        "<video_id>_frames/ (or a split folder, or one video folder)")
    return sorted(found, key=lambda d: natural_key(d.name))


@dataclass
class ConvertedVideo:
    scene: Scene
    frames: np.ndarray
    geometry: dict[str, np.ndarray]
    notes: dict[str, int]


def load_boxes(path: Path, notes: dict[str, int]) -> list[SceneObject]:
    try:
        data = json.loads(Path(path).read_text())["data"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: cannot read 3DOD annotation ({exc})") from None
    objects = []
    for i, item in enumerate(data):
        try:
            obb = item["segments"]["obbAligned"]
            label = str(item["label"]).strip()
            obj = SceneObject(category=RENAME.get(label, label.replace("_", " ")), instance_id=i,
                              centroid=obb["centroid"], axes_lengths=obb["axesLengths"],
                              normalized_axes=obb["normalizedAxes"])
        except (KeyError, TypeError, ValueError):
            notes["box without a valid segments.obbAligned"] = notes.get("box without a valid segments.obbAligned", 0) + 1
            continue
        if not (np.isfinite(obj.centroid).all() and np.isfinite(obj.axes_lengths).all()):
            notes["box with non-finite values"] = notes.get("box with non-finite values", 0) + 1
            continue
        objects.append(obj)
    return objects


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im)
    except Exception as exc:  # PIL raises many types on corrupt files
        raise DataError(f"{path}: cannot read image ({exc})") from None


def convert_video(vdir: Path, frames: int, size: int | None, video_rel: str) -> ConvertedVideo:
    vid = vdir.name
    notes: dict[str, int] = {}
    ann = vdir / f"{vid}_3dod_annotation.json"
    if not ann.is_file():
        raise DataError(f"{ann}: missing")
    objects = load_boxes(ann, notes)
    if not objects:
        raise DataError(f"{ann}: no usable boxes")
    fdir = vdir / f"{vid}_frames"
    wide, depth_dir, intr_dir = fdir / "lowres_wide", fdir / "lowres_depth", fdir / "lowres_wide_intrinsics"
    if not wide.is_dir():
        raise DataError(f"{wide}: missing")
    traj = fdir / "lowres_wide.traj"
    if not traj.is_file():
        raise DataError(f"{traj}: missing")
    t_stamps, t_poses = read_traj(traj)
    pngs = sorted(wide.glob("*.png"), key=frame_timestamp)
    if not pngs:
        raise DataError(f"{wide}: no frames")
    stamps = np.array([frame_timestamp(p) for p in pngs])
    nearest = np.clip(np.searchsorted(t_stamps, stamps), 1, len(t_stamps) - 1) if len(t_stamps) > 1 else np.zeros(len(stamps), int)
    if len(t_stamps) > 1:
        left = nearest - 1
        nearest = np.where(np.abs(t_stamps[left] - stamps) <= np.abs(t_stamps[nearest] - stamps), left, nearest)
    posed = np.flatnonzero(np.abs(t_stamps[nearest] - stamps) <= MAX_POSE_GAP_S)
    if len(posed) < len(pngs):
        notes["frames without a traj entry within 0.1 s"] = len(pngs) - len(posed)
    if len(posed) == 0:
        raise DataError(f"{traj}: no frame of {wide} has a pose within {MAX_POSE_GAP_S} s")
    chosen = posed[sample_indices(len(posed), frames)]

    colors, depths, ks, poses = [], [], [], []
    out_hw = None
    for i in chosen:
        png = pngs[i]
        rgb = _read_png(png)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        rgb = rgb[..., :3].astype(np.uint8)
        pincam = intr_dir / f"{png.stem}.pincam"
        if not pincam.is_file():  # the official loader also tries +-1 ms
            cands = [intr_dir / f"{vid}_{stamps[i] + d:.3f}.pincam" for d in (-0.001, 0.001)]
            pincam = next((c for c in cands if c.is_file()), pincam)
        (kh, kw), k = read_pincam(pincam)
        rgb_hw = rgb.shape[:2]
        if (kh, kw) != rgb_hw:
            k = scale_intrinsics(k, (kh, kw), rgb_hw)
        dpath = depth_dir / png.name
        if dpath.is_file():
            depth = _read_png(dpath).astype(np.float32) / 1000.0
            dk = scale_intrinsics(k, rgb_hw, depth.shape[:2])
        else:
            notes["frames without lowres_depth"] = notes.get("frames without lowres_depth", 0) + 1
            depth, dk = np.zeros(rgb_hw, np.float32), k
        if out_hw is None:
            out_hw = resized_shape(*rgb_hw, size)
            d_hw = depth.shape[:2] if size is None or max(depth.shape[:2]) <= size else resized_shape(*depth.shape[:2], size)
        colors.append(resize_rgb(rgb, out_hw))
        depths.append(resize_depth(depth, d_hw))
        ks.append((scale_intrinsics(k, rgb_hw, out_hw), scale_intrinsics(dk, depth.shape[:2], d_hw)))
        poses.append(t_poses[nearest[i]])
    colors_a = np.stack(colors)
    depths_a = np.stack(depths)
    poses_a = np.stack(poses)
    k_color = np.stack([k[0] for k in ks])
    k_depth = np.stack([k[1] for k in ks])

    for obj in objects:
        pts = box_surface_points(obj.centroid, obj.axes_lengths, obj.normalized_axes)
        obj.visible_frames = visible_frames(pts, poses_a, k_depth, depths_a, seed=obj.instance_id)
        obj.first_frame = int(obj.visible_frames[0]) if len(obj.visible_frames) else None

    mesh = vdir / f"{vid}_3dod_mesh.ply"
    if mesh.is_file():
        room_pts = read_ply_vertices(mesh)
        room_from = "mesh"
    else:
        room_pts = _backproject(depths_a, k_depth, poses_a)
        room_from = "depth"
        if len(room_pts) < 3:
            raise DataError(f"{vdir}: no {mesh.name} and no valid depth to estimate the room size")
    duration = float(stamps[posed[-1]] - stamps[posed[0]]) + 0.1
    n = len(chosen)
    scene = Scene(name=vid, dataset=SOURCE, objects=objects, room_size=floor_area(room_pts[:, :2]),
                  room_center=room_center(room_pts), video=video_rel, num_frames=n, fps=video_fps(n, duration),
                  poses=poses_a, extras={"source_frames": [pngs[i].name for i in chosen], "room_size_from": room_from})
    geometry = {
        "poses": poses_a.astype(np.float32),
        "intrinsics": k_depth.astype(np.float32),
        "depth": depths_a.astype(np.float16),
        "color_intrinsics": k_color.astype(np.float32),
        "timestamps": stamps[chosen].astype(np.float64),
    }
    return ConvertedVideo(scene, colors_a, geometry, notes)


def _backproject(depths: np.ndarray, ks: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """World points of the depth maps, ~64 columns per frame."""
    pts = []
    stride = max(1, depths.shape[2] // 64)
    for d, k, p in zip(depths, ks, poses, strict=True):
        v, u = np.mgrid[0:d.shape[0]:stride, 0:d.shape[1]:stride]
        z = d[v, u].astype(np.float64)
        m = z > 0
        x = (u[m] - k[0, 2]) * z[m] / k[0, 0]
        y = (v[m] - k[1, 2]) * z[m] / k[1, 1]
        cam = np.stack([x, y, z[m]], axis=1)
        pts.append(cam @ p[:3, :3].T + p[:3, 3])
    return np.concatenate(pts) if pts else np.zeros((0, 3))


def prepare_arkitscenes(root: Path, out: Path, frames: int = 32, size: int | None = None, overwrite: bool = False,
                        seed: int = 0, split: str = "train", videos: Sequence[str] | None = None) -> dict:
    """Convert ARKitScenes 3DOD videos under `root` into `out`."""
    root, out = Path(root), Path(out)
    if frames < 1:
        raise UsageError(f"--frames must be >= 1, got {frames}")
    dirs = video_dirs(root)
    by_name = {d.name: d for d in dirs}
    dirs = [by_name[n] for n in select(list(by_name), videos, "videos", root)]
    options = {"root": str(root), "frames": frames, "size": size, "seed": seed, "split": split,
               "videos": list(videos) if videos else None}
    with DatasetWriter(out, SOURCE, overwrite, options) as w:
        notes = write_converted(w, dirs, lambda d, rel: convert_video(d, frames, size, rel),
                                seed, split, "arkitscenes videos", tally="notes")
        return w.commit(extra={"notes": notes})
