"""Load what was trained: a run folder (checkpoints/last) or an exported folder."""

from __future__ import annotations

from pathlib import Path

import tomllib

from vlmem.errors import CheckpointError, UsageError
from vlmem.recipe.load import build_recipe


def load_run_recipe(path: Path, overrides: list[str] | tuple[str, ...] = ()):
    """The Recipe a run (or export) was trained with, from its recipe.lock.toml, with `--set key=value`
    `overrides` applied (e.g. where the benchmark's data and cached geometry are)."""
    from vlmem.recipe.load import _set_path, parse_override

    path = Path(path)
    lock = path / "recipe.lock.toml"
    if not lock.is_file():
        raise CheckpointError(f"{path}: no recipe.lock.toml (expected a run folder written by `vlmem train` or a folder "
                              "written by `vlmem export`)")
    data = read_lock_toml(lock)
    data.pop("lock", None)
    for text in overrides:
        keys, value = parse_override(text)
        _set_path(data, keys, value, text)
    recipe = build_recipe(data, str(lock), overrides)
    from vlmem.trust import check_run_recipe

    check_run_recipe(recipe, lock, path)
    return recipe


def read_lock_toml(lock: Path) -> dict:
    """A recipe.lock.toml as a dict, with a clear error for a damaged or non-UTF-8 file."""
    try:
        return tomllib.loads(Path(lock).read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"{lock}: not UTF-8 text (byte {exc.start}): a recipe lock must be UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{lock}: not valid TOML ({exc})") from None


def load_trained(path: Path, for_training: bool = False, overrides: list[str] | tuple[str, ...] = ()):
    """(recipe, model, tokenizer) with the trained weights loaded, in eval mode (`overrides`: --set)."""
    from vlmem.model.build import build_model, load_tokenizer
    from vlmem.train.checkpoint import load_model_weights, resolve_model_dir
    from vlmem.train.params import apply_lora

    path = Path(path)
    recipe = load_run_recipe(path, overrides)
    model_dir = resolve_model_dir(path)
    tokenizer = load_tokenizer(recipe, saved=model_dir if (model_dir / "tokenizer").is_dir() else path)
    model = build_model(recipe, tokenizer)
    import json

    config = json.loads((model_dir / "config.json").read_text()) if (model_dir / "config.json").is_file() else {}
    if config.get("lora"):
        apply_lora(model, recipe)
    load_model_weights(model, model_dir)
    model.eval()
    return recipe, model, tokenizer
