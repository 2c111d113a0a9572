"""Benchmark scoring: VSI-Bench (official semantics), VSTI-Bench, open QA (EM / token F1).

Scoring never loads a model: it reads a predictions file (see `predictions.py`) and
computes numbers with numpy only. Submodules are imported lazily so that
`import vlmem.eval` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "score_vsibench": "vlmem.eval.vsibench",
    "build_vsibench_prompt": "vlmem.eval.vsibench",
    "score_vstibench": "vlmem.eval.vstibench",
    "score_qa": "vlmem.eval.qa",
    "load_predictions": "vlmem.eval.predictions",
    "write_report": "vlmem.eval.report",
    "print_report": "vlmem.eval.report",
    "score_predictions_file": "vlmem.eval.report",
    "BENCHMARKS": "vlmem.eval.report",
    "scorer_for": "vlmem.eval.report",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vlmem.eval' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
