"""``bert predict``: run a fine-tuned model directory or an export on texts.

Both kinds of TARGET go through the same ``serving_default`` function (see
bert_cli.serving): built in process from a model directory, or loaded from an
export with ``tf.saved_model.load``. So a model directory and its export give
the same answers, and what ``bert predict`` shows is what a server would.

Inputs: the fields each example needs, by task (``predict_fields`` of the
task's module: classify ``text`` (+ ``text_pair``), tag ``text``, squad
``question`` and ``context``), from arguments, from ``--input FILE`` or from standard input:

* ``.jsonl``: one JSON object per line with those keys (``sentence``/``sentence1``/
  ``sentence2`` and the training file's column names are understood too; for
  tagging a ``words`` list may replace ``text``; ``id`` is passed through);
* ``.tsv``/``.csv``: columns named as above in a header row, or without a header
  the fields in the order above (other columns are ignored);
* ``.json`` (SQuAD models): a SQuAD file (data / paragraphs / qas);
* any other file: one text per line (tab-separated fields for pairs);
* standard input: lines as in a text file, or JSON objects.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Callable, Iterable, Iterator

from bert_cli.errors import UserError
from data.errors import DataError
from data.textio import check_text

# Other names a field may have in a JSON object or a header row.
ALIASES = {"text": ("text", "sentence", "sentence1"), "text_pair": ("text_pair", "sentence2"),
           "question": ("question",), "context": ("context",)}


@dataclasses.dataclass
class Target:
    """A fine-tuned model ready to predict, whichever form it came in.

    ``description`` has at least ``task``, ``labels``, ``pair``, ``regression``
    (classify) and ``version_2_with_negative`` (squad); ``serve`` maps
    ``{field: [strings]}`` to ``{output: numpy array}`` for one batch.
    """

    path: Path
    form: str  # "model directory" or "export"
    description: dict
    serve: Callable[[dict], dict]
    batch_size: int | None = None  # fixed by the export, else None

    @property
    def task(self) -> str:
        return self.description["task"]

    @property
    def module(self):
        """The task's module (:mod:`bert_cli.tasks`): its input fields, records and table."""
        from bert_cli.tasks import task_module

        return task_module(self.task, f"TARGET {self.path}")

    @property
    def fields(self) -> tuple[str, ...]:
        return self.module.predict_fields(self.description)


def open_target(path: str | Path) -> Target:
    """Loads TARGET: an export from ``bert export`` or a fine-tuned model directory."""
    from bert_cli import console
    from bert_cli.exporting import is_export, read_export_description
    from bert_cli.model_dir import read_model_dir, source_kind

    path = Path(path)
    if not path.exists():
        raise UserError(f"TARGET {path}: no such directory; give a fine-tuned model directory or an export")
    if is_export(path):
        description = read_export_description(path)
        if "serving_default" not in description.get("signatures", {}):
            raise UserError(f"TARGET {path}: exports a model that is not fine-tuned (only preprocess/encode, a "
                            "feature extractor); bert predict needs an export of a bert finetune model")
        console.load_tensorflow()
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)

        function = tf.saved_model.load(str(path)).signatures["serving_default"]
        return Target(path, "export", description, _caller(function), description.get("batch_size"))
    if source_kind(path) != "model":
        raise UserError(f"TARGET {path}: neither a model directory (bert finetune) nor an export (bert export)")
    from bert_cli.tasks import is_fine_tuned

    model_dir = read_model_dir(path, "TARGET")
    if not is_fine_tuned(model_dir.kind):
        raise UserError(f"TARGET {path}: is not fine-tuned (task {model_dir.kind!r}); bert predict needs a model "
                        "from bert finetune classify / tag / squad")
    console.load_tensorflow()
    from bert_cli.serving import build_serving

    module = build_serving(model_dir)
    description = {**module.describe(), "max_seq_length": module.max_seq_length}
    return Target(path, "model directory", description, _caller(module.signatures()["serving_default"]))


def _caller(function) -> Callable[[dict], dict]:
    import tensorflow as tf

    def call(fields: dict) -> dict:
        outputs = function(**{name: tf.constant(values, tf.string) for name, values in fields.items()})
        return {name: value.numpy() for name, value in outputs.items()}

    return call


