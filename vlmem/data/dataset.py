"""qa.parquet -> samples -> batches.

A sample is one question about one video: `frames` frames sampled uniformly
(lmms-eval / VLM-3R style), optional sensor geometry at those frames, and the
token layout `[frame tokens][question tokens][answer tokens]` where the frame
tokens are inserted by the model and the labels are -100 everywhere but the
answer (+ EOS).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from vlmem.errors import DataError, UsageError

IGNORE_INDEX = -100


def build_prompt(row: dict) -> str:
    """VSI-Bench's own prompt for mc/numeric rows; the bare question for open QA."""
    from vlmem.eval.vsibench import build_vsibench_prompt

    if row["answer_kind"] == "open":
        return row["question"]
    options = list(row["options"]) if row["answer_kind"] == "mc" and row["options"] is not None else None
    return build_vsibench_prompt(row["question"], options)


def read_qa_table(root: Path, split: str | None = None, question_types=(), max_samples: int = 0) -> list[dict]:
    """Rows of `root/qa.parquet`, optionally restricted (see `select_rows`)."""
    root = Path(root)
    path = root / "qa.parquet"
    if not path.is_file():
        hint = "run `vlmem prepare-data synthetic --out " + str(root) + "` first" if not root.exists() else \
            "is this a `vlmem prepare-data` folder?"
        raise UsageError(f"{path} not found: {hint}")
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path}: cannot read parquet ({exc})") from None
    for col in ("id", "question_type", "question", "ground_truth"):
        if rows and col not in rows[0]:
            raise DataError(f"{path}: missing column {col!r}")
    for r in rows:  # VSI-Bench's own parquet: int ids, no answer_kind/video/split columns
        r["id"] = str(r["id"])
        r.setdefault("answer_kind", "mc" if r.get("options") is not None and len(r["options"]) else "numeric")
        r.setdefault("split", "eval")
        r.setdefault("video", f"videos/{r.get('scene_name')}.mp4")
    return select_rows(rows, path, split, question_types, max_samples)


def select_rows(rows: list[dict], path: Path, split: str | None = None, question_types=(), max_samples: int = 0):
    """The rows of one split and question types (first `max_samples`); an empty result is an error."""
    if split:
        rows = [r for r in rows if r["split"] == split]
    if question_types:
        rows = [r for r in rows if r["question_type"] in set(question_types)]
    if max_samples:
        rows = rows[:max_samples]
    if not rows:
        raise DataError(f"{path}: no rows for split={split!r}" + (f", question_types={list(question_types)}" if question_types else ""))
    return rows


def _nbytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 0


class _LRU(OrderedDict):
    """Least-recently-used cache bounded by a byte budget: a small dataset (e.g. 32 px tours)
    stays decoded for the whole run, a large one keeps its most recent videos."""

    def __init__(self, max_bytes: int):
        super().__init__()
        self.max_bytes = max_bytes
        self.bytes = 0

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key][0]
        value = make()
        size = _nbytes(value)
        self[key] = (value, size)
        self.bytes += size
        while self.bytes > self.max_bytes and len(self) > 1:
            self.bytes -= self.popitem(last=False)[1][1]
        return value


@dataclass
class SampleSpec:
    frames: int
    image_size: int
    geometry: str = "none"  # "sensor" | "cached" | "none"
    cached_dir: str | list[str] = ""  # folder, folders or {data_source}/{scene_name} template (geometry/cached.py)
    needs_points: bool = False  # cached: position injection needs `points` / `pts3d` in every file

    @classmethod
    def for_model(cls, m, frames: int) -> SampleSpec:
        """The spec a `[model]` section needs: its image size, geometry source and cached-feature layout."""
        return cls(frames=frames, image_size=m.vision.image_size, geometry=m.geometry.source,
                   cached_dir=m.geometry.cached_dir,
                   needs_points=m.geometry.source == "cached" and m.fusion.position_injection)


