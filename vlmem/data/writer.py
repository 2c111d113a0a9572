"""Writes a dataset folder (DESIGN section 3) atomically.

Everything goes into a hidden temp folder beside `out`; `commit()` writes
`qa.parquet` + `manifest.json` and swaps the folder into place, so an
interrupted run leaves either the previous dataset or none, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmem.data.scene import Scene
from vlmem.errors import DataError
from vlmem.safepaths import check_replaceable, mark_owned, remove_stale_temps, safe_child, safe_name

CONVERTER_VERSION = 1
ANSWER_KINDS = ("mc", "numeric", "open")

# A superset of VSI-Bench's parquet columns (its `id` is an int there; we keep strings).
QA_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("dataset", pa.string()),
        ("scene_name", pa.string()),
        ("question_type", pa.string()),
        ("question", pa.string()),
        ("options", pa.list_(pa.string())),
        ("ground_truth", pa.string()),
        ("answer_kind", pa.string()),
        ("video", pa.string()),
        ("split", pa.string()),
        ("num_frames", pa.int64()),  # frames of the source video, null when unknown
        ("duration", pa.float64()),  # seconds, null when unknown
        ("pruned", pa.bool_()),  # VSI-Bench: removed by Iterative Bias Pruning (VSI-Bench-Debiased); null elsewhere
    ]
)
REQUIRED_COLUMNS = [f.name for f in QA_SCHEMA if f.name not in ("num_frames", "duration", "pruned")]
# Written only by datasets whose rows set it (synthetic streams): the frame after which the
# question is asked; other datasets keep exactly QA_SCHEMA.
QUERY_FRAME = pa.field("query_frame", pa.int64())


def qa_schema_for(rows: list[dict]) -> pa.Schema:
    """QA_SCHEMA, without the VSI-Bench-only `pruned` column when no row has a value for it, and with
    the streams' `query_frame` column when a row has one."""
    schema = QA_SCHEMA if any(r.get("pruned") is not None for r in rows) else \
        pa.schema([f for f in QA_SCHEMA if f.name != "pruned"])
    if any(r.get(QUERY_FRAME.name) is not None for r in rows):
        schema = schema.append(QUERY_FRAME)
    return schema


def validate_row(row: dict) -> str | None:
    """Why a QA row is invalid, or None."""
    missing = [c for c in REQUIRED_COLUMNS if c not in row]
    if missing:
        return f"missing field(s) {missing}"
    if row["answer_kind"] not in ANSWER_KINDS:
        return f"answer_kind {row['answer_kind']!r} is not one of {ANSWER_KINDS}"
    if row["answer_kind"] == "mc" and not row["options"]:
        return "a multiple-choice row needs options"
    if not str(row["question"]).strip():
        return "empty question"
    return None


def write_table_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_json_atomic(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


class DatasetWriter:
    """Context manager: `with DatasetWriter(out, "synthetic") as w: ...; w.commit()`."""

    def __init__(self, out: Path, source: str, overwrite: bool = False, options: dict | None = None):
        self.out = Path(out)
        self.source = source
        self.options = dict(options or {})
        # datasets written before marker files existed are recognised by their manifest.json
        check_replaceable(self.out, "dataset", overwrite, legacy=lambda folder: (folder / "manifest.json").is_file())
        remove_stale_temps(self.out)
        self.tmp = self.out.parent / f".{self.out.name}.tmp-{os.getpid()}"
        self.rows: list[dict] = []
        self.skipped: list[dict] = []
        self.scenes: list[str] = []
        self.committed = False

    # -- lifecycle -----------------------------------------------------------
    def __enter__(self) -> DatasetWriter:
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- paths ---------------------------------------------------------------
    def path(self, relative: str) -> Path:
        """Absolute path inside the (temporary) dataset folder; parents created."""
        p = safe_child(self.tmp, relative, what="output path")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    @staticmethod
    def video_relpath(scene_name: str, ext: str = "mp4") -> str:
        return f"videos/{safe_name(scene_name, what='video name')}.{ext}"

    # -- content -------------------------------------------------------------
    def write_scene(self, scene: Scene) -> None:
        scene.save_json(self.path(f"scenes/{safe_name(scene.name, what='scene name')}.json"))
        self.scenes.append(scene.name)

    def write_geometry(self, scene_name: str, tensors: dict[str, np.ndarray]) -> str:
        from safetensors.numpy import save_file

        rel = f"geometry/{safe_name(scene_name, what='scene name')}.safetensors"
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(self.path(rel)))
        return rel

    def add_rows(self, rows: list[dict]) -> None:
        for row in rows:
            problem = validate_row(row)
            if problem:
                raise DataError(f"converter produced an invalid QA row {row.get('id')!r}: {problem}")
            row = dict(row)
            row["id"] = str(row["id"])
            row.setdefault("num_frames", None)
            row.setdefault("duration", None)
            self.rows.append(row)

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append({"item": str(item), "reason": reason})

    # -- commit --------------------------------------------------------------
    def commit(self, extra: dict | None = None) -> dict:
        if not self.rows:
            detail = "; ".join(f"{s['item']}: {s['reason']}" for s in self.skipped[:5])
            raise DataError(f"nothing usable to write to {self.out}" + (f" (skipped: {detail})" if detail else ""))
        schema = qa_schema_for(self.rows)
        table = pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in self.rows], schema=schema)
        write_table_atomic(table, self.tmp / "qa.parquet")
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r["question_type"]] = counts.get(r["question_type"], 0) + 1
        manifest = {
            "source": self.source,
            "converter_version": CONVERTER_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "options": self.options,
            "counts": {"scenes": len(self.scenes), "questions": len(self.rows), "by_question_type": counts,
                       "skipped": len(self.skipped)},
            "skipped": self.skipped,
            **(extra or {}),
        }
        write_json_atomic(manifest, self.tmp / "manifest.json")
        mark_owned(self.tmp, "dataset")
        old = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
        if self.out.exists():
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
        self.committed = True
        return manifest
