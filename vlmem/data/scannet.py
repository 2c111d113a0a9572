"""ScanNet v2 -> vlmem dataset folder (DESIGN section 3).

Reads, per scene `scans/<scene>/`:
  <scene>.sens                          RGB-D stream (our own reader, format of ScanNet's
                                        SensReader/python/SensorData.py, version 4)
  <scene>.txt                           `axisAlignment = m00 m01 ... m33` (row-major 4x4)
  <scene>_vh_clean_2.ply                mesh vertices (binary PLY)
  <scene>_vh_clean_2.0.010000.segs.json `segIndices`: one segment id per vertex
  <scene>.aggregation.json              `segGroups`: [{objectId, label, segments}]
and, when present, `scannetv2-labels.combined.tsv` (raw_category -> category).

Everything is expressed in the axis-aligned frame: vertices and camera-to-world poses
are left-multiplied by the `axisAlignment` matrix.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlmem.data.convert_common import (
    floor_area,
    natural_key,
    obb_from_points,
    read_ply_vertices,
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

SOURCE = "scannet"
SENS_VERSION = 4
SCANNET_FPS = 30.0  # ScanNet streams are recorded at 30 Hz (timestamps are used when present)
COLOR_COMPRESSION = {-1: "unknown", 0: "raw", 1: "png", 2: "jpeg"}
DEPTH_COMPRESSION = {-1: "unknown", 0: "raw_ushort", 1: "zlib_ushort", 2: "occi_ushort"}
STRUCTURAL = {"wall", "floor", "ceiling"}
LABEL_TSV = "scannetv2-labels.combined.tsv"

# ScanNet200 `category` names -> the names VSI-Bench's ScanNet meta_info uses (VSI-Bench
# merges desk into table, calls couch "sofa", trash can "trash bin", mouse "computer mouse").
VSI_RENAME = {
    "couch": "sofa",
    "trash can": "trash bin",
    "mouse": "computer mouse",
    "desk": "table",
    "coffee table": "table",
    "end table": "table",
    "dining table": "table",
    "office chair": "chair",
    "television": "tv",
    "refridgerator": "refrigerator",
    "mini fridge": "refrigerator",
}


# -- .sens reader -----------------------------------------------------------------


@dataclass
class SensHeader:
    path: Path
    sensor_name: str
    intrinsic_color: np.ndarray  # [4, 4]
    extrinsic_color: np.ndarray
    intrinsic_depth: np.ndarray
    extrinsic_depth: np.ndarray
    color_compression: str
    depth_compression: str
    color_width: int
    color_height: int
    depth_width: int
    depth_height: int
    depth_shift: float
    num_frames: int
    # per frame (from the index pass)
    poses: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 4)))  # camera-to-world as stored
    timestamps_color: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    offsets: list = field(default_factory=list)  # (color_offset, color_size, depth_offset, depth_size)


def read_sens_header(path: Path) -> SensHeader:
    """Parse the header and index every frame record (seeking over the image bytes).

    Raises DataError naming the file when it is not a version-4 `.sens` or is truncated.
    """
    path = Path(path)
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot open .sens ({exc})") from None
    with f:
        size = f.seek(0, 2)
        f.seek(0)

        def read(n: int, what: str) -> bytes:
            b = f.read(n)
            if len(b) != n:
                raise DataError(f"{path}: truncated .sens file (ends inside {what}, at byte {f.tell()} of {size})")
            return b

        (version,) = struct.unpack("<I", read(4, "the version"))
        if version != SENS_VERSION:
            raise DataError(f"{path}: unsupported .sens version {version} (expected {SENS_VERSION})")
        (strlen,) = struct.unpack("<Q", read(8, "the sensor name length"))
        if strlen > 4096:
            raise DataError(f"{path}: corrupt .sens header (sensor name length {strlen})")
        name = read(strlen, "the sensor name").decode("utf-8", errors="replace")
        mats = [np.frombuffer(read(64, "the calibration matrices"), dtype="<f4").reshape(4, 4).astype(np.float64)
                for _ in range(4)]
        ctype, dtype_ = struct.unpack("<ii", read(8, "the compression types"))
        cw, ch, dw, dh = struct.unpack("<IIII", read(16, "the image sizes"))
        (shift,) = struct.unpack("<f", read(4, "the depth shift"))
        (n,) = struct.unpack("<Q", read(8, "the frame count"))
        hdr = SensHeader(path, name, mats[0], mats[1], mats[2], mats[3],
                         COLOR_COMPRESSION.get(ctype, f"invalid({ctype})"),
                         DEPTH_COMPRESSION.get(dtype_, f"invalid({dtype_})"), cw, ch, dw, dh, float(shift), int(n))
        if n > 10_000_000:
            raise DataError(f"{path}: corrupt .sens header (frame count {n})")
        poses = np.zeros((n, 4, 4))
        stamps = np.zeros(n, dtype=np.uint64)
        for i in range(n):
            rec = read(16 * 4 + 32, f"the record of frame {i} of {n}")
            poses[i] = np.frombuffer(rec[:64], dtype="<f4").reshape(4, 4)
            ts_c, _ts_d, csize, dsize = struct.unpack("<QQQQ", rec[64:])
            stamps[i] = ts_c
            pos = f.tell()
            if pos + csize + dsize > size:
                raise DataError(f"{path}: truncated .sens file (frame {i} of {n} needs {csize + dsize} image bytes, "
                                f"{size - pos} left)")
            hdr.offsets.append((pos, int(csize), pos + csize, int(dsize)))
            f.seek(pos + csize + dsize)
        hdr.poses, hdr.timestamps_color = poses, stamps
    return hdr


def decode_sens_frames(hdr: SensHeader, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Colour [F, Hc, Wc, 3] uint8 and depth [F, Hd, Wd] float32 metres for the given frames."""
    from PIL import Image

    colors, depths = [], []
    with open(hdr.path, "rb") as f:
        for i in indices:
            co, cs, do, ds = hdr.offsets[i]
            f.seek(co)
            cbytes = f.read(cs)
            f.seek(do)
            dbytes = f.read(ds)
            if hdr.color_compression in ("jpeg", "png"):
                try:
                    img = np.asarray(Image.open(io.BytesIO(cbytes)).convert("RGB"))
                except Exception as exc:  # PIL raises many types on corrupt data
                    raise DataError(f"{hdr.path}: frame {i}: cannot decode colour image ({exc})") from None
            elif hdr.color_compression == "raw":
                if len(cbytes) != 3 * hdr.color_width * hdr.color_height:
                    raise DataError(f"{hdr.path}: frame {i}: raw colour has {len(cbytes)} bytes, expected "
                                    f"{3 * hdr.color_width * hdr.color_height}")
                img = np.frombuffer(cbytes, dtype=np.uint8).reshape(hdr.color_height, hdr.color_width, 3)
            else:
                raise DataError(f"{hdr.path}: unsupported colour compression {hdr.color_compression!r}")
            if hdr.depth_compression == "zlib_ushort":
                try:
                    raw = zlib.decompress(dbytes)
                except zlib.error as exc:
                    raise DataError(f"{hdr.path}: frame {i}: cannot decompress depth ({exc})") from None
            elif hdr.depth_compression == "raw_ushort":
                raw = dbytes
            else:
                raise DataError(f"{hdr.path}: unsupported depth compression {hdr.depth_compression!r}")
            if len(raw) != 2 * hdr.depth_width * hdr.depth_height:
                raise DataError(f"{hdr.path}: frame {i}: depth has {len(raw)} bytes, expected "
                                f"{2 * hdr.depth_width * hdr.depth_height}")
            depth = np.frombuffer(raw, dtype="<u2").reshape(hdr.depth_height, hdr.depth_width)
            colors.append(img)
            depths.append(depth.astype(np.float32) / np.float32(hdr.depth_shift))
    return np.stack(colors), np.stack(depths)


