"""`vsibench-meta` converter: VSI-Bench meta_info JSON -> a vlmem dataset folder (DESIGN section 3).

Input: one or more ``*_meta_info_val.json`` files ({scene: {room_size, room_center,
object_counts, object_bbox, video_path, dataset}}), as published in
vision-x-nyu/thinking-in-space ``data/meta_info/``. Questions come from
`vlmem.data.qa.generate_questions` (docs/data.md, "Question families").

Annotation checks, per scene (every finding is named in manifest.json):
  * exact duplicate boxes within a category (same centroid, axes, orientation) are dropped
    when that makes the box count agree with the file's ``object_counts`` (ScanNet printers);
  * a category whose box count still disagrees with ``object_counts`` is kept as geometry but
    listed in ``exclude_categories``: no question names it;
  * an entry that cannot be read as a Scene (missing field, malformed box) is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from vlmem.data.qa import generate_questions
from vlmem.data.scene import Scene
from vlmem.data.writer import DatasetWriter
from vlmem.errors import DataError, UsageError
from vlmem.progress import progress_bar
from vlmem.safepaths import unsafe_fields

SOURCE = "vsibench-meta"
KNOWN_DATASETS = ("scannetpp", "scannet", "arkitscenes")  # scannetpp before scannet (prefix match)


def dataset_from_filename(path: Path) -> str | None:
    stem = Path(path).name.lower()
    for name in KNOWN_DATASETS:
        if stem.startswith(name):
            return name
    return None


def _box_key(box: dict) -> tuple:
    return tuple(np.round(np.asarray([*box.get("centroid", []), *box.get("axesLengths", []),
                                      *box.get("normalizedAxes", [])], dtype=np.float64), 6).tolist())


def reconcile_counts(name: str, entry: dict) -> tuple[dict, list[str], list[dict]]:
    """Check object_bbox against object_counts.

    Returns (entry with exact-duplicate boxes dropped where that fixes the count,
    categories to exclude from questions, notes for the manifest).
    """
    declared = entry.get("object_counts")
    bbox = entry.get("object_bbox")
    if not isinstance(declared, dict) or not isinstance(bbox, dict):
        return entry, [], []
    fixed = dict(bbox)
    exclude: list[str] = []
    notes: list[dict] = []
    for label in sorted(set(bbox) | set(declared)):
        boxes = bbox.get(label, [])
        want = declared.get(label)
        if want is not None and len(boxes) == want:
            continue
        try:
            unique: list[dict] = []
            seen: set = set()
            for b in boxes:
                key = _box_key(b)
                if key not in seen:
                    seen.add(key)
                    unique.append(b)
        except (TypeError, ValueError):
            unique = boxes
        if want is not None and len(unique) == want:
            fixed[label] = unique
            notes.append({"scene": name, "category": label, "boxes": len(boxes), "object_counts": want,
                          "action": f"dropped {len(boxes) - len(unique)} exact duplicate box(es)"})
        else:
            exclude.append(label)
            notes.append({"scene": name, "category": label, "boxes": len(boxes), "object_counts": want,
                          "action": "box count disagrees with object_counts: category excluded from questions"})
    out = dict(entry)
    out["object_bbox"] = fixed
    return out, exclude, notes


def load_vsibench_meta(path: Path) -> tuple[list[Scene], list[tuple[str, str]], list[dict]]:
    """Scenes of one meta_info file, the entries skipped (item, reason), and count notes.

    Unlike `vlmem.data.scene.load_meta_info` a bad entry does not fail the whole file.
    Raises DataError when the file itself cannot be read.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read meta_info JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object keyed by scene name")
    default_dataset = dataset_from_filename(path)
    scenes: list[Scene] = []
    skipped: list[tuple[str, str]] = []
    notes: list[dict] = []
    for name, entry in data.items():
        item = f"{path.name}:{name}"
        if not isinstance(entry, dict):
            skipped.append((item, "entry is not a JSON object"))
            continue
        unsafe = unsafe_fields({"scene": name, "dataset": entry.get("dataset")}, ("scene", "dataset"), (), str(path))
        if unsafe:
            skipped.append((item, unsafe))
            continue
        entry, exclude, scene_notes = reconcile_counts(name, entry)
        try:
            scene = Scene.from_meta_info(str(name), entry, dataset=entry.get("dataset") or default_dataset,
                                         source=str(path))
        except DataError as exc:
            skipped.append((item, str(exc)))
            continue
        if scene.video:  # the meta file's video_path is the authors' absolute path, not ours
            scene.extras["source_video_path"] = scene.video
            scene.video = None
        if exclude:
            scene.extras["exclude_categories"] = exclude
        notes.extend(scene_notes)
        scenes.append(scene)
    return scenes, skipped, notes


