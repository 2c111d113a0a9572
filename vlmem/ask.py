"""`vlmem ask`: answer questions about a video of any length, reading it as a stream.

The video is decoded front to back in chunks of a few frames (PyAV, frame by frame); each chunk
is encoded and pushed through the model's memory with the memory state carried over, and only
the last `context` frames' handed-on tokens are kept for the LM (`model.context_frames`, or
`data.frames` when the LM saw every sampled frame). RAM is therefore constant in the video's
length: one chunk of pixels, a bounded memory state, `context` frames of tokens.

A question may carry a `query_frame`: it is answered right after the last sampled frame at or
before it, from the memory state at that point (the streaming evaluation of
`vlmem eval stream` asks VSC-style questions at 10% / 50% / 100% of a stream this way). Every
memory is causal, so one pass over the video serves all its questions.

A model without memory (`model.memory.kind = "none"`) has nothing to carry the past: it falls
back to `data.frames` frames sampled uniformly over the video (up to the query frame), the
way it was trained; the result says so.
"""

from __future__ import annotations

import inspect
import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vlmem.errors import DataError, UsageError

CHUNK = 16  # frames decoded, encoded and scanned at once


@dataclass
class Question:
    question: str
    options: list[str] | None = None
    query_frame: int | None = None  # None: after the whole video
    id: str = ""
    extra: dict = field(default_factory=dict)  # carried into the answer record (eval: ground truth, type)

    def row(self) -> dict:
        kind = "mc" if self.options else "numeric"
        return {"question": self.question, "options": self.options, "answer_kind": kind}


@dataclass
class Sampling:
    """Which frames of the video the memory reads: every `stride`-th, or `frames` uniformly."""
    stride: int = 1
    frames: int = 0
    note: str = ""


def read_questions(path: Path) -> list[Question]:
    """Questions from a JSON-lines file: {"question": str, "options": [str, ...]?, "id": str?,
    "query_frame": int?} per line."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--questions {path}: file not found")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not JSON ({exc.msg}); each line must be an object like "
                            '{"question": "How many chairs?"}') from None
        if not isinstance(obj, dict) or not isinstance(obj.get("question"), str) or not obj["question"].strip():
            raise DataError(f"{path}:{n}: field 'question' (a non-empty string) is missing")
        options = obj.get("options")
        if options is not None and (not isinstance(options, list) or not all(isinstance(o, str) for o in options)):
            raise DataError(f"{path}:{n}: field 'options' must be a list of strings like [\"A. two\", \"B. three\"]")
        qf = obj.get("query_frame")
        if qf is not None and (not isinstance(qf, int) or isinstance(qf, bool) or qf < 0):
            raise DataError(f"{path}:{n}: field 'query_frame' must be a frame index >= 0")
        out.append(Question(obj["question"], options or None, qf, str(obj.get("id", n))))
    if not out:
        raise DataError(f"{path}: no questions")
    return out


def check_model(model) -> None:
    if not (hasattr(model, "encode_frames") and hasattr(model, "memory") and hasattr(model, "hand_on")):
        raise UsageError(f"this run's model ({type(model).__name__}) has no frame memory to stream through; "
                         "`vlmem ask` needs model.kind = \"memory_vlm\"")
    if not _takes_readout(model) and type(model).__name__ != "MemoryVLM":
        raise UsageError(f"this run's model ({type(model).__name__}, model.decoder.kind != \"lm\") cannot answer from a "
                         "streamed memory read-out yet; `vlmem ask` needs the LM decoder")
    if getattr(model, "fusion", None) is not None:
        raise UsageError("this run fuses 3D geometry (model.geometry.source is not \"none\"), which a plain video "
                         "does not have; ask with a run trained with model.geometry.source = \"none\"")


def _takes_readout(model) -> bool:
    """`generate(..., tokens=, readout=)` (issue-19's once-per-video scan) answers from a given read-out."""
    return "readout" in inspect.signature(model.generate).parameters


def context_frames(recipe) -> int:
    """How many recent frames the LM sees: model.context_frames, or every sampled frame it was trained
    with (data.frames) when that is 0."""
    return recipe.model.context_frames or recipe.data.frames


def to_model_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 [n, H, W, 3] -> uint8 [1, n, 3, size, size] (bilinear, antialiased, as the dataset loader)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True).round().clamp(0, 255).to(torch.uint8)
    return x.unsqueeze(0)