class QADataset(torch.utils.data.Dataset):
    """Rows of one split with their videos; decoded videos and geometry are kept in LRU caches
    of `cache_mb` MiB each (default 512)."""

    def __init__(self, root: Path, rows: list[dict], spec: SampleSpec, tokenizer=None, cache_mb: int = 512):
        self.root = Path(root)
        self.rows = rows
        self.spec = spec
        self.tokenizer = tokenizer
        self._videos = _LRU(cache_mb << 20)
        self._geometry = _LRU(cache_mb << 20)
        self._text: dict[int, dict] = {}  # token ids per row: the same every epoch

    def __len__(self) -> int:
        return len(self.rows)

    # -- validation up front (never fail an hour into training) ---------------
    def validate(self, all_videos: bool = False, budget_s: float = 20.0) -> None:
        """Before any model is built: every video exists and is a safe path inside the dataset; one
        sample's geometry is read and shape-checked; the frames a sample uses are decoded for every
        distinct video while `budget_s` lasts (all of them with `all_videos`)."""
        import time

        from vlmem.data.video import read_frames, sample_frame_indices, video_num_frames
        from vlmem.safepaths import UnsafePathError

        problems = []
        start, geometry_checked = time.perf_counter(), False
        for video in sorted({r["video"] for r in self.rows}):
            try:
                path = self._video_path(video)
            except UnsafePathError as exc:
                problems.append(str(exc))
                continue
            if not path.exists():
                problems.append(f"{path}: video missing")
                continue
            if self.spec.geometry == "sensor":
                gpath = self._geometry_path(video)
                if not gpath.is_file():
                    problems.append(f"{gpath}: no sensor geometry for {video} but model.geometry.source = 'sensor' "
                                    "(use a dataset with depth + poses, or set model.geometry.source = 'none')")
                elif not geometry_checked:  # one sample's geometry, read as training will read it
                    geometry_checked = True
                    try:
                        read_sensor_geometry(self._geometry_path(video))
                    except DataError as exc:
                        problems.append(str(exc))
            if self.spec.geometry == "cached":
                problems.extend(self._cached_problems(video))
            try:
                n = video_num_frames(path)
                if n == 0:
                    problems.append(f"{path}: has no frames")
                elif all_videos or time.perf_counter() - start < budget_s:
                    read_frames(path, sample_frame_indices(n, self.spec.frames))  # the frames a sample reads
            except DataError as exc:
                problems.append(str(exc))
        if problems:
            more = f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""
            raise DataError(f"dataset {self.root} is not usable for this recipe:\n  - " + "\n  - ".join(problems[:10]) + more)

    def _video_path(self, video: str) -> Path:
        """qa.parquet's `video` (data, not trusted) as a path inside the dataset folder."""
        from vlmem.safepaths import safe_child

        return safe_child(self.root, video, what=f"{self.root / 'qa.parquet'}: column 'video'")

    def _cached_problems(self, video: str) -> list[str]:
        """Cached features exist for `video` (and carry 3D points when position injection needs them)."""
        from vlmem.geometry import POINT_KEYS, cached_geometry_keys, find_cached_geometry

        row = next(r for r in self.rows if r["video"] == video)
        try:
            path = find_cached_geometry(self.spec.cached_dir, Path(video).stem, row.get("dataset"))
        except DataError as exc:
            return [f"{video}: {exc}"]
        if self.spec.needs_points and not set(POINT_KEYS) & cached_geometry_keys(path):
            return [f"{path}: no key 'points' (or 'pts3d') [F,H,W,3], which model.fusion.position_injection = true "
                    "needs with cached features: export the encoder's pointmaps into the file (docs/real-data.md) "
                    "or set model.fusion.position_injection = false"]
        return []

    def _geometry_path(self, video: str) -> Path:
        return self.root / "geometry" / f"{Path(video).stem}.safetensors"

    # -- loading -------------------------------------------------------------
    def _frames(self, video: str) -> tuple[torch.Tensor, np.ndarray]:
        from vlmem.data.video import read_frames, sample_frame_indices, video_num_frames

        def load():
            path = self._video_path(video)
            n = video_num_frames(path)
            idx = sample_frame_indices(n, self.spec.frames)
            frames = torch.from_numpy(np.ascontiguousarray(read_frames(path, idx))).permute(0, 3, 1, 2)  # [T,3,H,W]
            size = self.spec.image_size
            if frames.shape[-1] != size or frames.shape[-2] != size:
                frames = F.interpolate(frames.float(), size=(size, size), mode="bilinear", align_corners=False,
                                       antialias=True).round().clamp(0, 255).to(torch.uint8)
            return frames, idx

        return self._videos.get_or(video, load)

    def _sensor_geometry(self, video: str, idx: np.ndarray) -> dict[str, torch.Tensor]:
        def load():
            path = self._geometry_path(video)
            g = read_sensor_geometry(path)
            n = g["poses"].shape[0]
            sel = torch.as_tensor(np.clip(idx, 0, n - 1))
            depth = g["depth"][sel].float()
            intr = g["intrinsics"][sel].float() if g["intrinsics"].dim() == 3 else g["intrinsics"].float().expand(len(sel), 3, 3)
            size = self.spec.image_size
            h, w = depth.shape[-2:]
            if (h, w) != (size, size):  # nearest keeps depth edges; intrinsics follow the resize
                depth = F.interpolate(depth[:, None], size=(size, size), mode="nearest")[:, 0]
                scale = torch.tensor([size / w, size / h, 1.0]).view(1, 3, 1)
                intr = intr * scale
            return {"depth": depth, "intrinsics": intr, "poses": g["poses"][sel].float()}

        return self._geometry.get_or(video, load)

    def __getitem__(self, i: int) -> dict:
        return self.sample(i)

    def sample(self, i: int, media: bool = True) -> dict:
        """Row i; `media=False` leaves out frames and geometry (the training loop's feature cache
        already holds the video's tokens, so decoding it would be wasted)."""
        row = self.rows[i]
        sample = {"id": row["id"], "row": row}
        if self.tokenizer is not None:
            if i not in self._text:
                self._text[i] = tokenize(self.tokenizer, build_prompt(row), row["ground_truth"])
            sample.update(self._text[i])
        if not media:
            return sample
        frames, idx = self._frames(row["video"])
        sample["frames"] = frames
        if self.spec.geometry == "sensor":
            sample["geometry"] = self._sensor_geometry(row["video"], idx)
        elif self.spec.geometry == "cached":
            from vlmem.geometry import (
                find_cached_geometry,
                load_cached_geometry,
                select_frames,
                uniform_frame_indices,
            )

            path = find_cached_geometry(self.spec.cached_dir, Path(row["video"]).stem, row.get("dataset"))
            feats = self._geometry.get_or(str(path), lambda: load_cached_geometry(path))
            if not self.spec.needs_points:  # points are read only for position injection
                feats = {k: v for k, v in feats.items() if k in ("camera_tokens", "patch_tokens")}
            n = feats["patch_tokens"].shape[0]
            sample["geometry"] = select_frames(feats, uniform_frame_indices(n, self.spec.frames))
        return sample


