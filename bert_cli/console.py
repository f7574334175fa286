"""Terminal output shared by every command: consoles, progress bars, tables.

Results go to stdout; progress and errors go to stderr, so a command's output
can be piped while a person still sees what is happening.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


def error(message: str) -> None:
    """Prints one error line on stderr (the caller decides the exit status)."""
    stderr.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)


def warning(message: str) -> None:
    stderr.print(f"[yellow]warning:[/] {message}", soft_wrap=True)


def info(message: str) -> None:
    stderr.print(message, soft_wrap=True)


@contextlib.contextmanager
def byte_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar over bytes read, with MB/s; yields ``advance(n_bytes)``."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total or None)
        yield lambda n: progress.advance(task, n)
        progress.update(task, completed=total)


@contextlib.contextmanager
def count_progress(description: str, total: int | None, unit: str = "items") -> Iterator[Callable[[int], None]]:
    """A progress bar over a count of things, with their rate; yields ``advance(n)``."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
    )
    with progress:
        task = progress.add_task(description, total=total, rate="")

        def advance(n: int) -> None:
            progress.advance(task, n)
            speed = progress.tasks[0].speed
            if speed:
                progress.update(task, rate=f"{speed:,.0f} {unit}/s")

        yield advance
