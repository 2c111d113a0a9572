"""VLM-3R-DATA (LLaVA-style instruction JSON) + videos -> vlmem dataset folder.

Each record: `{id, data_source, scene_name, question_type, video, conversations:
[{from: "human", value: "<image>\\n..."}, {from: "gpt", value: ...}, ...]}` (a JSON list,
or JSON Lines). Every human/gpt pair becomes one row: the question is the human turn
with `<image>`/`<video>` tokens and VSI-Bench's pre-prompt ("These are frames of a
video.") and post-prompts ("Answer with the option's letter ...", "Please answer the
question using a single word or phrase.", ...) removed; trailing "A. ..." lines (after
an optional "Options:") become `options`; the gpt turn is the ground truth.
answer_kind: "mc" with options, "numeric" when the answer parses as a number, else "open".
VLM-3R's question types `object_rel_direction_v1/v2/v3` become VSI-Bench's `..._hard/_medium/_easy`
and `object_rel_distance_v1/v2/v3` become `object_rel_distance`.

Videos are resolved as `videos/<record.video>`, then `videos/<data_source>/<scene_name>.mp4`,
then `videos/<scene_name>.mp4`, and hard-linked (or copied) to `videos/<scene_name>.mp4`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from vlmem.data.vsibench import link_or_copy, video_info
from vlmem.data.writer import DatasetWriter
from vlmem.errors import DataError, UsageError
from vlmem.progress import progress_bar
from vlmem.safepaths import unsafe_fields

SOURCE = "vlm3r"
PRE_PROMPTS = ("These are frames of a video.",)
POST_PROMPTS = (
    "Answer with the option's letter from the given choices directly.",
    "Please answer the question using a single word or phrase.",
    "Please select the correct option from the previous choices.",
    "Answer with only a number.",
    "Do not response anything other than a single number!",
)
_MEDIA = re.compile(r"<(image|video)>")
_OPTION = re.compile(r"^\s*([A-Z])[.)]\s+(.*\S)\s*$")
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")


def read_records(path: Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--json {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    data.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}: line {n} is not JSON ({exc.msg})") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records (or JSON Lines)")
    return data


def parse_human(value: str) -> tuple[str, list[str] | None]:
    """(question, options) from a human turn."""
    text = _MEDIA.sub("", str(value)).strip()
    for pre in PRE_PROMPTS:
        if text.startswith(pre):
            text = text[len(pre):].strip()
    lines = [ln.rstrip() for ln in text.splitlines()]
    changed = True
    while changed and lines:
        changed = False
        last = lines[-1].strip()
        if not last:
            lines.pop()
            changed = True
            continue
        for post in POST_PROMPTS:
            if last == post or last.endswith(" " + post):
                rest = last[: len(last) - len(post)].strip()
                lines[-1:] = [rest] if rest else []
                changed = True
                break
    options: list[str] = []
    while lines and _OPTION.match(lines[-1]):
        m = _OPTION.match(lines.pop())
        options.insert(0, f"{m.group(1)}. {m.group(2)}")
    letters = [o[0] for o in options]
    if options and letters != [chr(ord("A") + i) for i in range(len(options))]:
        # not an A, B, C... list: it was part of the question
        lines += options
        options = []
    if options and lines and lines[-1].strip().rstrip(":").lower() == "options":
        lines.pop()
    question = "\n".join(lines).strip()
    return question, options or None


def normalise_answer(answer: str, options: list[str] | None) -> str:
    """For multiple choice: the option letter when the answer names one."""
    answer = str(answer).strip()
    if not options:
        return answer
    m = re.match(r"^\(?([A-Z])\)?(?:[.)]|$|\s)", answer)
    if m and m.group(1) in [o[0] for o in options]:
        return m.group(1)
    for o in options:
        if answer.lower() == o[3:].strip().lower():
            return o[0]
    return answer


def answer_kind(answer: str, options: list[str] | None) -> str:
    if options:
        return "mc"
    return "numeric" if _NUMBER.match(answer.strip()) else "open"


def vsibench_question_type(qtype: str) -> str:
    """VLM-3R's `object_rel_direction_v1` / `object_rel_distance_v2` ... as VSI-Bench names them."""
    from vlmem.eval.vsibench import canonical_question_type

    return canonical_question_type(qtype)


