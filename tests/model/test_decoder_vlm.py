"""DecoderVLM (plain / TRM decoder in place of the HF LM): layout, answer-only loss, vision ablation,
resampler, generation, recipe checks, trainable components and checkpoint prefixes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vlmem.data.dataset import IGNORE_INDEX, collate, tokenize
from vlmem.errors import ConfigError
from vlmem.model.build import build_model
from vlmem.model.decoder_vlm import AnswerDecoder, DecoderVLM, PerceiverResampler
from vlmem.model.tokenizer import build_local_tokenizer
from vlmem.recipe import load_recipe

QUESTIONS = ["How many chair(s) are in this room?", "How many lamp(s) are there in the room here?"]
ANSWERS = ["3", "12"]
SMALL = ["model.vision.image_size=32", "model.vision.patch_size=8", "model.vision.hidden_size=32",
         "model.vision.num_layers=1", "model.vision.intermediate_size=64", "model.decoder.hidden_size=32",
         "model.decoder.num_heads=4", "model.decoder.trm_n=2", "model.decoder.trm_T=2",
         "model.decoder.max_answer_tokens=4", "model.decoder.resampler_latents=8", "data.frames=2", "eval.frames=2"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_local_tokenizer(QUESTIONS + ANSWERS + ["How many box(es) are in this room?"])


def _model(tokenizer, kind="trm", *extra):
    recipe = load_recipe("tiny/trm", [*SMALL, f'model.decoder.kind="{kind}"', *extra])
    return build_model(recipe, tokenizer).eval()


def _batch(tokenizer, questions=QUESTIONS, answers=ANSWERS, seed=0, padding_side="right"):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for q, a in zip(questions, answers, strict=True):
        s = {"id": q, "row": {}, "frames": torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=g)}
        s.update(tokenize(tokenizer, q, a))
        samples.append(s)
    return collate(samples, pad_id=tokenizer.pad_token_id, padding_side=padding_side)


def _run(model, b, **kw):
    return model(b["frames"], b["input_ids"], b["attention_mask"], labels=b["labels"], **kw)


def _targets(labels, length):
    """The answer label tokens of each row in order (answer + eos), padded / cut to `length`."""
    rows = [[t for t in row if t != IGNORE_INDEX][:length] for row in labels.tolist()]
    return torch.tensor([r + [IGNORE_INDEX] * (length - len(r)) for r in rows])


@pytest.mark.parametrize("kind", ["trm", "plain"])
def test_builds_decoder_vlm_and_loss_is_on_answer_tokens_only(tokenizer, kind):
    torch.manual_seed(0)
    model = _model(tokenizer, kind)
    assert isinstance(model, DecoderVLM) and isinstance(model.lm, AnswerDecoder)
    assert model.lm.decoder.kind == kind and model.lm.decoder.vocab_size == len(tokenizer)
    b = _batch(tokenizer)
    loss, logits, state, aux = _run(model, b)
    n_answer = 4 if kind == "trm" else int((b["labels"] != IGNORE_INDEX).sum(1).max())
    assert logits.shape == (2, n_answer, len(tokenizer))
    target = _targets(b["labels"], n_answer)
    torch.testing.assert_close(loss, F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX))
    assert aux == {} and state is not None
    # the answer is never part of the context: another answer of the same length leaves the
    # TRM's logits (and the plain decoder's first position) unchanged
    b2 = _batch(tokenizer, answers=["4", "15"])
    logits2 = _run(model, b2)[1]
    if kind == "trm":
        torch.testing.assert_close(logits2, logits)
    else:
        torch.testing.assert_close(logits2[:, 0], logits[:, 0])


@pytest.mark.parametrize("use_vision", [True, False])
def test_image_and_question_reach_the_logits(tokenizer, use_vision):
    torch.manual_seed(0)
    model = _model(tokenizer, "trm", f"model.decoder.use_vision={str(use_vision).lower()}")
    b = _batch(tokenizer)
    logits = _run(model, b)[1]
    other_image = {**b, "frames": _batch(tokenizer, seed=1)["frames"]}
    changed = not torch.allclose(_run(model, other_image)[1], logits)
    assert changed == use_vision  # no-vision ablation: the frames are never read
    other_q = _batch(tokenizer, questions=["How many box(es) are in this room?", QUESTIONS[1]])
    assert not torch.allclose(_run(model, other_q)[1][0], logits[0])
    torch.testing.assert_close(_run(model, other_q)[1][1], logits[1])  # rows are independent


def test_resampler_shapes(tokenizer):
    r = PerceiverResampler(32, 8, 4)
    assert r(torch.randn(3, 50, 32)).shape == (3, 8, 32)
    model = _model(tokenizer, "trm")
    tokens = model.encode_frames(_batch(tokenizer)["frames"])  # [B, T, N, D_vision]
    assert tokens.shape == (2, 2, 16, 32)
    assert model.visual_embeds(tokens).shape == (2, 8, 32)  # 2 frames x 16 tokens -> 8 latents


@pytest.mark.parametrize("kind", ["trm", "plain"])
def test_generate_matches_training_positions(tokenizer, kind):
    """Left-padded generation sees the question at the same positions as right-padded training."""
    torch.manual_seed(0)
    model = _model(tokenizer, kind)
    b = _batch(tokenizer)
    logits = _run(model, b)[1]
    samples = []
    for i, q in enumerate(QUESTIONS):
        s = {"id": q, "row": {}, "frames": b["frames"][i]}
        s.update(tokenize(tokenizer, q, None))
        samples.append(s)
    g = collate(samples, pad_id=tokenizer.pad_token_id, padding_side="left")
    assert (g["attention_mask"] == 0).any()  # prompts of different lengths: real left padding
    unlabelled = model(g["frames"], g["input_ids"], g["attention_mask"])[1]  # no labels: first slot / all slots
    torch.testing.assert_close(unlabelled, logits[:, :unlabelled.shape[1]])
    ids = model.generate(g["frames"], g["input_ids"], g["attention_mask"], max_new_tokens=16,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    assert ids.dtype == torch.long and ids.shape[0] == 2 and 1 <= ids.shape[1] <= 4
    assert ids[:, 0].tolist() == logits[:, 0].argmax(-1).tolist()
    if kind == "trm":
        assert ids.shape[1] == 4
        assert model.generate(g["frames"], g["input_ids"], g["attention_mask"], max_new_tokens=2).shape[1] == 2
    for row in ids.tolist():  # after the first eos only padding
        if tokenizer.eos_token_id in row:
            k = row.index(tokenizer.eos_token_id)
            assert all(t == tokenizer.pad_token_id for t in row[k + 1:])


def test_dual_memory_and_halting_work_with_the_decoder(tokenizer):
    model = _model(tokenizer, "trm", 'model.memory.kind="dual"', "model.memory.num_heads=4",
                   "model.decoder.halting=true", "model.decoder.deep_supervision=2")
    model.train()
    loss, _, state, aux = _run(model, _batch(tokenizer), return_info=True, consistency=True)
    assert torch.isfinite(loss) and "halt_loss" in aux["metrics"] and "consistency" in aux
    loss.backward()
    assert model.memory.parameters().__next__().grad is not None


def test_recipe_combinations():
    with pytest.raises(ConfigError, match="halting = true needs model.decoder.kind = 'trm'"):
        load_recipe("tiny/trm_plain", ["model.decoder.halting=true"])
    with pytest.raises(ConfigError, match="builds no HF LM"):
        load_recipe("tiny/trm", ['train.trainable=["lm_lora"]'])
    with pytest.raises(ConfigError, match="not divisible by model.decoder.num_heads"):
        load_recipe("tiny/trm", ["model.decoder.num_heads=3"])
    with pytest.raises(ConfigError, match="resampler_latents = 16 needs model.decoder.kind"):
        load_recipe("tiny/trm", ['model.decoder.kind="lm"'])


def test_trainable_components_and_checkpoint_prefixes(tokenizer):
    from vlmem.train.checkpoint import saved_prefixes
    from vlmem.train.params import component_modules, configure_trainable, frozen_encoder

    recipe = load_recipe("tiny/trm", SMALL)
    model = build_model(recipe, tokenizer)
    components = configure_trainable(model, recipe)
    assert components == {"projector", "lm"} and frozen_encoder(model, components)  # feature cache applies
    assert component_modules(model)["lm"] == [model.lm]
    assert not any(p.requires_grad for p in model.vision.parameters())
    assert all(p.requires_grad for p in model.lm.parameters()) and all(p.requires_grad for p in model.projector.parameters())
    # the decoder is always saved, even when [model.lm] names a hub checkpoint (only its tokenizer is used)
    hub = load_recipe("tiny/trm", [*SMALL, 'model.lm.pretrained="Qwen/Qwen2-0.5B"'])
    assert "lm." in saved_prefixes(hub, {"projector"})
