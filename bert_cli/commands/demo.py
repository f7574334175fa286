"""``bert demo``: the whole pipeline on the built-in corpus, with one summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bert_cli import console
from bert_cli.demo import DEFAULT_MINUTES


def demo_command(
    workdir: Annotated[Path, typer.Option(help="Directory for everything the demo makes.")] = Path("demo_output"),
    minutes: Annotated[float, typer.Option(
        help="Rough time budget on 2 CPU cores; sets pre-training steps and fine-tuning epochs.")] = DEFAULT_MINUTES,
    corpus_mb: Annotated[float, typer.Option(help="Size of the built-in corpus to build, in MB.")] = 1.0,
    vocab_size: Annotated[int, typer.Option(help="Vocabulary size to learn.")] = 5000,
    train_steps: Annotated[Optional[int], typer.Option(
        help="Pre-training steps of the tiny model; default: from --minutes.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generated tasks and of every training run.")] = 12345,
) -> None:
    """Run the pipeline on the built-in corpus: vocabulary, records, pre-training, fine-tuning, export, predict.

    The classifier is fine-tuned twice with the same options, from the
    pre-trained model and from random init, the two side by side in the summary.
    """
    console.load_tensorflow()
    from bert_cli.demo import SUMMARY_FILE, curve_files, run_demo

    steps = run_demo(workdir, minutes=minutes, corpus_mb=corpus_mb, vocab_size=vocab_size,
                     train_steps=train_steps, seed=seed)
    console.stdout.print(summary_table(steps, workdir))
    console.stdout.print(f"Summary as JSON: {workdir / SUMMARY_FILE}")
    curves = curve_files(steps)
    if curves:
        console.stdout.print("Training curves:")
        for path in curves:
            console.stdout.print(f"  {path}")
    console.stdout.print(
        f"Next: [bold]bert tokenize --vocab {workdir / 'vocab.txt'}[/] and type a sentence."
    )


def summary_table(steps: list, workdir: Path):
    """The demo's summary: one row per finished step (output, key figures, time), then the total."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"bert demo: {workdir}", title_justify="left")
    table.add_column("step", style="bold")
    table.add_column("output")
    table.add_column("result")
    table.add_column("time", justify="right")
    for step in steps:
        table.add_row(step.name, str(step.output) if step.output else "", escape(step.figures),
                      f"{step.seconds:.1f} s")
    table.add_section()
    table.add_row("total", str(workdir), "", f"{sum(step.seconds for step in steps) / 60:.1f} min")
    return table
