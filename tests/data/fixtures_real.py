"""Tiny datasets in the exact on-disk formats of the real sources, written into tmp_path.

ScanNet: `.sens` (SensorData.py version 4 layout), `<scene>.txt` with axisAlignment,
binary `_vh_clean_2.ply`, `.segs.json`, `.aggregation.json`, `scannetv2-labels.combined.tsv`.
ARKitScenes (3dod): `<vid>_frames/{lowres_wide,lowres_depth,lowres_wide_intrinsics}`,
`lowres_wide.traj` (world-to-camera axis-angle), `<vid>_3dod_annotation.json`, ascii mesh.
VSI-Bench parquet + videos, PixMo parquet + images, VLM-3R-DATA JSON.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np

# -- shared geometry --------------------------------------------------------------------


def rot_z(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])


def look_pose(eye, yaw_deg: float, pitch: float = -0.2) -> np.ndarray:
    """Camera-to-world (OpenCV: x right, y down, z forward) looking along yaw, z up."""
    f = np.array([np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg)), pitch])
    f /= np.linalg.norm(f)
    r = np.cross(f, [0, 0, 1.0])
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = r, d, f, eye
    return pose


def box_points(center, size, yaw_deg: float = 0.0, step: float = 0.05) -> np.ndarray:
    """Points on the surface of a z-rotated box."""
    size = np.asarray(size, dtype=float)
    pts = []
    for axis in range(3):
        o = [i for i in range(3) if i != axis]
        na = max(2, int(round(size[o[0]] / step)) + 1)
        nb = max(2, int(round(size[o[1]] / step)) + 1)
        a, b = np.meshgrid(np.linspace(-0.5, 0.5, na), np.linspace(-0.5, 0.5, nb), indexing="ij")
        for s in (-0.5, 0.5):
            local = np.zeros((a.size, 3))
            local[:, axis] = s
            local[:, o[0]] = a.ravel()
            local[:, o[1]] = b.ravel()
            pts.append(local * size)
    return np.concatenate(pts) @ rot_z(yaw_deg).T + np.asarray(center, dtype=float)


def plane_points(origin, u, v, step: float) -> np.ndarray:
    u, v = np.asarray(u, float), np.asarray(v, float)
    nu = int(round(np.linalg.norm(u) / step)) + 1
    nv = int(round(np.linalg.norm(v) / step)) + 1
    a, b = np.meshgrid(np.linspace(0, 1, nu), np.linspace(0, 1, nv), indexing="ij")
    return np.asarray(origin, float) + a.reshape(-1, 1) * u + b.reshape(-1, 1) * v


# Room of 4 x 3 m, walls 2.5 m; a chair and a (rotated) desk.
ROOM = (4.0, 3.0, 2.5)
CHAIR = {"center": (1.0, 1.0, 0.45), "size": (0.5, 0.5, 0.9), "yaw": 0.0}
TABLE = {"center": (3.0, 2.0, 0.375), "size": (1.2, 0.6, 0.75), "yaw": 30.0}


def room_parts(step: float) -> dict[str, np.ndarray]:
    w, d, h = ROOM
    return {
        "floor": plane_points((0, 0, 0), (w, 0, 0), (0, d, 0), step),
        "wall_a": plane_points((0, 0, 0), (w, 0, 0), (0, 0, h), step),
        "wall_b": plane_points((0, d, 0), (w, 0, 0), (0, 0, h), step),
        "wall_c": plane_points((0, 0, 0), (0, d, 0), (0, 0, h), step),
        "wall_d": plane_points((w, 0, 0), (0, d, 0), (0, 0, h), step),
        "chair": box_points(CHAIR["center"], CHAIR["size"], CHAIR["yaw"], step=min(step, 0.05)),
        "desk": box_points(TABLE["center"], TABLE["size"], TABLE["yaw"], step=min(step, 0.05)),
        "blorb": box_points((2.0, 0.5, 0.1), (0.2, 0.2, 0.2), 0.0, step=min(step, 0.05)),
    }


def render_depth(points: np.ndarray, c2w: np.ndarray, k: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Z-buffer splat of dense points, metres (0 = no data)."""
    w2c = np.linalg.inv(c2w)
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    m = z > 0.05
    u = np.floor(k[0, 0] * cam[m, 0] / z[m] + k[0, 2]).astype(int)
    v = np.floor(k[1, 1] * cam[m, 1] / z[m] + k[1, 2]).astype(int)
    z = z[m]
    ok = (u >= 0) & (u < hw[1]) & (v >= 0) & (v < hw[0])
    depth = np.full(hw, np.inf)
    np.minimum.at(depth, (v[ok], u[ok]), z[ok])
    depth[~np.isfinite(depth)] = 0
    return depth


