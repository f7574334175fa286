"""``bert make-data``: masked-LM / next-sentence pre-training TFRecords from text."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
from pathlib import Path
from typing import Iterator, List, Optional

from bert_cli import console
from bert_cli.commands.options import SCALE, argument, as_tuple, command, option
from bert_cli.errors import UserError


class InputFormat(str, enum.Enum):
    lines = "lines"
    paragraphs = "paragraphs"


class Compression(str, enum.Enum):
    none = "none"
    gzip = "gzip"


class Runner(str, enum.Enum):
    local = "local"
    beam = "beam"


def default_workers() -> int:
    """One per CPU: the main process tokenizes on as many threads as there are workers
    (on 2 CPUs, 2 workers measured 3-6 % faster than 1: benchmarks/make_data.py)."""
    return max(1, os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class MakeDataArgs:
    """``bert make-data``'s options (each field declares its option; see bert_cli.commands.options)."""

    inputs: tuple[str, ...] = argument(
        help="Text files or glob patterns (plain or .gz, UTF-8): one sentence per line, a blank line "
        "between documents (or paragraphs, with --input-format paragraphs).", cli_type=List[str], parse=as_tuple)
    vocab: Path = option(help="The vocab.txt to tokenize with (its manifest gives the casing).")
    output: str = option(help="Directory for the part-*.tfrecord shards and manifest.json (with --runner beam also "
                         "gs://... or another Beam file system).", flags=("--output", "-o"))
    max_seq_length: int = option(128, help="Tokens per example, [CLS] and [SEP] included.")
    max_predictions_per_seq: int = option(
        20, help="Most masked positions per example (the original: 20 for 128, 80 for 512).")
    masked_lm_prob: float = option(0.15, help="Share of tokens to predict.")
    short_seq_prob: float = option(0.1, help="Share of documents cut to a shorter random target length.")
    dupe_factor: int = option(10, help="Passes over the corpus, each with new masks.")
    seed: int = option(12345, help="Random seed; same seed and inputs give byte-identical output.")
    whole_word_mask: bool = option(False, help="Mask all pieces of a word together.", flags=("--whole-word-mask",))
    nsp: bool = option(True, help="Sentence pairs with next-sentence labels, or single segments without them "
                       "(RoBERTa style).", flags=("--nsp/--no-nsp",))
    lowercase: bool | None = option(
        None, help="Casing; default: the vocabulary's manifest, else guessed from its tokens.",
        flags=("--lowercase/--cased",))
    input_format: InputFormat = option(
        InputFormat.lines, help="lines: one sentence per line; paragraphs: free text, split into sentences.")
    num_shards: int = option(1, help="Output files; examples are dealt over them round-robin.")
    compression: Compression = option(Compression.none, help="Compress the shards.")
    workers: int | None = option(
        None, help="Processes making examples, and threads tokenizing (0: no processes, all in this one, "
        "one tokenizer thread); with --runner beam, the DirectRunner's worker processes. Default: one per CPU.")
    chunk_size_mb: float = option(
        1.0, help="Text per chunk, the unit of shuffling and of random next sentences (like one shard of the "
        "original's input). Changes the output.")
    overwrite: bool = option(False, help="Replace a different dataset already in --output.")
    runner: Runner = option(
        Runner.local, help="local: this machine's processes; beam: an Apache Beam pipeline (the package's beam "
        "extra), on --workers local processes or, with --beam-option runner=..., a cluster. The same records.",
        panel=SCALE)
    beam_option: tuple[str, ...] = option(
        (), help="A Beam pipeline option KEY=VALUE for --runner beam, repeatable: runner=DataflowRunner, "
        "project=..., region=..., temp_location=gs://...", flags=("--beam-option",), panel=SCALE,
        cli_type=Optional[List[str]], parse=as_tuple, cli_default=None, metavar="KEY=VALUE")