class StreamReader:
    """The memory state and the last `context` frames' tokens of one video, fed chunk by chunk."""

    def __init__(self, model, context: int):
        self.model, self.context = model, context
        self.state = None
        self.tokens: deque[torch.Tensor] = deque(maxlen=context)  # [N, D] per frame
        self.readout: deque[torch.Tensor] = deque(maxlen=context)
        self.frames = 0
        self.last_index = -1

    @torch.no_grad()
    def push(self, indices: np.ndarray, frames: torch.Tensor) -> None:
        tokens = self.model.encode_frames(frames)  # [1, n, N, D]
        if self.state is None:
            self.state = self.model.memory.init_state(1, tokens.device, tokens.dtype, tokens_per_frame=tokens.shape[2])
        m, self.state = self.model.memory.scan(tokens, self.state)
        self.tokens.extend(tokens[0, -self.context:].unbind(0))
        self.readout.extend(m[0, -self.context:].unbind(0))
        self.frames += tokens.shape[1]
        self.last_index = int(indices[-1])

    @torch.no_grad()
    def answer(self, tokenizer, questions: list[Question], max_new_tokens: int) -> list[str]:
        from vlmem.data.dataset import build_prompt, collate, tokenize

        if not self.tokens:
            raise DataError("no frame was read before the question's query frame")
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        samples = [{"id": q.id, "row": q.row(), **tokenize(tokenizer, build_prompt(q.row()), None)} for q in questions]
        batch = collate(samples, pad_id=pad_id, padding_side="left")
        b = batch["input_ids"].shape[0]
        tokens = torch.stack(list(self.tokens))[None].expand(b, -1, -1, -1)
        readout = torch.stack(list(self.readout))[None].expand(b, -1, -1, -1)
        model = self.model
        kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id, pad_token_id=pad_id)
        if _takes_readout(model):  # precomputed read-out: no re-scan
            new = model.generate(None, batch["input_ids"], batch["attention_mask"], tokens=tokens, readout=readout,
                                 **kwargs)
        else:  # MemoryVLM.generate's own steps after its memory scan
            visual = model.visual_embeds(model.hand_on(tokens, readout))
            embeds, mask, _ = model.assemble(visual, batch["input_ids"], batch["attention_mask"], None,
                                             padding_side="left")
            new = model.lm.generate(inputs_embeds=embeds, attention_mask=mask, do_sample=False, **kwargs)
        return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in new]


def sampling_for(recipe, video: Path, fps: float = 0.0, frames: int = 0) -> Sampling:
    """--fps F: every round(video fps / F)-th frame; --frames N: N frames uniformly; neither: every frame.
    A model without memory: data.frames uniformly, whatever was asked."""
    from vlmem.data.video import video_rate

    if fps and frames:
        raise UsageError("give at most one of --fps and --frames")
    if fps < 0 or frames < 0:
        raise UsageError("--fps and --frames must be >= 0")
    if recipe.model.memory.kind == "none":
        n = recipe.data.frames
        return Sampling(frames=n, note=f"no memory (model.memory.kind = \"none\"): {n} frames (data.frames) sampled "
                                       "uniformly over the video up to each question, as in training")
    if frames:
        return Sampling(frames=frames, note=f"{frames} frames sampled uniformly, read through the memory")
    if fps:
        rate = video_rate(video)
        if rate is None:
            raise UsageError(f"{video}: the video has no frame rate (a frame folder?); use --frames instead of --fps")
        stride = max(1, round(rate / fps))
        return Sampling(stride=stride, note=f"every {stride}. frame ({rate / stride:g} fps of {rate:g}) read through "
                                            "the memory")
    return Sampling(note="every frame read through the memory")


