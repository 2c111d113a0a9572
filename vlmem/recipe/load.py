"""TOML -> validated Recipe. Precedence: --set > recipe > base = "..." > defaults.

All problems are collected and raised as one `ConfigError` naming the file,
the key path, the bad value and the valid choices.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import tomllib
from pydantic import BaseModel, ValidationError

from vlmem.errors import ConfigError, UsageError
from vlmem.recipe.schema import Recipe

# Tables a recipe file may carry that are not part of the Recipe itself.
_META_KEYS = ("base", "lock")


def shipped_recipes_dir() -> Path:
    """`recipes/` of the source checkout (beside the package)."""
    return Path(__file__).resolve().parents[2] / "recipes"


def find_recipe(name: str | Path) -> Path:
    """A path as given, or a shipped recipe by relative name (`tiny/phase1`, `phase1.toml`)."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (shipped_recipes_dir() / path, shipped_recipes_dir() / f"{path}.toml"):
        if candidate.is_file():
            return candidate
    raise UsageError(f"recipe {str(name)!r} not found (not a file, not a shipped recipe: see `vlmem recipe ls`)")


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read recipe ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): save the recipe as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_file(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """The recipe's table with its `base` chain merged in (base first)."""
    path = path.resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"{path}: `base` inheritance loops: {chain}")
    data = _read_toml(path)
    data.pop("lock", None)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: `base` must be a path string relative to the recipe, got {base!r}")
    base_path = (path.parent / base)
    if not base_path.is_file():
        raise ConfigError(f"{path}: base = {base!r} does not exist (looked for {base_path})")
    return deep_merge(resolve_file(base_path, (*_seen, path)), data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`key.path=value`; the value is read as a TOML value, else taken as a plain string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value, e.g. --set train.lr=5e-6")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: empty key path")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def _valid_keys(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _section_for(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the last key of `loc`, for listing valid keys."""
    model: type[BaseModel] = Recipe
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        ann = getattr(field, "annotation", None) if field else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return None
    return model


def format_errors(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            owner = _section_for(loc)
            section = ".".join(str(p) for p in loc[:-1]) or "top level"
            valid = ", ".join(_valid_keys(owner)) if owner else "?"
            problems.append(f"unknown key '{key}'; valid keys in [{section}]: {valid}")
        elif err["type"] == "literal_error":
            problems.append(f"{key} = {err['input']!r} is not allowed; {err['msg'].replace('Input should be', 'valid choices:')}")
        else:
            problems.append(f"{key} = {err['input']!r}: {err['msg']}")
    return problems


def check_combinations(recipe: Recipe) -> list[str]:
    """Impossible combinations of otherwise valid values."""
    problems = []
    m, t = recipe.model, recipe.train
    trainable = set(t.trainable) or default_trainable(t.phase)
    if trainable == {"memory"} and m.memory.kind == "none":
        problems.append(f"train.phase = {t.phase} trains only the memory, but model.memory.kind = 'none' (nothing to "
                        "train): choose a memory kind, or set train.trainable")
    if t.aux_utilisation_weight > 0 and m.memory.kind != "dual":
        problems.append(f"train.aux_utilisation_weight > 0 balances the dual memory's fusion gate, but model.memory.kind "
                        f"= {m.memory.kind!r}: use kind = 'dual' or set the weight to 0")
    if t.memory_lora_r > 0 and m.memory.kind not in ("dual", "working", "episodic"):
        problems.append(f"train.memory_lora_r > 0 puts LoRA on the memory attention, which model.memory.kind = "
                        f"{m.memory.kind!r} does not have: use dual / working / episodic or set memory_lora_r = 0")
    if m.geometry.source == "none":
        for stage in ("position_injection", "viewpoint_alignment", "cross_attention"):
            if getattr(m.fusion, stage):
                problems.append(f"model.fusion.{stage} = true needs geometry, but model.geometry.source = 'none': "
                                f"set model.geometry.source = 'sensor' | 'cached' or model.fusion.{stage} = false")
    if m.fusion.viewpoint_alignment and not m.fusion.cross_attention and m.geometry.source != "none":
        problems.append("model.fusion.viewpoint_alignment = true needs model.fusion.cross_attention = true (the aligned "
                        "geometry tokens are consumed only by the cross-attention): set viewpoint_alignment = false too")
    if m.geometry.source == "cached":
        if not m.geometry.cached_dir:
            problems.append("model.geometry.source = 'cached' needs model.geometry.cached_dir (folder of <scene>.pt files, "
                            "a list of folders, or a template such as 'data/vlm3r/{data_source}/spatial_features')")
        # position injection with cached features needs `points` / `pts3d` in the files: checked when the
        # dataset is validated (QADataset.validate), before the first step or question
    if m.lm.kind == "from_vision_checkpoint" and (m.vision.kind != "llava_onevision" or not m.vision.pretrained):
        problems.append("model.lm.kind = 'from_vision_checkpoint' needs model.vision.kind = 'llava_onevision' and "
                        "model.vision.pretrained set")
    if not m.vision.pretrained:
        v = m.vision
        if v.hidden_size % v.num_heads:
            problems.append(f"model.vision.hidden_size = {v.hidden_size} is not divisible by model.vision.num_heads = {v.num_heads}")
        if v.image_size % v.patch_size:
            problems.append(f"model.vision.image_size = {v.image_size} is not divisible by model.vision.patch_size = {v.patch_size}")
        if m.memory.kind in ("dual", "working", "episodic") and v.hidden_size % m.memory.num_heads:
            problems.append(f"model.memory.num_heads = {m.memory.num_heads} does not divide the vision width "
                            f"model.vision.hidden_size = {v.hidden_size}")
        if m.memory.kind == "titans" and v.hidden_size % m.memory.titans_heads:
            problems.append(f"model.memory.titans_heads = {m.memory.titans_heads} does not divide the vision width "
                            f"model.vision.hidden_size = {v.hidden_size}")
        if m.fusion.cross_attention and v.hidden_size % m.fusion.num_heads:
            problems.append(f"model.fusion.num_heads = {m.fusion.num_heads} does not divide model.vision.hidden_size = {v.hidden_size}")
        if (v.image_size // v.patch_size) % m.pool:
            problems.append(f"model.pool = {m.pool} does not divide the patch grid side {v.image_size // v.patch_size}")
        if m.memory.pool > v.image_size // v.patch_size:
            problems.append(f"model.memory.pool = {m.memory.pool} exceeds the patch grid side {v.image_size // v.patch_size}")
    if not m.lm.pretrained:
        lm = m.lm
        if lm.hidden_size % lm.num_heads or lm.num_heads % lm.num_kv_heads:
            problems.append(f"model.lm: hidden_size {lm.hidden_size}, num_heads {lm.num_heads}, num_kv_heads "
                            f"{lm.num_kv_heads} must divide evenly (hidden % heads == 0, heads % kv_heads == 0)")
    if m.context_frames > recipe.data.frames:
        problems.append(f"model.context_frames = {m.context_frames} exceeds data.frames = {recipe.data.frames}")
    if t.tbptt_frames and m.memory.kind == "none":
        problems.append("train.tbptt_frames is set but model.memory.kind = 'none' carries no state across chunks")
    if "lm_lora" in trainable and "lm" in trainable:
        problems.append("train.trainable: 'lm_lora' and 'lm' are exclusive (LoRA adapters vs full fine-tuning)")
    problems.extend(_decoder_problems(recipe, trainable))
    problems.extend(_bitgen_problems(recipe, trainable))
    problems.extend(_training_data_problems(recipe))
    if t.mixed_precision == "fp16":
        problems.append("train.mixed_precision = 'fp16' is not supported (memory buffers overflow in fp16): use 'bf16' or 'no'")
    if m.memory.pool > 1 and m.kind == "bitgen":
        problems.append("model.memory.pool applies to MemoryVLM's token grids; BitGen's memory sees one pooled token per "
                        "frame: set it to 1")
    return problems


def _training_data_problems(recipe: Recipe) -> list[str]:
    """Dataset mixing, held-out evaluation and per-chunk TBPTT (docs/training.md)."""
    d, t = recipe.data, recipe.train
    problems = []
    if d.weights and len(d.weights) != len(d.roots):
        problems.append(f"data.weights has {len(d.weights)} entries but data.roots has {len(d.roots)}: give one weight "
                        "per root (or weights = [] to sample in proportion to each folder's size)")
    if any(w < 0 for w in d.weights) or (d.weights and not sum(d.weights) > 0):
        problems.append(f"data.weights = {list(d.weights)}: weights must be >= 0 with a positive sum")
    if len(set(d.roots)) != len(d.roots):
        problems.append(f"data.roots = {list(d.roots)} names a folder twice: raise its weight instead")
    if t.tbptt_mode == "per_chunk":
        if not t.tbptt_frames:
            problems.append("train.tbptt_mode = 'per_chunk' needs train.tbptt_frames > 0 (the chunk length)")
        if t.grad_accum != 1:
            problems.append(f"train.tbptt_mode = 'per_chunk' steps the optimizer once per chunk: train.grad_accum = "
                            f"{t.grad_accum} must be 1")
        if recipe.model.kind == "bitgen":
            problems.append("train.tbptt_mode = 'per_chunk' is for model.kind = 'memory_vlm': use 'truncate' with bitgen")
    return problems


def _decoder_problems(recipe: Recipe, trainable: set[str]) -> list[str]:
    """[model.decoder]: the plain / TRM decoders replace the HF LM (docs/models.md, "TRM VLM")."""
    d = recipe.model.decoder
    if d.kind == "lm":
        off = [f"model.decoder.{k} = {getattr(d, k)!r}" for k, v in (("resampler_latents", 0), ("use_vision", True))
               if getattr(d, k) != v]
        return [f"{o} needs model.decoder.kind = 'plain' or 'trm' (the HF LM path has no such option)" for o in off]
    problems = []
    if d.hidden_size % d.num_heads:
        problems.append(f"model.decoder.hidden_size = {d.hidden_size} is not divisible by model.decoder.num_heads = {d.num_heads}")
    if "lm_lora" in trainable:
        problems.append(f"train.trainable has 'lm_lora' (LoRA on the HF LM), but model.decoder.kind = {d.kind!r} builds no HF LM: "
                        "train the decoder in full with 'lm' (e.g. train.trainable = [\"projector\", \"lm\"])")
    if d.halting and d.kind != "trm":
        problems.append("model.decoder.halting = true needs model.decoder.kind = 'trm'")
    return problems


def _bitgen_problems(recipe: Recipe, trainable: set[str]) -> list[str]:
    """model.kind = "bitgen" (docs/models.md, "BitGen"): DINOv2 + Larimar, its own text side and LM head."""
    m, t = recipe.model, recipe.train
    if m.kind != "bitgen":
        return []
    problems = []
    why = "model.kind = 'bitgen'"
    if m.vision.kind != "dinov2":
        problems.append(f"{why} needs model.vision.kind = 'dinov2' (its LoRA targets DINOv2 attention), got {m.vision.kind!r}")
    if m.memory.kind not in ("larimar", "none"):
        problems.append(f"{why} supports model.memory.kind = 'larimar' or 'none' (one pooled token per frame), "
                        f"got {m.memory.kind!r}")
    if m.geometry.source != "none":
        problems.append(f"{why} fuses no 3D geometry: set model.geometry.source = 'none' (and the model.fusion stages "
                        "to false)")
    if m.decoder.kind != "lm" or m.lm.pretrained or m.lm.kind != "qwen2":
        problems.append(f"{why} has its own text embeddings and LM head ([model.bitgen]); [model.lm] and "
                        "[model.decoder] are not built: leave model.lm.pretrained = '', model.lm.kind = 'qwen2' and "
                        "model.decoder.kind = 'lm'")
    if "lm_lora" in trainable:
        problems.append(f"{why}: train.trainable has 'lm_lora' (LoRA on an HF LM) but BitGen builds no HF LM; its "
                        "'vision' component is the DINOv2 LoRA adapters (e.g. [\"vision\", \"projector\", \"memory\", "
                        "\"fusion\", \"lm\"])")
    if t.cache_features:
        problems.append(f"{why}: train.cache_features = true would cache DINOv2 features that change once the LoRA "
                        "adapters train: set it to false")
    if t.aux_consistency_weight:
        problems.append(f"{why}: train.aux_consistency_weight is a MemoryVLM loss: set it to 0")
    if m.bitgen.embed_dim % m.bitgen.lm_heads:
        problems.append(f"model.bitgen.lm_heads = {m.bitgen.lm_heads} does not divide model.bitgen.embed_dim = "
                        f"{m.bitgen.embed_dim}")
    if not m.bitgen.lora_targets:
        problems.append("model.bitgen.lora_targets is empty: name the DINOv2 projections to adapt (e.g. "
                        "[\"query\", \"value\"])")
    return problems


def default_trainable(phase: int) -> set[str]:
    """What each phase trains when train.trainable is empty (docs/training.md)."""
    return {
        0: {"memory", "fusion", "projector", "lm"},  # tiny stand-in for a pretrained base: train it from scratch
        1: {"memory"},
        2: {"memory", "fusion", "projector"},
        3: {"memory", "fusion", "projector", "lm_lora"},
    }[phase]


def _set_path(data: dict, keys: list[str], value: Any, text: str) -> None:
    node = data
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {text}: '{k}' is a value, not a table")
        node = child
    node[keys[-1]] = value


def build_recipe(data: dict, where: str, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Validate a resolved table; every problem reported at once."""
    try:
        recipe = Recipe.model_validate(data)
        problems = check_combinations(recipe)
    except ValidationError as exc:
        problems = format_errors(exc)
    if problems:
        n = len(problems)
        with_set = f" with --set {' '.join(overrides)}" if overrides else ""
        raise ConfigError(f"invalid recipe {where}{with_set} ({n} problem{'s' * (n != 1)}):", problems)
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    path = find_recipe(path)
    data = resolve_file(path)
    for text in overrides:
        keys, value = parse_override(text)
        _set_path(data, keys, value, text)
    return build_recipe(data, str(path), overrides)


def apply_overrides(recipe: Recipe, overrides: dict[str, Any], where: str = "recipe") -> Recipe:
    """A new Recipe with `{key.path: value}` applied and re-validated (ablate variants, --phase)."""
    data = recipe.model_dump()
    for key, value in overrides.items():
        _set_path(data, key.split("."), value, f"{key}={value!r}")
    return build_recipe(data, where)


def ablation_variants(recipe: Recipe, where: str = "recipe", quick: bool = False) -> list[tuple[str, Recipe]]:
    """The `[ablate]` table expanded: (variant name, validated Recipe) for every grid point x named variant x seed.

    A recipe without an `[ablate]` table is one variant. Every variant is validated
    up front, so a bad grid value fails before anything trains.
    """
    import itertools

    ab = recipe.ablate
    points: list[tuple[str, dict]] = []
    if ab.grid:
        keys = list(ab.grid)
        for values in itertools.product(*(ab.grid[k] for k in keys)):
            name = ",".join(f"{k.split('.')[-1]}={v}" for k, v in zip(keys, values, strict=True))
            points.append((name, dict(zip(keys, values, strict=True))))
    for name, overrides in ab.variants.items():
        points.append((name, dict(overrides)))
    if not points:
        points = [("base", {})]
    out: list[tuple[str, Recipe]] = []
    problems: list[str] = []
    quick_overrides = dict(ab.quick) if quick else {}
    seeds = ab.seeds if (ab.grid or ab.variants) else [recipe.run.seed]
    quick_seeds = "ablate.seeds" in quick_overrides
    if quick_seeds:  # --quick may run fewer seeds
        seeds = list(quick_overrides.pop("ablate.seeds"))
    many_seeds = len(seeds) > 1
    for name, overrides in points:
        # a named variant may run fewer seeds ("ablate.seeds" = [0], e.g. an expensive upper
        # bound); --quick's seeds win; labels keep "/seed<k>" whenever the ablation has several
        own = overrides.pop("ablate.seeds", None)
        if own is not None and not (isinstance(own, list) and own and all(isinstance(x, int) for x in own)):
            problems.append(f"ablate.variants.{name}: \"ablate.seeds\" = {own!r} must be a non-empty list of integers")
            continue
        for seed in seeds if own is None or quick_seeds else own:
            full = {**quick_overrides, **overrides, "run.seed": seed}
            label = f"{name}/seed{seed}" if many_seeds else name
            try:
                variant = apply_overrides(recipe, full, f"{where} [ablate variant {label}]")
            except ConfigError as exc:
                problems.extend(exc.problems or [str(exc)])
                continue
            out.append((label, variant))
    if problems:
        raise ConfigError(f"invalid ablation in {where} ({len(problems)} problems):", problems)
    return out


def phase_overrides(recipe_path: str, phase: int | None, set_: list[str]) -> list[str]:
    """`--phase N` on a recipe of another phase: a run `<name>-phaseN` that starts from phase N-1's
    run and trains the phase's own components, unless `--set` names init_from / trainable."""
    if phase is None:
        return list(set_)
    base = load_recipe(recipe_path, set_)
    if phase == base.train.phase:
        return list(set_)
    if phase not in (0, 1, 2, 3):
        raise ConfigError(f"--phase {phase}: valid phases are 0, 1, 2, 3")
    name = base.run.name
    prev = name if phase - 1 == base.train.phase else f"{name}-phase{phase - 1}"
    extra = [f"train.phase={phase}", f'run.name="{name}-phase{phase}"', 'run.output_dir=""']
    if not any(s.startswith("train.init_from=") for s in set_):
        extra.append(f'train.init_from="runs/{prev}"')
    if not any(s.startswith("train.trainable=") for s in set_):
        extra.append("train.trainable=[]")
    return [*set_, *extra]  # the phase's run name wins over a --set run.name (it names the base run)
