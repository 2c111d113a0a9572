"""`vlmem export` for plain transformers + peft, when the base is a LLaVA-family checkpoint.

* ``hf_adapter/``: the LM's LoRA as a PEFT adapter of the *full* LLaVA model. adapter_config.json names
  the base (``base_model_name_or_path``, ``revision``) and targets only the LM's projections (a regex
  under the LM's module path, so SigLIP's ``q_proj`` / ``k_proj`` ... are not touched); the weights are
  keyed by the LLaVA model's module names. Load::

      base = LlavaOnevisionForConditionalGeneration.from_pretrained(BASE)
      model = PeftModel.from_pretrained(base, "OUT/hf_adapter")

* ``hf_merged/`` (with ``--merge-lora``): a standalone checkpoint of the base's class with the LoRA merged
  into the LM and the trained projector in place, saved with ``save_pretrained`` (+ tokenizer and the
  base's preprocessor config). Load: ``LlavaOnevisionForConditionalGeneration.from_pretrained("OUT/hf_merged")``.

Both are assembled from the model already in memory (the base checkpoint is not read again); the LLaVA
skeleton is built on the meta device from the base's config.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from vlmem.errors import CheckpointError

ADAPTER_DIR = "hf_adapter"
MERGED_DIR = "hf_merged"


def is_llava_base(recipe) -> bool:
    m = recipe.model
    return (m.kind == "memory_vlm" and m.decoder.kind == "lm" and m.vision.kind == "llava_onevision"
            and bool(m.vision.pretrained) and m.lm.kind == "from_vision_checkpoint")


def llava_class_name(recipe) -> str:
    return type(_skeleton(recipe)).__name__


def _skeleton(recipe):
    """The base's LLaVA class, built from its config on the meta device (no weights read)."""
    from accelerate import init_empty_weights

    from vlmem.model.backbones import _llava_class, _load_config

    config = _load_config(recipe.model.vision, "model.vision.pretrained")
    cls = _llava_class(getattr(config, "model_type", ""))
    if cls is None:
        raise CheckpointError(f"model.vision.pretrained = {recipe.model.vision.pretrained!r} is not a LLaVA checkpoint")
    with init_empty_weights(include_buffers=False):
        return cls(config)


def _paths(full) -> dict[str, str]:
    """Module path of the tower / projector / LM body / LM head inside the full model."""
    from vlmem.model.backbones import _llava_parts

    parts = _llava_parts(full)
    names = {id(m): n for n, m in full.named_modules()}
    return {k: names[id(m)] for k, m in parts.items() if m is not None}


def write_hf_adapter(model, recipe, out: Path, dtype: torch.dtype) -> Path:
    """`out/hf_adapter`: the LM LoRA of `model.lm` (a PeftModel) re-keyed for the full LLaVA model."""
    from peft import get_peft_model_state_dict

    peft_lm = model.lm
    paths = _paths(_skeleton(recipe))
    body, head = paths["language_model"], paths.get("lm_head", "lm_head")
    state = {}
    for key, value in get_peft_model_state_dict(peft_lm).items():
        # base_model.model.model.layers.N... (standalone LM) -> base_model.model.<LM path>.layers.N...
        for src, dst in (("base_model.model.model.", f"base_model.model.{body}."),
                         ("base_model.model.lm_head.", f"base_model.model.{head}.")):
            if key.startswith(src):
                key = dst + key[len(src):]
                break
        else:
            raise CheckpointError(f"unexpected LoRA weight {key!r}: cannot place it in the LLaVA model")
        state[key] = value.detach().to("cpu", dtype).contiguous().clone()
    config = copy.deepcopy(peft_lm.peft_config["default"])
    leaves = sorted({str(t) for t in (config.target_modules or ())})
    config.target_modules = rf"{re.escape(body)}\..*\.(?:{'|'.join(map(re.escape, leaves))})"
    base = recipe.model.vision.pretrained
    config.base_model_name_or_path = str(Path(base).resolve()) if Path(base).is_dir() else base  # a folder or a hub id
    config.revision = recipe.model.vision.revision
    config.inference_mode = True
    folder = out / ADAPTER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(folder))
    save_file(state, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    return folder


def write_hf_merged(model, recipe, tokenizer, out: Path, dtype: torch.dtype) -> Path:
    """`out/hf_merged`: the full LLaVA checkpoint with the merged LM, the trained projector and the tower."""
    full = _skeleton(recipe)
    paths = _paths(full)
    lm = model.lm
    if hasattr(lm, "merge_and_unload"):
        raise CheckpointError("merge the LoRA adapters before writing the merged checkpoint")
    state: dict[str, torch.Tensor] = {}

    def put(prefix: str, module) -> None:
        for k, v in module.state_dict().items():
            state[f"{prefix}.{k}"] = v

    put(paths["vision_tower"], model.vision.model)
    if "projector" in paths:
        put(paths["projector"], model.projector)
    put(paths["language_model"], lm.model)
    if "lm_head" in paths:
        put(paths["lm_head"], lm.lm_head)
    state.update(getattr(model.vision, "llava_rest", {}))
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous().clone()
             for k, v in state.items()}
    missing, unexpected = full.load_state_dict(state, strict=False, assign=True)
    tied = {k for k in missing if k.endswith("lm_head.weight")}
    if set(missing) - tied or unexpected:
        raise CheckpointError(f"cannot assemble the merged LLaVA checkpoint: missing {sorted(set(missing) - tied)[:5]}, "
                              f"unexpected {sorted(unexpected)[:5]}")
    if tied:
        full.tie_weights()
    folder = out / MERGED_DIR
    full.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    _copy_processor_config(recipe, folder)
    return folder


