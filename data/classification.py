"""Sentence and sentence-pair classification data: reading TSV / CSV / JSONL files and featurising them.

Reading is pure Python, so a bad file is reported before any TensorFlow work
starts; featurising takes the tokenizer as a function (``texts -> token ids``)
so this module needs no model and no TensorFlow.

File formats (chosen by the file name, or ``file_format``):

* **TSV** (``.tsv``, ``.txt``), GLUE style: one row per line, fields separated
  by tabs. A field that starts with ``"`` and has its closing ``"`` before the
  next tab is a quoted field (``""`` inside it is one ``"``), so files written
  by spreadsheets and by pandas read correctly; a ``"`` anywhere else is an
  ordinary character, as in the GLUE files. Quoted fields cannot span lines.
* **CSV** (``.csv``): RFC 4180 (quoted fields may hold commas and newlines).
* **JSONL** (``.jsonl``, ``.ndjson``, ``.json``): one JSON object per line;
  columns are its keys.

Plain or gzip-compressed; UTF-8 only. Blank lines are skipped.

Columns are named (header row, JSON keys) or given as 0-based indices (TSV and
CSV). The header row is recognised when a column was asked for by name, or
when the first row holds one of the usual header names (``sentence``,
``sentence1``, ``text``, ``label``); ``header=True/False`` decides explicitly.
Without names, ``sentence`` (else ``text``, else ``sentence1`` with
``sentence2`` as its pair) and ``label`` are used when the header has them;
files without a header default to text in column 0 and the label in the last.

Pairs are packed as the original ``run_classifier.py`` does:
``[CLS] A [SEP] B [SEP]`` with segment ids 0 for ``[CLS] A [SEP]`` and 1 for
``B [SEP]``; when too long, tokens are removed one at a time from the end of
the longer segment (B when they are equally long).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from data.errors import DataError
from data.textio import check_json_text, existing_file, iter_lines

FORMATS = ("tsv", "csv", "jsonl")
# Header names recognised without being asked for.
_TEXT_DEFAULTS = ("sentence", "text", "sentence1")
_PAIR_OF = {"sentence1": "sentence2"}
_LABEL_DEFAULT = "label"
_HEADER_HINTS = frozenset(_TEXT_DEFAULTS + (_LABEL_DEFAULT,))
# Sequence lengths are rounded up to a multiple of this (tensor-core and XLA friendly).
_LENGTH_MULTIPLE = 8


@dataclasses.dataclass(frozen=True)
class Example:
    """One row: its text(s), its label as written (None when the file has no label), its line."""

    text: str
    text_pair: str | None
    label: str | None
    line: int


@dataclasses.dataclass(frozen=True)
class Columns:
    """Which columns hold what, as resolved for a file (names, or indices as strings)."""

    text: str
    text_pair: str | None
    label: str | None


@dataclasses.dataclass
class Dataset:
    """The examples of one file and the columns they came from."""

    path: Path
    examples: list[Example]
    columns: Columns
    #: What was chosen by position alone, for the command to say (a headerless file of many fields).
    guessed: str | None = None

    @property
    def has_labels(self) -> bool:
        return all(example.label is not None for example in self.examples)


def detect_format(path: str | os.PathLike, file_format: str | None = None) -> str:
    """``tsv``, ``csv`` or ``jsonl`` from ``file_format`` or the file name (``.gz`` ignored)."""
    if file_format is not None:
        if file_format not in FORMATS:
            raise DataError(f"--format {file_format!r} is not known; use one of {', '.join(FORMATS)}")
        return file_format
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = Path(name).suffix
    if suffix in (".tsv", ".txt", ".tab"):
        return "tsv"
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise DataError(f"{path}: cannot tell the format from the name; pass --format tsv, csv or jsonl")


def split_tsv_line(line: str) -> list[str]:
    """The fields of one TSV line; a quoted field such as ``"a<TAB>b"`` or ``"say ""hi"" "`` is unquoted."""
    fields: list[str] = []
    start, end = 0, len(line)
    while True:
        if start < end and line[start] == '"':
            quoted, position = _quoted_field(line, start)
            if quoted is not None:
                fields.append(quoted)
                if position == end:
                    return fields
                start = position + 1  # past the tab
                continue
        tab = line.find("\t", start)
        if tab < 0:
            fields.append(line[start:])
            return fields
        fields.append(line[start:tab])
        start = tab + 1


def _quoted_field(line: str, start: int) -> tuple[str | None, int]:
    """Reads a quoted field at ``start``; (None, start) when the quote does not close before a tab or the end."""
    pieces = []
    position = start + 1
    while position < len(line):
        char = line[position]
        if char == '"':
            if line.startswith('""', position):
                pieces.append('"')
                position += 2
                continue
            after = position + 1
            if after == len(line) or line[after] == "\t":
                return "".join(pieces), after
            return None, start  # a stray quote: the field is not quoted after all
        pieces.append(char)
        position += 1
    return None, start


def _read_rows(path: Path, file_format: str) -> list[tuple[int, list[str] | dict]]:
    """(line number, fields or JSON object) of every non-blank row."""
    rows: list[tuple[int, list[str] | dict]] = []
    if file_format == "csv":
        lines = list(iter_lines(path))
        reader = csv.reader(io.StringIO("\n".join(lines)))
        start = 1
        try:
            for fields in reader:
                if fields and any(field.strip() for field in fields):
                    rows.append((start, fields))
                start = reader.line_num + 1
        except csv.Error as error:
            raise DataError(f"{path}:{start}: not valid CSV ({error})") from None
    else:
        for number, line in enumerate(iter_lines(path), start=1):
            if not line.strip():
                continue
            if file_format == "tsv":
                rows.append((number, split_tsv_line(line)))
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"{path}:{number}: invalid JSON ({error.msg}); each line must be one JSON object"
                ) from None
            if not isinstance(value, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(value).__name__}")
            check_json_text(value, f"{path}:{number}")
            rows.append((number, value))
    if rows and isinstance(rows[0][1], list) and rows[0][1] and rows[0][1][0].startswith("\ufeff"):
        rows[0][1][0] = rows[0][1][0][1:]  # a UTF-8 byte order mark
    return rows


def _is_index(column: str | None) -> bool:
    return column is not None and column.lstrip("-").isdigit()


def read_dataset(
    path: str | os.PathLike,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    file_format: str | None = None,
    header: bool | None = None,
    require_labels: bool = True,
) -> Dataset:
    """Reads a classification file.

    Args:
        path: The file (plain or .gz).
        text_column / text_pair_column / label_column: Column names, or 0-based
            indices written as strings ("0"); None picks the defaults described
            in the module docstring. ``text_pair_column`` None means single
            sentences unless the default pair ``sentence1``/``sentence2`` applies.
        file_format: ``tsv``, ``csv`` or ``jsonl``; None decides from the name.
        header: Whether a TSV/CSV file starts with a header row; None detects it.
        require_labels: False for files to predict: a missing label column is allowed.

    Raises DataError naming the file (and line) for an empty file, unknown
    columns (listing those that exist), rows with the wrong number of fields,
    and missing labels.
    """
    path = existing_file(path, "pass a TSV, CSV or JSONL file")
    file_format = detect_format(path, file_format)
    rows = _read_rows(path, file_format)
    if not rows:
        raise DataError(f"{path}: the file is empty; it needs one example per line")
    if file_format == "jsonl":
        return _from_objects(path, rows, text_column, text_pair_column, label_column, require_labels)
    return _from_fields(path, rows, text_column, text_pair_column, label_column, header, require_labels)


def _from_fields(path, rows, text_column, text_pair_column, label_column, header, require_labels) -> Dataset:
    """A dataset from TSV or CSV rows: the header (given or detected), the columns, then one example a row."""
    asked = (text_column, text_pair_column, label_column)
    first_line, first = rows[0]
    if header is None:
        header = any(c is not None and not _is_index(c) for c in asked) or bool(_HEADER_HINTS & set(first))
    names = [name.strip() for name in first] if header else None
    body = rows[1:] if header else rows
    if not body:
        raise DataError(f"{path}: holds only a header row; it needs examples below it")
    width = len(first)
    text_column, text_pair_column, label_column = _default_columns(
        names, width, text_column, text_pair_column, label_column
    )
    text_index = _column_index(path, names, width, text_column, "--text-column", True)
    pair_index = _column_index(path, names, width, text_pair_column, "--text-pair-column", True)
    label_index = _column_index(path, names, width, label_column, "--label-column", require_labels)
    if require_labels and label_index is None:
        raise DataError(f"{path}: rows have one field, so there is no label column; "
                        "put the label in a second, tab-separated column")
    label_name = _shown(label_column, names) if label_index is not None else None
    what = "the header" if header else "the first row"
    examples = _field_examples(path, body, width, f"{what} (line {first_line})", (text_index, pair_index, label_index),
                               label_name, require_labels)
    columns = Columns(
        text=_shown(text_column, names),
        text_pair=_shown(text_pair_column, names) if pair_index is not None else None,
        label=label_name,
    )
    return Dataset(path, examples, columns, _guess_note(path, names, width, asked, text_index, label_index))


def _guess_note(path, names, width: int, asked, text_index: int, label_index: int | None) -> str | None:
    """A note when a headerless file of three or more fields had its text or label column taken by position."""
    text_asked, _, label_asked = asked
    if names is not None or width < 3 or (text_asked is not None and label_asked is not None):
        return None
    chosen = [f"text from column {text_index}"] if text_asked is None else []
    if label_asked is None and label_index is not None:
        chosen.append(f"labels from column {label_index} (the last)")
    return (f"{path}: no header row and {width} fields a row: {' and '.join(chosen)}; pass --text-column / "
            "--label-column (0-based) to choose others")


def _column_index(path, names: list[str] | None, width: int, column: str | None, option: str,
                  required: bool) -> int | None:
    """The field index of ``column`` (a header name or a 0-based index, negative from the end).

    None when no column is asked for, or when an optional one is not there;
    DataError naming ``option`` when a required one is not there.
    """
    if column is None:
        return None
    if _is_index(column):
        index = int(column)
        if not -width <= index < width:
            if not required:
                return None
            raise DataError(f"{path}: {option} {column} is out of range; rows have {width} fields (0-{width - 1})")
        return index % width
    if names is None:
        raise DataError(f"{path}: {option} {column!r} names a column but the file has no header row; "
                        "give a 0-based column number or add a header")
    if column not in names:
        if not required:
            return None
        raise DataError(f"{path}: no column {column!r} for {option}; the columns are: {', '.join(names)}")
    return names.index(column)


def _field_examples(path, body, width: int, first: str, indices: tuple[int, int | None, int | None],
                    label_name: str | None, require_labels: bool) -> list[Example]:
    """One example per row of fields; DataError for a row of another width than ``first`` or without a label.

    ``indices`` are the text, text pair and label fields (None: not read);
    ``label_name`` is how the label column is named in messages.
    """
    text_index, pair_index, label_index = indices
    examples = []
    for line, fields in body:
        if len(fields) != width:
            raise DataError(
                f"{path}:{line}: {len(fields)} fields, expected {width} like {first}; "
                "check for a stray tab or comma, or quote the field"
            )
        label = None
        if label_index is not None:
            label = fields[label_index].strip()
            if not label:
                if require_labels:
                    raise DataError(f"{path}:{line}: no label in column {label_name!r}; every example needs one")
                label = None
        examples.append(Example(
            text=fields[text_index],
            text_pair=fields[pair_index] if pair_index is not None else None,
            label=label,
            line=line,
        ))
    return examples


def _shown(column: str | None, names: list[str] | None) -> str | None:
    if column is None:
        return None
    if _is_index(column) and names is not None:
        return names[int(column)]
    return column


def _default_columns(names, width, text, pair, label):
    """Fills in the columns not given, from the header names or by position."""
    if names is not None:
        if text is None:
            text = next((n for n in _TEXT_DEFAULTS if n in names), None)
            if text is None:
                raise DataError(
                    f"no --text-column given and none of {', '.join(_TEXT_DEFAULTS)} is a column; "
                    f"the columns are: {', '.join(names)}"
                )
            if pair is None and _PAIR_OF.get(text) in names:
                pair = _PAIR_OF[text]
        if label is None:
            label = _LABEL_DEFAULT
        return text, pair, label
    if text is None:
        text = "0"
    if label is None and width > 1:
        label = str(width - 1)
    return text, pair, label


def _json_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _from_objects(path, rows, text_column, text_pair_column, label_column, require_labels) -> Dataset:
    for option, column in (("--text-column", text_column), ("--text-pair-column", text_pair_column),
                           ("--label-column", label_column)):
        if _is_index(column):
            raise DataError(f"{path}: {option} {column}: JSONL columns are keys, not numbers")
    keys = list(rows[0][1])
    text_column, text_pair_column, label_column = _default_columns(
        keys, len(keys), text_column, text_pair_column, label_column
    )
    if not require_labels and all(label_column not in obj for _, obj in rows):
        label_column = None
    examples = []
    for line, obj in rows:
        values = {}
        for option, column in (("--text-column", text_column), ("--text-pair-column", text_pair_column),
                               ("--label-column", label_column)):
            if column is None:
                continue
            if column not in obj:
                if option == "--label-column" and not require_labels:
                    values[option] = None
                    continue
                raise DataError(f"{path}:{line}: no key {column!r} for {option}; this row has: {', '.join(obj)}")
            values[option] = obj[column]
        label = values.get("--label-column")
        label = None if label is None else _json_text(label).strip()
        if require_labels and not label:
            raise DataError(f"{path}:{line}: no label in {label_column!r}; every example needs one")
        pair = values.get("--text-pair-column")
        examples.append(Example(
            text=_json_text(values["--text-column"]),
            text_pair=None if text_pair_column is None else _json_text(pair),
            label=label or None,
            line=line,
        ))
    return Dataset(path, examples, Columns(text_column, text_pair_column, label_column))


# ----------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------


def label_set(dataset: Dataset, labels: Sequence[str] | None = None) -> list[str]:
    """The classes in id order: ``labels`` when given (each example's label must be one), else
    the training file's labels sorted (numerically when they are all integers).

    A file with one class is an error: it usually means the wrong ``--label-column``.
    """
    if labels is not None:
        labels = [label.strip() for label in labels]
        if len(set(labels)) != len(labels) or len(labels) < 2 or not all(labels):
            raise DataError(f"--labels {','.join(labels)}: give two or more distinct, non-empty labels")
        check_labels(dataset, labels, "--labels")
        return list(labels)
    found = {example.label for example in dataset.examples}
    found.discard(None)
    if len(found) < 2:
        column = dataset.columns.label
        only = ", ".join(repr(label) for label in found) or "none"
        raise DataError(
            f"{dataset.path}: the label column {column!r} holds one class ({only}); a classifier needs two or more "
            "(wrong --label-column? use --regression for numbers)"
        )
    if all(label.lstrip("-").isdigit() for label in found):
        return sorted(found, key=int)
    return sorted(found)


def check_labels(dataset: Dataset, labels: Sequence[str], source: str = "the training file") -> None:
    """Every labelled example's label must be one of ``labels`` (names the first line that is not)."""
    known = set(labels)
    for example in dataset.examples:
        if example.label is not None and example.label not in known:
            shown = ", ".join(labels[:20]) + (", ..." if len(labels) > 20 else "")
            raise DataError(
                f"{dataset.path}:{example.line}: label {example.label!r} does not occur in {source} "
                f"(labels: {shown})"
            )


def regression_targets(dataset: Dataset) -> np.ndarray:
    """The labels as float32 numbers (NaN for unlabelled examples); an error names the first that is not a number."""
    values = np.full(len(dataset.examples), np.nan, dtype=np.float32)
    for index, example in enumerate(dataset.examples):
        if example.label is None:
            continue
        try:
            value = float(example.label)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DataError(
                f"{dataset.path}:{example.line}: label {example.label!r} is not a finite number (--regression)"
            )
        values[index] = value
    return values


# ----------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------


def truncate_pair(tokens_a: list, tokens_b: list, max_length: int) -> tuple[list, list]:
    """Shortens two segments to at most ``max_length`` tokens together, longest first.

    One token at a time comes off the end of the longer segment (B on a tie),
    as the original does: a short segment keeps all its tokens, and the cut
    falls where there is most text to spare.
    """
    a_length, b_length = len(tokens_a), len(tokens_b)
    while a_length + b_length > max_length:
        if a_length > b_length:
            a_length -= 1
        else:
            b_length -= 1
    return tokens_a[:a_length], tokens_b[:b_length]


def pack(tokens_a: list[int], tokens_b: list[int] | None, max_seq_length: int, cls_id: int,
         sep_id: int) -> tuple[list[int], list[int], bool]:
    """``[CLS] A [SEP] (B [SEP])`` ids and segment ids, truncated to ``max_seq_length``; and whether it was."""
    if tokens_b is None:
        kept = tokens_a[: max_seq_length - 2]
        truncated = len(kept) < len(tokens_a)
        return [cls_id, *kept, sep_id], [0] * (len(kept) + 2), truncated
    a, b = truncate_pair(tokens_a, tokens_b, max_seq_length - 3)
    truncated = len(a) + len(b) < len(tokens_a) + len(tokens_b)
    return [cls_id, *a, sep_id, *b, sep_id], [0] * (len(a) + 2) + [1] * (len(b) + 1), truncated


@dataclasses.dataclass
class Features:
    """Model inputs of a file, in file order.

    ``arrays``: ``input_ids``, ``input_mask``, ``segment_ids`` int32 [N, T] and
    ``label`` ([N] int32 class ids, or float32 targets for regression; 0 for
    unlabelled examples). T is the longest packed example rounded up to a
    multiple of 8, at most ``max_seq_length``: padding beyond it would change
    nothing but the time taken.
    """

    arrays: dict[str, np.ndarray]
    truncated: int
    labelled: bool

    def __len__(self) -> int:
        return len(self.arrays["input_ids"])


def featurize(
    dataset: Dataset,
    tokenize: Callable[[list[str]], list[list[int]]],
    max_seq_length: int,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    labels: Sequence[str] | None = None,
    regression: bool = False,
) -> Features:
    """Tokenizes and packs every example.

    Args:
        dataset: What :func:`read_dataset` returned.
        tokenize: Texts to token ids (e.g. ``data.tokenization.Tokenizer.encode``).
        max_seq_length: Longest packed sequence, [CLS] and [SEP]s included.
        cls_id / sep_id / pad_id: Special-token ids looked up in the vocabulary.
        labels: Class names in id order (classification).
        regression: Labels are numbers.
    """
    if max_seq_length < 3 + (dataset.columns.text_pair is not None):
        raise DataError(f"--max-seq-length {max_seq_length} leaves no room for text")
    examples = dataset.examples
    ids_a = tokenize([example.text for example in examples])
    pair = dataset.columns.text_pair is not None
    ids_b = tokenize([example.text_pair for example in examples]) if pair else [None] * len(examples)
    packed = []
    truncated = 0
    for a, b in zip(ids_a, ids_b):
        ids, segments, cut = pack(a, b, max_seq_length, cls_id, sep_id)
        packed.append((ids, segments))
        truncated += cut
    longest = max(len(ids) for ids, _ in packed)
    length = min(max_seq_length, -(-longest // _LENGTH_MULTIPLE) * _LENGTH_MULTIPLE)
    count = len(packed)
    input_ids = np.full((count, length), pad_id, dtype=np.int32)  # [N, T]
    input_mask = np.zeros((count, length), dtype=np.int32)
    segment_ids = np.zeros((count, length), dtype=np.int32)
    for row, (ids, segments) in enumerate(packed):
        input_ids[row, : len(ids)] = ids
        input_mask[row, : len(ids)] = 1
        segment_ids[row, : len(ids)] = segments
    labelled = dataset.has_labels
    if not regression and labels is not None:
        check_labels(dataset, labels)
    if regression:
        targets = regression_targets(dataset)
        label = np.nan_to_num(targets, nan=0.0).astype(np.float32)
    else:
        index = {name: i for i, name in enumerate(labels or ())}
        label = np.array([index.get(example.label, 0) for example in examples], dtype=np.int32)
    arrays = {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids, "label": label}
    return Features(arrays, truncated, labelled)
