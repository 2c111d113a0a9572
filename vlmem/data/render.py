"""A small vectorised numpy ray-caster for box rooms: RGB, z-depth, instance ids, visibility.

World frame: metres, z up; the room is the box x in [-Lx/2, Lx/2], y in [-Ly/2, Ly/2],
z in [0, H] (floor at z = 0). Cameras: camera-to-world 4x4 poses with the OpenCV camera
frame (x right, y down, z forward); pinhole intrinsics with the principal point at the
image centre (W/2, H/2) and pixel (u, v) covering [u, u+1) x [v, v+1), so its ray goes
through (u + 0.5, v + 0.5). Depth is z-depth along the optical axis (as ScanNet/ARKit
depth maps), not the ray length.

Objects are boxes rotated about the vertical axis only (`SceneObject.normalized_axes`
rows; the third axis must be +z). Faces are flat-shaded by a fixed light direction, so
each face of a box has its own brightness and shapes read at 32 x 32 px.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vlmem.data.scene import SceneObject

# Face ids: 2 * axis + (0 for the -axis side, 1 for the +axis side).
LIGHT_DIR = np.array([0.35, 0.6, 1.0]) / np.linalg.norm([0.35, 0.6, 1.0])
AMBIENT = 0.55  # shade = AMBIENT + (1 - AMBIENT) * max(0, normal . LIGHT_DIR)
ROOM_AMBIENT = 0.8  # room faces are lit more evenly than objects
FLOOR_RGB = (125, 130, 145)
WALL_RGB = (235, 225, 205)
CEILING_RGB = (250, 250, 250)


@dataclass
class RenderResult:
    rgb: np.ndarray  # uint8 [F, H, W, 3]
    depth: np.ndarray  # float32 [F, H, W], metres (z-depth)
    instance: np.ndarray  # int16 [F, H, W], index into the objects list, -1 = room (floor/wall/ceiling)
    pixel_counts: np.ndarray  # int64 [F, N], visible pixels of each object per frame

    def visible(self, min_pixels: int | None = None) -> np.ndarray:
        """bool [F, N]: object has at least `min_pixels` pixels in the frame (default: min_visible_pixels)."""
        h, w = self.depth.shape[1:]
        k = min_visible_pixels(h, w) if min_pixels is None else int(min_pixels)
        return self.pixel_counts >= k


def min_visible_pixels(height: int, width: int, fraction: float = 0.002, floor: int = 4) -> int:
    """Pixels an object needs in a frame to count as visible: max(4, ceil(0.2% of the image))."""
    return max(int(floor), int(math.ceil(fraction * height * width - 1e-9)))


def intrinsics_matrix(height: int, width: int, fov_deg: float = 60.0) -> np.ndarray:
    """Pinhole K [3, 3] with horizontal field of view `fov_deg`, square pixels, centred principal point."""
    fx = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return np.array([[fx, 0.0, width / 2.0], [0.0, fx, height / 2.0], [0.0, 0.0, 1.0]])


def look_pose(position, yaw: float, pitch: float = 0.0) -> np.ndarray:
    """Camera-to-world 4x4 (OpenCV camera) at `position`, heading `yaw` (radians from +x toward +y),
    `pitch` radians (negative looks down)."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    forward = np.array([cp * cy, cp * sy, sp])
    right = np.array([sy, -cy, 0.0])
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, np.asarray(position, dtype=float)
    return pose


def yaw_of(obj: SceneObject) -> float:
    axes = obj.normalized_axes
    return math.atan2(axes[0, 1], axes[0, 0])


def _face_shades(normals: np.ndarray, ambient: float = AMBIENT) -> np.ndarray:
    return ambient + (1.0 - ambient) * np.clip(normals @ LIGHT_DIR, 0.0, None)


def _room_face_colours() -> np.ndarray:
    """[6, 3] float colours of the room faces as seen from inside (normal points inward)."""
    colours = np.zeros((6, 3))
    for face in range(6):
        axis, plus = divmod(face, 2)
        normal = np.zeros(3)
        normal[axis] = -1.0 if plus else 1.0  # the +x wall faces -x, etc.
        base = WALL_RGB if axis < 2 else (CEILING_RGB if plus else FLOOR_RGB)
        colours[face] = np.asarray(base, dtype=float) * _face_shades(normal[None], ROOM_AMBIENT)[0]
    return colours


