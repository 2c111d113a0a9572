"""The memory package as it was at a git revision, importable beside the current one, so a
benchmark can time "before" and "after" interleaved in one process (ratios in one run).

    memory_before = load_memory_at("f7a9e08")   # a module: memory_before.DualMemory, ...
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_memory_at(rev: str):
    """`vlmem.memory` at `rev` as the package `vlmem_at_<rev>.memory` (its own imports of
    `vlmem.memory` rewritten to it; everything else, e.g. `vlmem.errors`, is today's)."""
    name = f"vlmem_at_{rev.replace('-', '_').replace('/', '_')}"
    if f"{name}.memory" in sys.modules:
        return sys.modules[f"{name}.memory"]
    files = subprocess.run(["git", "ls-tree", "--name-only", f"{rev}:vlmem/memory"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    folder = Path(tempfile.mkdtemp(prefix="vlmem-before-"))
    package = folder / name / "memory"
    package.mkdir(parents=True)
    (folder / name / "__init__.py").write_text("")
    for f in files:
        if f.endswith(".py"):
            text = subprocess.run(["git", "show", f"{rev}:vlmem/memory/{f}"], cwd=ROOT, check=True,
                                  capture_output=True, text=True).stdout
            (package / f).write_text(text.replace("vlmem.memory", f"{name}.memory"))
    sys.path.insert(0, str(folder))
    return importlib.import_module(f"{name}.memory")
