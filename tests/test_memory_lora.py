"""LoRA on the memory attention (phase-1 option) and the dual memory's utilisation term."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from vlmem.cli import main
from vlmem.memory.dual import DualMemory
from vlmem.recipe import load_recipe
from vlmem.train.memory_lora import apply_memory_lora, has_memory_lora, merge_memory_lora

pytestmark = pytest.mark.usefixtures("one_thread")


def _memory() -> DualMemory:
    torch.manual_seed(0)
    return DualMemory(32, num_heads=4, L_w=3, L_e=4, dropout=0.0)


def test_lora_starts_from_loaded_weights_and_trains_only_adapters():
    mem = _memory()
    h = torch.randn(2, 7, 5, 32)
    ref, _ = mem.scan(h)
    assert apply_memory_lora(mem, r=4, alpha=8) == 4  # in/out projection of both attentions
    out, _ = mem.scan(h)
    assert torch.equal(out, ref)  # B = 0: identical at the start, as peft
    trainable = {n for n, p in mem.named_parameters() if p.requires_grad}
    attention = {n for n in trainable if "attention" in n}
    assert attention and all("lora_" in n for n in attention)  # weights and biases frozen
    assert any(n.startswith("memory_fusion_mlp") for n in trainable)  # fusion MLP stays full
    out.square().mean().backward()
    grads = {n: p.grad for n, p in mem.named_parameters() if p.requires_grad}
    # with B = 0 only B gets a gradient at the first step (A's flows through B), as in peft
    assert all(grads[n].abs().sum() > 0 for n in grads if "lora_B" in n)


def test_merge_gives_the_same_outputs_with_plain_weights():
    mem = _memory()
    apply_memory_lora(mem, r=2, alpha=4)
    with torch.no_grad():
        for name, p in mem.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    h = torch.randn(2, 5, 3, 32)
    before, _ = mem.scan(h)
    merge_memory_lora(mem)
    assert not has_memory_lora(mem)
    after, _ = mem.scan(h)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert "working_attention.in_proj_weight" in mem.state_dict()


def test_gate_balance_loss_matches_the_logged_gate_and_trains_the_gate():
    mem = _memory()
    h = torch.randn(3, 6, 4, 32)
    _, state, info = mem.scan(h, return_info=True)
    loss = mem.gate_balance_loss(state)
    expected = ((info["gate_mean"].mean(1) - 0.5) ** 2).mean()
    torch.testing.assert_close(loss, expected.to(loss.dtype), rtol=1e-5, atol=1e-7)
    loss.backward()
    assert mem.memory_fusion_mlp[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("key,kind,needle", [
    ("train.aux_utilisation_weight=0.1", "titans", "aux_utilisation_weight"),
    ("train.memory_lora_r=8", "larimar", "memory_lora_r"),
])
def test_recipe_rejects_terms_the_memory_does_not_have(key, kind, needle):
    from vlmem.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_recipe("tiny/phase1", [key, f"model.memory.kind={kind}"])
    assert needle in str(err.value)


def test_phase1_with_memory_lora_saves_adapters_and_phase2_merges_them(tmp_path):
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["prepare-data", "synthetic", "--out", "data/synth", "--scenes", "3", "--frames", "4",
                     "--size", "32"]) == 0
        tiny = ["data.frames=4", "data.question_types=[]", "model.vision.image_size=32", "train.batch_size=2",
                "train.max_steps=2", "train.log_every=1", "run.name=lora"]
        sets = [a for s in tiny for a in ("--set", s)]
        assert main(["train", "tiny/base", *sets]) == 0
        assert main(["train", "tiny/phase1", *sets, "--set", "run.name=lora-p1", "--set", "train.init_from=runs/lora",
                     "--set", "train.memory_lora_r=4", "--set", "train.memory_lora_alpha=8",
                     "--set", "train.aux_utilisation_weight=0.5"]) == 0
        model_dir = tmp_path / "runs/lora-p1/checkpoints/last/model"
        config = json.loads((model_dir / "config.json").read_text())
        assert config["memory_lora"] == {"r": 4, "alpha": 8}
        keys = load_file(str(model_dir / "model.safetensors")).keys()
        assert any("lora_A" in k for k in keys) and any("parametrizations" in k for k in keys)
        lines = [json.loads(x) for x in (tmp_path / "runs/lora-p1/metrics.jsonl").read_text().splitlines()]
        assert all("loss/utilisation" in x for x in lines)
        # a later phase starts from the merged weights and trains plain attention
        assert main(["train", "tiny/phase2", *sets, "--set", "run.name=lora-p2",
                     "--set", "train.init_from=runs/lora-p1"]) == 0
        p2 = load_file(str(tmp_path / "runs/lora-p2/checkpoints/last/model/model.safetensors"))
        assert "memory.working_attention.in_proj_weight" in p2 and not any("lora_" in k for k in p2)
        # eval reloads the phase-1 run with its adapters
        assert main(["eval", "vsibench", "--run", "runs/lora-p1", "--max-samples", "2"]) == 0
    finally:
        os.chdir(old)