# ----------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Source:
    """Where examples come from, for messages (``where``) and progress (``from_file``)."""

    where: str
    from_file: bool


def _text_value(value, where: str, key: str) -> str:
    if isinstance(value, str):
        return value
    if key == "text" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(value)  # a list of words
    if value is None:
        raise DataError(f"{where}: {key!r} is null; give a string")
    return json.dumps(value) if not isinstance(value, (int, float)) else str(value)


def _lookup(obj: dict, field: str, extra: tuple[str, ...], where: str, tagging: bool) -> str:
    names = tuple(dict.fromkeys(extra + ALIASES[field] + (("words", "tokens") if tagging and field == "text" else ())))
    for name in names:
        if name in obj:
            return _text_value(obj[name], where, "text" if name in ("words", "tokens") else field)
    raise DataError(f"{where}: no {field!r} key (this object has: {', '.join(obj) or 'nothing'})")


def from_objects(objects: Iterable[tuple[str, object]], fields: tuple[str, ...], columns: dict, tagging: bool
                 ) -> Iterator[dict]:
    """Examples from ``(where, JSON value)`` pairs; ``columns`` maps a field to the training file's column name."""
    for where, obj in objects:
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object with {', '.join(map(repr, fields))}")
        example = {field: check_text(_lookup(obj, field, tuple(filter(None, [columns.get(field)])), where, tagging),
                                     f"{where}: {field!r}", from_json=True)
                   for field in fields}
        if "id" in obj:
            example["id"] = obj["id"]
        yield example


def _json_lines(lines: Iterable[tuple[int, str]], name: str) -> Iterator[tuple[str, object]]:
    for number, line in lines:
        if not line.strip():
            continue
        try:
            yield f"{name}:{number}", json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{name}:{number}: not valid JSON ({error.msg})") from None


def _from_rows(rows: list[tuple[int, list[str]]], fields: tuple[str, ...], columns: dict, name: str) -> list[dict]:
    """Examples from TSV/CSV rows: by header names when the first row names every field, else by position."""
    if not rows:
        return []
    first = [value.strip() for value in rows[0][1]]
    names = {}
    for field in fields:
        for candidate in tuple(filter(None, [columns.get(field)])) + ALIASES[field]:
            if candidate in first:
                names[field] = first.index(candidate)
                break
    header = len(names) == len(fields)
    positions = names if header else {field: index for index, field in enumerate(fields)}
    examples = []
    for number, row in rows[1:] if header else rows:
        if len(row) < len(fields):
            raise DataError(f"{name}:{number}: {len(row)} field(s); each row needs {', '.join(fields)}"
                            + ("" if header else " (in that order, or a header row naming them)"))
        examples.append({field: row[index] for field, index in positions.items()})
    return examples


def _split_fields(lines: Iterable[tuple[int, str]], fields: tuple[str, ...], name: str) -> list[dict]:
    """Plain text lines: the whole line for one field, else tab-separated fields."""
    if len(fields) == 1:
        return [{fields[0]: line} for _, line in lines]
    examples = []
    for number, line in lines:
        parts = line.split("\t", len(fields) - 1)
        if len(parts) < len(fields):
            raise DataError(f"{name}:{number}: expected {len(fields)} tab-separated fields ({', '.join(fields)}); "
                            "or give JSON objects")
        examples.append(dict(zip(fields, parts)))
    return examples


def squad_examples(path: Path) -> list[dict]:
    """``id``/``question``/``context`` of every question of a SQuAD JSON file (read by ``data.squad``)."""
    from data.squad import read_squad

    squad = read_squad(path, require_answers=False)
    return [{"id": q.id, "question": q.text, "context": squad.contexts[q.context]} for q in squad.questions]