def _make_data(args: MakeDataArgs) -> None:
    """Turn a corpus into masked-LM / next-sentence TFRecords, as the original create_pretraining_data.py.

    Same algorithm, defaults and record format as google-research/bert, streamed: the corpus is
    processed in chunks of about --chunk-size-mb of text, each like one run of the original on one
    shard (random next sentences come from the same chunk). Output is byte-identical for any
    --workers. Writes part-0000i-of-0000N.tfrecord[.gz] and manifest.json (written last).
    --runner beam makes the same records with Apache Beam, locally or on Dataflow, Flink or Spark.
    """
    if args.runner is Runner.local and args.beam_option:
        raise UserError(f"--beam-option {args.beam_option[0]}: only used with --runner beam")
    urls = [path for path in (*args.inputs, args.output) if "://" in path]
    if args.runner is Runner.local and urls:
        raise UserError(f"{urls[0]}: the local runner reads and writes local paths; pass --runner beam for "
                        "gs:// and other Beam file systems")
    console.load_tensorflow()
    from data.pretraining_data import PretrainingDataOptions, create_pretraining_data

    options = PretrainingDataOptions(
        max_seq_length=args.max_seq_length,
        max_predictions_per_seq=args.max_predictions_per_seq,
        masked_lm_prob=args.masked_lm_prob,
        short_seq_prob=args.short_seq_prob,
        dupe_factor=args.dupe_factor,
        seed=args.seed,
        whole_word_mask=args.whole_word_mask,
        next_sentence_prediction=args.nsp,
        input_format=args.input_format.value,
        chunk_size_mb=args.chunk_size_mb,
    )
    workers = default_workers() if args.workers is None else args.workers
    if args.runner is Runner.beam:
        report = beam_library().create_pretraining_data_beam(
            list(args.inputs), args.vocab, args.output, options, lowercase=args.lowercase,
            num_shards=args.num_shards, compression=args.compression.value, workers=workers,
            beam_option=args.beam_option, overwrite=args.overwrite,
            on_start=lambda runner: console.info(f"making data with Apache Beam on {runner}; its log follows"),
        )
        render(report)
        return
    with _progress() as display:
        report = create_pretraining_data(
            list(args.inputs), args.vocab, args.output, options, lowercase=args.lowercase,
            num_shards=args.num_shards, compression=args.compression.value, workers=workers,
            overwrite=args.overwrite, on_total=display.set_total, on_bytes=display.advance,
            on_progress=display.update,
        )
    render(report)


def beam_library():
    """:mod:`data.beam_pipeline`, or a one-line UserError saying how to install Apache Beam."""
    try:
        from data import beam_pipeline
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("apache_beam"):
            raise
        raise UserError("--runner beam: Apache Beam is not installed; pip install -e '.[beam]'") from None
    return beam_pipeline


make_data_command = command(_make_data, MakeDataArgs)


class _Display:
    """The bar over bytes read (with MB/s), and documents/s and instances/s beside it."""

    def __init__(self, progress, task) -> None:
        self._progress = progress
        self._task = task

    def set_total(self, total: int) -> None:
        self._progress.update(self._task, total=total or None)

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def update(self, totals) -> None:
        seconds = max(totals.seconds, 1e-9)
        self._progress.update(
            self._task,
            rates=f"{totals.documents:,} docs ({totals.documents / seconds:,.0f}/s)  "
            f"{totals.instances:,} instances ({totals.instances / seconds:,.0f}/s)",
        )


@contextlib.contextmanager
def _progress() -> Iterator[_Display]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn("making data"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("[cyan]{task.fields[rates]}"),
        TimeElapsedColumn(),
        console=console.stderr,
        transient=True,  # the result table follows; an error stays one line
    )
    with progress:
        yield _Display(progress, progress.add_task("making data", total=None, rates=""))


def render(report) -> None:
    """The result table: what was written and the statistics of the examples."""
    from rich.table import Table

    for warning in report.warnings:
        console.warning(warning)
    options, stats = report.options, report.stats
    instances = max(stats.instances, 1)
    masked = max(stats.masked, 1)
    table = Table(title=f"pre-training data: {report.output}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "input",
        f"{report.files} file(s), {report.input_bytes / 1e6:,.2f} MB, {report.documents:,} documents, "
        f"{report.sentences:,} sentences, {report.tokens:,} tokens, {report.chunks:,} chunk(s)",
    )
    table.add_row(
        "examples",
        f"{stats.instances:,} ({options.dupe_factor} pass{'' if options.dupe_factor == 1 else 'es'}), "
        f"max_seq_length {options.max_seq_length}, "
        f"max_predictions_per_seq {options.max_predictions_per_seq}",
    )
    table.add_row("masked share", f"{stats.masked / max(stats.real_tokens, 1):.2%} of real tokens "
                  f"({stats.masked / instances:.1f} per example{', whole words' if options.whole_word_mask else ''})")
    table.add_row(
        "masked as",
        f"[MASK] {stats.as_mask_token / masked:.1%} · same {stats.kept / masked:.1%} · "
        f"random {stats.random_token / masked:.1%}",
    )
    if options.next_sentence_prediction:
        table.add_row("next sentence", f"random {stats.random_next / instances:.1%} · actual "
                      f"{1 - stats.random_next / instances:.1%}")
    else:
        table.add_row("next sentence", "none (--no-nsp: single segments, no next_sentence_labels)")
    table.add_row("mean real length", f"{stats.real_tokens / instances:.1f} tokens")
    table.add_row("padding share", f"{report.padding_share:.1%}")
    table.add_row("casing", "uncased" if report.lowercase else "cased")
    shards = ", ".join(f"{count:,}" for count in report.shard_counts[:8])
    if len(report.shard_counts) > 8:
        shards += ", ..."
    table.add_row("shards", f"{len(report.shards)} file(s) like {report.shards[0].name}: {shards} examples")
    table.add_row("time", f"{report.seconds:.1f} s ({stats.instances / max(report.seconds, 1e-9):,.0f} examples/s)")
    table.add_row("manifest", str(report.manifest))
    console.stdout.print(table)
