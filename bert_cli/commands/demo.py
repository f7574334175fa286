"""``bert demo``: the whole pipeline on the built-in corpus, with one summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bert_cli import console


def demo_command(
    workdir: Annotated[Path, typer.Option(help="Directory for everything the demo makes.")] = Path("demo_output"),
    corpus_mb: Annotated[float, typer.Option(help="Size of the built-in corpus to build, in MB.")] = 1.0,
    vocab_size: Annotated[int, typer.Option(help="Vocabulary size to learn.")] = 5000,
    train_steps: Annotated[int, typer.Option(help="Pre-training steps of the tiny model (about 1 s each on 2 cores).")] = 400,
) -> None:
    """Run the pipeline on the built-in corpus: corpus, vocabulary, records, pre-training."""
    console.load_tensorflow()
    from rich.table import Table

    from bert_cli.demo import run_demo

    steps = run_demo(workdir, corpus_mb=corpus_mb, vocab_size=vocab_size, train_steps=train_steps)
    table = Table(title=f"bert demo: {workdir}", title_justify="left")
    table.add_column("step", style="bold")
    table.add_column("output")
    table.add_column("result")
    table.add_column("time", justify="right")
    for step in steps:
        table.add_row(step.name, str(step.output), step.figures, f"{step.seconds:.1f} s")
    console.stdout.print(table)
    console.stdout.print(
        f"Next: [bold]bert tokenize --vocab {workdir / 'vocab.txt'}[/] and type a sentence."
    )
