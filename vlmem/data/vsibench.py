"""VSI-Bench (nyu-visionx/VSI-Bench) parquet + videos -> vlmem dataset folder (eval split).

The dataset card's layout: a parquet (`test-00000-of-00001.parquet`) with columns
`id, dataset, scene_name, question_type, question, options, ground_truth`, and the
videos, unzipped from `arkitscenes.zip`, `scannet.zip`, `scannetpp.zip`, at
`{dataset}/{scene_name}.mp4` under the videos folder.

Rows keep VSI-Bench's ids (as strings), questions, options and ground truth verbatim;
`answer_kind` is "mc" when options are present, else "numeric". Videos are hard-linked
(copied across file systems) to `videos/<scene_name>.mp4`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from vlmem.data.writer import DatasetWriter
from vlmem.errors import DataError, UsageError
from vlmem.progress import progress_bar
from vlmem.safepaths import unsafe_fields

SOURCE = "vsibench"
VSI_COLUMNS = ("id", "dataset", "scene_name", "question_type", "question", "options", "ground_truth")


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def video_info(path: Path) -> tuple[int | None, float | None]:
    """(frames, seconds) from the container metadata; (None, None) when the file is unreadable."""
    import av

    try:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            frames = int(stream.frames) or None
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif c.duration is not None:
                seconds = c.duration / 1e6
            else:
                seconds = None
            if frames is None:
                from vlmem.data.video import video_num_frames

                frames = video_num_frames(path)
            return frames, seconds
    except Exception:  # av raises many types on broken files
        return None, None


def read_vsibench_parquet(path: Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--parquet {path} does not exist")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types on non-parquet input
        raise DataError(f"{path}: cannot read parquet ({exc})") from None
    missing = [c for c in VSI_COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing VSI-Bench column(s) {missing}; found {table.column_names}")
    return table.to_pylist()


def _options(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    opts = [str(o) for o in value]
    return opts or None


def prepare_vsibench(parquet: Path, videos: Path, out: Path, overwrite: bool = False, split: str = "eval") -> dict:
    """VSI-Bench parquet + `{dataset}/{scene_name}.mp4` videos -> `out` (split "eval")."""
    parquet, videos, out = Path(parquet), Path(videos), Path(out)
    rows = read_vsibench_parquet(parquet)
    if not videos.is_dir():
        raise UsageError(f"--videos {videos} does not exist or is not a folder")
    options = {"parquet": str(parquet), "videos": str(videos), "split": split}
    linked: dict[tuple[str, str], tuple[str, int | None, float | None] | None] = {}
    owner: dict[str, tuple[str, str]] = {}
    missing_videos: list[str] = []
    with DatasetWriter(out, SOURCE, overwrite, options) as w, progress_bar() as bar:
        task = bar.add_task("vsibench questions", total=len(rows))
        for r in rows:
            key = (str(r["dataset"]), str(r["scene_name"]))
            unsafe = unsafe_fields(r, ("dataset", "scene_name"), (), f"{parquet}: question {r['id']}")
            if unsafe:
                w.skip(f"question {r['id']}", unsafe)
                bar.advance(task)
                continue
            if key not in linked:
                src = videos / key[0] / f"{key[1]}.mp4"
                if not src.is_file():
                    linked[key] = None
                    missing_videos.append(str(src))
                    w.skip(f"{key[0]}/{key[1]}", f"{src}: video missing")
                else:
                    frames, seconds = video_info(src)
                    name = key[1] if key[1] not in owner else f"{key[0]}_{key[1]}"
                    owner[name] = key
                    rel = w.video_relpath(name)
                    if frames is None:
                        linked[key] = None
                        w.skip(f"{key[0]}/{key[1]}", f"{src}: video cannot be decoded")
                    else:
                        link_or_copy(src, w.path(rel))
                        linked[key] = (rel, frames, seconds)
            info = linked[key]
            if info is None:
                w.skip(f"question {r['id']}", f"video {key[0]}/{key[1]}.mp4 unavailable")
                bar.advance(task)
                continue
            opts = _options(r["options"])
            row = {
                "id": str(r["id"]), "dataset": key[0], "scene_name": key[1], "question_type": str(r["question_type"]),
                "question": str(r["question"]), "options": opts, "ground_truth": str(r["ground_truth"]),
                "answer_kind": "mc" if opts else "numeric", "video": info[0], "split": split,
                "num_frames": info[1], "duration": info[2],
                "pruned": bool(r["pruned"]) if r.get("pruned") is not None else None,  # VSI-Bench-Debiased
            }
            w.add_rows([row])
            bar.advance(task)
        return w.commit(extra={"missing_videos": missing_videos,
                               "videos": len([v for v in linked.values() if v is not None])})