def dense_scene_points() -> np.ndarray:
    return np.concatenate(list(room_parts(0.02).values()))


def jpeg_bytes(img: np.ndarray, fmt: str = "JPEG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt)
    return buf.getvalue()


# -- ScanNet ---------------------------------------------------------------------------------

SCANNET_ALIGN = np.eye(4)
SCANNET_ALIGN[:3, :3] = rot_z(25.0)
SCANNET_ALIGN[:3, 3] = (-1.5, 2.0, 0.05)
SCANNET_YAWS = [0, 60, 120, 180, 240, 300]
SCANNET_EYE = (2.0, 1.5, 1.2)
DEPTH_HW = (24, 32)
COLOR_HW = (30, 40)
K_DEPTH = np.array([[20.0, 0, 16.0], [0, 20.0, 12.0], [0, 0, 1]])
K_COLOR = np.array([[30.0, 0, 20.0], [0, 30.0, 15.0], [0, 0, 1]])  # narrower than depth


def write_ply_binary(path: Path, verts: np.ndarray, faces: np.ndarray) -> None:
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment tiny scannet-like mesh\n"
        f"element vertex {len(verts)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    vdt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1"), ("a", "u1")])
    rec = np.zeros(len(verts), dtype=vdt)
    rec["x"], rec["y"], rec["z"] = verts[:, 0], verts[:, 1], verts[:, 2]
    rec["r"] = 200
    rec["a"] = 255
    fdt = np.dtype([("n", "u1"), ("i", "<i4", (3,))])
    frec = np.zeros(len(faces), dtype=fdt)
    frec["n"] = 3
    frec["i"] = faces
    path.write_bytes(header.encode() + rec.tobytes() + frec.tobytes())


def write_sens(path: Path, colors: list[np.ndarray], depths_m: list[np.ndarray], poses: list[np.ndarray],
               k_color: np.ndarray, k_depth: np.ndarray, depth_shift: float = 1000.0) -> None:
    """Exactly the layout read by ScanNet's SensReader/python/SensorData.py (version 4)."""
    name = b"StructureSensor"
    ch, cw = colors[0].shape[:2]
    dh, dw = depths_m[0].shape
    out = bytearray()
    out += struct.pack("<I", 4)
    out += struct.pack("<Q", len(name)) + name
    for m in (k_color, np.eye(3), k_depth, np.eye(3)):
        m4 = np.eye(4, dtype=np.float32)
        m4[:3, :3] = m
        out += m4.astype("<f4").tobytes()
    out += struct.pack("<ii", 2, 1)  # jpeg, zlib_ushort
    out += struct.pack("<IIII", cw, ch, dw, dh)
    out += struct.pack("<f", depth_shift)
    out += struct.pack("<Q", len(colors))
    for i, (c, d, p) in enumerate(zip(colors, depths_m, poses, strict=True)):
        cb = jpeg_bytes(c)
        db = zlib.compress(np.round(d * depth_shift).astype("<u2").tobytes())
        out += np.asarray(p, dtype="<f4").tobytes()
        out += struct.pack("<QQQQ", 1_000_000 + i * 33_333, 1_000_000 + i * 33_333, len(cb), len(db))
        out += cb + db
    path.write_bytes(bytes(out))


