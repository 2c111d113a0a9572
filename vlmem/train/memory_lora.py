"""LoRA on the memory's attention (VLM² phase 1: "attention via LoRA r=64 / alpha=128, or full").

The memory modules read `nn.MultiheadAttention.in_proj_weight` directly (they project keys and
values once, when a frame is written), so peft's module-swapping LoRA never sees those reads.
A torch parametrization does: `in_proj_weight` and `out_proj.weight` become
`W0 + (alpha / r) * B @ A` wherever they are read, with `W0` frozen and `A`, `B` trained
(B starts at zero, so training starts from the loaded weights exactly, as in peft).
The fusion MLP and salience gate stay fully trainable.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn.utils import parametrize


class LowRankDelta(nn.Module):
    """Parametrization W -> W + scale * lora_B @ lora_A (Hu et al. 2021)."""

    def __init__(self, out_features: int, in_features: int, r: int, alpha: int, like: torch.Tensor):
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(r, in_features, dtype=like.dtype, device=like.device))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r, dtype=like.dtype, device=like.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # peft's default init for A
        self.scale = alpha / r

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scale * (self.lora_B @ self.lora_A)


def _targets(memory: nn.Module) -> list[tuple[nn.Module, str]]:
    out = []
    for module in memory.modules():
        if isinstance(module, nn.MultiheadAttention):
            out.append((module, "in_proj_weight"))
            out.append((module.out_proj, "weight"))
    return out


def apply_memory_lora(memory: nn.Module, r: int, alpha: int) -> int:
    """Put LoRA on every attention of `memory`; freeze the attention weights. Returns #adapters."""
    targets = _targets(memory)
    for module, name in targets:
        weight = getattr(module, name)
        delta = LowRankDelta(weight.shape[0], weight.shape[1], r, alpha, weight.detach())
        parametrize.register_parametrization(module, name, delta)
        module.parametrizations[name].original.requires_grad_(False)
        bias = module.in_proj_bias if name == "in_proj_weight" else module.bias
        if bias is not None:  # peft's default (bias = "none"): only the adapters train
            bias.requires_grad_(False)
    return len(targets)


def has_memory_lora(memory: nn.Module) -> bool:
    return any(parametrize.is_parametrized(m) for m in memory.modules())


def merge_memory_lora(memory: nn.Module) -> None:
    """Fold the adapters into plain weights (for export, or to start a later phase from them)."""
    for module in list(memory.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
