"""Sensor geometry: depth + intrinsics + camera poses -> pointmaps and camera features.

Conventions (see docs/fusion.md):

* Pixel ``(row v, column u)`` is back-projected at integer pixel coordinates
  (``u = 0..W-1``, ``v = 0..H-1``), the OpenCV / DUSt3R convention:
  ``X = (u - cx) * z / fx``, ``Y = (v - cy) * z / fy``, ``Z = z``.
* ``cam_to_world`` maps camera coordinates to world coordinates (ScanNet
  ``pose/*.txt``, inverted ARKitScenes ``.traj``).
* Pointmaps and camera features are expressed in the camera frame of the
  *reference* frame, which is the first frame (VLM-3R / CUT3R convention:
  geometry relative to the first view). If the first frame has a non-finite pose
  (ScanNet marks lost tracking with ``-inf``), the first frame with a finite pose
  is the reference instead.
* Units are whatever the depth is in (metres for the shipped converters).
"""

from __future__ import annotations

import torch

from vlmem.errors import UsageError

__all__ = [
    "CAMERA_FEATURE_DIM",
    "camera_features",
    "depth_to_pointmap",
    "pose_valid",
    "reference_frame_index",
    "relative_poses",
]

#: Width of :func:`camera_features`: 9 (rotation, row-major) + 3 (translation) + 4 (fx/W, fy/H, cx/W, cy/H).
CAMERA_FEATURE_DIM = 16


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _check_poses(cam_to_world: torch.Tensor) -> None:
    if cam_to_world.ndim != 3 or cam_to_world.shape[-2:] != (4, 4):
        raise UsageError(f"cam_to_world must be [F, 4, 4], got {tuple(cam_to_world.shape)}")


def _expand_intrinsics(intrinsics: torch.Tensor, frames: int) -> torch.Tensor:
    if intrinsics.shape == (3, 3):
        return intrinsics.unsqueeze(0).expand(frames, 3, 3)
    if intrinsics.ndim == 3 and intrinsics.shape[1:] == (3, 3) and intrinsics.shape[0] in (1, frames):
        return intrinsics.expand(frames, 3, 3)
    raise UsageError(f"intrinsics must be [3, 3] or [F={frames}, 3, 3], got {tuple(intrinsics.shape)}")


def pose_valid(cam_to_world: torch.Tensor) -> torch.Tensor:
    """[F] bool: the pose is finite (ScanNet writes ``-inf`` matrices for lost tracking)."""
    _check_poses(cam_to_world)
    return torch.isfinite(cam_to_world).flatten(1).all(dim=1)


def reference_frame_index(cam_to_world: torch.Tensor) -> int:
    """Index of the reference frame: the first frame with a finite pose (0 for sane data), or 0 if none."""
    ok = pose_valid(cam_to_world)
    idx = torch.nonzero(ok).flatten()
    return int(idx[0]) if idx.numel() else 0


