"""`vlmem export`: a self-contained folder of what was trained.

out/{model.safetensors, config.json, tokenizer/, recipe.lock.toml, README.md (model card)}
plus adapter/ (PEFT format) when LoRA is kept separate. `vlmem eval` and
`vlmem inspect-memory` accept the folder as --run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from vlmem.errors import UsageError
from vlmem.safepaths import check_replaceable, mark_owned
from vlmem.train.checkpoint import MODEL_FILE, model_state, resolve_model_dir

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def export_run(run: Path, out: Path, merge_lora: bool = False, dtype: str = "fp32", overwrite: bool = False) -> Path:
    from vlmem.runs import load_trained

    run, out = Path(run), Path(out)
    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    check_export_out(run, out, overwrite)
    recipe, model, tokenizer = load_trained(run)
    model_dir = resolve_model_dir(run)
    config = json.loads((model_dir / "config.json").read_text()) if (model_dir / "config.json").is_file() else {}
    components = set(config.get("components", []))
    lora = bool(config.get("lora"))
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        from vlmem import export_hf

        hf_base = export_hf.is_llava_base(recipe)  # + what plain transformers / peft load (export_hf.py)
        if lora and hf_base and not merge_lora:
            export_hf.write_hf_adapter(model, recipe, tmp, DTYPES[dtype])
        if lora and merge_lora:
            model.lm = model.lm.merge_and_unload()
            components = (components - {"lm_lora"}) | {"lm"}  # merged LM weights must be shipped
        elif lora:
            model.lm.save_pretrained(str(tmp / "adapter"))
        if hf_base and merge_lora:
            export_hf.write_hf_merged(model, recipe, tokenizer, tmp, DTYPES[dtype])
        for name, module in getattr(model, "peft_adapters", dict)().items():  # e.g. BitGen's DINOv2 LoRA
            module.save_pretrained(str(tmp / name))
        memory_lora = config.get("memory_lora")
        if memory_lora and merge_lora:  # the memory attention's adapters fold into its weights
            from vlmem.train.memory_lora import merge_memory_lora

            merge_memory_lora(model.memory)
            memory_lora = None
        state = model_state(model, recipe, components)
        cast = DTYPES[dtype]
        state = {k: (v.to(cast) if v.is_floating_point() else v) for k, v in state.items()}
        save_file(state, str(tmp / MODEL_FILE), metadata={"format": "pt"})
        tokenizer.save_pretrained(str(tmp / "tokenizer"))
        shutil.copy(run / "recipe.lock.toml", tmp / "recipe.lock.toml")
        exported = {**config, "lora": lora and not merge_lora, "memory_lora": memory_lora,
                    "components": sorted(components), "dtype": dtype,
                    "vision_dim": int(model.vision.hidden_size) if hasattr(model.vision, "hidden_size") else None,
                    "hf_folders": sorted(p.name for p in tmp.iterdir() if p.name.startswith("hf_")),
                    "exported_from": str(run), "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "keys": len(state)}
        (tmp / "config.json").write_text(json.dumps(exported, indent=2))
        (tmp / "README.md").write_text(model_card(recipe, run, exported, state))
        mark_owned(tmp, "export")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def model_card(recipe, run: Path, config: dict, state: dict) -> str:
    m = recipe.model
    n_params = sum(v.numel() for v in state.values())
    lines = [
        f"# {recipe.run.name}",
        "",
        recipe.run.description or "A vlmem memory-augmented VLM.",
        "",
        "## What was trained",
        f"- phase {recipe.train.phase}, components {', '.join(config.get('components', []))}, step {config.get('step')}",
        f"- vision: {m.vision.kind} ({m.vision.pretrained or 'tiny random-init stand-in, not a pretrained model'})",
        _decoder_line(m) if m.decoder.kind != "lm" and m.kind != "bitgen" else
        f"- LM: {m.lm.kind} ({m.lm.pretrained or ('from the vision checkpoint' if m.lm.kind == 'from_vision_checkpoint' else 'tiny random-init stand-in')})"
        if m.kind != "bitgen" else
        f"- BitGen: DINOv2 LoRA r={m.bitgen.lora_r} on {', '.join(m.bitgen.lora_targets)} (vision_adapter/, PEFT format), "
        f"embed_dim {m.bitgen.embed_dim}, ITC queue {m.bitgen.queue_size} + ITM, {m.bitgen.lm_layers}-layer LM head; "
        f"loss weights itc {m.bitgen.itc_weight} / itm {m.bitgen.itm_weight} / text {m.bitgen.text_weight}",
        f"- geometry: {m.geometry.source}; fusion: injection={m.fusion.position_injection}, "
        f"alignment={m.fusion.viewpoint_alignment}, cross-attention={m.fusion.cross_attention}",
        f"- memory: {m.memory.kind} (L_w={m.memory.L_w}, L_e={m.memory.L_e}, output={m.memory.output}); "
        f"context_frames={m.context_frames or 'all'}",
        f"- data: {recipe.data.root} ({recipe.data.frames} frames per video)",
        f"- weights in this folder: {n_params:,} parameters in {len(state)} tensors ({config.get('dtype')})"
        + ("; LoRA adapters in adapter/ (PEFT format)" if config.get("lora") else ""),
        "",
        "## Evaluation",
    ]
    evals = sorted((run / "eval").glob("*.json")) if (run / "eval").is_dir() else []
    if not evals:
        lines.append("Not evaluated yet (`vlmem eval vsibench --run <this folder>`).")
    for path in evals:
        try:
            result = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        overall = result.get("official", {}).get("overall", result.get("overall"))
        lines.append(f"- {path.stem}: overall {overall}")
    lines += ["", "## Use", "```", "vlmem eval vsibench --run <this folder> --data <dataset folder>",
              "vlmem inspect-memory --run <this folder> --video <scene> --data <dataset folder>", "```", ""]
    if config.get("hf_folders"):  # LLaVA-family base: what plain transformers + peft load (docs/export.md)
        lines += [f"Plain transformers + peft: {', '.join(f'`{f}/`' for f in config['hf_folders'])} "
                  "(docs/export.md, \"LLaVA-family bases\").", ""]
    return "\n".join(lines)


def _decoder_line(m) -> str:
    d = m.decoder
    trm = f", n={d.trm_n}, T={d.trm_T}, deep supervision {d.deep_supervision}, halting={d.halting}" if d.kind == "trm" else ""
    return (f"- decoder: {d.kind} (hidden {d.hidden_size}, {d.num_layers} layers{trm}; resampler "
            f"{d.resampler_latents or 'off'}, vision={'on' if d.use_vision else 'off'}, trained from scratch; no HF LM)")


def check_export_out(run: Path, out: Path, overwrite: bool) -> None:
    """--out must be new, empty, or (with --overwrite) an earlier export; never the run, above it or inside it."""
    def legacy_export(folder: Path) -> bool:  # exports written before marker files: config.json says so
        try:
            return "exported_from" in json.loads((folder / "config.json").read_text())
        except (OSError, ValueError, TypeError):
            return False

    check_replaceable(out, "export", overwrite, legacy=legacy_export, protect=(run,))
