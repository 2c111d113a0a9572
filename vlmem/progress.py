"""Rich progress bars: main process only, on stderr, off when stderr is not a TTY."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

stderr_console = Console(stderr=True)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def progress_enabled() -> bool:
    return is_main_process() and sys.stderr.isatty() and os.environ.get("VLMEM_NO_PROGRESS", "") != "1"


class _NullProgress:
    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        pass

    def advance(self, *args, **kwargs) -> None:
        pass


@contextmanager
def progress_bar(*extra_columns) -> Iterator[Progress | _NullProgress]:
    """`with progress_bar() as p: t = p.add_task("scenes", total=n); p.advance(t)`."""
    if not progress_enabled():
        yield _NullProgress()
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *extra_columns,
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=stderr_console, transient=False) as progress:
        yield progress


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    n = total if total is not None else len(items)  # type: ignore[arg-type]
    with progress_bar() as p:
        task = p.add_task(description, total=n)
        for item in items:
            yield item
            p.advance(task)