def register_depth(depths: np.ndarray, k_depth: np.ndarray, k_target: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resample depth maps [F,h,w] into a camera with intrinsics `k_target` and size `hw`.

    ScanNet's depth and colour cameras share the optical centre and orientation (the
    `.sens` extrinsics are identity), so a target pixel maps to the depth image through
    K_depth @ K_target^-1 and keeps its z. Nearest neighbour; outside the depth image -> 0.
    """
    v, u = np.mgrid[0:hw[0], 0:hw[1]].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(k_target).T
    src = rays @ np.asarray(k_depth, dtype=np.float64).T
    su, sv = np.round(src[..., 0]).astype(np.int64), np.round(src[..., 1]).astype(np.int64)
    h, w = depths.shape[1:3]
    ok = (su >= 0) & (su < w) & (sv >= 0) & (sv < h)
    out = np.zeros((len(depths),) + tuple(hw), dtype=np.float32)
    out[:, ok] = depths[:, sv[ok], su[ok]]
    return out


# -- annotation readers -------------------------------------------------------------


def read_axis_alignment(path: Path) -> np.ndarray | None:
    """The 4x4 `axisAlignment` of `<scene>.txt`, or None when the line is absent (test scans)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise DataError(f"{path}: cannot read scene meta file ({exc})") from None
    for line in text.splitlines():
        if line.strip().startswith("axisAlignment"):
            values = line.split("=", 1)[1].split()
            if len(values) != 16:
                raise DataError(f"{path}: axisAlignment has {len(values)} numbers, expected 16")
            try:
                return np.array([float(v) for v in values]).reshape(4, 4)
            except ValueError:
                raise DataError(f"{path}: axisAlignment is not numeric") from None
    return None


