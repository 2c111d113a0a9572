"""`train.tbptt_mode = "per_chunk"`: the seeds' truncated-BPTT loop.

A video of T frames is cut into chunks of `train.tbptt_frames` frames. For each chunk in
order: the memory continues from the previous chunk's state, detached (no gradient crosses
a chunk boundary), the LM sees that chunk's frames (`model.context_frames` of them at most)
and the question, the answer loss is computed at the chunk's end, and the optimizer steps.
k chunks = k optimizer steps per batch of videos (the scheduler counts them all).

Text alignment: one question per video, asked at every chunk end. Each chunk needs a target
of its own to take an optimizer step on (a loss at the last chunk only would leave the
earlier chunks without gradient: their memory writes are cut off by the detach), and the
streaming reading of the seeds is "answer with what the memory holds so far".
docs/training.md "Truncated BPTT" discusses the choice.

Frozen encoders (phase 1): the whole video is encoded once without gradient and its tokens
sliced, so 3D coordinates stay in the video's first camera. Trainable encoders: each chunk's
frames (and geometry) are encoded in the chunk's forward, coordinates relative to the chunk's
first camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def chunk_spans(frames: int, chunk: int) -> list[tuple[int, int]]:
    """[start, end) of each chunk of `chunk` frames (the last one may be shorter)."""
    return [(s, min(s + chunk, frames)) for s in range(0, frames, chunk)]


def chunk_count(frames: int, chunk: int) -> int:
    return len(chunk_spans(frames, chunk))


def _slice(batch: dict, tokens: torch.Tensor | None, start: int, end: int) -> dict:
    if tokens is not None:
        return {"frames": None, "tokens": tokens[:, start:end]}
    geometry = batch.get("geometry")
    return {"frames": batch["frames"][:, start:end],
            "geometry": {k: v[:, start:end] for k, v in geometry.items()} if geometry is not None else None}


@dataclass
class ChunkedStep:
    loss: float = 0.0  # answer-token loss averaged over the chunks
    chunks: int = 0
    grad_norm: float = float("nan")
    state: object = None  # the memory state after the last chunk (detached)
    info: dict = field(default_factory=dict)  # the last chunk's memory info (return_info)
    aux: dict = field(default_factory=dict)  # the last chunk's weighted auxiliary losses
    metrics: dict = field(default_factory=dict)  # model metrics summed over the chunks


def per_chunk_step(acc, model, core, optimizer, scheduler, batch: dict, tokens: torch.Tensor | None, train_cfg,
                   return_info: bool = False) -> ChunkedStep:
    """Loss, backward and optimizer step per chunk of one micro-batch (train.grad_accum = 1)."""
    t = train_cfg
    n_frames = (tokens if tokens is not None else batch["frames"]).shape[1]
    spans = chunk_spans(n_frames, t.tbptt_frames)
    out = ChunkedStep(chunks=len(spans))
    labels = batch["labels"]
    n_local = (labels != -100).sum()
    n_global = acc.reduce(n_local.detach().clone(), "sum").clamp_min(1)
    state = None
    for c, (start, end) in enumerate(spans):
        last = c == len(spans) - 1
        with acc.accumulate(model):
            loss, _, state, info = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                         labels=labels, **_slice(batch, tokens, start, end),
                                         return_info=return_info and last, memory_state=state,
                                         consistency=t.aux_consistency_weight > 0)
            # the loop's weighting (answer tokens over all processes), per chunk
            loss_sum = loss * n_local.to(loss.dtype)
            aux = dict(core.memory.aux_losses(state))
            aux.update(info.pop("losses", {}))
            for name, value in info.pop("metrics", {}).items():
                out.metrics[name] = out.metrics.get(name, 0.0) + float(value) / len(spans)
            if t.aux_consistency_weight:
                aux["consistency"] = t.aux_consistency_weight * info.pop("consistency")
            if t.aux_utilisation_weight:
                aux["utilisation"] = t.aux_utilisation_weight * core.memory.gate_balance_loss(state)
            total = loss_sum * acc.num_processes / n_global.to(loss.dtype) + (sum(aux.values()) if aux else 0)
            acc.backward(total)
            if t.clip_norm > 0:
                out.grad_norm = float(acc.clip_grad_norm_(model.parameters(), t.clip_norm))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        out.loss += float(acc.reduce(loss_sum.detach(), "sum") / n_global) / len(spans)
        state = state.detach()  # carried on, but no gradient crosses the chunk boundary
        if last:
            out.info, out.aux = info, aux
    out.state = state
    return out


def encode_video(core, batch: dict) -> torch.Tensor:
    """Frozen encoders: the whole video's tokens once, without gradient (sliced per chunk)."""
    from vlmem.data.mixing import video_key
    from vlmem.model.vlm import encode_once_per_video

    with torch.no_grad():
        return encode_once_per_video(core, batch["frames"], batch.get("geometry"),
                                     [video_key(r) for r in batch["rows"]]).detach()
