"""Pointmap -> per-patch coordinates, and coordinate normalisation.

``pool_points_to_grid`` turns a dense pointmap into one 3D coordinate per vision
patch (the grid of the vision tower, e.g. 27x27 for SigLIP-384/14) by a masked
average; ``coordinate_scale`` / ``normalize_coordinates`` bring metre-scale
coordinates to O(1) with a per-video scale (median norm of the valid points).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vlmem.errors import UsageError

__all__ = ["coordinate_scale", "normalize_coordinates", "pool_points_to_grid"]


def pool_points_to_grid(
    points: torch.Tensor,
    valid: torch.Tensor,
    grid: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked average of valid points in each grid cell.

    Args:
        points: [F, H, W, 3] (values at invalid pixels are ignored, even NaN).
        valid: [F, H, W] bool.
        grid: (gh, gw) output grid; H, W need not be divisible by it. Cells follow
            ``adaptive_avg_pool2d``: row cell ``i`` covers ``floor(i*H/gh) .. ceil((i+1)*H/gh)``.

    Returns:
        coords [F, gh*gw, 3] (row-major cells, 0 where invalid) and valid [F, gh*gw] bool
        (a cell is valid iff it contains at least one valid pixel).
    """
    if points.ndim != 4 or points.shape[-1] != 3:
        raise UsageError(f"points must be [F, H, W, 3], got {tuple(points.shape)}")
    if valid.shape != points.shape[:3]:
        raise UsageError(f"valid must be {tuple(points.shape[:3])}, got {tuple(valid.shape)}")
    gh, gw = int(grid[0]), int(grid[1])
    if gh <= 0 or gw <= 0:
        raise UsageError(f"grid must be positive (gh, gw), got {grid}")
    frames = points.shape[0]
    dtype = torch.float64 if points.dtype == torch.float64 else torch.float32
    mask = valid.to(dtype).unsqueeze(1)  # [F, 1, H, W]
    vals = torch.where(valid.unsqueeze(-1), points.to(dtype), torch.zeros((), dtype=dtype, device=points.device))
    vals = vals.permute(0, 3, 1, 2)  # [F, 3, H, W]
    # Both pools divide by the same cell area, so their ratio is the masked mean.
    num = F.adaptive_avg_pool2d(vals * mask, (gh, gw))
    den = F.adaptive_avg_pool2d(mask, (gh, gw))
    cell_valid = den > 0
    coords = torch.where(cell_valid, num / den.clamp_min(torch.finfo(dtype).tiny), torch.zeros_like(num))
    coords = coords.permute(0, 2, 3, 1).reshape(frames, gh * gw, 3)
    out_dtype = points.dtype if points.is_floating_point() else torch.float32
    return coords.to(out_dtype), cell_valid.reshape(frames, gh * gw)


def coordinate_scale(coords: torch.Tensor, valid: torch.Tensor | None = None, per_row: bool = False) -> torch.Tensor:
    """Median Euclidean norm of the valid coordinates (float32; 1.0 when nothing is valid).

    ``coords`` is [..., N, 3] and ``valid`` [..., N]. With ``per_row=False`` (the default) one
    scalar for everything passed in — call it on one video's [F, N, 3] for a per-video scale.
    With ``per_row=True`` one scale per leading index: shape ``coords.shape[:-2]``.
    """
    if coords.shape[-1] != 3:
        raise UsageError(f"coords must end with 3, got {tuple(coords.shape)}")
    norms = torch.linalg.vector_norm(coords.float(), dim=-1)
    ok = torch.isfinite(norms)
    if valid is not None:
        ok = ok & valid.bool()
    norms = torch.where(ok, norms, torch.full_like(norms, float("nan")))
    if per_row:
        norms = norms.reshape(*coords.shape[:-2], -1)
        scale = torch.nanmedian(norms, dim=-1).values if norms.shape[-1] else norms.new_full(norms.shape[:-1], 1.0)
    else:
        scale = torch.nanmedian(norms.reshape(-1)) if norms.numel() else norms.new_tensor(1.0)
    # nanmedian of an all-NaN row is NaN; a zero/tiny median (all points at the origin) is also unusable.
    return torch.where(torch.isfinite(scale) & (scale > 1e-6), scale, torch.ones_like(scale))


def normalize_coordinates(
    coords: torch.Tensor,
    valid: torch.Tensor | None = None,
    scale: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """``coords / scale`` with invalid (or non-finite) entries set to 0; never NaN.

    ``coords`` [B, N, 3], ``valid`` [B, N] or None. ``scale``: None -> per-row median norm
    (:func:`coordinate_scale` with ``per_row=True``), a float, a 0-d tensor, or a [B] tensor
    (e.g. a per-video scale repeated over that video's frames). Output dtype = ``coords.dtype``.
    """
    ok = torch.isfinite(coords).all(dim=-1)
    if valid is not None:
        ok = ok & valid.bool()
    if scale is None:
        scale = coordinate_scale(coords, ok, per_row=True)
    scale = torch.as_tensor(scale, dtype=torch.float32, device=coords.device)
    if scale.ndim == 1:
        scale = scale.view(-1, *([1] * (coords.ndim - 1)))
    scale = torch.where(torch.isfinite(scale) & (scale > 1e-6), scale, torch.ones_like(scale))
    out = coords.float() / scale
    out = torch.where(ok.unsqueeze(-1), out, torch.zeros_like(out))
    return out.to(coords.dtype) if coords.is_floating_point() else out
