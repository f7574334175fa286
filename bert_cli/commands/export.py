"""``bert export``: a model directory -> a SavedModel that serves raw text (thin wrapper around bert_cli.exporting)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bert_cli import console
from bert_cli.errors import UserError


def export_command(
    model_dir: Annotated[Path, typer.Argument(
        metavar="MODEL_DIR", help="A model directory: fine-tuned (bert finetune) for a serving_default signature, "
                                  "or pre-trained / converted for a feature extractor.")],
    output_dir: Annotated[Path, typer.Argument(
        metavar="OUTPUT_DIR", help="The SavedModel directory to write (for TensorFlow Serving: MODELS/NAME/1).")],
    max_seq_length: Annotated[Optional[int], typer.Option(
        help="Longest input in word pieces, [CLS]/[SEP] included; default: the model's (task.json), else 128.",
        show_default=False)] = None,
    batch_polymorphic: Annotated[Optional[bool], typer.Option(
        "--batch-polymorphic", help="Accept any batch size (the default).", show_default=False)] = None,
    fixed_batch_size: Annotated[Optional[int], typer.Option(
        help="Fix the batch dimension of every signature to N instead (for runtimes that need static shapes).",
        show_default=False)] = None,
    all_layers: Annotated[bool, typer.Option(
        "--all-layers", help="encode also returns every layer's output (encoder_outputs [B, layers, T, H]).")] = False,
    overwrite: Annotated[bool, typer.Option(
        help="Replace OUTPUT_DIR if it exists (only once the new export is complete).")] = False,
) -> None:
    """Export a SavedModel with tokenization in the graph: serves raw strings with only tensorflow + tensorflow-text."""
    from bert_cli.exporting import export_model

    if batch_polymorphic and fixed_batch_size is not None:
        raise UserError("give --batch-polymorphic or --fixed-batch-size N, not both")
    result = export_model(model_dir, output_dir, max_seq_length=max_seq_length, batch_size=fixed_batch_size,
                          all_layers=all_layers, overwrite=overwrite)
    render(result)


def _spec(spec: dict) -> str:
    shape = "?" if spec["shape"] is None else "[" + ", ".join("B" if i == 0 and d is None else "?" if d is None
                                                             else str(d) for i, d in enumerate(spec["shape"])) + "]"
    return f"{spec['dtype']}{shape}"


def render(result) -> None:
    from bert_cli.display import results_table

    for note in result.notes:
        console.warning(note)
    rows = [("task", result.task), ("from", str(result.source))]
    for name, signature in result.signatures.items():
        inputs = ", ".join(f"{key} {_spec(value)}" for key, value in signature["inputs"].items())
        outputs = ", ".join(f"{key} {_spec(value)}" for key, value in signature["outputs"].items())
        rows.append((f"signature {name}", f"{inputs} → {outputs}"))
    rows.append(("inputs", f"max_seq_length {result.max_seq_length}, "
                           + ("any batch size" if result.batch_size is None else f"batch size {result.batch_size}")
                           + f", {'uncased' if result.lowercase else 'cased'}"))
    rows.append(("time", f"{result.seconds:,.1f} s"))
    rows.append(("written", f"{result.output} (SavedModel, assets/vocab.txt, assets/bert_config.json, "
                            "bert_export.json)"))
    console.stdout.print(results_table("bert export", rows))
