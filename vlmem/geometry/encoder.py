"""Sensor geometry encoder: pooled coordinates + camera features -> geometry tokens.

With ``[model.geometry] source = "sensor"`` there is no CUT3R/VGGT encoder; this small
module plays its role and produces tokens in the same layout as cached features:
``camera_tokens`` [B, 1, geo_dim] and ``patch_tokens`` [B, P, geo_dim].

    patch_tokens  = MLP_p([x/s, y/s, z/s, valid])        (invalid cells: coords 0, valid 0)
    camera_tokens = MLP_c(camera_features)                (16-d, see sensor.camera_features)

Each MLP is Linear -> GELU -> Linear. ``s`` is the coordinate scale (per video median
norm, see ``pooling.coordinate_scale``).
"""

from __future__ import annotations

import torch
from torch import nn

from vlmem.errors import UsageError
from vlmem.geometry.pooling import normalize_coordinates
from vlmem.geometry.sensor import CAMERA_FEATURE_DIM

__all__ = ["SensorGeometryEncoder"]


class SensorGeometryEncoder(nn.Module):
    def __init__(self, cam_dim_in: int = CAMERA_FEATURE_DIM, geo_dim: int = 256, hidden: int | None = None):
        super().__init__()
        if cam_dim_in <= 0 or geo_dim <= 0:
            raise UsageError(f"cam_dim_in and geo_dim must be positive, got {cam_dim_in}, {geo_dim}")
        hidden = hidden or geo_dim
        self.cam_dim_in = cam_dim_in
        self.geo_dim = geo_dim
        self.patch_mlp = nn.Sequential(nn.Linear(4, hidden), nn.GELU(), nn.Linear(hidden, geo_dim))
        self.camera_mlp = nn.Sequential(nn.Linear(cam_dim_in, hidden), nn.GELU(), nn.Linear(hidden, geo_dim))

    def forward(
        self,
        coords: torch.Tensor,
        valid: torch.Tensor | None,
        cam: torch.Tensor,
        scale: torch.Tensor | float | None = None,
    ) -> dict[str, torch.Tensor]:
        """coords [B, P, 3], valid [B, P] bool (None = all valid), cam [B, cam_dim_in].

        Returns ``{"camera_tokens": [B, 1, geo_dim], "patch_tokens": [B, P, geo_dim]}`` in the module dtype.
        """
        if coords.ndim != 3 or coords.shape[-1] != 3:
            raise UsageError(f"coords must be [B, P, 3], got {tuple(coords.shape)}")
        if cam.ndim == 3 and cam.shape[1] == 1:
            cam = cam[:, 0]
        if cam.ndim != 2 or cam.shape != (coords.shape[0], self.cam_dim_in):
            raise UsageError(f"cam must be [B={coords.shape[0]}, {self.cam_dim_in}], got {tuple(cam.shape)}")
        dtype = self.patch_mlp[0].weight.dtype
        ok = torch.isfinite(coords).all(-1)
        if valid is not None:
            ok = ok & valid.bool()
        xyz = normalize_coordinates(coords, ok, scale).to(dtype)
        feats = torch.cat([xyz, ok.unsqueeze(-1).to(dtype)], dim=-1)
        cam = torch.nan_to_num(cam.to(dtype), nan=0.0, posinf=0.0, neginf=0.0)
        return {
            "camera_tokens": self.camera_mlp(cam).unsqueeze(1),
            "patch_tokens": self.patch_mlp(feats),
        }