def load_label_map(path: Path) -> dict[str, str]:
    """raw_category -> category (ScanNet200 names) from `scannetv2-labels.combined.tsv`."""
    lines = Path(path).read_text().splitlines()
    if not lines:
        raise DataError(f"{path}: empty label map")
    head = lines[0].split("\t")
    if "raw_category" not in head or "category" not in head:
        raise DataError(f"{path}: expected columns raw_category and category, got {head[:8]}")
    ri, ci = head.index("raw_category"), head.index("category")
    out = {}
    for line in lines[1:]:
        cols = line.split("\t")
        if len(cols) > max(ri, ci) and cols[ri]:
            out[cols[ri]] = cols[ci]
    return out


def find_label_map(root: Path) -> Path | None:
    for d in (root, root.parent, root / "meta_data", root.parent / "meta_data", root / "tasks", root.parent / "tasks"):
        p = d / LABEL_TSV
        if p.is_file():
            return p
    return None


def to_vsi_category(raw: str, label_map: dict[str, str] | None) -> str | None:
    """Our category for a raw aggregation label; None when unknown to the label map."""
    raw = raw.strip()
    if label_map is not None:
        if raw not in label_map:
            return None
        name = label_map[raw].strip().lower()
    else:
        name = raw.lower()
    return VSI_RENAME.get(name, name)


def scene_dirs(root: Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"--root {root} does not exist or is not a folder")
    base = root / "scans" if (root / "scans").is_dir() else root
    if (base / f"{base.name}.sens").exists() or (base / f"{base.name}.aggregation.json").exists():
        return [base]  # root is one scene folder
    dirs = sorted((d for d in base.iterdir() if d.is_dir() and d.name.startswith("scene")), key=lambda d: natural_key(d.name))
    if not dirs:
        raise DataError(f"{base}: no ScanNet scene folders (scene*_*) found; expected <root>/scans/<scene>/")
    return dirs


# -- one scene ----------------------------------------------------------------------


@dataclass
class ConvertedScene:
    scene: Scene
    frames: np.ndarray  # [F, H, W, 3] uint8
    geometry: dict[str, np.ndarray]
    object_skips: dict[str, int]