def stream_answers(model, tokenizer, recipe, video: Path, questions: list[Question], sampling: Sampling,
                   max_new_tokens: int = 16, progress=None) -> tuple[list[dict], dict]:
    """Answer `questions` about `video` in one streamed pass (one pass per query time for a uniform
    sampling). Returns (one record per question, in the given order; stats)."""
    from vlmem.data.video import iter_frames, sample_frame_indices, video_num_frames

    check_model(model)
    video = Path(video)
    total = video_num_frames(video)
    size = recipe.model.vision.image_size
    order = sorted(range(len(questions)), key=lambda i: _query(questions[i], total))
    answers: dict[int, str] = {}
    stats = {"video_frames": total, "frames_read": 0, "passes": 0, "answer_seconds": 0.0}
    task = progress.add_task(f"ask {video.name}", total=total) if progress is not None else None
    t0 = time.perf_counter()
    groups = _groups(order, questions, total)
    if sampling.frames:  # fixed frame budget: one pass per query time, frames spread over [0, query]
        for q, idx in groups:
            keep = set(sample_frame_indices(q + 1, sampling.frames).tolist())
            reader = StreamReader(model, context_frames(recipe) if recipe.model.memory.kind != "none"
                                  else recipe.data.frames)
            for indices, chunk in iter_frames(video, keep=lambda i, keep=keep, q=q: i in keep and i <= q, chunk=CHUNK):
                reader.push(indices, to_model_frames(chunk, size))
                if indices[-1] >= max(keep):
                    break
            stats["frames_read"] += reader.frames
            stats["passes"] += 1
            _answer(reader, tokenizer, questions, idx, answers, max_new_tokens, stats)
        if progress is not None:
            progress.update(task, completed=total)
    else:
        reader = StreamReader(model, context_frames(recipe))
        pending = list(groups)
        def keep(i: int) -> bool:
            return i % sampling.stride == 0

        for indices, chunk in iter_frames(video, keep=keep, chunk=CHUNK):
            start = 0
            while pending and indices[-1] > pending[0][0]:  # a question is due inside this chunk
                cut = int(np.searchsorted(indices, pending[0][0], side="right"))
                if cut > start:
                    reader.push(indices[start:cut], to_model_frames(chunk[start:cut], size))
                    start = cut
                _answer(reader, tokenizer, questions, pending.pop(0)[1], answers, max_new_tokens, stats)
            if start < len(indices):
                reader.push(indices[start:], to_model_frames(chunk[start:], size))
            if progress is not None:
                progress.update(task, completed=int(indices[-1]) + 1)
        for _, idx in pending:
            _answer(reader, tokenizer, questions, idx, answers, max_new_tokens, stats)
        stats["frames_read"], stats["passes"] = reader.frames, 1
    stats["seconds"] = time.perf_counter() - t0
    # decode + encode + memory per frame; answering (once per query time, whatever the length) apart
    stats["ms_per_frame"] = 1000 * (stats["seconds"] - stats["answer_seconds"]) / max(stats["frames_read"], 1)
    records = []
    for i, q in enumerate(questions):
        records.append({"id": q.id, "question": q.question, "options": q.options, "prediction": answers[i],
                        "query_frame": _query(q, total), **q.extra})
    return records, stats


def _query(q: Question, total: int) -> int:
    return total - 1 if q.query_frame is None else min(int(q.query_frame), total - 1)


def _groups(order: list[int], questions: list[Question], total: int) -> list[tuple[int, list[int]]]:
    """[(query frame, question indices)] in query order."""
    out: list[tuple[int, list[int]]] = []
    for i in order:
        q = _query(questions[i], total)
        if out and out[-1][0] == q:
            out[-1][1].append(i)
        else:
            out.append((q, [i]))
    return out


def _answer(reader: StreamReader, tokenizer, questions, idx: list[int], answers: dict, max_new_tokens: int,
            stats: dict) -> None:
    t0 = time.perf_counter()
    for i, text in zip(idx, reader.answer(tokenizer, [questions[i] for i in idx], max_new_tokens), strict=True):
        answers[i] = text
    stats["answer_seconds"] += time.perf_counter() - t0


def ask(run: Path, video: Path, questions: list[Question], fps: float = 0.0, frames: int = 0,
        max_new_tokens: int = 0, **load_options) -> dict:
    """`vlmem ask`: load the run, stream the video through its memory, answer. Returns the result dict."""
    from vlmem.progress import progress_bar
    from vlmem.runs import load_trained

    video = Path(video)
    if not video.exists():
        raise UsageError(f"--video {video}: file not found")
    recipe, model, tokenizer = load_trained(run, **load_options)
    check_model(model)
    sampling = sampling_for(recipe, video, fps, frames)
    with progress_bar() as progress:
        records, stats = stream_answers(model, tokenizer, recipe, video, questions, sampling,
                                        max_new_tokens or recipe.eval.max_new_tokens, progress)
    return {"run": str(run), "video": str(video), "memory": recipe.model.memory.kind, "sampling": sampling.note,
            "context_frames": context_frames(recipe), **stats, "answers": records}