LABEL_TSV = (
    "id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\tnyu40class\teigen13class\n"
    "1\twall\twall\t8277\t1\t12\twall\twall\twall\n"
    "2\tchair\tchair\t4646\t5\t4\tchair\tchair\tchair\n"
    "3\tfloor\tfloor\t2501\t2\t5\tfloor\tfloor\tfloor\n"
    "4\tdesk\tdesk\t680\t14\t10\tdesk\tdesk\ttable\n"
)


def make_scannet_scene(scans: Path, name: str = "scene0000_00", invalid_frame: bool = True) -> dict:
    """One scene folder under `scans/`; returns the known answers (aligned frame)."""
    d = scans / name
    d.mkdir(parents=True)
    align_inv = np.linalg.inv(SCANNET_ALIGN)
    parts = room_parts(0.1)
    verts, seg_ids, groups, faces = [], [], [], []
    labels = {"floor": "floor", "wall_a": "wall", "wall_b": "wall", "wall_c": "wall", "wall_d": "wall",
              "chair": "chair", "desk": "desk", "blorb": "blorb"}
    start = 0
    for oid, (part, pts) in enumerate(parts.items()):
        seg = 100 + oid
        verts.append(pts)
        seg_ids += [seg] * len(pts)
        groups.append({"id": oid, "objectId": oid, "segments": [seg], "label": labels[part]})
        faces.append([start, start + 1, start + 2])
        start += len(pts)
    verts = np.concatenate(verts)
    raw_verts = verts @ align_inv[:3, :3].T + align_inv[:3, 3]
    write_ply_binary(d / f"{name}_vh_clean_2.ply", raw_verts, np.array(faces))
    (d / f"{name}_vh_clean_2.0.010000.segs.json").write_text(json.dumps(
        {"params": {"kThresh": "0.0001", "segMinVerts": "20"}, "sceneId": f"{name}_vh_clean_2", "segIndices": seg_ids}))
    (d / f"{name}.aggregation.json").write_text(json.dumps(
        {"sceneId": f"scannet.{name}", "appId": "Aggregator.v2", "segGroups": groups,
         "segmentsFile": f"scannet.{name}_vh_clean_2.0.010000.segs.json"}))
    align_txt = " ".join(f"{v:.9f}" for v in SCANNET_ALIGN.reshape(-1))
    (d / f"{name}.txt").write_text(
        f"axisAlignment = {align_txt}\ncolorHeight = 968\ncolorWidth = 1296\nsceneType = Bedroom / Hotel\n")

    dense = dense_scene_points()
    colors, depths, poses, aligned = [], [], [], []
    for i, yaw in enumerate(SCANNET_YAWS):
        pose = look_pose(SCANNET_EYE, yaw)
        aligned.append(pose)
        depths.append(render_depth(dense, pose, K_DEPTH, DEPTH_HW))
        img = np.zeros(COLOR_HW + (3,), dtype=np.uint8)
        img[..., 0] = 40 * i
        img[..., 1] = np.linspace(0, 255, COLOR_HW[1])[None, :]
        colors.append(img)
        poses.append(align_inv @ pose)  # .sens stores the unaligned camera-to-world
    if invalid_frame:  # ScanNet has frames whose pose is -inf; they must be ignored
        colors.insert(3, colors[0])
        depths.insert(3, depths[0])
        poses.insert(3, np.full((4, 4), -np.inf))
    write_sens(d / f"{name}.sens", colors, depths, poses, K_COLOR, K_DEPTH)
    return {"poses": np.stack(aligned), "chair": CHAIR, "table": TABLE, "room_area": ROOM[0] * ROOM[1]}


def make_scannet_root(tmp: Path, names=("scene0000_00",), tsv: bool = True) -> Path:
    root = tmp / "scannet"
    (root / "scans").mkdir(parents=True)
    for n in names:
        make_scannet_scene(root / "scans", n)
    if tsv:
        (root / "scannetv2-labels.combined.tsv").write_text(LABEL_TSV)
    return root


# -- ARKitScenes --------------------------------------------------------------------------

