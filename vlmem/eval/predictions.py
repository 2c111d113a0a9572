"""Load predictions files for scoring.

Accepted shapes (see docs/evaluation.md):
  * ``.jsonl``: one JSON object per line, either a flat record
    ``{"id", "question_type", "ground_truth", "prediction", ...}`` or an lmms-eval
    ``--log_samples`` entry ``{"doc_id", "doc": {...}, "target", "resps": [[...]],
    "filtered_resps": [...], "<task>_score": {...}}``;
  * ``.json``: a list of such objects, or an object holding the list under ``logs``
    (older lmms-eval ``<task>.json``), ``samples`` (a list, or a dict task -> list) or
    ``predictions``;
  * ``.parquet``: a table with (at least) the required columns.

Extra fields (``dataset``, ``options``, ``mc_answer``, ``duration``, ``num_frames``,
``scene_name``, ...) are kept. A problem raises `UsageError` naming the file, the
line/row and the missing field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlmem.errors import UsageError

REQUIRED_FIELDS = ("id", "question_type", "ground_truth", "prediction")


def _expected(required: Sequence[str]) -> str:
    return f"(expected {', '.join(required)})"


def _first_text(value: Any) -> Any:
    """lmms-eval nests responses: resps = [[text]], filtered_resps = [text] or [[text]]."""
    while isinstance(value, (list, tuple)):
        if not value:
            return None
        value = value[0]
    return value


def is_lmms_eval_sample(obj: Any) -> bool:
    """An lmms-eval ``--log_samples`` entry: v0.3 keeps ``doc``; v0.4 and later drop it (the question
    fields then live only under the task's metric keys, e.g. ``vsibench_score``)."""
    if not isinstance(obj, dict):
        return False
    has_resps = "filtered_resps" in obj or "resps" in obj
    if isinstance(obj.get("doc"), dict):
        return has_resps or any(k.endswith("_score") for k in obj)
    return "doc_id" in obj and has_resps and bool(_metric_docs(obj))


def _metric_docs(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-metric dicts lmms-eval logs beside the sample (``process_results``' values): each is the
    task's doc plus the prediction and metric fields. lmms-eval v0.3-v0.7 log one (``vsibench_score``);
    the current version logs one per sub-score (``vsibench_overall``, ``route_planning_accuracy``, ...)."""
    skip = {"doc", "arguments", "resps", "filtered_resps", "token_counts", "input_media"}
    return [v for k, v in entry.items() if k not in skip and isinstance(v, dict) and "question_type" in v]


def from_lmms_eval_sample(entry: dict[str, Any]) -> dict[str, Any]:
    """Flatten one lmms-eval log entry into a record (doc fields + id + prediction)."""
    docs = _metric_docs(entry)
    doc = entry["doc"] if isinstance(entry.get("doc"), dict) else {}
    score = docs[0] if docs else next(
        (v for k, v in entry.items() if k.endswith("_score") and isinstance(v, dict)),
        {},
    )
    rec: dict[str, Any] = {}
    for k, v in score.items():  # the *_score dict is the doc + prediction + metric
        rec.setdefault(k, v)
    rec.update(doc)
    if rec.get("id") is None and entry.get("doc_id") is not None:
        rec["id"] = entry["doc_id"]
    if rec.get("ground_truth") is None and entry.get("target") is not None:
        rec["ground_truth"] = entry["target"]
    prediction = None
    for key in ("filtered_resps", "resps"):
        if key in entry:
            prediction = _first_text(entry[key])
            if prediction is not None:
                break
    if prediction is None:
        prediction = score.get("prediction")
    rec["prediction"] = prediction
    if "doc_id" in entry:
        rec.setdefault("doc_id", entry["doc_id"])
    return rec


def _normalise(obj: Any, where: str, required: Sequence[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise UsageError(f"{where}: expected a JSON object {_expected(required)}, got {type(obj).__name__}")
    rec = from_lmms_eval_sample(obj) if is_lmms_eval_sample(obj) else dict(obj)
    for name in required:
        if rec.get(name) is None:
            raise UsageError(f"{where}: missing field {name!r} {_expected(required)}")
    return rec


def _load_jsonl(path: Path, shown: str, required: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    with path.open("r", encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(
                    f"{shown} line {n}: invalid JSON ({exc.msg} at column {exc.colno})"
                ) from None
            out.append(_normalise(obj, f"{shown} line {n}", required))
    return out


def _entries_from_json(data: Any, shown: str) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in ("logs", "predictions", "samples"):
            value = data.get(key)
            if isinstance(value, list):
                return value
            if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
                return [e for v in value.values() for e in v]
        if is_lmms_eval_sample(data) or "prediction" in data:
            return [data]
    raise UsageError(
        f"{shown}: expected a list of predictions or an object with 'logs', 'samples' or 'predictions'"
    )


def _load_json(path: Path, shown: str, required: Sequence[str]) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        # A .json file may really be JSON lines.
        if exc.msg == "Extra data":
            return _load_jsonl(path, shown, required)
        raise UsageError(f"{shown}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    return [
        _normalise(e, f"{shown} entry {i}", required) for i, e in enumerate(_entries_from_json(data, shown))
    ]


def _load_parquet(path: Path, shown: str, required: Sequence[str]) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise UsageError(f"{shown}: cannot read parquet ({exc})") from None
    cols = set(table.column_names)
    if "doc" in cols:  # lmms-eval samples stored as parquet
        return [_normalise(r, f"{shown} row {i}", required) for i, r in enumerate(table.to_pylist())]
    for name in required:
        if name not in cols:
            raise UsageError(f"{shown}: missing column {name!r} {_expected(required)}")
    rows = table.to_pylist()
    for i, row in enumerate(rows):
        for name in required:
            if row.get(name) is None:
                raise UsageError(f"{shown} row {i}: missing field {name!r} {_expected(required)}")
    return rows


def load_predictions(path: str | Path, required: Sequence[str] = REQUIRED_FIELDS) -> list[dict[str, Any]]:
    """Read a predictions file (.jsonl, .json or .parquet) into a list of record dicts."""
    shown = str(path)
    p = Path(path)
    if not p.exists():
        raise UsageError(f"predictions file not found: {shown}")
    if p.is_dir():
        raise UsageError(f"{shown} is a directory; pass a .jsonl, .json or .parquet predictions file")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        records = _load_jsonl(p, shown, required)
    elif suffix == ".json":
        records = _load_json(p, shown, required)
    elif suffix == ".parquet":
        records = _load_parquet(p, shown, required)
    else:
        raise UsageError(
            f"{shown}: unsupported predictions format {suffix or '(no extension)'!r}; use .jsonl, .json or .parquet"
        )
    if not records:
        raise UsageError(f"{shown}: no predictions found (empty file)")
    return records