def _find_video(rec: dict, videos: Path) -> Path | None:
    cands = []
    if rec.get("video"):
        cands.append(videos / str(rec["video"]))
    scene, source = rec.get("scene_name"), rec.get("data_source")
    if scene:
        if source:
            cands.append(videos / str(source) / f"{scene}.mp4")
        cands.append(videos / f"{scene}.mp4")
    return next((c for c in cands if c.is_file()), None)


def prepare_vlm3r(json_path: Path, videos: Path, out: Path, overwrite: bool = False) -> dict:
    """VLM-3R-DATA JSON + videos folder -> `out` (split "train")."""
    json_path, videos, out = Path(json_path), Path(videos), Path(out)
    records = read_records(json_path)
    if not videos.is_dir():
        raise UsageError(f"--videos {videos} does not exist or is not a folder")
    options = {"json": str(json_path), "videos": str(videos)}
    linked: dict[Path, tuple[str, int | None, float | None] | None] = {}
    used_names: dict[str, Path] = {}
    missing: list[str] = []
    with DatasetWriter(out, SOURCE, overwrite, options) as w, progress_bar() as bar:
        task = bar.add_task("vlm3r records", total=len(records))
        for i, rec in enumerate(records):
            bar.advance(task)
            rid = str(rec.get("id", i)) if isinstance(rec, dict) else str(i)
            item = f"record {rid}"
            if not isinstance(rec, dict) or not isinstance(rec.get("conversations"), list):
                w.skip(item, f"{json_path}: record {i} has no conversations list")
                continue
            unsafe = unsafe_fields(rec, ("scene_name", "data_source"), ("video",), f"{json_path}: {item}")
            if unsafe:
                w.skip(item, unsafe)
                continue
            src = _find_video(rec, videos)
            if src is None:
                want = rec.get("video") or f"{rec.get('data_source')}/{rec.get('scene_name')}.mp4"
                missing.append(str(want))
                w.skip(item, f"video {videos / str(want)} missing")
                continue
            if src not in linked:
                frames, seconds = video_info(src)
                if frames is None:
                    linked[src] = None
                else:
                    stem = str(rec.get("scene_name") or src.stem)
                    name = stem if used_names.get(stem, src) == src else f"{rec.get('data_source', 'v')}_{stem}_{len(used_names)}"
                    used_names[name] = src
                    rel = w.video_relpath(name)
                    link_or_copy(src, w.path(rel))
                    linked[src] = (rel, frames, seconds)
            info = linked[src]
            if info is None:
                w.skip(item, f"{src}: video cannot be decoded")
                continue
            turns = rec["conversations"]
            pairs = []
            for k in range(len(turns) - 1):
                a, b = turns[k], turns[k + 1]
                if isinstance(a, dict) and isinstance(b, dict) and a.get("from") == "human" and b.get("from") == "gpt":
                    pairs.append((a, b))
            if not pairs:
                w.skip(item, f"{json_path}: record {rid} has no human -> gpt turn pair")
                continue
            rows = []
            for k, (h, g) in enumerate(pairs):
                question, opts = parse_human(h.get("value", ""))
                gt = normalise_answer(g.get("value", ""), opts)
                if not question or not gt:
                    w.skip(f"{item} turn {k}", f"{json_path}: empty question or answer after removing prompts")
                    continue
                rows.append({
                    "id": rid if len(pairs) == 1 else f"{rid}-{k}",
                    "dataset": str(rec.get("data_source") or SOURCE),
                    "scene_name": str(rec.get("scene_name") or Path(info[0]).stem),
                    "question_type": vsibench_question_type(str(rec.get("question_type") or h.get("task") or "open_qa")),
                    "question": question, "options": opts, "ground_truth": gt,
                    "answer_kind": answer_kind(gt, opts), "video": info[0], "split": "train",
                    "num_frames": info[1], "duration": info[2],
                })
            w.add_rows(rows)
        return w.commit(extra={"missing_videos": missing})
