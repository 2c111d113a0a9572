import math

import pytest
import torch

from vlmem.errors import UsageError
from vlmem.geometry import (
    CAMERA_FEATURE_DIM,
    camera_features,
    coordinate_scale,
    depth_to_pointmap,
    normalize_coordinates,
    pool_points_to_grid,
)

K = torch.tensor([[2.0, 0.0, 1.5], [0.0, 4.0, 1.0], [0.0, 0.0, 1.0]])


def _pose(yaw_deg: float, t) -> torch.Tensor:
    a = math.radians(yaw_deg)
    p = torch.eye(4)
    p[:3, :3] = torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
    p[:3, 3] = torch.tensor(t, dtype=torch.float32)
    return p


def test_plane_pointmap_matches_hand_computation():
    depth = torch.full((2, 3, 4), 2.0)
    t0 = _pose(30.0, [5.0, -1.0, 2.0])  # arbitrary world placement of the first camera
    rel = _pose(90.0, [1.0, 0.0, 0.0])  # second camera relative to the first
    poses = torch.stack([t0, t0 @ rel])
    pts, valid = depth_to_pointmap(depth, K, poses)
    assert pts.shape == (2, 3, 4, 3) and valid.all()
    # Frame 0: its own camera frame. Pixel (v=2, u=3): X=(3-1.5)*2/2=1.5, Y=(2-1)*2/4=0.5, Z=2.
    assert torch.allclose(pts[0, 2, 3], torch.tensor([1.5, 0.5, 2.0]), atol=1e-5)
    assert torch.allclose(pts[0, 0, 0], torch.tensor([-1.5, -0.5, 2.0]), atol=1e-5)
    # Frame 1: camera point (1.5, 0.5, 2) rotated 90 deg about y then shifted by (1,0,0):
    # R_y(90) @ (x, y, z) = (z, y, -x) -> (2, 0.5, -1.5) + (1, 0, 0) = (3, 0.5, -1.5).
    assert torch.allclose(pts[1, 2, 3], torch.tensor([3.0, 0.5, -1.5]), atol=1e-5)


def test_first_frame_is_its_own_camera_frame_whatever_the_world_pose():
    depth = torch.rand(1, 2, 3) + 0.5
    a, _ = depth_to_pointmap(depth, K, torch.eye(4)[None])
    b, _ = depth_to_pointmap(depth, K, _pose(45.0, [3.0, 2.0, 1.0])[None])
    assert torch.allclose(a, b, atol=1e-5)


def test_invalid_depth_and_pose_are_masked_without_nan():
    depth = torch.full((2, 2, 2), 1.0)
    depth[0, 0, 0] = float("nan")
    depth[0, 0, 1] = 0.0
    depth[0, 1, 0] = float("inf")
    depth[0, 1, 1] = -1.0
    poses = torch.stack([torch.eye(4), torch.full((4, 4), float("-inf"))])
    pts, valid = depth_to_pointmap(depth, K, poses)
    assert not valid.any()
    assert torch.isfinite(pts).all() and (pts == 0).all()


def test_camera_features_relative_pose_and_intrinsics():
    t0 = _pose(30.0, [5.0, -1.0, 2.0])
    rel = _pose(0.0, [0.0, 0.0, 2.0])
    feats = camera_features(torch.stack([t0, t0 @ rel]), K, image_size=(3, 4))
    assert feats.shape == (2, CAMERA_FEATURE_DIM)
    assert torch.allclose(feats[0, :12], torch.cat([torch.eye(3).flatten(), torch.zeros(3)]), atol=1e-5)
    assert torch.allclose(feats[1, 9:12], torch.tensor([0.0, 0.0, 2.0]), atol=1e-5)
    assert torch.allclose(feats[0, 12:], torch.tensor([2 / 4, 4 / 3, 1.5 / 4, 1 / 3]))


def _loop_pool(points, valid, gh, gw):
    f, h, w, _ = points.shape
    coords = torch.zeros(f, gh * gw, 3, dtype=torch.float64)
    ok = torch.zeros(f, gh * gw, dtype=torch.bool)
    for b in range(f):
        for i in range(gh):
            r0, r1 = (i * h) // gh, -((-(i + 1) * h) // gh)
            for j in range(gw):
                c0, c1 = (j * w) // gw, -((-(j + 1) * w) // gw)
                m = valid[b, r0:r1, c0:c1]
                if m.any():
                    coords[b, i * gw + j] = points[b, r0:r1, c0:c1][m].double().mean(0)
                    ok[b, i * gw + j] = True
    return coords, ok


@pytest.mark.parametrize("hw,grid", [((6, 8), (3, 4)), ((7, 5), (3, 2)), ((5, 5), (4, 4))])
def test_pooling_matches_loop_reference(hw, grid):
    g = torch.Generator().manual_seed(0)
    points = torch.randn(2, *hw, 3, generator=g)
    valid = torch.rand(2, *hw, generator=g) > 0.4
    valid[1] = False
    valid[1, 0, 0] = True
    points[~valid] = float("nan")  # invalid values must be ignored
    coords, ok = pool_points_to_grid(points, valid, grid)
    ref, ref_ok = _loop_pool(points, valid, *grid)
    assert torch.equal(ok, ref_ok)
    assert torch.allclose(coords.double(), ref, atol=1e-5)
    assert torch.isfinite(coords).all()


def test_pooling_rejects_bad_shapes():
    with pytest.raises(UsageError):
        pool_points_to_grid(torch.zeros(1, 4, 4, 2), torch.ones(1, 4, 4, dtype=torch.bool), (2, 2))


def test_coordinate_scale_and_normalisation():
    coords = torch.tensor([[[3.0, 4.0, 0.0], [0.0, 0.0, 10.0], [float("nan"), 0.0, 0.0]]])
    valid = torch.tensor([[True, False, True]])
    assert coordinate_scale(coords, valid).item() == pytest.approx(5.0)
    out = normalize_coordinates(coords, valid)
    assert torch.allclose(out, torch.tensor([[[0.6, 0.8, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]))
    none_valid = normalize_coordinates(coords, torch.zeros(1, 3, dtype=torch.bool))
    assert (none_valid == 0).all()