ARKIT_HW = (24, 32)
ARKIT_K = np.array([[20.0, 0, 16.0], [0, 20.0, 12.0], [0, 0, 1]])
ARKIT_YAWS = [0, 72, 144, 216, 288]
ARKIT_EYE = (2.0, 1.5, 1.3)


def axis_angle(r: np.ndarray) -> np.ndarray:
    """Rotation matrix -> axis-angle vector (for writing .traj)."""
    angle = np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))
    if angle < 1e-9:
        return np.zeros(3)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]]) / (2 * np.sin(angle))
    return axis * angle


def make_arkit_video(split_dir: Path, vid: str = "41069025", with_mesh: bool = True) -> dict:
    d = split_dir / vid
    fr = d / f"{vid}_frames"
    for sub in ("lowres_wide", "lowres_depth", "lowres_wide_intrinsics"):
        (fr / sub).mkdir(parents=True)
    from PIL import Image

    dense = dense_scene_points()
    traj_lines, poses = [], []
    for i, yaw in enumerate(ARKIT_YAWS):
        ts = 6845.7 + i * 0.1
        stamp = f"{ts:.3f}"
        c2w = look_pose(ARKIT_EYE, yaw)
        poses.append(c2w)
        w2c = np.linalg.inv(c2w)
        rv = axis_angle(w2c[:3, :3])
        # traj timestamps are not exactly the frame timestamps (nearest match is needed)
        traj_lines.append(" ".join(f"{x:.8f}" for x in [ts + 0.0004, *rv, *w2c[:3, 3]]))
        if i < len(ARKIT_YAWS) - 1:  # an extra traj entry between frames
            mid = look_pose(ARKIT_EYE, yaw + 36)
            w2cm = np.linalg.inv(mid)
            traj_lines.append(" ".join(f"{x:.8f}" for x in [ts + 0.05, *axis_angle(w2cm[:3, :3]), *w2cm[:3, 3]]))
        depth = render_depth(dense, c2w, ARKIT_K, ARKIT_HW)
        Image.fromarray(np.round(depth * 1000).astype(np.uint16)).save(fr / "lowres_depth" / f"{vid}_{stamp}.png")
        img = np.zeros(ARKIT_HW + (3,), dtype=np.uint8)
        img[..., 2] = 50 * i
        Image.fromarray(img).save(fr / "lowres_wide" / f"{vid}_{stamp}.png")
        k = ARKIT_K
        (fr / "lowres_wide_intrinsics" / f"{vid}_{stamp}.pincam").write_text(
            f"{ARKIT_HW[1]} {ARKIT_HW[0]} {k[0, 0]} {k[1, 1]} {k[0, 2]} {k[1, 2]}\n")
    (fr / "lowres_wide.traj").write_text("\n".join(traj_lines) + "\n")
    boxes = []
    for label, spec in (("chair", CHAIR), ("table", TABLE), ("blorb", {"center": (2, 0.5, 0.1), "size": (0.2,) * 3, "yaw": 0})):
        r = rot_z(spec["yaw"])
        boxes.append({
            "uid": f"uid-{label}", "label": label, "modelId": "", "children": [], "objectId": len(boxes),
            "segments": {"obbAligned": {"centroid": list(spec["center"]), "axesLengths": list(spec["size"]),
                                        "normalizedAxes": r.T.reshape(-1).tolist()},  # rows = box axes
                         "obb": {}},
            "hierarchy": 0, "isInGroup": False, "labelType": "object", "attributes": {},
        })
    (d / f"{vid}_3dod_annotation.json").write_text(json.dumps(
        {"data": boxes, "stats": {}, "comment": "", "confirm": True, "skipped": False}))
    if with_mesh:
        parts = room_parts(0.1)
        verts = np.concatenate([parts[k] for k in ("floor", "wall_a", "wall_b", "wall_c", "wall_d")])
        header = ("ply\nformat ascii 1.0\n"
                  f"element vertex {len(verts)}\nproperty float x\nproperty float y\nproperty float z\n"
                  "element face 1\nproperty list uchar int vertex_indices\nend_header\n")
        body = "\n".join(f"{x:.4f} {y:.4f} {z:.4f}" for x, y, z in verts) + "\n3 0 1 2\n"
        (d / f"{vid}_3dod_mesh.ply").write_text(header + body)
    return {"poses": np.stack(poses), "chair": CHAIR, "table": TABLE, "room_area": ROOM[0] * ROOM[1]}