def tokenize(tokenizer, prompt: str, answer: str | None) -> dict[str, torch.Tensor]:
    """Prompt (+ answer + EOS) ids; labels mask the prompt. `answer=None` -> generation input."""
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                               add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None and not getattr(tokenizer, "chat_template", None):
        prompt_ids = [tokenizer.bos_token_id, *prompt_ids]
    if answer is None:
        ids = torch.tensor(prompt_ids, dtype=torch.long)
        return {"input_ids": ids, "labels": torch.full_like(ids, IGNORE_INDEX)}
    answer_ids = tokenizer(str(answer), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = torch.tensor(prompt_ids + answer_ids, dtype=torch.long)
    labels = torch.tensor([IGNORE_INDEX] * len(prompt_ids) + answer_ids, dtype=torch.long)
    return {"input_ids": ids, "labels": labels}


def collate(samples: list[dict], pad_id: int = 0, padding_side: str = "right") -> dict:
    """Stack frames/geometry (when the samples have them); pad text (left padding for generation)."""
    batch: dict = {"ids": [s["id"] for s in samples], "rows": [s["row"] for s in samples]}
    if "frames" in samples[0]:
        batch["frames"] = torch.stack([s["frames"] for s in samples])
    if "geometry" in samples[0]:
        batch["geometry"] = {k: torch.stack([s["geometry"][k] for s in samples]) for k in samples[0]["geometry"]}
    if "input_ids" in samples[0]:
        length = max(len(s["input_ids"]) for s in samples)
        ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
        labels = torch.full((len(samples), length), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(samples), length), dtype=torch.long)
        for b, s in enumerate(samples):
            n = len(s["input_ids"])
            sl = slice(length - n, length) if padding_side == "left" else slice(0, n)
            ids[b, sl], labels[b, sl], mask[b, sl] = s["input_ids"], s["labels"], 1
        batch.update(input_ids=ids, labels=labels, attention_mask=mask)
    return batch


def read_sensor_geometry(path: Path) -> dict[str, torch.Tensor]:
    """geometry/<scene>.safetensors, with every tensor and shape checked."""
    from safetensors.torch import load_file

    try:
        g = load_file(str(path))
    except Exception as exc:
        raise DataError(f"{path}: cannot read geometry ({exc})") from None
    for key in ("poses", "intrinsics", "depth"):
        if key not in g:
            raise DataError(f"{path}: missing tensor {key!r} (expected poses, intrinsics, depth)")
    check_sensor_geometry(g, path)
    return g


def check_sensor_geometry(g: dict[str, torch.Tensor], path: Path) -> None:
    """poses [F, 4, 4], intrinsics [F, 3, 3] or [3, 3], depth [F, H, W], with one F: else DataError naming the tensor."""
    n = g["poses"].shape[0] if g["poses"].dim() == 3 else -1
    wanted = {"poses": g["poses"].dim() == 3 and tuple(g["poses"].shape[1:]) == (4, 4) and n > 0,
              "intrinsics": tuple(g["intrinsics"].shape) in ((3, 3), (n, 3, 3)),
              "depth": g["depth"].dim() == 3 and g["depth"].shape[0] == n and min(g["depth"].shape[1:]) > 0}
    expected = {"poses": "[F, 4, 4]", "intrinsics": "[F, 3, 3] or [3, 3]", "depth": "[F, H, W]"}
    bad = [f"{k} has shape {list(g[k].shape)}, expected {expected[k]}" for k, ok in wanted.items() if not ok]
    if bad:
        raise DataError(f"{path}: wrong geometry shapes: {'; '.join(bad)} (F = frames of the poses); "
                        "re-run prepare-data for this scene")
