"""Semantic-geometric cross-attention fusion (VLM² stage 3; VLM-3R's fusion block as a special case).

Structure and layer names follow VLM-3R's ``CrossAttentionFusion``
(``llava/model/multimodal_fusion_block/builder.py``), so its ``fusion_block.*`` weights load
with ``load_state_dict`` when the widths match:

    x^   = clip_norm(x)                                  x  [B, N, dim]   (visual / SigLIP tokens)
    g^   = spatial_encoder_norm(g)                       g  [B, M, kv_dim] (geometry tokens)
    A    = MHA(Q = clip_query_proj(x^),
               K = spatial_encoder_key_proj(g^),
               V = spatial_encoder_value_proj(g^))      width attn_dim, num_heads heads
    out  = x + dropout(out_norm(out_proj(A)))            [B, N, dim]

Initialisation: ``out_norm.weight`` (the LayerNorm gain of the residual branch) starts at
``init_scale`` (default 1e-2) and its bias at 0, so a fresh block is ``x + O(1e-2)``: close
to the identity, yet every parameter receives gradient from the first step. (VLM-3R uses
the default gain 1; loading its weights overrides ours.)

Differences from VLM-3R: dropout is applied to the residual branch (VLM-3R applies p=0.1
to the sum ``x + branch``) and defaults to 0; the attention weights are not returned
(``return_attention=True`` gives them).
"""

from __future__ import annotations

import torch
from torch import nn

from vlmem.errors import ConfigError, UsageError

__all__ = ["CrossAttentionFusion"]


class CrossAttentionFusion(nn.Module):
    def __init__(
        self,
        dim: int,
        kv_dim: int,
        num_heads: int = 8,
        attn_dim: int | None = None,
        dropout: float = 0.0,
        init_scale: float = 1e-2,
    ):
        super().__init__()
        attn_dim = attn_dim or dim
        if num_heads <= 0 or attn_dim % num_heads != 0:
            raise ConfigError(
                "invalid cross-attention heads",
                [f"[model.fusion] num_heads = {num_heads} must be positive and divide the attention width {attn_dim}"],
            )
        self.dim, self.kv_dim, self.attn_dim, self.num_heads = dim, kv_dim, attn_dim, num_heads
        self.clip_norm = nn.LayerNorm(dim)
        self.spatial_encoder_norm = nn.LayerNorm(kv_dim)
        self.clip_query_proj = nn.Linear(dim, attn_dim)
        self.spatial_encoder_key_proj = nn.Linear(kv_dim, attn_dim)
        self.spatial_encoder_value_proj = nn.Linear(kv_dim, attn_dim)
        self.cross_attention = nn.MultiheadAttention(embed_dim=attn_dim, num_heads=num_heads, batch_first=True)
        self.out_proj = nn.Linear(attn_dim, dim)
        self.out_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        with torch.no_grad():
            self.out_norm.weight.fill_(init_scale)
            self.out_norm.bias.zero_()

    def forward(
        self,
        visual: torch.Tensor,
        geometry: torch.Tensor,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """visual [B, N, dim], geometry [B, M, kv_dim] -> [B, N, dim] (and [B, N, M] weights if asked)."""
        if visual.ndim != 3 or visual.shape[-1] != self.dim:
            raise UsageError(f"visual tokens must be [B, N, {self.dim}], got {tuple(visual.shape)}")
        if geometry.ndim != 3 or geometry.shape[-1] != self.kv_dim or geometry.shape[0] != visual.shape[0]:
            raise UsageError(
                f"geometry tokens must be [B={visual.shape[0]}, M, {self.kv_dim}], got {tuple(geometry.shape)}"
            )
        dtype = self.clip_query_proj.weight.dtype
        q = self.clip_query_proj(self.clip_norm(visual.to(dtype)))
        g = self.spatial_encoder_norm(geometry.to(dtype))
        k = self.spatial_encoder_key_proj(g)
        v = self.spatial_encoder_value_proj(g)
        fused, weights = self.cross_attention(q, k, v, need_weights=return_attention)
        branch = self.dropout(self.out_norm(self.out_proj(fused)))
        out = visual + branch.to(visual.dtype)
        return (out, weights) if return_attention else out