def make_arkit_root(tmp: Path, vids=("41069025",)) -> Path:
    split = tmp / "ARKitScenes" / "3dod" / "Training"
    split.mkdir(parents=True)
    for v in vids:
        make_arkit_video(split, v)
    return tmp / "ARKitScenes"


# -- videos -----------------------------------------------------------------------------------


def write_tiny_mp4(path: Path, frames: int = 4) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=4)
        s.width, s.height, s.pix_fmt = 32, 24, "yuv420p"
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 30 * i, np.uint8), format="rgb24")
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


# -- VSI-Bench ---------------------------------------------------------------------------------


def make_vsibench(tmp: Path) -> tuple[Path, Path]:
    """`test-00000-of-00001.parquet` with VSI-Bench's columns + `{dataset}/{scene_name}.mp4`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"id": 1, "dataset": "arkitscenes", "scene_name": "41069025", "question_type": "object_counting",
         "question": "How many chair(s) are in this room?", "options": None, "ground_truth": "2"},
        {"id": 2, "dataset": "scannet", "scene_name": "scene0011_00", "question_type": "obj_appearance_order",
         "question": "What will be the first-time appearance order of the following categories in the video: chair, table, door, tv?",
         "options": ["A. chair, table, door, tv", "B. tv, door, table, chair", "C. door, chair, tv, table",
                     "D. table, tv, chair, door"], "ground_truth": "A"},
        {"id": 3, "dataset": "scannetpp", "scene_name": "missing_scene", "question_type": "room_size_estimation",
         "question": "What is the size of this room (in square meters)?", "options": None, "ground_truth": "23.1"},
    ]
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("id", pa.int64()), ("dataset", pa.string()), ("scene_name", pa.string()), ("question_type", pa.string()),
        ("question", pa.string()), ("options", pa.list_(pa.string())), ("ground_truth", pa.string())]))
    parquet = tmp / "VSI-Bench" / "test-00000-of-00001.parquet"
    parquet.parent.mkdir(parents=True)
    pq.write_table(table, parquet)
    videos = tmp / "VSI-Bench"
    write_tiny_mp4(videos / "arkitscenes" / "41069025.mp4")
    write_tiny_mp4(videos / "scannet" / "scene0011_00.mp4")
    return parquet, videos


# -- PixMo -------------------------------------------------------------------------------------


def _png(seed: int) -> bytes:
    img = np.full((8, 8, 3), seed * 20 % 256, dtype=np.uint8)
    return jpeg_bytes(img, "PNG")


def make_pixmo(tmp: Path) -> dict:
    """pixmo-cap and pixmo-ask-model-anything parquets + a local images folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = tmp / "pixmo_images"
    images.mkdir(parents=True)
    blobs = {i: _png(i) for i in range(4)}
    sha = {i: hashlib.sha256(b).hexdigest() for i, b in blobs.items()}
    # image 0 stored under its URL basename, image 1 under its sha256, 2 missing, 3 corrupted (sha mismatch)
    (images / "cat.png").write_bytes(blobs[0])
    (images / sha[1]).write_bytes(blobs[1])
    (images / "broken.png").write_bytes(b"not the image")
    cap = pa.Table.from_pylist([
        {"image_url": "https://example.org/a/cat.png", "caption": "A grey cat on a sofa.", "transcripts": ["a cat"]},
        {"image_url": "https://example.org/b/dog.jpg", "caption": "A dog in a field.", "transcripts": ["dog"]},
        {"image_url": "https://example.org/c/missing.png", "caption": "Missing.", "transcripts": []},
    ])
    cap_path = tmp / "pixmo-cap.parquet"
    pq.write_table(cap, cap_path)
    ama = pa.Table.from_pylist([
        {"image_url": "https://example.org/a/cat.png", "image_sha256": sha[0], "question": "What colour is the cat?",
         "answer": "Grey."},
        {"image_url": "https://example.org/b/other.jpg", "image_sha256": sha[1], "question": "What animal is it?",
         "answer": "A dog."},
        {"image_url": "https://example.org/d/broken.png", "image_sha256": sha[3], "question": "What is this?",
         "answer": "Noise."},
    ])
    ama_path = tmp / "pixmo-ama.parquet"
    pq.write_table(ama, ama_path)
    return {"cap": cap_path, "ama": ama_path, "images": images, "sha": sha}


