"""Checkpoints (DESIGN section 7), written atomically.

runs/<name>/checkpoints/<step:06d>/{model/, training_state/}  and  checkpoints/last -> <step>
`model/` holds safetensors of every weight that cannot be reloaded from a pretrained
checkpoint (trainable weights, new modules, random-init tiny backbones), the tokenizer,
the PEFT adapter folder when LoRA is on, and config.json. `training_state/` is
`accelerator.save_state` (optimizer, scheduler, RNG; loaded with weights_only=True)
plus trainer_state.json (step, epoch).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vlmem.errors import CheckpointError
from vlmem.recipe.schema import Recipe

MODEL_FILE = "model.safetensors"


def saved_prefixes(recipe: Recipe, components: set[str]) -> tuple[str, ...]:
    """Module prefixes whose weights go into model/: new modules always, backbones when not pretrained."""
    prefixes = ["memory.", "fusion.", "geometry_encoder.", "projector."]
    # BitGen's "vision" trains only LoRA adapters (saved by name below), never the pretrained DINOv2
    if not recipe.model.vision.pretrained or ("vision" in components and recipe.model.kind != "bitgen"):
        prefixes.append("vision.")
    lm_from_hub = recipe.model.decoder.kind == "lm" and (  # a plain / TRM decoder is always new
        recipe.model.lm.pretrained or recipe.model.lm.kind == "from_vision_checkpoint")
    if not lm_from_hub or "lm" in components:
        prefixes.append("lm.")
    return tuple(prefixes)


def model_state(model, recipe: Recipe, components: set[str]) -> dict[str, torch.Tensor]:
    prefixes = saved_prefixes(recipe, components)
    state = {}
    for name, tensor in model.state_dict().items():
        if name.startswith(prefixes) or "lora_" in name:
            state[name] = tensor.detach().to("cpu").contiguous().clone()  # clone: tied weights share storage
    return state


def save_model_dir(path: Path, model, recipe: Recipe, components: set[str], tokenizer, recipe_hash: str,
                   step: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    state = model_state(model, recipe, components)
    save_file(state, str(path / MODEL_FILE), metadata={"format": "pt"})
    tokenizer.save_pretrained(str(path / "tokenizer"))
    lora = "lm_lora" in components
    if lora:
        model.lm.save_pretrained(str(path / "adapter"))  # PEFT's own format
    for name, module in getattr(model, "peft_adapters", dict)().items():  # e.g. BitGen's DINOv2 LoRA
        module.save_pretrained(str(path / name))
    from vlmem.train.memory_lora import has_memory_lora

    memory_lora = ({"r": recipe.train.memory_lora_r, "alpha": recipe.train.memory_lora_alpha}
                   if has_memory_lora(model.memory) else None)
    config = {"recipe_hash": recipe_hash, "step": step, "lora": lora, "memory_lora": memory_lora,
              "components": sorted(components),
              "vocab_size": len(tokenizer), "keys": len(state)}
    (path / "config.json").write_text(json.dumps(config, indent=2))


def write_checkpoint(run_dir: Path, step: int, write_model, write_training_state, keep: int = 2) -> Path:
    """Write into a temp folder, rename, then move the `last` pointer. Main process only."""
    ckpts = Path(run_dir) / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    final = ckpts / f"{step:06d}"
    tmp = ckpts / f".tmp-{step:06d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    write_model(tmp / "model")
    write_training_state(tmp / "training_state")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    link_tmp = ckpts / ".last-tmp"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    link_tmp.symlink_to(final.name)
    os.replace(link_tmp, ckpts / "last")
    for old in sorted(p for p in ckpts.iterdir() if p.name.isdigit())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def last_checkpoint(run_dir: Path) -> Path | None:
    last = Path(run_dir) / "checkpoints" / "last"
    if not last.exists():
        if last.is_symlink():  # the pointer is there, its checkpoint is not: say so, not "no checkpoint yet"
            raise CheckpointError(f"{last} points to {os.readlink(last)!r}, which does not exist (deleted or not copied "
                                  f"with the run): point it at an existing checkpoint (ln -sfn <step> {last}) or "
                                  "start a new run")
        return None
    return last.resolve()


def resolve_model_dir(path: Path) -> Path:
    """A run folder, a checkpoint folder, a model/ folder or an exported folder -> the folder with model.safetensors."""
    path = Path(path)
    for candidate in (path, path / "model", path / "checkpoints" / "last" / "model"):
        if (candidate / MODEL_FILE).is_file():
            return candidate
    last_checkpoint(path)  # a dangling checkpoints/last gets its own message
    raise CheckpointError(f"{path}: no {MODEL_FILE} found (expected a run folder with checkpoints/last, a checkpoint "
                          "folder, or an exported folder): train first or check the path")


def load_model_weights(model, model_dir: Path, strict_keys: bool = True, merge_memory_lora: bool = False) -> dict:
    """Load model/ weights into `model`; every saved key must exist in the model (same recipe family).
    With `strict_keys` False the saved weights that do not fit (unknown keys, other shapes: a
    fusion stage the recipe removes or reshapes) are skipped and named on stderr; those
    parameters keep their fresh initialisation (`train.init_partial`).

    Memory-attention LoRA saved with the weights is re-applied first (config.json says its r /
    alpha), and folded into plain weights with `merge_memory_lora` (a later phase starts from it)."""
    path = Path(model_dir) / MODEL_FILE
    config_path = Path(model_dir) / "config.json"
    saved = json.loads(config_path.read_text()) if config_path.is_file() else {}
    if saved.get("memory_lora"):
        from vlmem.train.memory_lora import apply_memory_lora, has_memory_lora

        if not has_memory_lora(model.memory):
            apply_memory_lora(model.memory, saved["memory_lora"]["r"], saved["memory_lora"]["alpha"])
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read weights ({exc})") from None
    own = model.state_dict()
    unknown = [k for k in state if k not in own]
    mismatched = [k for k in state if k in own and own[k].shape != state[k].shape]
    if strict_keys and (unknown or mismatched):
        detail = (f"{len(unknown)} unknown keys (e.g. {unknown[:3]})" if unknown else "") + \
                 (f" {len(mismatched)} shape mismatches (e.g. {mismatched[0]}: {tuple(state[mismatched[0]].shape)} vs "
                  f"{tuple(own[mismatched[0]].shape)})" if mismatched else "")
        raise CheckpointError(f"{path} does not fit this model: {detail.strip()}. It was written by a different "
                              "recipe (model sizes, memory kind or fusion stages differ)")
    if not strict_keys and (unknown or mismatched):
        from rich.console import Console

        skip = unknown + mismatched
        Console(stderr=True).print(f"{path}: {len(skip)} saved tensors do not fit this model and start fresh "
                                   f"(train.init_partial), e.g. {skip[:3]}")
        state = {k: v for k, v in state.items() if k not in set(skip)}
    model.load_state_dict(state, strict=False)
    if merge_memory_lora and saved.get("memory_lora"):
        from vlmem.train.memory_lora import merge_memory_lora as merge

        merge(model.memory)
    return saved
