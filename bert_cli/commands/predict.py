"""``bert predict``: a fine-tuned model directory or an export, on texts (thin wrapper around bert_cli.predicting)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from bert_cli import console
from bert_cli.errors import UserError


def predict_command(
    target: Annotated[Path, typer.Argument(
        metavar="TARGET", help="A fine-tuned model directory (bert finetune) or an export (bert export).")],
    texts: Annotated[Optional[List[str]], typer.Argument(
        metavar="TEXT", help="Texts to classify or tag; none: read --input or standard input.",
        show_default=False)] = None,
    pair: Annotated[Optional[List[str]], typer.Option(
        "--pair", help="Second text of a pair model, once per TEXT.", show_default=False)] = None,
    question: Annotated[Optional[List[str]], typer.Option(
        "--question", help="SQuAD models: a question (with --context; repeatable).", show_default=False)] = None,
    context: Annotated[Optional[List[str]], typer.Option(
        "--context", help="SQuAD models: the passage holding the answer, once per --question.",
        show_default=False)] = None,
    input: Annotated[Optional[Path], typer.Option(
        "--input", help="File of examples: .tsv/.csv (header optional), .jsonl, SQuAD .json, or text lines.",
        show_default=False)] = None,
    jsonl: Annotated[bool, typer.Option(
        "--jsonl", help="Write JSON lines even on a terminal (the default when the output is piped).")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Examples per model call.")] = 32,
) -> None:
    """Predict with a fine-tuned model: labels, tags or answers, as a table on a terminal or JSON lines."""
    from bert_cli import predicting

    texts, pair, question, context = texts or [], pair or [], question or [], context or []
    given = bool(texts or pair or question or context)
    if given and input is not None:
        raise UserError("give examples as arguments or with --input FILE, not both")
    if input is not None and not input.exists():  # before TensorFlow loads, so the mistake is reported at once
        raise UserError(f"--input {input}: no such file")
    loaded = predicting.open_target(target)
    fields = loaded.fields
    columns = {"text": loaded.description.get("text_column"), "text_pair": loaded.description.get("text_pair_column")}
    tagging = loaded.module.WORD_LIST_INPUT
    if given:
        examples = predicting.from_arguments(fields, texts, pair, question, context)
    elif input is not None:
        examples = predicting.read_file(input, fields, columns, tagging)
    else:
        if sys.stdin.isatty():
            console.info("reading examples from the terminal, one per line; end with Ctrl-D (or pass TEXT or --input)")
        from bert_cli.commands.tokenize import _stdin_lines

        examples = predicting.read_stream(_stdin_lines(), fields, columns, tagging)
    if not examples:
        raise UserError("no examples to predict: give TEXT arguments, --input FILE or lines on standard input")
    table = not jsonl and _is_terminal()
    if input is not None:
        with console.count_progress("predicting", len(examples), "examples") as advance:
            results = predicting.predict(loaded, examples, batch_size, on_batch=advance)
            _emit(results, loaded, table)
    else:
        _emit(predicting.predict(loaded, examples, batch_size), loaded, table)


def _is_terminal() -> bool:
    return sys.stdout.isatty()


def _emit(results, target, table: bool) -> None:
    if table:
        console.stdout.print(prediction_table(target, list(results)))
        return
    try:
        for record in results:
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(0) from None


def prediction_table(target, results: list[dict]):
    """A rich table of results: one row per example, the columns the task's module chooses."""
    from rich.table import Table

    table = Table(title=f"bert predict: {target.path} ({target.form}, {target.task})", title_justify="left")
    table.add_column("#", justify="right", style="dim")
    target.module.prediction_table(table, results, target.description)
    return table
