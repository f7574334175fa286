"""``bert inspect records``: decoded examples and statistics of pre-training records."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from bert_cli import console
from bert_cli.errors import UserError

# How each kind of masked position is drawn.
_STYLES = {"mask": "bold white on red", "kept": "bold green", "random": "bold yellow", "b": "cyan"}


def records_command(
    paths: Annotated[
        List[str],
        typer.Argument(help="Record files, glob patterns, or a directory made by bert make-data "
                       "(or the original script's files)."),
    ],
    vocab: Annotated[
        Optional[Path],
        typer.Option(help="vocab.txt to decode ids with; default: the one in the records' manifest. "
                     "Without one, ids are shown."),
    ] = None,
    examples: Annotated[int, typer.Option("--examples", "-n", help="Examples to print.")] = 3,
    sample: Annotated[int, typer.Option(help="Records read (from the start) for the statistics.")] = 2000,
) -> None:
    """Print decoded examples (masks highlighted) and statistics of a sample of records."""
    console.load_tensorflow()
    from data.records import find_record_files, read_examples, record_statistics
    from data.tokenization import Vocabulary

    if examples < 0 or sample < 1:
        raise UserError("--examples must be 0 or more and --sample at least 1")
    files, manifest = find_record_files(paths)
    tokens = None
    if vocab is None and manifest and manifest.get("vocab_file") and Path(manifest["vocab_file"]).is_file():
        vocab = Path(manifest["vocab_file"])
    if vocab is not None:
        vocabulary = Vocabulary.load(vocab, required=("[MASK]",))
        if manifest and manifest.get("vocab_sha256") not in (None, vocabulary.sha256):
            console.warning(f"{vocab}: not the vocabulary these records were made with (the manifest's sha256 differs)")
        tokens = vocabulary.tokens
        mask_id = vocabulary.mask_id
    else:
        mask_id = None
    data = read_examples(files, max(sample, examples))
    if not len(data["file"]):
        raise UserError(f"{files[0] if len(files) == 1 else 'the record files'}: hold no records")
    if tokens is None:
        console.warning("no vocabulary (pass --vocab): showing ids, and [MASK] cannot be told from random tokens")
    for index in range(min(examples, len(data["file"]))):
        _print_example(data, index, files, tokens, mask_id)
    _print_statistics(record_statistics(data, mask_id), len(files), manifest)


def _token(tokens, token_id: int) -> str:
    if tokens is None:
        return str(token_id)
    return tokens[token_id] if 0 <= token_id < len(tokens) else f"<{token_id}?>"


def _print_example(data, index: int, files, tokens, mask_id) -> None:
    from rich.text import Text

    ids = data["input_ids"][index]
    length = int(data["input_mask"][index].sum()) if "input_mask" in data else len(ids)
    segments = data["segment_ids"][index] if "segment_ids" in data else [0] * len(ids)
    originals = {}
    if "masked_lm_positions" in data:
        for position, original, weight in zip(
            data["masked_lm_positions"][index], data["masked_lm_ids"][index], data["masked_lm_weights"][index]
        ):
            if weight > 0:
                originals[int(position)] = int(original)
    label = data["next_sentence_labels"][index, 0] if "next_sentence_labels" in data else None
    title = f"example {index + 1}: {files[data['file'][index]].name} record {data['record'][index]}, {length} tokens"
    if label is not None:
        title += f", next sentence: {'random (label 1)' if label == 1 else 'actual (label 0)'}"
    console.stdout.print(Text(title, style="bold"), soft_wrap=True)
    line = Text()
    for position in range(length):
        token_id = int(ids[position])
        shown = _token(tokens, token_id)
        style = _STYLES["b"] if segments[position] == 1 else ""
        if position in originals:
            original = originals[position]
            if mask_id is not None and token_id == mask_id:
                kind = "mask"
            elif token_id == original:
                kind = "kept"
            else:
                kind = "random"
            shown = f"{shown}→{_token(tokens, original)}"  # what the model sees → what it predicts
            style = _STYLES[kind]
        if position:
            line.append(" ")
        line.append(shown, style=style)
        if segments[position] == 0 and position + 1 < length and segments[position + 1] == 1:
            line.append(" │", style="dim")
    console.stdout.print(line, soft_wrap=True)
    console.stdout.print()


def _print_statistics(stats, file_count: int, manifest) -> None:
    from rich.table import Table
    from rich.text import Text

    legend = Text("legend: ")
    legend.append("[MASK]→original", style=_STYLES["mask"])
    legend.append("  ")
    legend.append("kept→kept", style=_STYLES["kept"])
    legend.append("  ")
    legend.append("random→original", style=_STYLES["random"])
    legend.append("  ")
    legend.append("segment B", style=_STYLES["b"])
    console.stdout.print(legend)

    masked = max(stats.masked, 1)
    table = Table(title=f"records: {stats.examples:,} sampled from {file_count} file(s)", show_header=False,
                  title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("shape", f"max_seq_length {stats.max_seq_length}, "
                  f"max_predictions_per_seq {stats.max_predictions_per_seq}")
    if manifest and isinstance(manifest.get("counts"), dict):
        counts = manifest["counts"]
        table.add_row("dataset (manifest)", f"{counts.get('instances', 0):,} examples from "
                      f"{counts.get('documents', 0):,} documents, "
                      f"vocab {Path(str(manifest.get('vocab_file', '?'))).name}")
    table.add_row("masked share", f"{stats.masked_share:.2%} of real tokens "
                  f"({stats.masked / max(stats.examples, 1):.1f} per example)")
    table.add_row("masked as", f"[MASK] {stats.as_mask_token / masked:.1%} · same {stats.kept / masked:.1%} · "
                  f"random {stats.random_token / masked:.1%}")
    if stats.next_sentence_labels is None:
        table.add_row("next sentence", "no labels (single-segment records)")
    else:
        share = stats.next_sentence_labels / max(stats.examples, 1)
        table.add_row("next sentence", f"random {share:.1%} · actual {1 - share:.1%}")
    table.add_row("mean real length", f"{stats.mean_length:.1f} tokens")
    table.add_row("padding share", f"{stats.padding_share:.1%}")
    widest = max((count for _, _, count in stats.length_histogram), default=0) or 1
    lines = [
        f"{low:>4}-{high:<4} {'█' * round(24 * count / widest):<24} {count:,}"
        for low, high, count in stats.length_histogram
    ]
    table.add_row("real lengths", Text("\n".join(lines)))
    console.stdout.print(table)