def find_video(videos: Path, scene: Scene) -> Path | None:
    for candidate in (videos / f"{scene.name}.mp4", videos / scene.dataset / f"{scene.name}.mp4"):
        if candidate.is_file():
            return candidate
    return None


def _link_or_copy(src: Path, dst: Path) -> str:
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError:
        shutil.copy2(src, dst)
        return "copy"


def prepare_vsibench_meta(
    meta: Path | list[Path],
    out: Path,
    videos: Path | None = None,
    overwrite: bool = False,
    seed: int = 0,
    split: str = "train",
) -> dict:
    """Convert VSI-Bench meta_info file(s) into a dataset folder at `out`; returns the manifest."""
    metas = [Path(m) for m in ([meta] if isinstance(meta, (str, Path)) else meta)]
    if not metas:
        raise UsageError("no --meta file given")
    missing = [str(m) for m in metas if not m.is_file()]
    if missing:
        raise UsageError(f"meta_info file(s) not found: {', '.join(missing)}")
    if videos is not None:
        videos = Path(videos)
        if not videos.is_dir():
            raise UsageError(f"--videos {videos} is not a directory")
    options = {"meta": [str(m) for m in metas], "videos": str(videos) if videos else None,
               "seed": seed, "split": split}
    with DatasetWriter(out, SOURCE, overwrite, options) as w:
        scenes: list[Scene] = []
        notes: list[dict] = []
        for m in metas:
            try:
                loaded, skipped, file_notes = load_vsibench_meta(m)
            except DataError as exc:
                w.skip(str(m), str(exc))
                continue
            for item, reason in skipped:
                w.skip(item, reason)
            scenes.extend(loaded)
            notes.extend(file_notes)
        seen: set[str] = set()
        linked: dict[str, int] = {"hardlink": 0, "copy": 0}
        without_video: list[str] = []
        with progress_bar() as progress:
            task = progress.add_task("vsibench-meta scenes", total=len(scenes))
            for scene in scenes:
                progress.advance(task)
                if scene.name in seen:
                    w.skip(scene.name, "duplicate scene name (already converted from an earlier --meta file)")
                    continue
                seen.add(scene.name)
                video_rel = ""
                if videos is not None:
                    src = find_video(videos, scene)
                    if src is None:
                        w.skip(scene.name, f"no video: looked for {videos / (scene.name + '.mp4')} and "
                                           f"{videos / scene.dataset / (scene.name + '.mp4')}")
                        continue
                    video_rel = w.video_relpath(scene.name)
                    linked[_link_or_copy(src, w.path(video_rel))] += 1
                    scene.video = video_rel
                else:
                    without_video.append(scene.name)
                rows = generate_questions(scene, seed=seed, split=split, video=video_rel)
                if not rows:
                    w.skip(scene.name, "no question could be generated from this scene's annotation")
                    continue
                w.write_scene(scene)
                w.add_rows(rows)
        extra = {
            "videos": {
                "requested": videos is not None,
                "linked": linked["hardlink"],
                "copied": linked["copy"],
                "scenes_without_video": len(without_video),
                "note": ("videos were not requested (--videos): the video column is empty for every scene"
                         if videos is None else "scenes without a video were skipped (see skipped)"),
            },
            "annotation_fixes": notes,
        }
        return w.commit(extra)
