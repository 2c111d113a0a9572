"""model.memory.pool: the memory runs on p x p pooled tokens; its read-out is spread back over each
pooled cell, so the LM (pooling p x p itself) sees exactly the pooled tokens plus the pooled read-out."""

from __future__ import annotations

import torch

from vlmem.model.build import build_model, load_tokenizer
from vlmem.model.vlm import pool_grid
from vlmem.recipe import load_recipe


def _model(pool, image_size=40, lm_pool=1):
    recipe = load_recipe("tiny/phase1", ['train.init_from=""', f"model.memory.pool={pool}", "model.context_frames=0",
                                         f"model.vision.image_size={image_size}", 'model.geometry.source="none"',
                                         "model.fusion.position_injection=false", "model.fusion.viewpoint_alignment=false",
                                         "model.fusion.cross_attention=false", f"model.pool={lm_pool}"])
    torch.manual_seed(0)
    return build_model(recipe, load_tokenizer(recipe, texts=["how many chairs 1 2 3"])).eval()


def test_memory_sees_pooled_tokens_and_hands_on_the_full_grid():
    model = _model(2)  # 40 px / patch 8 = 5 x 5 grid: pooled 2 x 2, the last row / column take the edge cell
    tokens = torch.randn(2, 3, 25, model.vision.hidden_size)
    m, state, _ = model.read_memory(tokens)
    assert m.shape == tokens.shape
    assert state.w_k.shape[-2] == 4  # [B, heads, L_w, tokens per frame, head dim]: 4 pooled tokens, not 25
    direct, _, _ = model.run_memory(pool_grid(tokens, model.grid, 2))
    cells = m.reshape(2, 3, 5, 5, -1)
    expect = direct.reshape(2, 3, 2, 2, -1)
    assert torch.allclose(cells[:, :, :4:2, :4:2], expect) and torch.allclose(cells[:, :, 1:4:2, 1:4:2], expect)
    assert torch.allclose(cells[:, :, 4, :4:2], expect[:, :, 1])  # dropped row: nearest pooled cell
    # pooled as the LM pools it, the read-out is the memory's own
    assert torch.allclose(pool_grid(m, model.grid, 2), direct, atol=1e-6)


def test_pool_one_is_run_memory_and_the_model_trains_with_pool_two():
    model = _model(1, image_size=32)
    tokens = torch.randn(1, 2, 16, model.vision.hidden_size)
    torch.manual_seed(1)
    a = model.read_memory(tokens)[0]
    torch.manual_seed(1)
    assert torch.equal(a, model.run_memory(tokens)[0])
    model = _model(2, image_size=32, lm_pool=2).train()
    frames = torch.randint(0, 255, (1, 3, 3, 32, 32), dtype=torch.uint8)
    ids = torch.tensor([[2, 5, 6, 7]])
    loss = model(frames, ids, torch.ones_like(ids), labels=ids)[0]
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None for p in model.memory.parameters())
