"""Viewpoint-aware geometry alignment (VLM² stage 2).

    v   = MLP_v(cam)                          cam [B, cam_dim] -> v [B, dim]  (Linear -> GELU -> Linear)
    a_j = LN_g(W_g g_j + b_g + v)             every geometry token g_j [geo_dim], j = 1..P
    t   = LN_v(v)                             frame-level view token
    out = [t; a_1 .. a_P]                     [B, 1+P, dim]

The view embedding conditions every geometry token on where the camera is (relative to the
first frame), so tokens from different viewpoints of the same surface land in one space; the
prepended view token lets the cross-attention attend to the viewpoint itself (the role the
CUT3R camera token plays in VLM-3R).
"""

from __future__ import annotations

import torch
from torch import nn

from vlmem.errors import UsageError

__all__ = ["ViewpointAlignment"]


class ViewpointAlignment(nn.Module):
    def __init__(self, geo_dim: int, cam_dim: int, dim: int):
        super().__init__()
        self.geo_dim, self.cam_dim, self.dim = geo_dim, cam_dim, dim
        self.view_mlp = nn.Sequential(nn.Linear(cam_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.geo_proj = nn.Linear(geo_dim, dim)
        self.geo_norm = nn.LayerNorm(dim)
        self.view_norm = nn.LayerNorm(dim)

    def forward(self, geo_tokens: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
        """geo_tokens [B, P, geo_dim], cam [B, cam_dim] or [B, 1, cam_dim] -> [B, 1+P, dim]."""
        if geo_tokens.ndim != 3 or geo_tokens.shape[-1] != self.geo_dim:
            raise UsageError(f"geometry tokens must be [B, P, {self.geo_dim}], got {tuple(geo_tokens.shape)}")
        if cam.ndim == 3 and cam.shape[1] == 1:
            cam = cam[:, 0]
        if cam.shape != (geo_tokens.shape[0], self.cam_dim):
            raise UsageError(f"camera features must be [B={geo_tokens.shape[0]}, {self.cam_dim}], got {tuple(cam.shape)}")
        dtype = self.geo_proj.weight.dtype
        view = self.view_mlp(cam.to(dtype))  # [B, dim]
        aligned = self.geo_norm(self.geo_proj(geo_tokens.to(dtype)) + view.unsqueeze(1))
        return torch.cat([self.view_norm(view).unsqueeze(1), aligned], dim=1)
