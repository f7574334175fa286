"""``bert convert``: original google-research/bert (and ELECTRA) checkpoints and Hugging Face directories <->
model directories."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from bert_cli import console


class Format(str, enum.Enum):
    original = "original"
    huggingface = "huggingface"


def convert_command(
    source: Annotated[Path, typer.Argument(
        metavar="FROM",
        help="An original checkpoint directory (bert_model.ckpt.*, bert_config.json, vocab.txt), a Hugging Face "
             "directory (config.json, model.safetensors, vocab.txt), a keras-hub preset directory, or a model "
             "directory of ours.")],
    target: Annotated[Path, typer.Argument(
        metavar="TO",
        help="Directory to write: a model directory (from an original checkpoint, Hugging Face directory or "
             "preset), or from a model directory the layout --format names.")],
    config: Annotated[Optional[Path], typer.Option(
        help="bert_config.json of an original checkpoint kept elsewhere.")] = None,
    vocab: Annotated[Optional[Path], typer.Option(help="vocab.txt of an original checkpoint kept elsewhere.")] = None,
    lowercase: Annotated[Optional[bool], typer.Option(
        "--lowercase/--cased", show_default=False,
        help="Casing the model was trained with; default: a Hugging Face directory's tokenizer_config.json, else "
             "the checkpoint's name (uncased_..., cased_...) and its vocabulary. A contradiction is an error.")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Replace TO if it exists (only once the new one is complete).")] = False,
    to_format: Annotated[Format, typer.Option(
        "--format",
        help="What a model directory FROM becomes: the original TF1 checkpoint layout, or a Hugging Face "
             "Transformers directory (BertModel / BertForPreTraining / BertFor... of a fine-tuned task; "
             "ElectraForPreTraining of an ELECTRA model).")] = Format.original,
    generator: Annotated[Optional[Path], typer.Option(
        help="ELECTRA: the generator's Hugging Face directory (ElectraForMaskedLM), read beside a Hugging Face "
             "discriminator FROM (the model directory then continues ELECTRA pre-training), or written beside TO "
             "from an ELECTRA model directory with --format huggingface.")] = None,
) -> None:
    """Convert an original BERT checkpoint or a Hugging Face directory to a model directory, or back."""
    from bert_cli.conversion import convert

    result = convert(source, target, config_path=config, vocab_path=vocab, lowercase=lowercase, overwrite=overwrite,
                     to_format=to_format.value, generator_path=generator)
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
    if result.upcast:
        rows.append(("upcast", f"{result.upcast} tensors read as float32"))
    rows.append(("time", f"{result.seconds:,.2f} s"))
    rows.append(("written", f"{result.output}: {', '.join(result.files)}"))
    console.stdout.print(results_table("bert convert", rows))
