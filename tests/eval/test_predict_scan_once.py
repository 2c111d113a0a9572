"""`vlmem eval` prediction scans the memory once per distinct video in a batch (the scan does not
depend on the question), with exactly the answers of scanning once per question; the read-out is
causal, so one scan of a stream serves questions asked at any frame (streaming evaluation)."""

from __future__ import annotations

import pytest
import torch

from vlmem.data.synthetic import prepare_synthetic
from vlmem.eval import generate as gen
from vlmem.memory import MEMORY_KINDS, build_memory
from vlmem.model.build import build_model, dataset_texts, load_tokenizer
from vlmem.recipe import load_recipe

SMALL = ["model.vision.image_size=32", "model.vision.patch_size=8", "model.vision.hidden_size=32",
         "model.vision.num_layers=1", "model.vision.intermediate_size=64", "model.lm.hidden_size=32",
         "model.lm.num_layers=1", "model.lm.intermediate_size=64", "model.memory.L_w=2", "model.memory.L_e=2",
         "data.question_types=[]", "data.frames=4"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan_once") / "synth"
    prepare_synthetic(root, scenes=2, frames=4, size=32, seed=0, eval_fraction=1.0)
    return root


def _model(data_root, kind):
    from vlmem.data.dataset import read_qa_table

    recipe = load_recipe("tiny/base", [*SMALL, f'model.memory.kind="{kind}"', f'data.root="{data_root}"'])
    rows = read_qa_table(data_root, recipe.eval.split, (), 0)
    tokenizer = load_tokenizer(recipe, dataset_texts(rows))
    return recipe, build_model(recipe, tokenizer).eval(), tokenizer


def _count_scans(monkeypatch, memory) -> list[int]:
    """The batch size of every scan the memory runs."""
    calls, scan = [], memory.scan

    def counted(h, *args, **kwargs):
        calls.append(h.shape[0])
        return scan(h, *args, **kwargs)

    monkeypatch.setattr(memory, "scan", counted)
    return calls


@pytest.mark.parametrize("kind", ["dual", "titans"])
def test_one_scan_per_video_and_the_same_answers(data_root, monkeypatch, kind):
    recipe, model, tok = _model(data_root, kind)
    calls = _count_scans(monkeypatch, model.memory)
    embeds, lm_generate = [], model.lm.generate  # what the LM is given: a random model's answers rarely differ

    def recorded(**kwargs):
        embeds.append(kwargs["inputs_embeds"])
        return lm_generate(**kwargs)

    monkeypatch.setattr(model.lm, "generate", recorded)
    args = (model, tok, recipe, data_root, recipe.eval.split, 4)
    fast = gen.predict(*args, max_new_tokens=3, batch_size=64)
    videos = len({r["scene_name"] for r in fast})
    assert len(fast) > videos >= 2  # several questions per video
    assert calls == [videos]  # one scan, one row per distinct video
    calls.clear()
    # the per-question path (shared encode, one scan per question), as before this change
    monkeypatch.setattr(gen, "_context_once_per_video", lambda m, b: {"tokens": gen._encode_once_per_video(m, b)})
    slow = gen.predict(*args, max_new_tokens=3, batch_size=64)
    assert calls == [len(slow)]
    assert [r["prediction"] for r in fast] == [r["prediction"] for r in slow]
    assert len(embeds) == 2 and torch.equal(embeds[0], embeds[1])
    assert not torch.equal(embeds[0][0], embeds[0][-1])  # rows of different videos see different memories
    assert [r["id"] for r in fast] == [r["id"] for r in slow]


@pytest.mark.parametrize("kind", [k for k in MEMORY_KINDS if k != "none"])
def test_readout_is_causal_so_one_scan_serves_every_query_time(kind):
    """Frame t's read-out depends on frames <= t only: a prefix scan equals the full scan's prefix."""
    torch.manual_seed(0)
    cfg = type("C", (), {"kind": kind, "num_heads": 2, "L_w": 2, "L_e": 3, "dropout": 0.0, "larimar_slots": 4})()
    mem = build_memory(cfg, 8).eval()
    h = torch.randn(2, 7, 3, 8)
    with torch.no_grad():
        full, _ = mem.scan(h, mem.init_state(2))
        for t in (1, 3, 6):
            part, _ = mem.scan(h[:, :t], mem.init_state(2))
            assert (part - full[:, :t]).abs().max() <= 1e-5, (kind, t)


@pytest.mark.parametrize("kind", ["trm", "bitgen"])
def test_decoder_and_bitgen_generate_the_same_with_a_shared_readout(kind):
    """The other models `predict` hands a shared read-out to: same answers as scanning per row."""
    from vlmem.model.vlm import context_once_per_video

    if kind == "trm":
        from tests.model.test_decoder_vlm import _batch, _model, tokenizer

        tok = tokenizer.__wrapped__()
        model, b = _model(tok, "trm", 'model.memory.kind="dual"'), _batch(tok)
        frames, ids, mask = b["frames"], b["input_ids"], b["attention_mask"]
    else:
        from tests.model.test_bitgen import _batch, _build

        _, tok, model = _build()
        model.eval()
        frames, ids, mask, _ = _batch(tok, b=3, same=[(0, 2)])
    videos = [f"v{i}" for i in range(frames.shape[0] - 1)] + (["v0"] if kind == "bitgen" else ["v9"])
    with torch.no_grad():
        shared = context_once_per_video(model, frames, None, videos)
        fast = model.generate(frames, ids, mask, max_new_tokens=3, **shared)
        slow = model.generate(frames, ids, mask, max_new_tokens=3)
    assert torch.equal(fast, slow)