def read_file(path: Path, fields: tuple[str, ...], columns: dict, tagging: bool) -> list[dict]:
    """The examples of ``--input FILE`` (format from the file name, see the module docstring)."""
    from data.textio import existing_file, iter_lines

    path = existing_file(path, "pass a TSV, CSV, JSONL, SQuAD JSON or text file")
    suffix = Path(path.stem).suffix.lower() if path.suffix == ".gz" else path.suffix.lower()
    lines = enumerate(iter_lines(path), start=1)
    if suffix == ".jsonl":
        return list(from_objects(_json_lines(lines, str(path)), fields, columns, tagging))
    if suffix == ".json" and "question" in fields:
        return squad_examples(path)
    if suffix == ".json":
        try:
            document = json.loads("\n".join(line for _, line in lines))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
        if isinstance(document, list):
            return list(from_objects(((f"{path}[{i}]", o) for i, o in enumerate(document)), fields, columns,
                                     tagging))
        raise DataError(f"{path}: expected a JSON list of objects (or use .jsonl, one object per line)")
    if suffix in (".tsv", ".csv"):
        text = "\n".join(line for _, line in lines)
        reader = csv.reader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ",")
        rows = [(reader.line_num, row) for row in reader if row]
        return _from_rows(rows, fields, columns, str(path))
    return _split_fields(lines, fields, str(path))


def read_stream(lines: Iterable[str], fields: tuple[str, ...], columns: dict, tagging: bool,
                name: str = "<stdin>") -> list[dict]:
    """Standard input: JSON objects when the first non-blank line is one, else text lines as in a text file."""
    numbered = list(enumerate(lines, start=1))
    first = next((line for _, line in numbered if line.strip()), "")
    if first.lstrip().startswith("{"):
        return list(from_objects(_json_lines(numbered, name), fields, columns, tagging))
    return _split_fields(numbered, fields, name)


def from_arguments(fields: tuple[str, ...], texts: list[str], pairs: list[str], questions: list[str],
                   contexts: list[str]) -> list[dict]:
    """Examples given on the command line: TEXT... (with --pair), or --question/--context."""
    for name, values in (("TEXT", texts), ("--pair", pairs), ("--question", questions), ("--context", contexts)):
        for number, value in enumerate(values, start=1):
            check_text(value, f"{name} {number}" if len(values) > 1 else name)
    if "question" in fields:
        if texts or pairs:
            raise UserError("a SQuAD model answers --question Q --context C (or --input FILE), not TEXT arguments")
        if len(questions) != len(contexts):
            raise UserError(f"give one --context per --question ({len(questions)} questions, "
                            f"{len(contexts)} contexts)")
        return [{"question": q, "context": c} for q, c in zip(questions, contexts)]
    if questions or contexts:
        raise UserError("--question/--context are for SQuAD models; give TEXT arguments")
    if "text_pair" in fields:
        if len(pairs) != len(texts):
            raise UserError(f"this model reads text pairs: give one --pair TEXT per TEXT ({len(texts)} texts, "
                            f"{len(pairs)} --pair)")
        return [{"text": a, "text_pair": b} for a, b in zip(texts, pairs)]
    if pairs:
        raise UserError("--pair: this model reads single texts, not pairs")
    return [{"text": text} for text in texts]


# ----------------------------------------------------------------------------
# Predicting
# ----------------------------------------------------------------------------


def text_of(value) -> str:
    """A string output of a signature (bytes from TensorFlow) as text."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def records(target: Target, examples: list[dict], outputs: dict) -> list[dict]:
    """One JSON-ready result per example: its inputs (not a SQuAD context) and the model's answer."""
    module, description = target.module, target.description
    results = []
    for index, example in enumerate(examples):
        record = {key: value for key, value in example.items() if key != "context"}
        record.update(module.prediction_record(description, outputs, index))
        results.append(record)
    return results


def predict(target: Target, examples: list[dict], batch_size: int,
            on_batch: Callable[[int], None] | None = None) -> Iterator[dict]:
    """Results in input order, ``batch_size`` examples per call (an export's fixed batch size wins)."""
    size = target.batch_size or batch_size
    fields = target.fields
    for start in range(0, len(examples), size):
        batch = examples[start: start + size]
        columns = {field: [example[field] for example in batch] for field in fields}
        if target.batch_size and len(batch) < size:  # a fixed-batch export: pad, then drop the padding's results
            columns = {field: values + [""] * (size - len(batch)) for field, values in columns.items()}
        yield from records(target, batch, target.serve(columns))
        if on_batch is not None:
            on_batch(len(batch))
