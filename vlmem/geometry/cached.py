"""Cached per-video geometry-encoder features (CUT3R / pi3 / VGGT).

File layout (one file per video, named ``<scene>.pt`` or ``<scene>.safetensors``):
a mapping with

* ``camera_tokens``: [F, 1, C] (one camera/view token per frame; [F, C] is accepted), and
* ``patch_tokens``:  [F, P, C] (P = gh*gw patch tokens per frame, row-major).

This is VLM-3R's ``spatial_features/<scene>.pt`` layout (CUT3R: C=768, P=729=27x27),
written by VITA-Group/VLM-3R ``scripts/extract_spatial_features.py`` (commit 6dd1264) as
``torch.save({"camera_tokens": [F,1,C], "patch_tokens": [F,P,C]}, <out>/<source>/spatial_features/<scene>.pt)``
in the precision it ran at (fp16 by default).

Optional: ``points`` (or ``pts3d``, CUT3R/DUSt3R's name) [F, H, W, 3], the 3D points of every
pixel in the first frame's coordinates (CUT3R / VGGT / pi3 pointmaps), with an optional
``conf`` / ``valid`` [F, H, W]; these feed position injection. ``.pt`` files are read with
``torch.load(..., weights_only=True)`` only: a file that needs full unpickling (arbitrary
Python objects) is rejected, never executed. Other keys are ignored.

Where the files are (``[model.geometry] cached_dir``): one folder of ``<scene>.pt``; a list of
folders searched in order; or a template with ``{data_source}`` (the row's ``dataset``, VLM-3R's
``data_source``) and/or ``{scene_name}``, e.g. ``data/vlm3r/{data_source}/spatial_features`` —
VLM-3R's per-source layout — or a whole file name ``.../{scene_name}.pt``.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F

from vlmem.errors import DataError, UsageError

__all__ = [
    "CACHED_KEYS",
    "POINT_KEYS",
    "cached_geometry_keys",
    "cached_locations",
    "find_cached_geometry",
    "load_cached_geometry",
    "resample_patch_tokens",
    "select_frames",
    "uniform_frame_indices",
]

CACHED_KEYS = ("camera_tokens", "patch_tokens")
POINT_KEYS = ("points", "pts3d")  # [F, H, W, 3]; CUT3R / DUSt3R call them pts3d
_SUFFIXES = (".safetensors", ".pt", ".pth")
_FIELDS = ("data_source", "dataset", "scene_name")


def _component(value: str, field: str, where: str) -> str:
    """A dataset-given name that goes into a path: one plain component, never '..' or a separator."""
    text = str(value)
    if not text or text in (".", "..") or "/" in text or "\\" in text or "\x00" in text:
        raise DataError(f"{where}: {field} = {text!r} cannot name a cached-geometry file (it must be one plain "
                        "folder/file name)")
    return text


def cached_locations(cached_dir: str | Path | list | tuple, scene: str, data_source: str | None = None) -> list[Path]:
    """Candidate files for one video, in search order (see the module docstring for the layouts)."""
    dirs = list(cached_dir) if isinstance(cached_dir, (list, tuple)) else [cached_dir]
    scene = _component(scene, "scene_name", "cached geometry")
    out: list[Path] = []
    for entry in dirs:
        text = str(entry)
        if "{" not in text:
            out += [Path(text) / f"{scene}{suffix}" for suffix in _SUFFIXES]
            continue
        if "{data_source}" in text or "{dataset}" in text:
            if not data_source:
                raise DataError(f"model.geometry.cached_dir = {text!r} names {{data_source}}, but the row of scene "
                                f"{scene!r} has no dataset / data_source")
            source = _component(data_source, "dataset", f"scene {scene!r}")
        else:
            source = ""
        try:
            filled = text.format(data_source=source, dataset=source, scene_name=scene)
        except (KeyError, IndexError, ValueError) as exc:
            raise UsageError(f"model.geometry.cached_dir = {text!r}: unknown placeholder {exc}; use "
                             "{data_source} and/or {scene_name}") from None
        if "{scene_name}" in text and Path(filled).suffix in _SUFFIXES:
            out.append(Path(filled))
        else:
            out += [Path(filled) / f"{scene}{suffix}" for suffix in _SUFFIXES]
    return out


_FOUND: dict[tuple, Path] = {}  # (cached_dir, scene, source) -> file, so each sample does not search again


def find_cached_geometry(cached_dir, scene: str, data_source: str | None = None) -> Path:
    """The first existing candidate of `cached_locations` (``.safetensors`` preferred over ``.pt`` / ``.pth``
    in each folder), else the same names one subfolder down; DataError naming where it looked if none exists."""
    key = (tuple(map(str, cached_dir)) if isinstance(cached_dir, (list, tuple)) else str(cached_dir), scene, data_source)
    if key in _FOUND:
        return _FOUND[key]
    candidates = cached_locations(cached_dir, scene, data_source)
    # then one level of subfolders: VLM-3R mirrors `<source>/videos/<split>/<scene>.mp4` as
    # `<source>/spatial_features/<split>/<scene>.pt` (ARKitScenes, ScanNet++)
    nested = [sub / c.name for c in candidates if c.parent.is_dir()
              for sub in sorted(d for d in c.parent.iterdir() if d.is_dir())]
    for path in candidates + nested:
        if path.is_file():
            _FOUND[key] = path
            return path
    folders = sorted({str(c.parent) for c in candidates})
    raise DataError(
        f"no cached geometry for scene {scene!r} in {', '.join(folders)} (looked for {scene}.safetensors / .pt / "
        ".pth); run the geometry encoder over this video (docs/real-data.md), set --set model.geometry.cached_dir=... "
        "to where the features are, or set [model.geometry] source = \"sensor\" or \"none\""
    )


def cached_geometry_keys(path: str | Path) -> set[str]:
    """The keys one cached file holds (read with the same weights-only loader)."""
    return set(map(str, _read(Path(path))))


def _read(path: Path) -> dict:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise DataError(
                f"{path}: not a readable safetensors file ({exc}); re-export it with safetensors.torch.save_file"
            ) from exc
    if suffix in (".pt", ".pth"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise DataError(
                f"{path}: refused to load — the file contains Python objects that are not plain tensors/containers, "
                "and vlmem only loads .pt files with torch.load(weights_only=True). Re-save it as a dict of tensors "
                "(torch.save({'camera_tokens': ..., 'patch_tokens': ...}, path)) or as .safetensors"
            ) from exc
        except (RuntimeError, OSError, EOFError, ValueError) as exc:
            raise DataError(f"{path}: could not be read as a torch file ({exc}); the file may be truncated") from exc
        if not isinstance(obj, dict):
            raise DataError(
                f"{path}: expected a dict with keys {list(CACHED_KEYS)}, got {type(obj).__name__}; "
                "re-save it as torch.save({'camera_tokens': [F,1,C], 'patch_tokens': [F,P,C]}, path)"
            )
        return obj
    raise DataError(f"{path}: unsupported cached-geometry file type {suffix!r}; use .safetensors or .pt")


def load_cached_geometry(path: str | Path, expected_frames: int | None = None) -> dict[str, torch.Tensor]:
    """Load and validate one video's cached geometry tokens.

    Returns ``{"camera_tokens": [F, 1, C], "patch_tokens": [F, P, C]}`` on CPU, in the stored
    floating dtype, plus ``"points"`` [F, H, W, 3] float32 and ``"points_valid"`` [F, H, W] bool
    when the file has ``points`` / ``pts3d`` (valid: finite, and ``valid`` / ``conf > 0`` if given). Raises :class:`DataError` naming the file, the offending key and the fix
    when a key is missing, not a tensor, not floating point, wrongly shaped, non-finite, or
    when the frame count differs from ``expected_frames``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: cached geometry file not found; check [model.geometry] cached_dir")
    raw = _read(path)
    out: dict[str, torch.Tensor] = {}
    for key in CACHED_KEYS:
        if key not in raw:
            raise DataError(
                f"{path}: missing key {key!r} (found {sorted(map(str, raw))}); the file must hold "
                "'camera_tokens' [F,1,C] and 'patch_tokens' [F,P,C]"
            )
        value = raw[key]
        if not isinstance(value, torch.Tensor):
            raise DataError(f"{path}: key {key!r} is a {type(value).__name__}, expected a tensor")
        if not value.is_floating_point():
            raise DataError(f"{path}: key {key!r} has dtype {value.dtype}, expected a floating dtype")
        out[key] = value
    cam, patch = out["camera_tokens"], out["patch_tokens"]
    if cam.ndim == 2:
        cam = cam.unsqueeze(1)
    if cam.ndim != 3 or cam.shape[1] != 1:
        raise DataError(
            f"{path}: key 'camera_tokens' has shape {tuple(out['camera_tokens'].shape)}, expected [F, 1, C]"
        )
    if patch.ndim != 3:
        raise DataError(f"{path}: key 'patch_tokens' has shape {tuple(patch.shape)}, expected [F, P, C]")
    if patch.shape[0] != cam.shape[0]:
        raise DataError(
            f"{path}: key 'patch_tokens' has {patch.shape[0]} frames but 'camera_tokens' has {cam.shape[0]}; "
            "both must come from the same frames"
        )
    if patch.shape[2] != cam.shape[2]:
        raise DataError(
            f"{path}: key 'patch_tokens' has width {patch.shape[2]} but 'camera_tokens' has {cam.shape[2]}"
        )
    if cam.shape[0] == 0 or patch.shape[1] == 0:
        raise DataError(f"{path}: key 'patch_tokens' is empty (shape {tuple(patch.shape)})")
    if expected_frames is not None and cam.shape[0] != expected_frames:
        raise DataError(
            f"{path}: key 'camera_tokens' has {cam.shape[0]} frames but the video has {expected_frames}; "
            "re-run the geometry encoder on the same frames as the video"
        )
    for key, value in (("camera_tokens", cam), ("patch_tokens", patch)):
        if not torch.isfinite(value).all():
            raise DataError(f"{path}: key {key!r} contains NaN or inf; re-run the geometry encoder for this video")
    out = {"camera_tokens": cam.contiguous(), "patch_tokens": patch.contiguous()}
    out.update(_points(path, raw, cam.shape[0]))
    return out