def load_instances(scene_dir: Path, align: np.ndarray, label_map: dict[str, str] | None,
                   skips: dict[str, int]) -> tuple[list[tuple[str, int, np.ndarray]], np.ndarray]:
    """[(category, objectId, points [N,3] aligned)] and all aligned mesh vertices."""
    name = scene_dir.name
    ply = scene_dir / f"{name}_vh_clean_2.ply"
    segs_path = scene_dir / f"{name}_vh_clean_2.0.010000.segs.json"
    agg_path = scene_dir / f"{name}.aggregation.json"
    for p in (ply, segs_path, agg_path):
        if not p.is_file():
            raise DataError(f"{p}: missing")
    verts = read_ply_vertices(ply)
    verts = verts @ align[:3, :3].T + align[:3, 3]
    try:
        seg_ids = np.asarray(json.loads(segs_path.read_text())["segIndices"], dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{segs_path}: cannot read segIndices ({exc})") from None
    if len(seg_ids) != len(verts):
        raise DataError(f"{segs_path}: {len(seg_ids)} segIndices for {len(verts)} vertices of {ply.name}")
    try:
        groups = json.loads(agg_path.read_text())["segGroups"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{agg_path}: cannot read segGroups ({exc})") from None
    out = []
    for g in groups:
        try:
            raw, oid, segments = str(g["label"]), int(g.get("objectId", g.get("id"))), g["segments"]
        except (KeyError, TypeError, ValueError):
            skips["malformed segGroup"] = skips.get("malformed segGroup", 0) + 1
            continue
        category = to_vsi_category(raw, label_map)
        if category is None:
            key = f"unknown category {raw!r}"
            skips[key] = skips.get(key, 0) + 1
            continue
        if category in STRUCTURAL:
            skips["structural (wall/floor/ceiling)"] = skips.get("structural (wall/floor/ceiling)", 0) + 1
            continue
        pts = verts[np.isin(seg_ids, np.asarray(segments, dtype=np.int64))]
        if len(pts) < 4:
            skips["fewer than 4 mesh vertices"] = skips.get("fewer than 4 mesh vertices", 0) + 1
            continue
        out.append((category, oid, pts))
    return out, verts


def convert_scene(scene_dir: Path, label_map: dict[str, str] | None, frames: int, size: int | None,
                  video_rel: str) -> ConvertedScene:
    name = scene_dir.name
    skips: dict[str, int] = {}
    meta = scene_dir / f"{name}.txt"
    align = read_axis_alignment(meta) if meta.is_file() else None
    if align is None:
        align = np.eye(4)
        skips["no axisAlignment in <scene>.txt (identity used)"] = 1
    instances, verts = load_instances(scene_dir, align, label_map, skips)

    sens = scene_dir / f"{name}.sens"
    if not sens.is_file():
        raise DataError(f"{sens}: missing")
    hdr = read_sens_header(sens)
    valid = np.flatnonzero(np.isfinite(hdr.poses).all(axis=(1, 2)))
    if len(valid) == 0:
        raise DataError(f"{sens}: no frame has a valid camera pose")
    chosen = valid[sample_indices(len(valid), frames)]
    colors, depths = decode_sens_frames(hdr, chosen)
    poses = np.einsum("ij,fjk->fik", align, hdr.poses[chosen])

    c_hw = (hdr.color_height, hdr.color_width)
    out_hw = resized_shape(*c_hw, size)
    colors = np.stack([resize_rgb(c, out_hw) for c in colors])
    k_color = scale_intrinsics(hdr.intrinsic_color[:3, :3], c_hw, out_hw)
    # depth is registered to the colour camera (pixel-aligned with the video, colour aspect),
    # longer side = the sensor depth's longer side (or `size` when smaller)
    d_long = max(hdr.depth_width, hdr.depth_height)
    d_hw = resized_shape(*c_hw, min(d_long, size) if size is not None else d_long)
    k_depth = scale_intrinsics(hdr.intrinsic_color[:3, :3], c_hw, d_hw)
    depths = register_depth(depths, hdr.intrinsic_depth[:3, :3], k_depth, d_hw)
    n = len(chosen)
    k_depth_f = np.repeat(k_depth[None], n, axis=0)

    objects = []
    for category, oid, pts in instances:
        centroid, lengths, axes = obb_from_points(pts)
        vis = visible_frames(pts, poses, k_depth_f, depths, seed=oid)
        objects.append(SceneObject(category=category, instance_id=oid, centroid=centroid, axes_lengths=lengths,
                                   normalized_axes=axes, visible_frames=vis))
    if not objects:
        raise DataError(f"{scene_dir / (name + '.aggregation.json')}: no usable object instances "
                        f"(skipped: {', '.join(f'{k}: {v}' for k, v in skips.items()) or 'none'})")

    stamps = hdr.timestamps_color.astype(np.float64)
    if stamps[-1] > stamps[0]:
        duration = (stamps[valid[-1]] - stamps[valid[0]]) / 1e6 + 1.0 / SCANNET_FPS  # microseconds
    else:
        duration = len(valid) / SCANNET_FPS
    fps = video_fps(n, duration)
    scene = Scene(name=name, dataset=SOURCE, objects=objects, room_size=floor_area(verts[:, :2]),
                  room_center=room_center(verts), video=video_rel, num_frames=n, fps=fps,
                  poses=poses, extras={"source_frames": chosen.tolist(), "sensor": hdr.sensor_name})
    geometry = {
        "poses": poses.astype(np.float32),
        "intrinsics": k_depth_f.astype(np.float32),
        "depth": depths.astype(np.float16),
        "color_intrinsics": np.repeat(k_color[None], n, axis=0).astype(np.float32),
        "frame_indices": chosen.astype(np.int64),
    }
    return ConvertedScene(scene, colors, geometry, skips)


# -- converter ------------------------------------------------------------------------


def prepare_scannet(root: Path, out: Path, frames: int = 32, size: int | None = None, overwrite: bool = False,
                    seed: int = 0, split: str = "train", scenes: Sequence[str] | None = None) -> dict:
    """Convert `root/scans/<scene>/` (or `root` = `scans/`, or one scene folder) into `out`."""
    root, out = Path(root), Path(out)
    if frames < 1:
        raise UsageError(f"--frames must be >= 1, got {frames}")
    dirs = scene_dirs(root)
    by_name = {d.name: d for d in dirs}
    dirs = [by_name[n] for n in select(list(by_name), scenes, "scenes", root)]
    tsv = find_label_map(root)
    label_map = load_label_map(tsv) if tsv else None
    options = {"root": str(root), "frames": frames, "size": size, "seed": seed, "split": split,
               "scenes": list(scenes) if scenes else None, "label_map": str(tsv) if tsv else None}
    with DatasetWriter(out, SOURCE, overwrite, options) as w:
        object_skips = write_converted(w, dirs, lambda d, rel: convert_scene(d, label_map, frames, size, rel),
                                       seed, split, "scannet scenes", tally="object_skips")
        return w.commit(extra={"skipped_objects": object_skips, "label_map": str(tsv) if tsv else None})
