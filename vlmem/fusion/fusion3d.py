"""Fusion3D: VLM²'s 3D-aware fusion, every stage switchable.

    h  = PositionInjection(x, coords, valid)           if position_injection   else x
    kv = ViewpointAlignment(geo, cam)   [B,1+P,dim]    if viewpoint_alignment
       = [cam_token; geo]               [B,1+P,geo_dim] otherwise (cam optional)
    y  = CrossAttentionFusion(h, kv)                   if cross_attention      else h

With injection and alignment off this is exactly VLM-3R's fusion block: Q = vision tokens,
KV = [camera token; patch tokens] of the geometry encoder, one cross-attention layer.
With all stages off it is the identity (no parameters).
"""

from __future__ import annotations

import torch
from torch import nn

from vlmem.errors import ConfigError, UsageError
from vlmem.fusion.cross_attention import CrossAttentionFusion
from vlmem.fusion.position import PositionInjection
from vlmem.fusion.viewpoint import ViewpointAlignment

__all__ = ["Fusion3D"]


class Fusion3D(nn.Module):
    def __init__(
        self,
        dim: int,
        geo_dim: int,
        cam_dim: int | None = None,
        num_heads: int = 8,
        position_injection: bool = True,
        viewpoint_alignment: bool = True,
        cross_attention: bool = True,
        coordinate_gate: str = "sigmoid",
        attn_dim: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        cam_dim = cam_dim or geo_dim
        if viewpoint_alignment and not cross_attention:
            raise ConfigError(
                "invalid fusion stages",
                [
                    "[model.fusion] viewpoint_alignment = true needs cross_attention = true "
                    "(the aligned geometry tokens are consumed only by the cross-attention); "
                    "set viewpoint_alignment = false too"
                ],
            )
        self.dim, self.geo_dim, self.cam_dim = dim, geo_dim, cam_dim
        self.position = PositionInjection(dim, gate=coordinate_gate) if position_injection else None
        self.viewpoint = ViewpointAlignment(geo_dim, cam_dim, dim) if viewpoint_alignment else None
        # VLM-3R path: the camera token joins the patch tokens as one more key, so it must share their width.
        self.cam_proj = (
            nn.Linear(cam_dim, geo_dim) if cross_attention and not viewpoint_alignment and cam_dim != geo_dim else None
        )
        kv_dim = dim if viewpoint_alignment else geo_dim
        self.cross = (
            CrossAttentionFusion(dim, kv_dim, num_heads, attn_dim=attn_dim, dropout=dropout)
            if cross_attention
            else None
        )

    @property
    def is_identity(self) -> bool:
        return self.position is None and self.cross is None

    def forward(
        self,
        visual: torch.Tensor,
        coords: torch.Tensor | None = None,
        coords_valid: torch.Tensor | None = None,
        geo_tokens: torch.Tensor | None = None,
        cam: torch.Tensor | None = None,
        coord_scale: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """visual [B, N, dim]; coords [B, N, 3]; coords_valid [B, N] bool; geo_tokens [B, P, geo_dim];
        cam [B, cam_dim] or [B, 1, cam_dim]; coord_scale float / [B] (see PositionInjection) -> [B, N, dim].

        Inputs a disabled stage would use may be None; inputs an enabled stage needs must not be.
        """
        h = visual
        if self.position is not None:
            if coords is None:
                raise UsageError("position injection is on but no coordinates were given "
                                 "(set [model.fusion] position_injection = false or provide geometry)")
            h = self.position(h, coords, coords_valid, coord_scale)
        if self.cross is None:
            return h
        if geo_tokens is None:
            raise UsageError("cross-attention fusion is on but no geometry tokens were given "
                             "(set [model.fusion] cross_attention = false or [model.geometry] source)")
        if cam is not None and cam.ndim == 2:
            cam = cam.unsqueeze(1)
        if self.viewpoint is not None:
            if cam is None:
                raise UsageError("viewpoint alignment is on but no camera features/tokens were given")
            kv = self.viewpoint(geo_tokens, cam)
        else:
            kv = geo_tokens
            if cam is not None:
                if cam.shape[0] != geo_tokens.shape[0] or cam.shape[1] != 1 or cam.shape[2] != self.cam_dim:
                    raise UsageError(f"camera tokens must be [B, 1, {self.cam_dim}], got {tuple(cam.shape)}")
                cam = cam.to(geo_tokens.dtype)
                if self.cam_proj is not None:
                    cam = self.cam_proj(cam.to(self.cam_proj.weight.dtype)).to(geo_tokens.dtype)
                kv = torch.cat([cam, geo_tokens], dim=1)
        return self.cross(h, kv)
