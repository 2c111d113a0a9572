"""Trust boundaries on disk (docs/security.md): names from data never leave the folder the user named,
and `--overwrite` only replaces folders vlmem itself wrote.

A scene name, video path, image name or id read from a data file is *data*: `safe_name` /
`safe_child` turn it into a path inside a folder given on the command line, or raise an
`UnsafePathError` that names the record and the value. `owned_by_vlmem` / `mark_owned` are the
marker files that let `--overwrite` tell its own output from anything else.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path, PurePosixPath

from vlmem.errors import DataError, UsageError

MARKER = ".vlmem-output.json"  # written into every folder `--overwrite` may later replace


class UnsafePathError(DataError):
    """A data-derived name would make a path outside its folder (or is not a usable file name)."""


def _problem(text: str, allow_subdirs: bool) -> str | None:
    if not text or not text.strip():
        return "is empty"
    if "\x00" in text:
        return "contains a NUL character"
    posix = text.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return "is an absolute path"
    parts = PurePosixPath(posix).parts
    if ".." in parts:
        return "contains '..'"
    if not allow_subdirs and (len(parts) != 1 or "/" in posix):
        return "contains a path separator"
    if not allow_subdirs and parts[0] == ".":
        return "is '.'"
    return None


def safe_name(name, what: str) -> str:
    """`name` as a single plain file-name component, else UnsafePathError naming `what` (the record)."""
    text = str(name)
    problem = _problem(text, allow_subdirs=False)
    if problem:
        raise UnsafePathError(f"{what}: {text!r} {problem}, so it cannot be used as a file name inside the output "
                              "folder (fix or remove this record)")
    return text


def safe_child(root: Path, relative, what: str) -> Path:
    """`root / relative` for a relative path (subfolders allowed) that stays inside `root`."""
    text = str(relative)
    problem = _problem(text, allow_subdirs=True)
    if problem:
        raise UnsafePathError(f"{what}: path {text!r} {problem}, so it would point outside {root} "
                              "(fix or remove this record)")
    return Path(root) / text.replace("\\", "/")


# -- folders vlmem owns ---------------------------------------------------------------------------------
def mark_owned(folder: Path, kind: str) -> None:
    """Record that `folder` (being written) is a `kind` output of vlmem ("export", "dataset", "inspect")."""
    (Path(folder) / MARKER).write_text(json.dumps({"written_by": "vlmem", "kind": kind}) + "\n")


def owned_kind(folder: Path) -> str | None:
    path = Path(folder) / MARKER
    try:
        return json.loads(path.read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def check_replaceable(out: Path, kind: str, overwrite: bool, flag: str = "--out",
                      legacy=lambda folder: False, protect: tuple[Path, ...] = ()) -> None:
    """Refuse to write `out` unless it is new, an empty folder, or (with --overwrite) a `kind` output
    of vlmem (its marker file, or `legacy(folder)` for outputs written before markers existed).
    `protect`: folders that must never be replaced, nor any folder above or inside them."""
    out = Path(out)
    for keep in protect:
        a, b = out.resolve(), Path(keep).resolve()
        if a == b or a in b.parents or b in a.parents:
            raise UsageError(f"{flag} {out} is {'inside' if b in a.parents else 'the same as or above'} {keep}: "
                             "writing there could destroy it; choose a folder outside it")
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise UsageError(f"{flag} {out} exists and is not a folder: choose a folder path")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise UsageError(f"{out} already exists: pass --overwrite to replace it, or choose another {flag}")
    if owned_kind(out) != kind and not legacy(out):
        raise UsageError(f"{flag} {out} exists and was not written by vlmem {kind} (no {MARKER}): --overwrite only "
                         "replaces vlmem's own output; choose a new folder or remove it yourself")


# -- temp folders of killed runs -------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return True


def remove_stale_temps(out: Path) -> list[Path]:
    """Remove `.<name>.tmp-<pid>` / `.<name>.old-<pid>` siblings of `out` left by killed vlmem runs
    (only when that process is gone). Returns the folders removed."""
    out = Path(out)
    removed = []
    if not out.parent.is_dir():
        return removed
    prefix = f".{out.name}."
    for p in out.parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        tag, _, pid = p.name[len(prefix):].partition("-")
        if tag not in ("tmp", "old") or not pid.isdigit() or int(pid) == os.getpid() or pid_alive(int(pid)):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def unsafe_fields(record: dict, names=(), paths=(), what: str = "record") -> str | None:
    """Why a record's name fields (one file-name component each) or relative path fields (subfolders
    allowed) cannot become paths, or None. Missing / null fields are left to the caller."""
    try:
        for key in names:
            if record.get(key) is not None:
                safe_name(record[key], f"{what} field {key!r}")
        for key in paths:
            if record.get(key) is not None:
                safe_child(Path("."), record[key], f"{what} field {key!r}")
    except UnsafePathError as exc:
        return str(exc)
    return None