def relative_poses(cam_to_world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Poses relative to the reference frame: ``T_ref^{-1} @ T_i`` ([F, 4, 4], float64) and [F] validity.

    Invalid poses are replaced by the identity (and flagged invalid) so nothing downstream sees NaN/inf.
    """
    _check_poses(cam_to_world)
    ok = pose_valid(cam_to_world)
    eye = torch.eye(4, dtype=torch.float64, device=cam_to_world.device)
    poses = torch.where(ok[:, None, None], cam_to_world.to(torch.float64), eye)
    ref = poses[reference_frame_index(cam_to_world)]
    rel = torch.linalg.solve(ref, poses)  # ref^{-1} @ T_i, batched over frames
    return rel, ok


def depth_to_pointmap(
    depth: torch.Tensor,
    intrinsics: torch.Tensor,
    cam_to_world: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-project depth maps into one shared frame: the reference (first) camera's coordinates.

    Args:
        depth: [F, H, W] depth along the optical axis (NaN, inf and ``<= 0`` mean "no measurement").
        intrinsics: [3, 3] or [F, 3, 3] pinhole matrices in pixels of this depth map.
        cam_to_world: [F, 4, 4] camera-to-world poses.

    Returns:
        points [F, H, W, 3] (invalid points are exactly 0; never NaN) and valid [F, H, W] bool.
        A frame whose pose is non-finite is entirely invalid.
    """
    if depth.ndim != 3:
        raise UsageError(f"depth must be [F, H, W], got {tuple(depth.shape)}")
    frames, height, width = depth.shape
    _check_poses(cam_to_world)
    if cam_to_world.shape[0] != frames:
        raise UsageError(f"cam_to_world has {cam_to_world.shape[0]} frames but depth has {frames}")
    k = _expand_intrinsics(intrinsics, frames)
    dtype = _compute_dtype(depth) if depth.is_floating_point() else torch.float32
    device = depth.device

    z = depth.to(dtype)
    rel, pose_ok = relative_poses(cam_to_world)
    k = k.to(torch.float64)
    k_ok = torch.isfinite(k).flatten(1).all(1) & (k[:, 0, 0] != 0) & (k[:, 1, 1] != 0)
    valid = torch.isfinite(z) & (z > 0) & (pose_ok & k_ok)[:, None, None]
    z = torch.where(valid, z, torch.zeros((), dtype=dtype, device=device))

    k_safe = torch.where(k_ok[:, None, None], k, torch.eye(3, dtype=torch.float64, device=device))
    fx, fy = k_safe[:, 0, 0].to(dtype), k_safe[:, 1, 1].to(dtype)
    cx, cy = k_safe[:, 0, 2].to(dtype), k_safe[:, 1, 2].to(dtype)
    u = torch.arange(width, dtype=dtype, device=device).view(1, 1, width)
    v = torch.arange(height, dtype=dtype, device=device).view(1, height, 1)
    x = (u - cx.view(-1, 1, 1)) * z / fx.view(-1, 1, 1)
    y = (v - cy.view(-1, 1, 1)) * z / fy.view(-1, 1, 1)
    cam_pts = torch.stack([x, y, z], dim=-1)  # [F, H, W, 3]

    rel = rel.to(dtype)
    rot, trans = rel[:, :3, :3], rel[:, :3, 3]
    pts = torch.einsum("fij,fhwj->fhwi", rot, cam_pts) + trans.view(frames, 1, 1, 3)
    pts = torch.where(valid.unsqueeze(-1), pts, torch.zeros((), dtype=dtype, device=device))
    out_dtype = depth.dtype if depth.is_floating_point() else torch.float32
    return pts.to(out_dtype), valid


def camera_features(
    cam_to_world: torch.Tensor,
    intrinsics: torch.Tensor,
    image_size: tuple[int, int],
) -> torch.Tensor:
    """Per-frame camera feature vector [F, 16] (:data:`CAMERA_FEATURE_DIM`), float32 (float64 in, float64 out).

    Layout: ``[R_rel (9, row-major), t_rel (3), fx/W, fy/H, cx/W, cy/H]`` where
    ``[R_rel | t_rel] = T_ref^{-1} T_i`` is the pose relative to the reference (first)
    frame, and ``image_size = (H, W)`` is the size the intrinsics refer to.
    Frames with a non-finite pose get an all-zero pose part (impossible for a real
    rotation, so it doubles as an "unknown pose" flag); non-finite intrinsics give zeros.
    """
    _check_poses(cam_to_world)
    frames = cam_to_world.shape[0]
    height, width = int(image_size[0]), int(image_size[1])
    if height <= 0 or width <= 0:
        raise UsageError(f"image_size must be positive (H, W), got {image_size}")
    k = _expand_intrinsics(intrinsics, frames).to(torch.float64)
    rel, ok = relative_poses(cam_to_world)
    pose = torch.cat([rel[:, :3, :3].reshape(frames, 9), rel[:, :3, 3]], dim=1)
    pose = torch.where(ok[:, None], pose, torch.zeros_like(pose))
    intr = torch.stack([k[:, 0, 0] / width, k[:, 1, 1] / height, k[:, 0, 2] / width, k[:, 1, 2] / height], dim=1)
    intr = torch.where(torch.isfinite(intr), intr, torch.zeros_like(intr))
    out_dtype = torch.float64 if cam_to_world.dtype == torch.float64 else torch.float32
    return torch.cat([pose, intr], dim=1).to(out_dtype)
