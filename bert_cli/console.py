"""Terminal output shared by every command: consoles, progress bars, tables.

Results go to stdout; progress and errors go to stderr, so a command's output
can be piped while a person still sees what is happening.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.console import Console
from rich.markup import escape
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
    # Messages quote user data and tokens like [MASK]: never read them as markup.
    stderr.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


def warning(message: str) -> None:
    stderr.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def info(message: str) -> None:
    stderr.print(message, soft_wrap=True)


class Bar:
    """Handle on one progress bar: ``advance(n)``, ``set_total(n)``, ``describe(text)``."""

    def __init__(self, progress: Progress, task) -> None:
        self._progress = progress
        self._task = task

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def set_total(self, total: int | None) -> None:
        self._progress.update(self._task, total=total or None)

    def describe(self, text: str) -> None:
        self._progress.update(self._task, description=text)


@contextlib.contextmanager
def byte_progress(description: str, total: int | None = None) -> Iterator[Bar]:
    """A progress bar over bytes read, with MB/s and time left."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=stderr,
    )
    with progress:
        task = progress.add_task(description, total=total or None)
        try:
            yield Bar(progress, task)
        except BaseException:
            # A failed run ends with its one error line, not a half-full bar above it.
            progress.update(task, visible=False)
            raise


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


def load_tensorflow() -> None:
    """Imports TensorFlow with its C++ start-up lines (CUDA probing, absl notices) kept off the terminal.

    Those lines are written by native code before any Python setting can stop
    them, so standard error is pointed at /dev/null for the import alone.
    ``--debug`` (BERT_DEBUG=1) or TF_CPP_MIN_LOG_LEVEL below 3 lets them through.
    """
    import os
    import sys

    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") != "3":
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