def render_boxes(
    room_dims,
    objects: list[SceneObject],
    colours,
    poses: np.ndarray,
    intrinsics: np.ndarray,
    height: int,
    width: int,
    max_chunk_elements: int = 4_000_000,
) -> RenderResult:
    """Ray-cast `objects` (with RGB `colours` [N, 3]) inside the room box for every pose [F, 4, 4].

    The camera must be inside the room and outside every object. Work is vectorised over
    frames x objects x pixels, in chunks of frames bounded by `max_chunk_elements`.
    """
    dims = np.asarray(room_dims, dtype=np.float32).reshape(3)
    lo = np.array([-dims[0] / 2, -dims[1] / 2, 0.0], dtype=np.float32)
    hi = np.array([dims[0] / 2, dims[1] / 2, dims[2]], dtype=np.float32)
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)
    K = np.asarray(intrinsics, dtype=np.float64)
    F, N, P = len(poses), len(objects), height * width

    # Camera-frame ray directions with z = 1, so the ray parameter t is the z-depth.
    u = (np.arange(width) + 0.5 - K[0, 2]) / K[0, 0]
    v = (np.arange(height) + 0.5 - K[1, 2]) / K[1, 1]
    uu, vv = np.meshgrid(u, v)
    dirs_cam = np.stack([uu.ravel(), vv.ravel(), np.ones(P)], axis=1)  # [P, 3]

    if N:
        centres = np.stack([o.centroid for o in objects]).astype(np.float32)  # [N, 3]
        half = (np.stack([o.axes_lengths for o in objects]) / 2).astype(np.float32)  # [N, 3]
        yaws = np.array([yaw_of(o) for o in objects])
        cos, sin = np.cos(yaws).astype(np.float32), np.sin(yaws).astype(np.float32)
        # Per object, per face: world normal -> shade; colour [N, 6, 3].
        local = np.zeros((6, 3))
        for face in range(6):
            local[face, face // 2] = 1.0 if face % 2 else -1.0
        normals = np.zeros((N, 6, 3))
        normals[..., 0] = cos[:, None] * local[:, 0] - sin[:, None] * local[:, 1]
        normals[..., 1] = sin[:, None] * local[:, 0] + cos[:, None] * local[:, 1]
        normals[..., 2] = local[:, 2]
        obj_face_rgb = np.asarray(colours, dtype=float).reshape(N, 1, 3) * _face_shades(normals)[..., None]
    room_face_rgb = _room_face_colours()

    rgb = np.empty((F, height, width, 3), dtype=np.uint8)
    depth = np.empty((F, height, width), dtype=np.float32)
    instance = np.empty((F, height, width), dtype=np.int16)
    counts = np.zeros((F, N), dtype=np.int64)
    chunk = max(1, int(max_chunk_elements // max(1, P * max(N, 1))))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for start in range(0, F, chunk):
            sl = slice(start, min(F, start + chunk))
            B = sl.stop - sl.start
            R = poses[sl, :3, :3]
            origin = poses[sl, :3, 3].astype(np.float32)  # [B, 3]
            D = np.einsum("bij,pj->bpi", R, dirs_cam).astype(np.float32)  # [B, P, 3]
            inv = 1.0 / D
            # Room: exit distance through the enclosing box.
            t_walls = np.where(inv > 0, (hi - origin[:, None, :]) * inv, (lo - origin[:, None, :]) * inv)
            room_axis = np.argmin(t_walls, axis=2)  # [B, P]
            t_room = np.take_along_axis(t_walls, room_axis[..., None], axis=2)[..., 0]
            room_face = 2 * room_axis + (np.take_along_axis(D, room_axis[..., None], axis=2)[..., 0] > 0)
            out_depth = t_room
            out_inst = np.full((B, P), -1, dtype=np.int16)
            out_rgb = room_face_rgb[room_face]  # [B, P, 3]
            if N:
                Dx, Dy, Dz = D[:, None, :, 0], D[:, None, :, 1], D[:, None, :, 2]  # [B, 1, P]
                rel = origin[:, None, :] - centres[None]  # [B, N, 3]
                c, s = cos[None, :, None], sin[None, :, None]  # [1, N, 1]
                ox = (cos * rel[..., 0] + sin * rel[..., 1])[..., None]  # [B, N, 1]
                oy = (-sin * rel[..., 0] + cos * rel[..., 1])[..., None]
                oz = rel[..., 2][..., None]
                hx, hy, hz = half[None, :, 0, None], half[None, :, 1, None], half[None, :, 2, None]

                inv_x = 1.0 / (c * Dx + s * Dy)  # [B, N, P]
                tc = -ox * inv_x
                th = hx * np.abs(inv_x)
                tnear = tc - th
                tfar = tc + th
                inv_y = 1.0 / (c * Dy - s * Dx)
                tc = -oy * inv_y
                th = hy * np.abs(inv_y)
                np.maximum(tnear, tc - th, out=tnear)
                np.minimum(tfar, tc + th, out=tfar)
                inv_z = 1.0 / Dz  # [B, 1, P]
                tc = -oz * inv_z
                th = hz * np.abs(inv_z)
                np.maximum(tnear, tc - th, out=tnear)
                np.minimum(tfar, tc + th, out=tfar)
                miss = ~((tnear <= tfar) & (tnear > 0))
                tnear[miss] = np.inf
                best = np.argmin(tnear, axis=1)  # [B, P]
                t_obj = np.take_along_axis(tnear, best[:, None, :], axis=1)[:, 0]
                hit = t_obj < t_room
                out_depth = np.where(hit, t_obj, t_room)
                out_inst = np.where(hit, best, -1).astype(np.int16)
                # Which face was hit: the local axis where the hit point is closest to the box surface.
                p = origin[:, None, :] + t_obj[..., None] * D - centres[best]  # [B, P, 3]
                cb, sb = cos[best], sin[best]
                lp = np.stack([cb * p[..., 0] + sb * p[..., 1], -sb * p[..., 0] + cb * p[..., 1], p[..., 2]], -1)
                ratio = np.abs(lp) / half[best]
                axis = np.argmax(ratio, axis=-1)
                sign = np.take_along_axis(lp, axis[..., None], axis=-1)[..., 0] > 0
                face = 2 * axis + sign
                obj_rgb = obj_face_rgb[best, face]
                out_rgb = np.where(hit[..., None], obj_rgb, out_rgb)
                ids = np.where(hit, best, N) + (N + 1) * np.arange(B)[:, None]
                counts[sl] = np.bincount(ids.ravel(), minlength=B * (N + 1)).reshape(B, N + 1)[:, :N]
            depth[sl] = np.nan_to_num(out_depth, nan=0.0, posinf=0.0).reshape(B, height, width)
            instance[sl] = out_inst.reshape(B, height, width)
            rgb[sl] = np.clip(out_rgb + 0.5, 0, 255).astype(np.uint8).reshape(B, height, width, 3)
    return RenderResult(rgb=rgb, depth=depth, instance=instance, pixel_counts=counts)