def _points(path: Path, raw: dict, frames: int) -> dict[str, torch.Tensor]:
    key = next((k for k in POINT_KEYS if k in raw), None)
    if key is None:
        return {}
    pts = raw[key]
    if not isinstance(pts, torch.Tensor) or not pts.is_floating_point():
        raise DataError(f"{path}: key {key!r} must be a floating tensor [F, H, W, 3]")
    if pts.ndim != 4 or pts.shape[-1] != 3 or pts.shape[0] != frames:
        raise DataError(f"{path}: key {key!r} has shape {tuple(pts.shape)}, expected [F={frames}, H, W, 3] (3D points "
                        "of every pixel, first frame's coordinates)")
    pts = pts.float()
    valid = torch.isfinite(pts).all(-1)
    for mask_key in ("valid", "conf"):
        mask = raw.get(mask_key)
        if isinstance(mask, torch.Tensor) and tuple(mask.shape) == tuple(pts.shape[:3]):
            valid &= mask.bool() if mask_key == "valid" else mask.float() > 0
    return {"points": pts.contiguous(), "points_valid": valid}


def _grid(grid: tuple[int, int] | int, name: str) -> tuple[int, int]:
    if isinstance(grid, int):
        return grid, grid
    if len(grid) != 2 or min(grid) <= 0:
        raise UsageError(f"{name} must be a positive (rows, cols) pair, got {grid}")
    return int(grid[0]), int(grid[1])


