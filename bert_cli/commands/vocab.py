"""``bert vocab``: learn a WordPiece vocabulary from text files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List

import typer

from bert_cli import console


def vocab_command(
    inputs: Annotated[
        List[str],
        typer.Argument(help="Text files or glob patterns (plain or .gz, UTF-8; one sentence or paragraph per line)."),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="The vocab.txt to write; its manifest goes beside it as .json."),
    ] = Path("vocab.txt"),
    vocab_size: Annotated[
        int,
        typer.Option(help="Exact number of entries, special tokens and unused slots included."),
    ] = 30522,
    lowercase: Annotated[
        bool,
        typer.Option("--lowercase/--cased", help="Lower-case and strip accents first (uncased model), or keep case."),
    ] = True,
    min_frequency: Annotated[int, typer.Option(help="Stop merging pairs seen fewer times than this.")] = 1,
    unused: Annotated[
        int,
        typer.Option(help="[unusedK] slots to reserve for later domain tokens "
                     "(the original has 994; the first 99 sit before [UNK])."),
    ] = 99,
    alphabet_limit: Annotated[
        int,
        typer.Option(help="Keep at most this many distinct characters (the most frequent); others become [UNK]."),
    ] = 1000,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing vocabulary at --output.")] = False,
) -> None:
    """Learn a WordPiece vocabulary of exactly --vocab-size entries."""
    console.load_tensorflow()
    from data.vocab import build_vocabulary

    if output.exists() and not overwrite:
        from bert_cli.errors import UserError

        raise UserError(f"--output {output}: already exists; pass --overwrite to replace it")

    with console.byte_progress("reading") as bar:
        report = build_vocabulary(
            inputs,
            output,
            vocab_size=vocab_size,
            lowercase=lowercase,
            min_frequency=min_frequency,
            unused=unused,
            alphabet_limit=alphabet_limit,
            on_total=bar.set_total,
            on_bytes=bar.advance,
            on_stage=bar.describe,
        )
    render(report)


def render(report) -> None:
    """The result table: what was written and how well it covers held-out text."""
    from rich.table import Table

    if report.filled_unused:
        console.warning(
            f"the corpus supports only {report.learned_pieces:,} pieces; the remaining "
            f"{report.filled_unused:,} entries are extra [unused] slots (more text gives a fuller vocabulary)"
        )
    table = Table(title=f"vocabulary: {report.output}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("entries", f"{report.vocab_size:,} ({report.learned_pieces:,} learned, "
                  f"alphabet {report.alphabet_size:,})")
    table.add_row("casing", "uncased (lower-cased, accents stripped)" if report.lowercase else "cased")
    table.add_row("corpus", f"{report.files} file(s), {report.corpus_bytes / 1e6:,.2f} MB, "
                  f"{report.training_lines:,} lines, {report.training_words:,} words "
                  f"({report.distinct_words:,} distinct)")
    table.add_row("held-out sample", f"{report.holdout_lines:,} lines (1 in 100), {report.holdout_words:,} words")
    table.add_row("words → [UNK]", f"{report.unk_word_share:.3%}")
    table.add_row("pieces per word", f"{report.pieces_per_word:.3f}")
    table.add_row("longest pieces", " ".join(report.longest_pieces))
    table.add_row("time", f"{report.seconds:.1f} s")
    table.add_row("manifest", str(report.manifest))
    console.stdout.print(table)
