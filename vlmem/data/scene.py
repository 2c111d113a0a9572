"""Scene: what VSI-Bench / VLM-3R questions are derived from.

A Scene holds the objects (category, instance id, oriented box), the room size and
centre, and, when a video exists, the camera trajectory and per-frame visibility.
Its JSON form is VSI-Bench's `meta_info` entry shape (room_size, room_center,
object_counts, object_bbox{label: [{centroid, axesLengths, normalizedAxes, min,
max}]}) plus optional extras, so a real meta_info entry loads as a Scene.

Conventions: metres; `normalizedAxes` is a row-major 3x3 whose ROWS are the box
axes (checked against min/max on all 288 VSI-Bench scenes); poses are
camera-to-world 4x4 in the scene's world frame (ScanNet: axis-aligned).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlmem.errors import DataError

_CORNER_SIGNS = np.array(list(itertools.product([-1.0, 1.0], repeat=3)))  # [8, 3]


@dataclass
class SceneObject:
    category: str
    instance_id: int
    centroid: np.ndarray  # [3]
    axes_lengths: np.ndarray  # [3]
    normalized_axes: np.ndarray  # [3, 3], rows are unit axes
    first_frame: int | None = None  # first video frame in which the object is visible
    visible_frames: np.ndarray | None = None  # sorted frame indices where visible

    def __post_init__(self) -> None:
        self.centroid = np.asarray(self.centroid, dtype=np.float64).reshape(3)
        self.axes_lengths = np.asarray(self.axes_lengths, dtype=np.float64).reshape(3)
        self.normalized_axes = np.asarray(self.normalized_axes, dtype=np.float64).reshape(3, 3)
        if self.visible_frames is not None:
            self.visible_frames = np.asarray(self.visible_frames, dtype=np.int64).reshape(-1)
            if self.first_frame is None and len(self.visible_frames):
                self.first_frame = int(self.visible_frames.min())

    def corners(self) -> np.ndarray:
        """The 8 box corners, [8, 3]."""
        half = _CORNER_SIGNS * (self.axes_lengths / 2.0)  # [8, 3]
        return self.centroid + half @ self.normalized_axes

    @property
    def min(self) -> np.ndarray:
        return self.corners().min(axis=0)

    @property
    def max(self) -> np.ndarray:
        return self.corners().max(axis=0)

    @property
    def longest_axis(self) -> float:
        return float(self.axes_lengths.max())

    def to_json(self) -> dict:
        entry = {
            "centroid": self.centroid.tolist(),
            "axesLengths": self.axes_lengths.tolist(),
            "normalizedAxes": self.normalized_axes.reshape(-1).tolist(),
            "min": self.min.tolist(),
            "max": self.max.tolist(),
            "instance_id": int(self.instance_id),
        }
        if self.first_frame is not None:
            entry["first_frame"] = int(self.first_frame)
        if self.visible_frames is not None:
            entry["visible_frames"] = self.visible_frames.tolist()
        return entry


@dataclass
class Scene:
    name: str
    dataset: str
    objects: list[SceneObject]
    room_size: float  # floor area, m^2
    room_center: np.ndarray  # [3]
    video: str | None = None  # path of the video relative to the dataset folder
    num_frames: int | None = None
    fps: float | None = None
    poses: np.ndarray | None = None  # [F, 4, 4] camera-to-world (kept in geometry/, not in JSON)
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.room_center = np.asarray(self.room_center, dtype=np.float64).reshape(3)

    # -- derived views -------------------------------------------------------
    @property
    def object_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for obj in self.objects:
            counts[obj.category] = counts.get(obj.category, 0) + 1
        return counts

    def by_category(self) -> dict[str, list[SceneObject]]:
        groups: dict[str, list[SceneObject]] = {}
        for obj in self.objects:
            groups.setdefault(obj.category, []).append(obj)
        return groups

    @property
    def duration(self) -> float | None:
        if self.num_frames is None or not self.fps:
            return None
        return self.num_frames / self.fps

    # -- JSON (VSI-Bench meta_info shape) -----------------------------------
    def to_meta_info(self) -> dict:
        bbox: dict[str, list[dict]] = {}
        for obj in self.objects:
            bbox.setdefault(obj.category, []).append(obj.to_json())
        entry = {
            "dataset": self.dataset,
            "room_size": float(self.room_size),
            "room_center": self.room_center.tolist(),
            "object_counts": self.object_counts,
            "object_bbox": bbox,
        }
        if self.video is not None:
            entry["video_path"] = self.video
        if self.num_frames is not None:
            entry["num_frames"] = int(self.num_frames)
        if self.fps is not None:
            entry["fps"] = float(self.fps)
        entry.update(self.extras)
        return entry

    @classmethod
    def from_meta_info(cls, name: str, entry: dict, dataset: str | None = None, source: str = "") -> Scene:
        """Build a Scene from one VSI-Bench meta_info entry (or our own scenes/<name>.json)."""
        where = f"{source}: scene {name!r}" if source else f"scene {name!r}"
        for key in ("room_size", "room_center", "object_bbox"):
            if key not in entry:
                raise DataError(f"{where}: missing field {key!r} (a meta_info entry needs room_size, room_center, object_bbox)")
        objects: list[SceneObject] = []
        next_id = 0
        for label, boxes in entry["object_bbox"].items():
            for i, box in enumerate(boxes):
                try:
                    obj = SceneObject(
                        category=label,
                        instance_id=int(box.get("instance_id", next_id)),
                        centroid=box["centroid"],
                        axes_lengths=box["axesLengths"],
                        normalized_axes=box["normalizedAxes"],
                        first_frame=box.get("first_frame"),
                        visible_frames=box.get("visible_frames"),
                    )
                except (KeyError, ValueError, TypeError) as exc:
                    raise DataError(f"{where}: object_bbox[{label!r}][{i}] is malformed ({exc}); "
                                    "each box needs centroid[3], axesLengths[3], normalizedAxes[9]") from None
                if not (np.isfinite(obj.centroid).all() and np.isfinite(obj.axes_lengths).all()):
                    raise DataError(f"{where}: object_bbox[{label!r}][{i}] has non-finite values")
                objects.append(obj)
                next_id = max(next_id, obj.instance_id) + 1
        known = {"dataset", "room_size", "room_center", "object_counts", "object_bbox", "video_path", "num_frames", "fps"}
        room_size = float(entry["room_size"])
        if not math.isfinite(room_size):
            raise DataError(f"{where}: room_size is not a finite number")
        return cls(
            name=name,
            dataset=dataset or entry.get("dataset", "unknown"),
            objects=objects,
            room_size=room_size,
            room_center=entry["room_center"],
            video=entry.get("video_path"),
            num_frames=entry.get("num_frames"),
            fps=entry.get("fps"),
            extras={k: v for k, v in entry.items() if k not in known},
        )

    def save_json(self, path: Path) -> None:
        path = Path(path)
        path.write_text(json.dumps({"scene_name": self.name, **self.to_meta_info()}, indent=1))

    @classmethod
    def load_json(cls, path: Path) -> Scene:
        path = Path(path)
        try:
            entry = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: cannot read scene annotation ({exc})") from None
        name = entry.pop("scene_name", path.stem)
        return cls.from_meta_info(name, entry, source=str(path))


def load_meta_info(path: Path) -> list[Scene]:
    """All scenes of a VSI-Bench `*_meta_info_val.json` file ({scene: entry})."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read meta_info JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object keyed by scene name")
    return [Scene.from_meta_info(name, entry, source=str(path)) for name, entry in data.items()]
