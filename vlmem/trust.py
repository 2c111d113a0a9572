"""Run folders are data, never code (docs/security.md).

A `recipe.lock.toml` read from a run or exported folder someone handed you could ask for
`trust_remote_code = true` or point `pretrained` at a folder shipped inside the run (a
`config.json` with `auto_map` next to a `.py` file). Either would let the folder run code or
load a model you did not name. vlmem refuses such a lock file unless the command line says
`--trust-remote-code`; when that flag is on, every command says so.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from vlmem.errors import UsageError

FLAG = "--trust-remote-code"
_state = {"remote_code": False}


def allow_run_code(on: bool, console=None) -> None:
    """Set by the CLI from `--trust-remote-code` (off by default); printed when on."""
    _state["remote_code"] = bool(on)
    if on and console is not None:
        console.print(f"[bold yellow]{FLAG} is on[/bold yellow]: a run folder's recipe.lock.toml may enable "
                      "trust_remote_code and load a model stored inside the run (Python code from it can run)")


def run_code_allowed() -> bool:
    return _state["remote_code"]


@contextmanager
def trusted_run_code(on: bool):
    """Allow (when `on`) run-folder remote code for a run this process wrote from the user's own recipe."""
    old = _state["remote_code"]
    _state["remote_code"] = old or bool(on)
    try:
        yield
    finally:
        _state["remote_code"] = old


def _inside(path: str, folder: Path) -> bool:
    """Whether a `pretrained` value names a local path inside `folder`."""
    if not path:
        return False
    p, root = Path(path).expanduser(), Path(folder).resolve()
    # A relative value is resolved against the working directory by from_pretrained; it only counts
    # as "inside the run" against the run folder when such a folder really exists there (a hub id
    # such as "llava-hf/llava-onevision-qwen2-7b-ov-hf" does not).
    inner = Path(folder) / p
    candidates = [p.resolve()] + ([inner.resolve()] if not p.is_absolute() and inner.exists() else [])
    return any(c == root or root in c.parents for c in candidates)


def run_recipe_problems(recipe, run_dir: Path) -> list[str]:
    """What in a run folder's recipe would run code or load a model from inside the folder."""
    problems = []
    for key, cfg in (("model.vision", recipe.model.vision), ("model.lm", recipe.model.lm)):
        if cfg.trust_remote_code:
            problems.append(f"[{key}] trust_remote_code = true (would run Python code shipped with the model)")
        if _inside(cfg.pretrained, run_dir):
            problems.append(f"[{key}] pretrained = {cfg.pretrained!r} is a folder inside the run folder "
                            "(a model shipped with the run, not one you named)")
    return problems


def check_run_recipe(recipe, lock: Path, run_dir: Path) -> None:
    """Refuse a run folder's recipe that asks for code, unless `--trust-remote-code` was given."""
    problems = run_recipe_problems(recipe, run_dir)
    if problems and not run_code_allowed():
        raise UsageError(f"{lock}: refusing to load this run folder: " + "; ".join(problems) + ". A run folder is "
                         f"data: vlmem never runs code or loads a model because a run folder asks to. If you trust "
                         f"whoever made {run_dir}, pass {FLAG} (see docs/security.md)")
