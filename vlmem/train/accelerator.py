"""The one place Accelerate is configured (lerobot's `make_accelerator(cfg)`)."""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs

from vlmem.errors import ConfigError
from vlmem.recipe.schema import Recipe


def make_accelerator(recipe: Recipe) -> Accelerator:
    precision = recipe.train.mixed_precision
    if precision == "bf16" and not torch.cuda.is_available() and not _cpu_bf16_ok():
        raise ConfigError("train.mixed_precision = 'bf16' is not supported on this machine: set it to 'no'")
    log_with = None
    if recipe.train.tracker != "none":
        import importlib.util

        module = {"tensorboard": "tensorboard", "wandb": "wandb"}[recipe.train.tracker]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"train.tracker = {recipe.train.tracker!r} but the {module!r} package is not installed: "
                              f"pip install {module} (or pip install 'vlmem[tracking]'), or set train.tracker = 'none'")
        log_with = recipe.train.tracker
    # Memory branches that are empty at the first frames produce no gradient for some
    # parameters in a step, so DDP must tolerate unused parameters.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    _forget_other_precision(precision)
    acc = Accelerator(
        mixed_precision=precision,
        gradient_accumulation_steps=recipe.train.grad_accum,
        log_with=log_with,
        kwargs_handlers=[ddp],
        cpu=not torch.cuda.is_available(),
    )
    _check_sharding(acc)
    return acc


def _check_sharding(acc: Accelerator) -> None:
    """An FSDP / DeepSpeed launch config that Accelerate did not apply is an error, not a silent DDP run:
    Accelerate (1.15) shards only over accelerators, so on CPU processes (gloo) it falls back to DDP."""
    import os

    from accelerate.utils import DistributedType

    for env, kind in (("ACCELERATE_USE_FSDP", DistributedType.FSDP), ("ACCELERATE_USE_DEEPSPEED", DistributedType.DEEPSPEED)):
        if os.environ.get(env, "false").lower() == "true" and acc.distributed_type != kind:
            raise ConfigError(f"the accelerate config asks for {kind.value} but Accelerate set up "
                              f"{acc.distributed_type.value} (FSDP and DeepSpeed need GPUs; on CPU processes use "
                              "`accelerate launch --multi_gpu` (DDP over gloo) instead; docs/training.md)")


def _forget_other_precision(precision: str) -> None:
    """Accelerate keeps one process-wide state and refuses a second Accelerator with another
    mixed precision. A process that trains twice (tests, a Python session running a bf16 recipe
    after an fp32 one) starts the second run from a fresh state; the distributed part
    (PartialState: process group, ranks) is kept."""
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state
    if shared and str(shared.get("_mixed_precision", precision)) != precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def _cpu_bf16_ok() -> bool:
    try:
        torch.zeros(2, dtype=torch.bfloat16) @ torch.zeros(2, dtype=torch.bfloat16)
        return True
    except RuntimeError:
        return False
