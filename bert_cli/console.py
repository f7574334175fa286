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


_debug = False  # --debug of the command being run


def set_debug(debug: bool) -> None:
    global _debug
    _debug = bool(debug)


def native_logs_shown() -> bool:
    """Whether TensorFlow's native log lines reach the terminal: only with ``--debug`` (or ``BERT_DEBUG=1``)."""
    import os

    return _debug or os.environ.get("BERT_DEBUG", "") not in ("", "0")


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Points file descriptor 2 at /dev/null meanwhile: native code's lines are written there, not to sys.stderr."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def load_tensorflow() -> None:
    """Imports TensorFlow now, with its native start-up lines kept off the terminal (see :func:`quiet_tensorflow`)."""
    import tensorflow  # noqa: F401


class _QuietLoader:
    """Executes a module with the native start-up lines silenced (see :func:`quiet_tensorflow`)."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        if native_logs_shown():
            self.loader.exec_module(module)
            return
        with native_stderr_silenced():
            self.loader.exec_module(module)

    def __getattr__(self, name):  # get_resource_reader, is_package... of the real loader
        return getattr(self.loader, name)


class _QuietTensorFlow:
    """A ``sys.meta_path`` finder that silences the first import of TensorFlow, whoever imports it."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        import importlib.machinery
        import sys

        sys.meta_path.remove(self)  # once: later imports find the loaded module
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow() -> None:
    """Keeps TensorFlow's native start-up lines off the terminal for every command: one policy, set at start-up.

    The C++ runtime writes them to file descriptor 2 while ``import tensorflow``
    runs (CUDA probing on CPU machines, absl's "before InitializeLog" notice,
    oneDNN notes), before any Python setting can stop them; later native log
    lines are filtered by ``TF_CPP_MIN_LOG_LEVEL``. So the first import of
    TensorFlow, by any command or library, runs with descriptor 2 pointed at
    /dev/null; ``--debug`` lets everything through. Nothing is imported here.
    """
    import os
    import sys

    if native_logs_shown():
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlow())
