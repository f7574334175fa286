"""``bert tokenize``: text in, WordPiece pieces or ids out, one line per line."""

from __future__ import annotations

import collections
import concurrent.futures
import os
import sys
from pathlib import Path
from typing import Annotated, Callable, Iterable, Iterator, Optional

import typer

from bert_cli import console
from data.errors import DataError

# Batches tokenized ahead of the one being written: TensorFlow works on them
# on other threads while this one writes, without holding the whole input.
_LOOKAHEAD = 2


def tokenize_command(
    vocab: Annotated[
        Path,
        typer.Option(
            "--vocab",
            help="The vocab.txt to use (one token per line), e.g. from `bert vocab`.",
            show_default=False,
        ),
    ],
    input: Annotated[
        Optional[Path],
        typer.Option(
            "--input",
            help="UTF-8 text file (plain or .gz), one text per line. Default: standard input.",
            show_default=False,
        ),
    ] = None,
    ids: Annotated[bool, typer.Option("--ids", help="Print token ids instead of word pieces.")] = False,
    lowercase: Annotated[
        Optional[bool],
        typer.Option(
            "--lowercase/--cased",
            help="Lower-case and strip accents (uncased model), or keep case. "
            "Default: what the vocabulary's manifest says, else cased only if the vocabulary has upper-case tokens.",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Lines per tokenizer call.")] = 1024,
) -> None:
    """Split text into WordPiece tokens exactly as the original BERT tokenizer does.

    Prints one line per input line: the pieces (or ids with --ids) separated by spaces.
    """
    if not vocab.is_file():  # before TensorFlow loads, so the mistake is reported at once
        raise DataError(
            f"--vocab {vocab}: no such vocabulary file" if not vocab.exists() else f"--vocab {vocab}: not a file"
        )
    console.load_tensorflow()
    from data.textio import iter_lines
    from data.tokenization import Tokenizer, Vocabulary, resolve_lowercase

    vocabulary = Vocabulary.load(vocab)
    if input is not None:
        if input.is_dir():
            raise DataError(f"--input {input}: is a directory; pass a text file")
        if not input.exists():
            raise DataError(f"--input {input}: no such file")
        lines = iter_lines(input)
    else:
        if sys.stdin.isatty():
            console.info("reading text from the terminal; end with Ctrl-D, or pass --input FILE")
        lines = _stdin_lines()
    tokenizer = Tokenizer(vocabulary, lowercase=resolve_lowercase(vocabulary, lowercase))
    render = _render_ids(tokenizer) if ids else _render_pieces(tokenizer)
    _write(_rendered(lines, render, batch_size))


def _stdin_lines() -> Iterator[str]:
    """Lines of standard input, decoded as strict UTF-8 with errors naming <stdin>:LINE."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text-only stream (some embedding environments)
        for line in sys.stdin:
            yield line.rstrip("\r\n")
        return
    for number, raw in enumerate(stream, start=1):
        if b"\x00" in raw:
            raise DataError(f"<stdin>:{number}: contains NUL bytes; this looks like binary data, not text")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(
                f"<stdin>:{number}: not valid UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1}); "
                "convert the input to UTF-8, e.g. with iconv"
            ) from None
        yield text.rstrip("\r\n")


def _batches(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _render_ids(tokenizer) -> Callable[[list[str]], bytes]:
    import tensorflow as tf

    def render(batch: list[str]) -> bytes:
        ragged = tokenizer.tokenize(tf.constant(batch, dtype=tf.string))  # [B, (pieces)]
        values = [str(value).encode() for value in ragged.flat_values.numpy().tolist()]
        return _join_rows(values, ragged.row_splits.numpy().tolist())

    return render


def _render_pieces(tokenizer) -> Callable[[list[str]], bytes]:
    import tensorflow as tf

    def render(batch: list[str]) -> bytes:
        ragged = tokenizer.pieces(tf.constant(batch, dtype=tf.string))  # [B, (pieces)]
        return _join_rows(ragged.flat_values.numpy().tolist(), ragged.row_splits.numpy().tolist())

    return render


def _join_rows(values: list[bytes], splits: list[int]) -> bytes:
    rows = [b" ".join(values[start:end]) for start, end in zip(splits[:-1], splits[1:])]
    return b"\n".join(rows) + b"\n"


def _rendered(lines: Iterable[str], render: Callable[[list[str]], bytes], batch_size: int) -> Iterator[bytes]:
    """Output chunks in input order, rendering a few batches ahead on worker threads."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=_LOOKAHEAD) as pool:
        pending: collections.deque = collections.deque()
        for batch in _batches(lines, batch_size):
            pending.append(pool.submit(render, batch))
            if len(pending) > _LOOKAHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _write(chunks: Iterable[bytes]) -> None:
    """Writes UTF-8 bytes to stdout; a closed pipe (``| head``) ends quietly."""
    sys.stdout.flush()
    stream = getattr(sys.stdout, "buffer", None)
    try:
        for chunk in chunks:
            if stream is not None:
                stream.write(chunk)
            else:
                sys.stdout.write(chunk.decode("utf-8"))
        (stream or sys.stdout).flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(0) from None