def _copy_processor_config(recipe, folder: Path) -> None:
    """The base's preprocessor_config.json beside the merged weights, when the base has one."""
    from transformers.utils import cached_file

    from vlmem.model.backbones import resolve_pretrained

    cfg = recipe.model.vision
    source, local_only = resolve_pretrained(cfg.pretrained, "model.vision.pretrained")
    for name in ("preprocessor_config.json", "processor_config.json", "chat_template.json"):
        path = cached_file(source, name, revision=cfg.revision, local_files_only=local_only,
                           _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False)
        if path and not (folder / name).exists():
            shutil.copy(path, folder / name)


def load_vlmem_modules(folder: str | Path) -> dict:
    """The memory, fusion (and sensor geometry encoder) of an exported folder, rebuilt from its
    recipe.lock.toml and loaded from its model.safetensors, for use in another model; the projector's
    weights come back as a state dict (``projector_state``). Weights load with safetensors only."""
    import json

    from safetensors.torch import load_file

    from vlmem.fusion import Fusion3D
    from vlmem.geometry import CAMERA_FEATURE_DIM, SensorGeometryEncoder
    from vlmem.memory import build_memory
    from vlmem.runs import load_run_recipe
    from vlmem.train.checkpoint import MODEL_FILE

    folder = Path(folder)
    recipe = load_run_recipe(folder)
    config = json.loads((folder / "config.json").read_text())
    if "vision_dim" not in config:
        raise CheckpointError(f"{folder}/config.json has no 'vision_dim': re-export it with this vlmem version")
    dim = int(config["vision_dim"])
    state = load_file(str(folder / MODEL_FILE))

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    m = recipe.model
    memory = build_memory(m.memory, dim)
    if config.get("memory_lora"):
        from vlmem.train.memory_lora import apply_memory_lora

        apply_memory_lora(memory, config["memory_lora"]["r"], config["memory_lora"]["alpha"])
    memory.load_state_dict(part("memory."), strict=True)
    out = {"memory": memory.eval(), "fusion": None, "geometry_encoder": None, "projector_state": part("projector.")}
    fusion_state = part("fusion.")
    if fusion_state:
        fus = m.fusion
        out["fusion"] = Fusion3D(dim, m.geometry.dim, m.geometry.dim, fus.num_heads,
                                 position_injection=fus.position_injection, viewpoint_alignment=fus.viewpoint_alignment,
                                 cross_attention=fus.cross_attention, coordinate_gate=fus.coordinate_gate)
        out["fusion"].load_state_dict(fusion_state, strict=True)
        out["fusion"].eval()
    geo_state = part("geometry_encoder.")
    if geo_state:
        out["geometry_encoder"] = SensorGeometryEncoder(CAMERA_FEATURE_DIM, m.geometry.dim)
        out["geometry_encoder"].load_state_dict(geo_state, strict=True)
        out["geometry_encoder"].eval()
    return out