# -- VLM-3R ------------------------------------------------------------------------------------


def make_vlm3r(tmp: Path) -> tuple[Path, Path]:
    videos = tmp / "vlm3r_videos"
    write_tiny_mp4(videos / "scannet" / "scene0000_00.mp4")
    records = [
        {"id": "vlm3r_0", "data_source": "scannet", "scene_name": "scene0000_00", "question_type": "object_counting",
         "video": "scannet/scene0000_00.mp4",
         "conversations": [
             {"from": "human", "value": "<image>\nThese are frames of a video.\nHow many chair(s) are in this room?\n"
                                         "Please answer the question using a single word or phrase."},
             {"from": "gpt", "value": "2"}]},
        {"id": "vlm3r_1", "data_source": "scannet", "scene_name": "scene0000_00", "question_type": "object_rel_direction_easy",
         "video": "scannet/scene0000_00.mp4",
         "conversations": [
             {"from": "human", "value": "<image>\nThese are frames of a video.\nIf I am standing by the chair and facing the "
                                         "table, is the door to my left or right?\nOptions:\nA. left\nB. right\n"
                                         "Answer with the option's letter from the given choices directly."},
             {"from": "gpt", "value": "B"}]},
        {"id": "vlm3r_2", "data_source": "scannet", "scene_name": "scene0099_00", "question_type": "room_size_estimation",
         "video": "scannet/scene0099_00.mp4",
         "conversations": [{"from": "human", "value": "<image>\nWhat is the size of this room?"},
                           {"from": "gpt", "value": "20.5"}]},
        {"id": "vlm3r_3", "data_source": "scannet", "scene_name": "scene0000_00", "video": "scannet/scene0000_00.mp4",
         "conversations": [{"from": "human", "value": "<image>\nDescribe the room."},
                           {"from": "gpt", "value": "A bedroom with a chair and a table."}]},
        {"id": "vlm3r_4", "data_source": "scannet", "scene_name": "scene0000_00", "video": "scannet/scene0000_00.mp4",
         "conversations": [{"from": "human", "value": "<image>\n"}]},
    ]
    path = tmp / "vlm3r.json"
    path.write_text(json.dumps(records))
    return path, videos


# -- question generation ---------------------------------------------------------------------


def stand_in_generate_questions(scene, seed=0, families=None, split="train", video=None, max_per_family=None):
    """Used only while `vlmem.data.qa` is not importable: one counting question per category."""
    return [{"id": f"{scene.name}-count-{i}", "dataset": scene.dataset, "scene_name": scene.name,
             "question_type": "object_counting", "question": f"How many {cat}(s) are in this room?",
             "options": None, "ground_truth": str(n), "answer_kind": "numeric", "video": video, "split": split,
             "num_frames": scene.num_frames, "duration": scene.duration}
            for i, (cat, n) in enumerate(sorted(scene.object_counts.items()))]


def patch_qa_if_missing(monkeypatch, module) -> None:
    try:
        import vlmem.data.qa as qa

        qa.generate_questions  # noqa: B018
    except (ImportError, AttributeError):
        monkeypatch.setattr(module, "_generate_questions",
                            lambda scene, seed, split, video: stand_in_generate_questions(scene, seed, split=split, video=video))