def resample_patch_tokens(
    tokens: torch.Tensor,
    grid_in: tuple[int, int] | int | None,
    grid_out: tuple[int, int] | int,
) -> torch.Tensor:
    """Bilinearly resample [F, P, C] patch tokens on their (gh, gw) grid to another grid.

    ``grid_in=None`` infers a square grid from P. ``align_corners=False`` (cell centres), the
    usual choice for patch grids. Identity (same tensor) when the grids match.
    """
    if tokens.ndim != 3:
        raise UsageError(f"tokens must be [F, P, C], got {tuple(tokens.shape)}")
    frames, num, width = tokens.shape
    if grid_in is None:
        side = math.isqrt(num)
        if side * side != num:
            raise UsageError(f"cannot infer a square grid from {num} patch tokens; pass grid_in")
        grid_in = (side, side)
    gi, go = _grid(grid_in, "grid_in"), _grid(grid_out, "grid_out")
    if gi[0] * gi[1] != num:
        raise UsageError(f"grid_in {gi} has {gi[0] * gi[1]} cells but tokens have P={num}")
    if gi == go:
        return tokens
    x = tokens.reshape(frames, gi[0], gi[1], width).permute(0, 3, 1, 2)
    x = F.interpolate(x.float() if x.dtype not in (torch.float32, torch.float64) else x, size=go,
                      mode="bilinear", align_corners=False)
    return x.permute(0, 2, 3, 1).reshape(frames, go[0] * go[1], width).to(tokens.dtype)


def uniform_frame_indices(num_frames: int, n: int) -> torch.Tensor:
    """``linspace(0, num_frames-1, n).round()`` as int64 [n] (repeats frames when n > num_frames)."""
    if num_frames <= 0:
        raise DataError(f"cannot sample frames from a video with {num_frames} frames")
    if n <= 0:
        raise UsageError(f"number of frames to sample must be positive, got {n}")
    return torch.linspace(0, num_frames - 1, n, dtype=torch.float64).round().long()


def select_frames(geometry: dict[str, torch.Tensor], indices: torch.Tensor) -> dict[str, torch.Tensor]:
    """Index every per-frame tensor of a geometry dict (first dim) with ``indices``."""
    return {key: value.index_select(0, indices.to(value.device)) for key, value in geometry.items()}
