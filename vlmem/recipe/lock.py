"""recipe.lock.toml: the fully resolved recipe plus what is needed to reproduce it."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import tomli_w

from vlmem.recipe.schema import Recipe

_PACKAGES = ("vlmem", "torch", "transformers", "peft", "accelerate", "safetensors", "pyarrow", "decord", "av")


def recipe_to_dict(recipe: Recipe) -> dict:
    """Plain dict without None values (TOML has no null)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(recipe.model_dump(mode="python"))


def recipe_to_toml(recipe: Recipe) -> str:
    return tomli_w.dumps(recipe_to_dict(recipe))


def recipe_hash(recipe: Recipe, legacy: bool = False) -> str:
    """Content hash of the resolved recipe: same recipe + overrides -> same hash. `run.output_dir`
    (where the run lives) is left out, so a moved or copied run folder still matches its recipe, and so
    are the data-loader workers and the feature-cache folder / size bound, which change no result;
    `legacy=True`: the hash of vlmem <= 0.1 runs, which included it."""
    data = recipe_to_dict(recipe)
    if not legacy:
        data["run"].pop("output_dir", None)
        # how samples are decoded and where frozen tokens are kept change no result: a run resumes
        # with any worker count and any cache folder (the cache key holds what does matter)
        for key in ("num_workers", "prefetch_factor"):
            data["data"].pop(key, None)
        for key in ("feature_cache_dir", "feature_cache_max_gb"):
            data["train"].pop(key, None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def git_sha(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def lock_dict(recipe: Recipe, world_size: int = 1, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    return {
        "lock": {
            "hash": recipe_hash(recipe),
            "seed": recipe.run.seed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "world_size": world_size,
            "git_sha": git_sha(),
            "overrides": list(overrides),
            "packages": package_versions(),
        },
        **recipe_to_dict(recipe),
    }


def write_lock(recipe: Recipe, run_dir: Path, world_size: int = 1, overrides=()) -> Path:
    """Write runs/<name>/recipe.lock.toml atomically. A lock file is itself a loadable recipe."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "recipe.lock.toml"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(tomli_w.dumps(lock_dict(recipe, world_size, overrides)))
    os.replace(tmp, path)
    return path


def read_lock_hash(run_dir: Path) -> str | None:
    import tomllib

    from vlmem.errors import UsageError

    path = Path(run_dir) / "recipe.lock.toml"
    if not path.is_file():
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")).get("lock", {}).get("hash")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: damaged recipe lock ({type(exc).__name__}: {exc}); restore it from a copy of "
                         "the run") from None
