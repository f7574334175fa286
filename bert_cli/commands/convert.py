"""``bert convert``: original google-research/bert checkpoints <-> model directories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bert_cli import console


def convert_command(
    source: Annotated[Path, typer.Argument(
        metavar="FROM",
        help="An original checkpoint directory (bert_model.ckpt.*, bert_config.json, vocab.txt), a keras-hub "
             "preset directory, or a model directory of ours.")],
    target: Annotated[Path, typer.Argument(
        metavar="TO",
        help="Directory to write: a model directory (from an original checkpoint or preset) or the original "
             "layout (from a model directory).")],
    config: Annotated[Optional[Path], typer.Option(
        help="bert_config.json of an original checkpoint kept elsewhere.")] = None,
    vocab: Annotated[Optional[Path], typer.Option(help="vocab.txt of an original checkpoint kept elsewhere.")] = None,
    lowercase: Annotated[Optional[bool], typer.Option(
        "--lowercase/--cased", show_default=False,
        help="Casing the model was trained with; default: from the checkpoint's name (uncased_..., cased_...) "
             "and its vocabulary. A contradiction is an error.")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Replace TO if it exists (only once the new one is complete).")] = False,
) -> None:
    """Convert an original BERT checkpoint to a model directory, or a model directory to the original layout."""
    from bert_cli.conversion import convert

    result = convert(source, target, config_path=config, vocab_path=vocab, lowercase=lowercase, overwrite=overwrite)
    render(result)


def render(result) -> None:
    from bert_cli.display import results_table

    config = result.config
    rows = [
        ("conversion", result.direction),
        ("from", str(result.source)),
        ("model", f"L={config.num_hidden_layers} H={config.hidden_size} A={config.num_attention_heads} "
                  f"V={config.vocab_size:,}, {result.parameters / 1e6:,.2f} M parameters"),
        ("parts", ", ".join(result.parts)),
        ("variables", f"{result.variables:,}"),
    ]
    if result.lowercase is not None:
        rows.append(("casing", "uncased (lower-cased text)" if result.lowercase else "cased"))
    if result.training_state:
        rows.append(("skipped", f"{result.training_state:,} optimizer slots / step counters"))
    if result.unknown:
        rows.append(("left out", f"{len(result.unknown):,} unknown variable(s) (listed above)"))
    if result.left_out:
        rows.append(("left out", result.left_out))
    rows.append(("time", f"{result.seconds:,.2f} s"))
    rows.append(("written", f"{result.output}: {', '.join(result.files)}"))
    console.stdout.print(results_table("bert convert", rows))
