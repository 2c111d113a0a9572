"""train.tbptt_mode = "per_chunk": an optimizer step per chunk, memory state carried detached."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from vlmem.cli import main
from vlmem.data.dataset import collate, tokenize
from vlmem.model.build import build_model
from vlmem.model.tokenizer import build_local_tokenizer
from vlmem.recipe import load_recipe
from vlmem.train.tbptt import chunk_spans, per_chunk_step

QUESTIONS = ["How many chair(s) are in this room?", "How many lamp(s) are there?"]
ANSWERS = ["3", "12"]
SMALL = ["model.vision.image_size=32", "model.vision.patch_size=8", "model.vision.hidden_size=32",
         "model.vision.num_layers=1", "model.geometry.source=none", "model.fusion.position_injection=false",
         "model.fusion.viewpoint_alignment=false", "model.fusion.cross_attention=false", "model.lm.hidden_size=32",
         "model.lm.num_layers=1", "model.memory.dropout=0.0", "data.frames=6", "model.context_frames=1",
         "train.init_from=\"\"", "train.tbptt_mode=per_chunk", "train.tbptt_frames=2", "train.clip_norm=0"]


def test_chunk_spans():
    assert chunk_spans(6, 2) == [(0, 2), (2, 4), (4, 6)]
    assert chunk_spans(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert chunk_spans(4, 8) == [(0, 4)]


@pytest.fixture
def setup(one_thread):
    torch.manual_seed(0)
    recipe = load_recipe("tiny/phase1", SMALL)
    tok = build_local_tokenizer(QUESTIONS + ANSWERS)
    model = build_model(recipe, tok)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.memory.parameters():
        p.requires_grad_(True)
    batch = collate([{"id": q, "row": {}, **tokenize(tok, q, a)} for q, a in zip(QUESTIONS, ANSWERS, strict=True)],
                    pad_id=tok.pad_token_id)
    tokens = torch.randn(2, 6, 16, 32, requires_grad=True)  # [B, T, N, D] frozen-encoder tokens
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return recipe, model, batch, tokens, optimizer, scheduler


def test_one_optimizer_step_per_chunk_with_the_state_carried(setup):
    recipe, model, batch, tokens, optimizer, scheduler = setup
    acc = Accelerator(cpu=True)
    steps, seen_states = [], []
    optimizer.register_step_post_hook(lambda *_: steps.append(1))
    model.register_forward_pre_hook(lambda m, args, kwargs: seen_states.append(kwargs["memory_state"]),
                                    with_kwargs=True)
    out = per_chunk_step(acc, model, model, optimizer, scheduler, batch, tokens, recipe.train)
    assert out.chunks == 3 and len(steps) == 3 and scheduler.last_epoch == 3
    # chunk 0 starts empty; chunk c starts from chunk c-1's final state, detached
    assert seen_states[0] is None and all(s is not None for s in seen_states[1:])
    for s in (*seen_states[1:], out.state):
        assert all(not v.requires_grad for _, v in s.items())
    # working memory: L_w slots filled by the frames of earlier chunks
    assert float(seen_states[2].w_fill.float().mean()) > float(seen_states[1].w_fill.float().mean())
    assert out.loss > 0


def test_gradients_stay_inside_their_chunk(setup):
    recipe, model, batch, tokens, optimizer, scheduler = setup
    acc = Accelerator(cpu=True)
    grads = []
    backward = acc.backward

    def record(loss, **kw):
        backward(loss, **kw)
        grads.append(tokens.grad.clone())

    acc.backward = record
    per_chunk_step(acc, model, model, optimizer, scheduler, batch, tokens, recipe.train)
    previous = torch.zeros_like(tokens)
    for (start, end), g in zip(chunk_spans(6, 2), grads, strict=True):
        step = g - previous
        previous = g
        inside = torch.zeros(6, dtype=torch.bool)
        inside[start:end] = True
        assert step[:, inside].abs().sum() > 0  # the chunk's own frames get gradient
        assert torch.count_nonzero(step[:, ~inside]) == 0  # no earlier frame does (the state was detached)


def test_carried_state_differs_from_a_reset(setup):
    recipe, model, batch, tokens, *_ = setup
    model.eval()
    kw = {"frames": None, "input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
          "labels": batch["labels"]}
    with torch.no_grad():
        _, _, state, _ = model(tokens=tokens[:, :2], **kw)
        carried, *_ = model(tokens=tokens[:, 2:4], memory_state=state, **kw)
        reset, *_ = model(tokens=tokens[:, 2:4], **kw)
        again, *_ = model(tokens=tokens[:, 2:4], memory_state=state, **kw)
    assert carried == again and abs(float(carried) - float(reset)) > 1e-6


def test_per_chunk_run_from_the_cli_resumes_exactly(tmp_path, one_thread):
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["prepare-data", "synthetic", "--out", "data/synth", "--scenes", "2", "--frames", "6",
                     "--size", "32"]) == 0
        sets = ["model.memory.kind=dual", "data.question_types=[]", "data.frames=6", "model.vision.image_size=32",
                "train.batch_size=2", "train.max_steps=4", "train.save_every=2", "train.log_every=1",
                "train.tbptt_mode=per_chunk", "train.tbptt_frames=2", "train.warmup_ratio=0.25", "run.name=pc"]
        args = [a for s in sets for a in ("--set", s)]
        assert main(["train", "tiny/base", *args]) == 0
        run = tmp_path / "runs/pc"
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        # 3 chunks a step: the cosine schedule runs over 12 optimizer steps (3 of warm-up)
        assert [x["step"] for x in lines] == [1, 2, 3, 4] and lines[0]["lr"] == pytest.approx(1e-3)
        assert lines[-1]["lr"] == 0.0
        final = load_file(str(run / "checkpoints/last/model/model.safetensors"))
        shutil.rmtree(run / "checkpoints/000004")
        (run / "checkpoints/last").unlink()
        os.symlink("000002", run / "checkpoints/last")
        assert main(["train", "tiny/base", "--resume", *args]) == 0
        again = load_file(str(run / "checkpoints/last/model/model.safetensors"))
        assert all(torch.equal(final[k], again[k]) for k in final)
        resumed = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert [x["loss"] for x in resumed] == [x["loss"] for x in lines]
    finally:
        os.chdir(old)
