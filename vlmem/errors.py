"""One error hierarchy, mapped to exit codes in one place (`exit_code_for`).

A `VlmemError` is a user-facing failure: the CLI prints its message (no traceback
unless `--debug` / `VLMEM_DEBUG=1`) and exits with its `exit_code`.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class VlmemError(Exception):
    """Base class: a failure the user should read, not a bug."""

    exit_code = EXIT_RUNTIME


class UsageError(VlmemError):
    """Bad flag, missing input file, wrong combination of options."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A recipe (or a `--set` override) is invalid. `problems` lists every issue found."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems or [])
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class DataError(VlmemError):
    """Input data is unusable (nothing left to convert, corrupt dataset, missing video)."""


class CheckpointError(VlmemError):
    """A checkpoint or exported folder is missing, incomplete or from another recipe."""


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, VlmemError):
        return exc.exit_code
    return EXIT_RUNTIME
