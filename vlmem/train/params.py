"""Which parameters each phase trains, LoRA on the LM (peft), optimizer groups."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch.nn as nn

from vlmem.recipe.load import default_trainable
from vlmem.recipe.schema import Recipe

COMPONENTS = ("vision", "fusion", "memory", "projector", "lm")


def component_modules(model) -> dict[str, list[nn.Module]]:
    return {
        "vision": [model.vision],
        "fusion": [m for m in (model.fusion, model.geometry_encoder) if m is not None],
        "memory": [model.memory],
        "projector": [model.projector],
        "lm": [model.lm],
    }


def trainable_components(recipe: Recipe) -> set[str]:
    return set(recipe.train.trainable) or default_trainable(recipe.train.phase)


def apply_lora(model, recipe: Recipe) -> None:
    """Wrap the LM with peft LoRA adapters (phase 3); base LM weights stay frozen."""
    from peft import LoraConfig, get_peft_model

    cfg = recipe.train.lora
    lora = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(cfg.target_modules),
                      task_type="CAUSAL_LM")
    model.lm = get_peft_model(model.lm, lora)


def configure_trainable(model, recipe: Recipe) -> set[str]:
    """Freeze everything, then unfreeze the phase's components. Returns the component set."""
    components = trainable_components(recipe)
    model.requires_grad_(False)
    if "lm_lora" in components:
        apply_lora(model, recipe)  # peft marks only the adapters trainable
    for name, modules in component_modules(model).items():
        if name in components:
            for m in modules:
                m.requires_grad_(True)
    if "memory" in components and recipe.train.memory_lora_r > 0:
        from vlmem.train.memory_lora import apply_memory_lora

        apply_memory_lora(model.memory, recipe.train.memory_lora_r, recipe.train.memory_lora_alpha)
    adjust = getattr(model, "adjust_trainable", None)
    if adjust is not None:  # model-specific rules on top (BitGen: only DINOv2's LoRA adapters train)
        adjust(components)
    return components


def frozen_encoder(model, components: set[str]) -> bool:
    """True when vision + fusion are frozen, so their outputs can be cached per video."""
    return "vision" not in components and "fusion" not in components


def param_groups(model, recipe: Recipe) -> list[dict]:
    """Memory parameters at train.lr; everything else (projector, fusion, LM) at train.base_lr."""
    base_lr = recipe.train.base_lr or recipe.train.lr
    memory_ids = {id(p) for p in model.memory.parameters()}
    mem, rest = [], []
    for p in model.parameters():
        if p.requires_grad:
            (mem if id(p) in memory_ids else rest).append(p)
    groups = []
    if mem:
        groups.append({"params": mem, "lr": recipe.train.lr, "name": "memory"})
    if rest:
        groups.append({"params": rest, "lr": base_lr, "name": "base"})
    return groups


def make_optimizer(model, recipe: Recipe):
    """AdamW over `param_groups` with the recipe's weight decay and betas (`train.adam_betas`)."""
    import torch

    t = recipe.train
    return torch.optim.AdamW(param_groups(model, recipe), weight_decay=t.weight_decay, betas=tuple(t.adam_betas))


def parameter_table(model) -> list[tuple[str, int, int]]:
    """(component, trainable, total) per component, for --dry-run and the log."""
    rows = []
    for name, modules in component_modules(model).items():
        params = [p for m in modules for p in m.parameters()]
        rows.append((name, sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)))
    return rows


PARAMETERS_FILE = "parameters.json"


def write_parameter_table(run_dir: Path, table: list[tuple[str, int, int]]) -> None:
    """RUN/parameters.json: trainable / total parameters per component (ablation tables read it)."""
    path = Path(run_dir) / PARAMETERS_FILE
    tmp = path.with_suffix(".json.tmp-write")
    tmp.write_text(json.dumps({name: {"trainable": tr, "total": tot} for name, tr, tot in table}, indent=1))
    os.replace(tmp, path)


def read_parameter_table(run_dir: Path) -> dict[str, dict[str, int]]:
    """RUN/parameters.json, or {} for a run trained before it was written."""
    path = Path(run_dir) / PARAMETERS_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}
