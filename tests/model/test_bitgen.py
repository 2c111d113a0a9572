"""BitGen (model.kind = "bitgen"): LoRA placement, warm-up switch, losses and metrics, generation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vlmem.errors import ConfigError
from vlmem.model.bitgen import BitGenVLM, content_ids, resolve_lora_targets
from vlmem.model.build import build_model
from vlmem.model.contrastive import ITCHead, ITMHead
from vlmem.model.tokenizer import build_local_tokenizer
from vlmem.recipe import load_recipe
from vlmem.train.params import configure_trainable, parameter_table

SMALL = ["model.vision.image_size=32", "model.bitgen.queue_size=8", "data.frames=3"]


def _build(*overrides: str):
    recipe = load_recipe("tiny/bitgen", [*SMALL, *overrides])
    tok = build_local_tokenizer(["How many chair(s) are in this room?", "3", "What is the colour of the wall?",
                                 "blue", "Describe this image."])
    model = build_model(recipe, tok)
    return recipe, tok, model


def _batch(tok, b=4, t=3, size=32, seed=0, same=()):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (b, t, 3, size, size), dtype=torch.uint8, generator=g)
    for i, j in same:  # row j shows the same video as row i
        frames[j] = frames[i]
    texts = ["How many chair(s) are in this room? 3", "What is the colour of the wall? blue",
             "Describe this image.", "How many chair(s) are in this room?"]
    enc = [tok(texts[i % len(texts)], add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for i in range(b)]
    n = max(len(e) for e in enc)
    ids = torch.zeros(b, n, dtype=torch.long)
    mask = torch.zeros(b, n, dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, :len(e)] = torch.tensor(e)
        mask[i, :len(e)] = 1
    labels = torch.where(mask.bool(), ids, torch.full_like(ids, -100))
    labels[:, :2] = -100  # a "prompt" without labels
    return frames, ids, mask, labels


def _trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_lora_only_on_query_value_and_dinov2_base_frozen():
    recipe, _, model = _build()
    assert isinstance(model, BitGenVLM)
    configure_trainable(model, recipe)
    vis = dict(model.vision.named_parameters())
    lora = {n: p for n, p in vis.items() if "lora_" in n}
    assert lora and all(p.requires_grad for p in lora.values())
    assert all(n.split(".attention.")[1].split(".")[0] in ("q_proj", "v_proj") for n in lora)  # 5.x names
    assert not any(p.requires_grad for n, p in vis.items() if "lora_" not in n)  # the base never trains
    v = recipe.model.vision
    r = recipe.model.bitgen.lora_r
    assert sum(p.numel() for p in lora.values()) == v.num_layers * 2 * (r * v.hidden_size * 2)  # A and B, q and v
    # every parameter belongs to exactly one component of the parameter table
    assert sum(row[2] for row in parameter_table(model)) == sum(p.numel() for p in model.parameters())
    assert sum(row[1] for row in parameter_table(model)) == _trainable(model)
    from transformers import Dinov2Config, Dinov2Model

    bare = Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2,
                                    image_size=16, patch_size=8))
    assert resolve_lora_targets(bare, ["query", "value", "q_proj"]) == ["q_proj", "v_proj"]
    with pytest.raises(ConfigError, match="names no Linear layer"):
        resolve_lora_targets(bare, ["nope"])


def test_warmup_switch_messages_and_counts_match_the_model():
    recipe, _, model = _build("model.bitgen.lora_warmup_epochs=2")
    configure_trainable(model, recipe)
    n_lora = sum(p.numel() for p in model.lora_parameters())
    before = _trainable(model)  # LoRA marked trainable so the optimizer holds it
    msg = model.training_schedule(0, 5)
    assert "frozen for the warm-up" in msg and "steps 0-9" in msg
    assert f"trainable parameters: {_trainable(model):,}" in msg and _trainable(model) == before - n_lora
    assert not any(p.requires_grad for p in model.lora_parameters())
    assert model.training_schedule(9, 5) is None  # no change, no message
    msg = model.training_schedule(10, 5)
    assert "now train" in msg and "epoch 2" in msg
    assert f"trainable parameters: {_trainable(model):,}" in msg and _trainable(model) == before
    assert model.training_schedule(11, 5) is None
    # a pure function of the step: a fresh model entering at step 7 (resume) is frozen
    _, _, fresh = _build("model.bitgen.lora_warmup_epochs=2")
    configure_trainable(fresh, recipe)
    assert "frozen" in fresh.training_schedule(7, 5)
    assert not any(p.requires_grad for p in fresh.lora_parameters())
    # without "vision" in train.trainable the adapters never train and there is no schedule
    r2, _, m2 = _build('train.trainable=["projector", "memory", "fusion", "lm"]')
    configure_trainable(m2, r2)
    assert m2.training_schedule(100, 5) is None and not any(p.requires_grad for p in m2.lora_parameters())


def test_text_weight_zero_leaves_the_lm_head_frozen():
    recipe, _, model = _build()
    configure_trainable(model, recipe)
    assert not any(p.requires_grad for m in [model.fusion.mlp, *model.lm.head_modules()] for p in m.parameters())
    assert model.lm.tok.weight.requires_grad and model.fusion.itc.temperature_raw.requires_grad
    recipe, _, model = _build("model.bitgen.text_weight=1.0")
    configure_trainable(model, recipe)
    assert all(p.requires_grad for p in model.lm.parameters())


def test_forward_loss_metrics_and_gradients():
    recipe, tok, model = _build("model.bitgen.text_weight=0.5")
    configure_trainable(model, recipe)
    model.training_schedule(10, 1)  # after the warm-up: LoRA trains
    model.train()
    frames, ids, mask, labels = _batch(tok, same=[(0, 2)])
    torch.manual_seed(0)
    loss, logits, state, aux = model(frames, ids, mask, labels, return_info=True)
    assert logits.shape == (*ids.shape, len(tok)) and torch.isfinite(loss)
    m = aux["metrics"]
    for k in ("itc/i2t_acc", "itc/t2i_acc", "itm/acc"):
        assert 0.0 <= m[k] <= 1.0
    assert m["itc/temperature"] == pytest.approx(0.5, abs=1e-3)
    expected = m["itc/loss"] + 0.5 * m["itm/loss"] + 0.5 * m["text/loss"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert aux["losses"] == {} and {"kl", "utilisation"} <= set(aux)
    kl = model.memory.aux_losses(state)["memory_kl"]
    assert torch.isfinite(kl) and kl.item() > 0
    assert int(model.fusion.itc.queue_len) == 4  # training enqueues
    (loss + kl).backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
    lora_b = [p for n, p in model.vision.named_parameters() if "lora_B" in n]  # B starts at 0, so A's grad is 0
    assert lora_b and all(p.grad.abs().sum() > 0 for p in lora_b)


def test_warmup_lora_gets_no_gradient():
    recipe, tok, model = _build()
    configure_trainable(model, recipe)
    model.training_schedule(0, 5)
    frames, ids, mask, labels = _batch(tok)
    loss, *_ = model(frames, ids, mask, labels)
    loss.backward()
    assert all(p.grad is None for p in model.lora_parameters())
    assert model.projector.net[0].weight.grad is not None


def test_content_ids_group_identical_frames():
    f = torch.randint(0, 256, (4, 2, 3, 8, 8), dtype=torch.uint8)
    f[3] = f[1]
    ids = content_ids(f)
    assert ids[1] == ids[3] and len(set(ids.tolist())) == 3 and (ids >= 0).all()


def test_itc_idx_positives_perfect_alignment_and_soft_targets():
    head = ITCHead(dim=8, queue_size=0)
    eye = torch.eye(8)[:4] * 2
    img = torch.cat([eye, eye[:1]])  # row 4 shows the image of row 0
    txt = torch.cat([eye, eye[:1] + 0.1 * eye[1:2]])
    idx = torch.tensor([10, 11, 12, 13, 10])
    out = head(img, txt, idx=idx)
    assert out["i2t_acc"].item() == 1.0 and out["t2i_acc"].item() == 1.0
    assert out["pos"][0, 4] and out["pos"][4, 0] and out["pos"].sum() == 7
    # unique ids: the soft loss is the hard one
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    assert head(a, b, idx=torch.arange(5))["loss"].item() == pytest.approx(head(a, b)["loss"].item(), rel=1e-6)
    # the queue keeps ids: a queued entry of the same image is a positive
    q = ITCHead(dim=8, queue_size=4)
    q.enqueue(img[:2], txt[:2], idx[:2])
    out = q(img[:1], txt[:1], idx=idx[:1], update_queue=False)
    assert out["pos"].tolist() == [[True, True, False]]


def test_itm_skips_positive_candidates():
    head = ITMHead(dim=4, hidden=8)
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(4, 4), torch.randn(4, 4)
    pos = torch.eye(4, dtype=torch.bool)
    pos[0, 1] = pos[1, 0] = True  # rows 0 and 1 show the same image
    for _ in range(50):
        out = head(img, txt, pos_i2t=pos, pos_t2i=pos, generator=g)
        assert out["neg_txt_idx"][0] != 1 and out["neg_txt_idx"][1] != 0
        assert out["weight"].all()
    all_pos = torch.ones(4, 4, dtype=torch.bool)  # one video: no negative anywhere
    out = head(img, txt, pos_i2t=all_pos, pos_t2i=all_pos, generator=g)
    assert out["weight"].tolist() == [1.0] * 4 + [0.0] * 8
    assert out["acc"].item() in (0.0, 0.25, 0.5, 0.75, 1.0)  # positives only


def test_retrieval_metrics_and_generate():
    recipe, tok, model = _build()
    model.eval()
    frames, ids, mask, _ = _batch(tok, same=[(0, 3)])
    r = model.retrieval_metrics(frames, ids, mask, generator=torch.Generator().manual_seed(0))
    for k in ("i2t_acc", "t2i_acc", "itm_acc", "chance"):
        assert 0.0 <= r[k] <= 1.0
    assert r["chance"] == pytest.approx((2 + 1 + 1 + 2) / 16)
    # perfect alignment: the text embedding equals the image embedding -> retrieval accuracy 1
    model.lm.encode = lambda i, m: model.image_embedding(model.encode_frames(frames))[0]
    r = model.retrieval_metrics(frames, ids, mask)
    assert r["i2t_acc"] == 1.0 and r["t2i_acc"] == 1.0
    del model.lm.encode
    # greedy generation from left-padded prompts stops at eos and pads after it
    prompt = F.pad(ids[:, :3], (2, 0))
    pmask = F.pad(mask[:, :3], (2, 0))
    new = model.generate(frames, prompt, pmask, max_new_tokens=5, eos_token_id=tok.eos_token_id, pad_token_id=0)
    assert new.shape[0] == 4 and 1 <= new.shape[1] <= 5
    for row in new.tolist():
        if tok.eos_token_id in row:
            assert all(x == 0 for x in row[row.index(tok.eos_token_id) + 1:])
    # left padding does not change what a row generates
    alone = model.generate(frames[:1], ids[:1, :3], mask[:1, :3], max_new_tokens=new.shape[1],
                           eos_token_id=tok.eos_token_id, pad_token_id=0)
    assert torch.equal(alone[0, :alone.shape[1]], new[0, :alone.shape[1]])


def test_recipe_combinations_rejected():
    with pytest.raises(ConfigError) as err:
        load_recipe("tiny/bitgen", ['model.vision.kind="siglip"', 'model.memory.kind="dual"',
                                    'model.geometry.source="sensor"', "train.cache_features=true",
                                    'train.trainable=["lm_lora"]'])
    msg = str(err.value)
    for part in ("needs model.vision.kind = 'dinov2'", "'larimar' or 'none'", "fuses no 3D geometry",
                 "cache_features", "'lm_lora'"):
        assert part in msg, part
    r = load_recipe("tiny/bitgen", ['model.memory.kind="none"'])
    assert r.model.kind == "bitgen"


def test_itc_momentum_features_are_the_batch_columns_and_the_queue():
    head = ITCHead(dim=4, queue_size=8, temperature=0.5)
    img, txt = torch.randn(3, 4), torch.randn(3, 4)
    img_m, txt_m = torch.randn(3, 4), torch.randn(3, 4)
    out = head(img, txt, img_m=img_m, txt_m=txt_m)
    n = lambda x: F.normalize(x, dim=-1)  # noqa: E731
    assert torch.allclose(out["logits_i2t"], n(img) @ n(txt_m).t() / 0.5, atol=1e-6)
    assert torch.allclose(out["logits_t2i"], n(txt) @ n(img_m).t() / 0.5, atol=1e-6)
    q_img, q_txt = head.queued()
    assert torch.allclose(q_img, n(img_m)) and torch.allclose(q_txt, n(txt_m))


def test_momentum_encoders_follow_the_online_model_and_fill_the_queue():
    recipe, tok, model = _build("model.bitgen.momentum=0.5", "model.bitgen.queue_size=4")
    configure_trainable(model, recipe)
    mom = model.fusion.momentum
    assert not any(p.requires_grad for p in mom.parameters())
    assert all(torch.equal(a, b) for a, b in zip(mom.projector.parameters(), model.projector.parameters(), strict=True))
    with torch.no_grad():
        for p in model.projector.parameters():
            p.add_(1.0)
    before = [p.clone() for p in mom.projector.parameters()]
    model.train()
    frames, ids, mask, labels = _batch(tok)
    model(frames, ids, mask, labels)  # one EMA step with momentum 0.5: halfway to the online weights
    for old, new, online in zip(before, mom.projector.parameters(), model.projector.parameters(), strict=True):
        assert torch.allclose(new, 0.5 * old + 0.5 * online)
    assert int(model.fusion.itc.queue_len) == 4
    # ITM draws in-batch negatives only unless model.bitgen.itm_queue_negatives
    out = model(frames, ids, mask, labels)
    assert 0.0 <= out[3]["metrics"]["itm/acc"] <= 1.0
    _, _, plain = _build("model.bitgen.momentum=0.0")
    assert plain.fusion.momentum is None


def test_patch_tokens_feed_the_memory_and_memory_quality_is_logged():
    """patch_tokens = P: the seed's compressed patch tokens [B, T, P, E] instead of one CLS token."""
    recipe, tok, model = _build("model.bitgen.patch_tokens=4", "model.bitgen.momentum=0.0")
    model.eval()
    frames, ids, mask, labels = _batch(tok)
    tokens = model.encode_frames(frames)
    assert tokens.shape == (4, 3, 4, recipe.model.bitgen.embed_dim) and model.grid == (2, 2)
    cls = _build("model.bitgen.momentum=0.0")[2].encode_frames(frames)
    assert cls.shape == (4, 3, 1, recipe.model.bitgen.embed_dim)
    loss, _, state, aux = model(frames, ids, mask, labels)
    q = aux["metrics"]["memory_quality"]
    assert torch.isfinite(loss) and -1.0 <= q <= 1.0
    # a recall measure: a frame's 4 tokens read back better after they were written than before
    one = tokens[:, :1]
    _, st, _ = model.image_embedding(one)
    before = model.memory_quality(one, model.memory.init_state(4, tokens_per_frame=4))
    assert model.memory_quality(one, st) > before + 0.1, (before, model.memory_quality(one, st))
    with pytest.raises(ConfigError, match="patch_tokens"):
        _build("model.bitgen.patch_tokens=5")
