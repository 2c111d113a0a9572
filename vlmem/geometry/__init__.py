"""Where 3D comes from: sensor depth + pose, cached CUT3R / pi3 / VGGT features, or nothing.

Standalone: imports only torch, safetensors and ``vlmem.errors``.
"""

from vlmem.geometry.cached import (
    CACHED_KEYS,
    POINT_KEYS,
    cached_geometry_keys,
    cached_locations,
    find_cached_geometry,
    load_cached_geometry,
    resample_patch_tokens,
    select_frames,
    uniform_frame_indices,
)
from vlmem.geometry.encoder import SensorGeometryEncoder
from vlmem.geometry.pooling import coordinate_scale, normalize_coordinates, pool_points_to_grid
from vlmem.geometry.sensor import (
    CAMERA_FEATURE_DIM,
    camera_features,
    depth_to_pointmap,
    pose_valid,
    reference_frame_index,
    relative_poses,
)

GEOMETRY_SOURCES = ("sensor", "cached", "none")

__all__ = [
    "CACHED_KEYS",
    "CAMERA_FEATURE_DIM",
    "GEOMETRY_SOURCES",
    "SensorGeometryEncoder",
    "camera_features",
    "coordinate_scale",
    "depth_to_pointmap",
    "POINT_KEYS",
    "cached_geometry_keys",
    "cached_locations",
    "find_cached_geometry",
    "load_cached_geometry",
    "normalize_coordinates",
    "pool_points_to_grid",
    "pose_valid",
    "reference_frame_index",
    "relative_poses",
    "resample_patch_tokens",
    "select_frames",
    "uniform_frame_indices",
]
