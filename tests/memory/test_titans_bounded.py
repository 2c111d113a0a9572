"""Titans' "titans" update (surprise + momentum + forgetting) stays bounded on long videos of real
model tokens, fresh and after training steps (it used to grow from 17.8 to 4e6 in 32 frames)."""

from __future__ import annotations

import pytest
import torch

from vlmem.errors import ConfigError
from vlmem.memory import TitansMemory


@pytest.fixture(scope="module")
def tower_tokens() -> torch.Tensor:
    """Tokens [1, 32, 64, 64] of the tiny SigLIP tower (tiny/base.toml shape) on 32 rendered synthetic frames."""
    from vlmem.data.synthetic import synthesize_scene
    from vlmem.model.backbones import load_vision_tower
    from vlmem.recipe.schema import VisionConfig

    torch.manual_seed(0)
    tower = load_vision_tower(VisionConfig(image_size=64, patch_size=8, hidden_size=64, num_layers=2, num_heads=4,
                                           intermediate_size=128)).eval()
    rgb = torch.from_numpy(synthesize_scene(0, frames=32, size=64).render.rgb).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        return tower(rgb)[None]


def _state_norms(mem: TitansMemory, tokens: torch.Tensor, frames: int) -> list[float]:
    """Frobenius norm of S after each block of len(tokens) frames, looping the clip for `frames` frames."""
    norms, st = [], mem.init_state(tokens.shape[0])
    with torch.no_grad():
        for _ in range(frames // tokens.shape[1]):
            _, st = mem.scan(tokens, st)
            norms.append(float(st.S.norm()))
    return norms


def _train(mem: TitansMemory, tokens: torch.Tensor, steps: int) -> None:
    """Outer-loop steps that reward a large read-out (the pressure that made the old rule diverge)."""
    opt = torch.optim.Adam(mem.parameters(), lr=3e-2)
    for _ in range(steps):
        out, _ = mem.scan(tokens[:, :8], mem.init_state(1))
        loss = -out.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("frames", [1_000, pytest.param(10_000, marks=pytest.mark.slow)])
@pytest.mark.parametrize("trained", [False, True])
def test_titans_update_stays_bounded_over_long_videos(tower_tokens, trained, frames):
    torch.manual_seed(0)
    mem = TitansMemory(64, num_heads=4, update="titans")
    if trained:
        _train(mem, tower_tokens, steps=10)
    v_norm = float(mem.to_v(tower_tokens).detach().norm(dim=-1).max())
    norms = _state_norms(mem, tower_tokens * 10, frames)  # tokens 10x larger than the tower's, too
    assert all(torch.isfinite(torch.tensor(norms)))
    # S maps unit keys to values: its norm stays on the scale of the values (x10), it does not grow
    assert max(norms) < 10 * v_norm * 64, (max(norms), v_norm)
    assert max(norms[-20:]) < 2 * max(norms[:20]) + 1e-6, (norms[:3], norms[-3:])
    print(f"trained={trained} frames={frames}: |S| first {norms[0]:.1f}, max {max(norms):.1f}, last {norms[-1]:.1f}")


def test_titans_rule_is_the_mean_surprise_step():
    """One chunk: G = (2/c) K^T diag(theta) (K S - V), Mom = -G, S = (1 - alpha) * 0 + Mom."""
    torch.manual_seed(0)
    mem = TitansMemory(16, num_heads=2, update="titans", lr=0.3)
    h = torch.randn(1, 5, 16)
    _, st1, info = mem.step(h, mem.init_state(1), return_info=True)
    k = torch.nn.functional.normalize(mem.to_k(h).view(1, 5, 2, 8).transpose(1, 2), dim=-1)
    v = mem.to_v(h).view(1, 5, 2, 8).transpose(1, 2)
    theta = 0.3 * torch.sigmoid(mem.write_gate(h)).transpose(1, 2)
    grad = (2 / 5) * (k * theta[..., None]).transpose(-1, -2) @ (-v)
    torch.testing.assert_close(st1.S, -grad)
    assert 0 < float(info["forget_mean"]) < 1 and 0 < float(info["momentum_mean"]) < 1


def test_titans_lr_past_the_bound_is_a_config_error():
    with pytest.raises(ConfigError, match="titans_lr"):
        TitansMemory(16, num_heads=2, update="titans", lr=0.8)
