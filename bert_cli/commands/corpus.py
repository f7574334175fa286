"""`bert corpus`: write the built-in default corpus (documentation prose of this Python)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bert_cli import console
from bert_cli.errors import UserError

# "MB" is decimal throughout the command line: --size-mb 1 means 1,000,000 bytes.
BYTES_PER_MB = 1_000_000


def corpus_command(
    output: Annotated[
        Path,
        typer.Argument(help="File to write: one sentence per line, a blank line between documents."),
    ] = Path("corpus.txt"),
    size_mb: Annotated[
        float,
        typer.Option("--size-mb", help="Size to aim for in MB (1 MB = 1,000,000 bytes); never exceeded."),
    ] = 1.0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace OUTPUT if it already exists.")
    ] = False,
) -> None:
    """Write a pre-training corpus made from the documentation that ships with Python.

    The text is the language-reference topics behind help() and the docstrings
    of the standard library, cleaned into English prose. The same Python
    installation always gives the same bytes, so no download is needed.
    """
    from data.corpus import MIN_TARGET_BYTES, write_default_corpus

    if output.is_dir():
        raise UserError(f"{output}: is a directory; give a file name such as {output / 'corpus.txt'}")
    if output.exists() and not overwrite:
        raise UserError(f"{output}: already exists; pass --overwrite to replace it")
    if not (math.isfinite(size_mb) and size_mb * BYTES_PER_MB >= MIN_TARGET_BYTES):
        raise UserError(f"--size-mb {size_mb:g}: give a size of at least {MIN_TARGET_BYTES / BYTES_PER_MB:g} MB")
    target_bytes = round(size_mb * BYTES_PER_MB)

    started = time.perf_counter()
    with console.byte_progress("Building corpus", total=target_bytes) as bar:
        stats = write_default_corpus(output, target_bytes=target_bytes, on_bytes=bar.advance)
    seconds = time.perf_counter() - started

    if stats.bytes < 0.9 * target_bytes:
        console.warning(
            f"this Python installation holds only {stats.bytes / BYTES_PER_MB:.2f} MB of usable prose; "
            f"the corpus is smaller than the {size_mb:g} MB asked for"
        )
    topics = sum(source.startswith("topic:") for source in stats.sources)
    table = Table(title="Default corpus", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("documents", f"{stats.documents:,} ({topics:,} pydoc topics, {stats.documents - topics:,} modules)")
    table.add_row("sentences", f"{stats.sentences:,}")
    table.add_row("words", f"{stats.words:,}")
    table.add_row("size", f"{stats.bytes / BYTES_PER_MB:.2f} MB")
    table.add_row("time", f"{seconds:.1f} s")
    table.add_row("path", str(output))
    console.stdout.print(table)
