"""Adaptive 3D position injection (VLM² stage 1).

    c~  = c / s                                    (s: coordinate scale, see below; invalid c -> 0)
    p   = W2 GELU(W1 c~ + b1) + b2                  (Linear(3,h) -> GELU -> Linear(h,D))
    out = x + m * g ⊙ p                             (m = 1 for valid coordinates, 0 otherwise)

Gate ``g``:
* ``"sigmoid"``: per-channel ``g = sigmoid(a)``, ``a`` [D] initialised to ``-4`` (g ≈ 0.018), so a
  fresh block perturbs the visual tokens only slightly but every parameter gets gradient.
* ``"scalar"``: one learnable scalar ``g`` initialised to 0 (a zero-init residual, no tanh):
  the block starts as the exact identity.

Scale ``s``: ``forward(..., scale=...)`` takes a float, 0-d tensor or [B] tensor. The intended use
is one scale per *video* (median norm of that video's valid coordinates,
``vlmem.geometry.coordinate_scale``) repeated over its frames, so all frames share one metric.
When ``scale`` is None each row (frame) is normalised by its own median norm.
"""

from __future__ import annotations

import torch
from torch import nn

from vlmem.errors import ConfigError, UsageError
from vlmem.geometry.pooling import normalize_coordinates

__all__ = ["COORDINATE_GATES", "PositionInjection"]

COORDINATE_GATES = ("sigmoid", "scalar")
SIGMOID_GATE_INIT = -4.0


class PositionInjection(nn.Module):
    def __init__(self, dim: int, hidden: int | None = None, gate: str = "sigmoid"):
        super().__init__()
        if gate not in COORDINATE_GATES:
            raise ConfigError(
                f"unknown coordinate gate {gate!r}",
                [f"[model.fusion] coordinate_gate must be one of {list(COORDINATE_GATES)}"],
            )
        hidden = hidden or dim
        self.dim = dim
        self.gate_kind = gate
        self.mlp = nn.Sequential(nn.Linear(3, hidden), nn.GELU(), nn.Linear(hidden, dim))
        if gate == "sigmoid":
            self.gate = nn.Parameter(torch.full((dim,), SIGMOID_GATE_INIT))
        else:
            self.gate = nn.Parameter(torch.zeros(()))

    def gate_value(self) -> torch.Tensor:
        return torch.sigmoid(self.gate) if self.gate_kind == "sigmoid" else self.gate

    def forward(
        self,
        tokens: torch.Tensor,
        coords: torch.Tensor,
        valid: torch.Tensor | None = None,
        scale: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """tokens [B, N, D], coords [B, N, 3], valid [B, N] bool (None = finite coords) -> [B, N, D]."""
        if tokens.ndim != 3 or tokens.shape[-1] != self.dim:
            raise UsageError(f"tokens must be [B, N, {self.dim}], got {tuple(tokens.shape)}")
        if coords.shape != (*tokens.shape[:2], 3):
            raise UsageError(f"coords must be {(*tokens.shape[:2], 3)}, got {tuple(coords.shape)}")
        ok = torch.isfinite(coords).all(-1)
        if valid is not None:
            if valid.shape != tokens.shape[:2]:
                raise UsageError(f"valid must be {tuple(tokens.shape[:2])}, got {tuple(valid.shape)}")
            ok = ok & valid.bool()
        dtype = self.mlp[0].weight.dtype
        xyz = normalize_coordinates(coords, ok, scale).to(dtype)
        pos = self.mlp(xyz) * self.gate_value().to(dtype)
        pos = torch.where(ok.unsqueeze(-1), pos, torch.zeros((), dtype=dtype, device=pos.device))
        return tokens + pos.to(tokens.dtype)
