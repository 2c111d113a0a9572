"""VLM² 3D-aware fusion: position injection, viewpoint alignment, cross-attention fusion.

Standalone: imports only torch, ``vlmem.geometry`` (coordinate normalisation) and ``vlmem.errors``.
See docs/fusion.md for equations, shapes and recipe keys.
"""

from vlmem.fusion.cross_attention import CrossAttentionFusion
from vlmem.fusion.fusion3d import Fusion3D
from vlmem.fusion.position import COORDINATE_GATES, PositionInjection
from vlmem.fusion.viewpoint import ViewpointAlignment

__all__ = ["COORDINATE_GATES", "CrossAttentionFusion", "Fusion3D", "PositionInjection", "ViewpointAlignment"]
