"""Resume exactly or refuse: the training state of a checkpoint is checked before it is loaded.

Accelerate's `load_state` silently skips a missing or unreadable `random_states_<rank>.pkl`
(the run then continues with other random numbers: dropout and sampling diverge). So each
checkpoint's `trainer_state.json` records the SHA-256 of every file of its `training_state/`,
and a resume checks them (and that the RNG file loads, weights_only) before anything is loaded,
then checks the RNG really was restored. A moved or copied run folder is resumed where its
`recipe.lock.toml` is.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from vlmem.data.pixmo import sha256_file
from vlmem.errors import CheckpointError

STATE_FILE = "trainer_state.json"
RNG_KEYS = ("random_state", "numpy_random_seed", "torch_manual_seed")


def rng_file(state_dir: Path, rank: int) -> Path:
    return Path(state_dir) / f"random_states_{rank}.pkl"


def fingerprint(state_dir: Path) -> dict[str, str]:
    """SHA-256 of every file of a training_state folder (written into trainer_state.json)."""
    return {p.name: sha256_file(p) for p in sorted(Path(state_dir).iterdir()) if p.is_file() and p.name != STATE_FILE}


def read_trainer_state(state_dir: Path) -> dict:
    path = Path(state_dir) / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        int(state["step"])
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: this checkpoint cannot be resumed (delete it and point "
                              "checkpoints/last at an older one, or start a new run)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is damaged ({type(exc).__name__}: {exc}): this checkpoint cannot be resumed "
                              "(point checkpoints/last at an older one, or start a new run)") from None
    return state


def _load_rng(path: Path) -> dict:
    from accelerate.utils import load  # torch.load(weights_only=True) with numpy's RNG types allowed

    try:
        states = load(str(path))
        if not all(k in states for k in RNG_KEYS):
            raise KeyError(f"missing {[k for k in RNG_KEYS if k not in states]}")
        return states
    except Exception as exc:  # torch / pickle raise many types on damaged files
        raise CheckpointError(f"{path}: random-number state is damaged ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}); resuming without it would not "
                              "repeat the interrupted run (dropout and sampling would differ), so vlmem refuses: "
                              "point checkpoints/last at an older checkpoint, or start a new run") from None


def verify_training_state(state_dir: Path, rank: int) -> dict:
    """trainer_state.json, checked against the files it fingerprinted; this rank's RNG file readable.
    Returns the RNG state this process must end up with."""
    state_dir = Path(state_dir)
    state = read_trainer_state(state_dir)
    rng = rng_file(state_dir, rank)
    if not rng.is_file():
        raise CheckpointError(f"{rng} is missing: the random-number state of process {rank} cannot be restored, and "
                              "resuming without it would silently differ from the interrupted run. Resume with the "
                              "same number of processes, point checkpoints/last at an older checkpoint, or start a new run")
    for name, digest in state.get("files", {}).items():
        path = state_dir / name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing from the checkpoint (trainer_state.json lists it): cannot resume "
                                  "exactly; point checkpoints/last at an older checkpoint, or start a new run")
        if sha256_file(path) != digest:
            raise CheckpointError(f"{path} was changed or truncated after it was saved (SHA-256 differs from "
                                  "trainer_state.json): cannot resume exactly; point checkpoints/last at an older "
                                  "checkpoint, or start a new run")
    return _load_rng(rng)


def load_training_state(acc, state_dir: Path) -> dict:
    """`accelerator.load_state` (after `verify_training_state`), then check that the RNG really was restored."""
    expected = _load_rng(rng_file(state_dir, acc.process_index))
    try:
        acc.load_state(str(state_dir))
    except Exception as exc:  # damaged optimizer.bin / model.safetensors of an older checkpoint without hashes
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{state_dir}: cannot load the training state ({type(exc).__name__}: {first}): point "
                              "checkpoints/last at an older checkpoint, or start a new run") from None
    restored = (random.getstate() == expected["random_state"]
                and torch.equal(torch.get_rng_state(), expected["torch_manual_seed"])
                and all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
                        for a, b in zip(np.random.get_state(), expected["numpy_random_seed"], strict=True)))
    if not restored:
        raise CheckpointError(f"{rng_file(state_dir, acc.process_index)}: the random-number state was not restored "
                              "by accelerate; refusing to resume with different random numbers")
    return read_trainer_state(state_dir)


# -- a run folder resumed where it is --------------------------------------------------------------
def lock_run_dir(recipe_name: str) -> Path | None:
    """The run folder when `recipe_name` is a run's recipe.lock.toml (a file with a [lock] table)."""
    path = Path(recipe_name)
    if not path.is_file():
        return None
    from vlmem.runs import read_lock_toml

    return path.resolve().parent if "lock" in read_lock_toml(path) else None


def lock_run_overrides(recipe_name: str, resume: bool, set_: list[str]) -> list[str]:
    """`train RUN/recipe.lock.toml --resume` continues RUN, wherever it was moved or copied to
    (not the folder recorded when it was trained), unless --set run.output_dir says otherwise."""
    run = lock_run_dir(recipe_name) if resume else None
    if run is None or any(s.strip().startswith("run.output_dir") for s in set_):
        return []
    return [f"run.output_dir={json.dumps(str(run))}"]
