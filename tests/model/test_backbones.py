"""Backbone loading: tiny random-init models, and real `from_pretrained` round trips through tmp folders.

Nothing is downloaded: every "checkpoint" is a tiny HF model built from a config and saved with
`save_pretrained`, then loaded back through `load_vision_tower` / `load_language_model`.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from vlmem.errors import CheckpointError, ConfigError, VlmemError
from vlmem.model.backbones import (
    IMAGENET_MEAN,
    SIGLIP_MEAN,
    LMInfo,
    VisionTower,
    count_parameters,
    load_language_model,
    load_vision_tower,
    resize_for_tokenizer,
)


def vision_cfg(**kw):
    base = dict(kind="siglip", pretrained="", revision="main", trust_remote_code=False, freeze=True, image_size=32,
                patch_size=8, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64)
    return SimpleNamespace(**{**base, **kw})


def lm_cfg(**kw):
    base = dict(kind="qwen2", pretrained="", revision="main", trust_remote_code=False, hidden_size=32, num_layers=2,
                num_heads=4, num_kv_heads=2, intermediate_size=64, max_position_embeddings=256)
    return SimpleNamespace(**{**base, **kw})


TINY_VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
                   patch_size=8)
TINY_TEXT = dict(vocab_size=97, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=64, max_position_embeddings=256)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never touch the network, even for hub-id-looking strings
    torch.manual_seed(0)


# ---------------------------------------------------------------- tiny random-init models


@pytest.mark.parametrize("kind", ["siglip", "dinov2", "llava_onevision"])
def test_tiny_vision_tower_shapes(kind):
    tower = load_vision_tower(vision_cfg(kind=kind))
    assert isinstance(tower, VisionTower)
    assert tower.grid == (4, 4) and tower.hidden_size == 32 and tower.image_size == 32 and tower.patch_size == 8
    out = tower(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 16, 32)  # DINOv2's CLS token dropped
    resized = tower(torch.rand(1, 3, 45, 60))  # other sizes are resized bilinearly
    assert resized.shape == (1, 16, 32)
    assert tower.projector is None
    trainable, total = count_parameters(tower)
    assert total > 0 and trainable == total
    tower.requires_grad_(False)
    assert count_parameters(tower) == (0, total)


def test_tiny_vision_normalisation():
    assert torch.allclose(load_vision_tower(vision_cfg()).pixel_mean.flatten(), torch.tensor(SIGLIP_MEAN))
    dino = load_vision_tower(vision_cfg(kind="dinov2"))
    assert torch.allclose(dino.pixel_mean.flatten(), torch.tensor(IMAGENET_MEAN))


def test_tiny_vision_config_errors():
    with pytest.raises(ConfigError, match="num_heads"):
        load_vision_tower(vision_cfg(num_heads=5))
    with pytest.raises(ConfigError, match="multiple"):
        load_vision_tower(vision_cfg(kind="dinov2", intermediate_size=80))


def test_tiny_lm_forward_and_info():
    lm, info = load_language_model(lm_cfg(), vision_cfg(), vocab_size=50)
    assert type(lm).__name__ == "Qwen2ForCausalLM"
    assert isinstance(info, LMInfo) and info.source == "tiny" and info.vocab_size == 50 and info.hidden_size == 32
    ids = torch.randint(0, 50, (2, 5))
    out = lm(input_ids=ids, labels=ids)
    assert out.logits.shape == (2, 5, 50) and torch.isfinite(out.loss)
    emb = lm.get_input_embeddings()(ids)
    assert lm(inputs_embeds=emb).logits.shape == (2, 5, 50)
    with pytest.raises(ValueError, match="vocab_size"):
        load_language_model(lm_cfg(), vision_cfg())


def test_resize_for_tokenizer():
    lm, _ = load_language_model(lm_cfg(), vision_cfg(), vocab_size=10)

    class Tok:
        pad_token_id, bos_token_id, eos_token_id = 0, 2, 3

        def __len__(self):
            return 23

    resize_for_tokenizer(lm, Tok())
    assert lm.get_input_embeddings().num_embeddings == 23
    assert lm.config.eos_token_id == 3 and lm.generation_config.pad_token_id == 0


def test_from_vision_checkpoint_rules():
    with pytest.raises(ConfigError, match="llava_onevision"):
        load_language_model(lm_cfg(kind="from_vision_checkpoint"), vision_cfg(kind="siglip"), vocab_size=10)
    with pytest.raises(ConfigError, match="must be empty"):
        load_language_model(lm_cfg(kind="from_vision_checkpoint", pretrained="x"), vision_cfg(kind="llava_onevision",
                            pretrained="y"))
    # without a checkpoint the tiny default is a random-init Qwen2
    lm, info = load_language_model(lm_cfg(kind="from_vision_checkpoint"), vision_cfg(kind="llava_onevision"),
                                   vocab_size=12)
    assert info.source == "tiny" and lm.get_input_embeddings().num_embeddings == 12


# ---------------------------------------------------------------- real loading through save_pretrained


def test_siglip_pretrained_round_trip(tmp_path):
    from transformers import SiglipVisionConfig, SiglipVisionModel

    ref = SiglipVisionModel(SiglipVisionConfig(**TINY_VISION)).eval()
    ref.save_pretrained(tmp_path / "siglip")
    tower = load_vision_tower(vision_cfg(pretrained=str(tmp_path / "siglip"), image_size=64)).eval()
    same_weights(ref, tower.model)
    assert tower.image_size == 32 and tower.grid == (4, 4)  # the checkpoint's geometry, not the tiny fields
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = ref(pixel_values=(x - 0.5) / 0.5).last_hidden_state
        assert torch.allclose(tower(x), expected, atol=1e-6)


def test_siglip_full_model_checkpoint_and_processor_norm(tmp_path):
    """Real SigLIP hub checkpoints are full SiglipModel (vision + text); the tower is taken from them."""
    from transformers import SiglipConfig, SiglipModel

    cfg = SiglipConfig(vision_config=TINY_VISION, text_config=dict(vocab_size=50, hidden_size=32, num_hidden_layers=1,
                                                                   num_attention_heads=4, intermediate_size=64))
    ref = SiglipModel(cfg).eval()
    ref.save_pretrained(tmp_path / "full")
    (tmp_path / "full" / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6]}))
    tower = load_vision_tower(vision_cfg(pretrained=str(tmp_path / "full")))
    same_weights(ref.vision_model, tower.model.vision_model if hasattr(tower.model, "vision_model") else tower.model)
    assert torch.allclose(tower.pixel_mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))
    assert torch.allclose(tower.pixel_std.flatten(), torch.tensor([0.4, 0.5, 0.6]))


def test_dinov2_pretrained_round_trip(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    ref = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2,
                                   image_size=32, patch_size=8)).eval()
    ref.save_pretrained(tmp_path / "dino")
    tower = load_vision_tower(vision_cfg(kind="dinov2", pretrained=str(tmp_path / "dino"))).eval()
    same_weights(ref, tower.model)
    x = torch.rand(1, 3, 32, 32)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = ref(pixel_values=(x - mean) / std).last_hidden_state[:, 1:]
        assert torch.allclose(tower(x), expected, atol=1e-5)
    assert tower(x).shape == (1, 16, 32)


def test_dinov2_crop_size_from_processor(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, mlp_ratio=2, image_size=64,
                             patch_size=8)).save_pretrained(tmp_path / "dino")
    (tmp_path / "dino" / "preprocessor_config.json").write_text(json.dumps({"crop_size": {"height": 48, "width": 48}}))
    tower = load_vision_tower(vision_cfg(kind="dinov2", pretrained=str(tmp_path / "dino")))
    assert tower.image_size == 48 and tower.grid == (6, 6)
    assert tower(torch.rand(1, 3, 20, 20)).shape == (1, 36, 32)


def test_qwen2_pretrained_round_trip(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    ref = Qwen2ForCausalLM(Qwen2Config(**TINY_TEXT)).eval()
    ref.save_pretrained(tmp_path / "qwen")
    lm, info = load_language_model(lm_cfg(pretrained=str(tmp_path / "qwen")), vision_cfg())
    assert type(lm).__name__ == "Qwen2ForCausalLM"
    assert info.source == "pretrained" and info.vocab_size == 97 and info.hidden_size == 48
    same_weights(ref, lm)
    assert next(lm.parameters()).dtype == torch.float32


def _tiny_llava(tmp_path, feature_layer=-1, strategy="full"):
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    cfg = LlavaOnevisionConfig(vision_config=dict(model_type="siglip_vision_model", **TINY_VISION),
                               text_config=dict(model_type="qwen2", **TINY_TEXT), image_token_index=96,
                               vision_feature_layer=feature_layer, vision_feature_select_strategy=strategy)
    ref = LlavaOnevisionForConditionalGeneration(cfg).eval()
    ref.save_pretrained(tmp_path / "llava")
    return ref, str(tmp_path / "llava")


def _layout(ref):
    """(vision_tower, projector, language_model body, lm_head) for the installed transformers."""
    if hasattr(ref, "model") and hasattr(ref.model, "vision_tower"):
        return ref.model.vision_tower, ref.model.multi_modal_projector, ref.model.language_model, ref.lm_head
    return ref.vision_tower, ref.multi_modal_projector, ref.language_model.model, ref.language_model.lm_head


def test_llava_onevision_round_trip(tmp_path):
    ref, path = _tiny_llava(tmp_path, feature_layer=-2)
    ref_tower, ref_proj, ref_body, ref_head = _layout(ref)
    tower = load_vision_tower(vision_cfg(kind="llava_onevision", pretrained=path)).eval()
    same_weights(ref_tower, tower.model)
    assert tower.projector is not None
    same_weights(ref_proj, tower.projector)
    assert not any(n.startswith("projector") for n, _ in tower.named_parameters())  # kept outside the tower
    assert tower.hidden_size == 32 and tower.grid == (4, 4)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = ref_tower(pixel_values=(x - 0.5) / 0.5, output_hidden_states=True).hidden_states[-2]
        got = tower(x)
    assert got.shape == (2, 16, 32) and torch.allclose(got, expected, atol=1e-6)
    assert tower.projector(got).shape == (2, 16, 48)

    lm, info = load_language_model(lm_cfg(kind="from_vision_checkpoint"), vision_cfg(kind="llava_onevision",
                                                                                      pretrained=path))
    assert info.source == "vision_checkpoint" and info.hidden_size == 48 and info.vocab_size == 97
    assert type(lm).__name__ == "Qwen2ForCausalLM"
    same_weights(ref_body, lm.model)
    same_weights(ref_head, lm.lm_head)
    assert not any(p.is_meta for p in lm.parameters()) and not any(b.is_meta for b in lm.buffers())
    ids = torch.randint(0, 97, (1, 6))
    with torch.no_grad():
        expected = ref_head(ref_body(input_ids=ids).last_hidden_state)
        assert torch.allclose(lm(input_ids=ids).logits, expected, atol=1e-5)


def test_llava_default_strategy_drops_first_token(tmp_path):
    _, path = _tiny_llava(tmp_path, feature_layer=-1, strategy="default")
    tower = load_vision_tower(vision_cfg(kind="llava_onevision", pretrained=path))
    assert tower(torch.rand(1, 3, 32, 32)).shape == (1, 15, 32)


def test_llava_kind_rejects_other_checkpoints(tmp_path):
    from transformers import SiglipVisionConfig, SiglipVisionModel

    SiglipVisionModel(SiglipVisionConfig(**TINY_VISION)).save_pretrained(tmp_path / "siglip")
    with pytest.raises(CheckpointError, match="llava_onevision"):
        load_vision_tower(vision_cfg(kind="llava_onevision", pretrained=str(tmp_path / "siglip")))


# ---------------------------------------------------------------- missing checkpoints


def test_missing_local_path_is_a_checkpoint_error(tmp_path):
    missing = str(tmp_path / "no" / "such" / "model")
    with pytest.raises(CheckpointError) as err:
        load_vision_tower(vision_cfg(pretrained=missing))
    msg = str(err.value)
    assert "model.vision.pretrained" in msg and missing in msg and "HF_HUB_OFFLINE" in msg
    assert isinstance(err.value, VlmemError)
    with pytest.raises(CheckpointError, match="model.lm.pretrained"):
        load_language_model(lm_cfg(pretrained="./not-here/qwen"), vision_cfg())


def test_uncached_hub_id_offline_is_a_checkpoint_error():
    with pytest.raises(CheckpointError) as err:
        load_language_model(lm_cfg(pretrained="vlmem-test/definitely-not-cached"), vision_cfg())
    assert "model.lm.pretrained" in str(err.value) and "definitely-not-cached" in str(err.value)
    with pytest.raises(CheckpointError, match="model.vision.pretrained"):
        load_vision_tower(vision_cfg(kind="dinov2", pretrained="vlmem-test/definitely-not-cached"))


def test_empty_folder_is_a_checkpoint_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="model.vision.pretrained"):
        load_vision_tower(vision_cfg(pretrained=str(tmp_path / "empty")))
