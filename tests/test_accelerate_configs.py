"""configs/accelerate: the FSDP and DeepSpeed ZeRO-2 launch configs parse, their Accelerate plugins build,
and the layer classes FSDP wraps exist in vlmem's models. FSDP/ZeRO training itself needs GPUs
(Accelerate 1.15 shards only over accelerators): on CPU processes the launch stops with a config error."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin

from vlmem.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "accelerate"


@pytest.mark.parametrize("name,strategy", [("fsdp_full_shard", "FULL_SHARD"), ("fsdp_shard_grad_op", "SHARD_GRAD_OP")])
def test_fsdp_configs_parse_and_build_the_plugin(name, strategy):
    cfg = load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    assert cfg.distributed_type == DistributedType.FSDP
    f = cfg.fsdp_config
    assert f["fsdp_sharding_strategy"] == strategy and f["fsdp_use_orig_params"] is True
    # sync_module_states needs an accelerator device to build; everything else as the config says
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=f["fsdp_version"], sharding_strategy=f["fsdp_sharding_strategy"],
        auto_wrap_policy=f["fsdp_auto_wrap_policy"],
        transformer_cls_names_to_wrap=f["fsdp_transformer_layer_cls_to_wrap"].split(","),
        backward_prefetch=f["fsdp_backward_prefetch"], state_dict_type=f["fsdp_state_dict_type"],
        use_orig_params=f["fsdp_use_orig_params"], sync_module_states=False)
    assert plugin.sharding_strategy.name == strategy and plugin.state_dict_type.name == "SHARDED_STATE_DICT"


def test_wrapped_layer_classes_exist_in_the_model(one_thread):
    from vlmem.model.build import build_model, load_tokenizer
    from vlmem.recipe import load_recipe

    recipe = load_recipe("tiny/phase1", ['train.init_from=""'])
    model = build_model(recipe, load_tokenizer(recipe, texts=["how many chairs 1 2"]))
    names = {type(m).__name__ for m in model.modules()}
    wrap = load_config_from_file(str(CONFIGS / "fsdp_full_shard.yaml")).fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
    assert set(wrap.split(",")) <= names


def test_deepspeed_zero2_config_parses_and_builds_the_plugin():
    cfg = load_config_from_file(str(CONFIGS / "deepspeed_zero2.yaml"))
    assert cfg.distributed_type == DistributedType.DEEPSPEED
    d = cfg.deepspeed_config
    plugin = DeepSpeedPlugin(zero_stage=d["zero_stage"], gradient_accumulation_steps=4, gradient_clipping=1.0,
                             offload_optimizer_device=d["offload_optimizer_device"],
                             offload_param_device=d["offload_param_device"], zero3_init_flag=d["zero3_init_flag"])
    assert plugin.deepspeed_config["zero_optimization"]["stage"] == 2


def test_fsdp_that_accelerate_does_not_apply_is_a_config_error(monkeypatch):
    from vlmem.train.accelerator import _check_sharding

    cpu = type("Acc", (), {"distributed_type": DistributedType.MULTI_CPU})()
    _check_sharding(cpu)  # no sharding asked: fine
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ConfigError, match="FSDP"):
        _check_sharding(cpu)
    _check_sharding(type("Acc", (), {"distributed_type": DistributedType.FSDP})())
