"""``bert finetune classify``: sentence and sentence-pair classification (and regression), everything on the CLI side.

The head is dropout + dense on the pooled [CLS] output (models.heads). Metrics
on dev: accuracy, macro-F1, Matthews correlation and, with two labels, the F1
of the second label (the positive class: "1" in GLUE's files); for
``--regression`` the mean squared error, Pearson and Spearman correlation.

``predictions.tsv`` (dev) and ``test_predictions.tsv`` have one row per
example: the line it came from, the predicted label, the gold label when the
file has one, and the probability of every label (or the predicted value for
regression).

Serving: ``serving_default(text[, text_pair])`` -> ``probabilities`` [B, L],
``label`` [B] string, ``label_id`` [B]; a regressor -> ``score`` [B].
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from bert_cli import console
from bert_cli.commands.options import DATA, argument, comma_list, dev_option, option, test_option
from bert_cli.errors import UserError
from bert_cli.finetuning import file_sha256, model_inputs
from bert_cli.predicting import text_of
from data.metrics import log_softmax

NAME = "classify"
HELP = "Fine-tune a sentence or sentence-pair classifier (or regressor); rerun the same command to resume."
# Shared fine-tuning options whose default differs for this task: none.
DEFAULTS: dict = {}
CLASSIFICATION_SUMS = ("loss", "correct", "examples")
REGRESSION_SUMS = ("loss", "squared_error", "examples")


@dataclasses.dataclass(frozen=True)
class Options:
    """The classify command's own options (names as the CLI options)."""

    train: Path = argument(help="Training file: TSV (GLUE style, header optional), CSV or JSONL.")
    dev: Path | None = dev_option()
    test: Path | None = test_option()
    text_column: str | None = option(
        None, help="Column (name or 0-based number) of the text; default sentence / text / sentence1.", panel=DATA)
    text_pair_column: str | None = option(
        None, help="Column of the second text of a pair: [CLS] A [SEP] B [SEP].", panel=DATA)
    label_column: str | None = option(None, help="Column of the label; default label (or the last column).",
                                      panel=DATA)
    labels: tuple[str, ...] | None = option(
        None, help="Comma-separated labels in id order; default: the training file's, sorted.", panel=DATA,
        cli_type=str | None, parse=comma_list)
    regression: bool = option(False, help="Real-valued targets (STS-B style), mean squared error.",
                              flags=("--regression",), panel=DATA)
    file_format: str | None = option(None, help="tsv, csv or jsonl; default: from the file name.",
                                     flags=("--format",), panel=DATA)
    header: bool | None = option(
        None, help="Whether TSV/CSV files start with a header row; default: detected.",
        flags=("--header/--no-header",), panel=DATA, show_default=False)


class Recipe:
    """The classify task as a :class:`bert_cli.finetuning.Recipe` (see the module docstring)."""

    task = NAME
    unit = "examples"
    token_keys = ("input_ids", "input_mask", "segment_ids")

    def __init__(self, options: Options, common=None) -> None:
        self.options = options
        self.files = {"train": options.train, "dev": options.dev, "test": options.test}
        self.sums = REGRESSION_SUMS if options.regression else CLASSIFICATION_SUMS
        self.datasets: dict = {}
        self.features: dict = {}
        self.labels: list[str] | None = None

    # -- reading -------------------------------------------------------------

    def read(self) -> None:
        from data import classification
        from data.errors import DataError

        o = self.options
        train = classification.read_dataset(o.train, o.text_column, o.text_pair_column, o.label_column,
                                            o.file_format, o.header)
        if train.guessed:
            console.warning(train.guessed)
        if o.regression:
            classification.regression_targets(train)
        else:
            self.labels = classification.label_set(train, o.labels)
        self.datasets["train"] = train
        columns = train.columns
        for split in ("dev", "test"):
            path = self.files[split]
            if path is None:
                continue
            dataset = classification.read_dataset(
                path, columns.text, columns.text_pair, columns.label, o.file_format, o.header,
                require_labels=split == "dev",
            )
            if dataset.columns.text_pair is None and columns.text_pair is not None:
                raise DataError(f"{path}: has no {columns.text_pair!r} column (the training file's pair)")
            if o.regression:
                classification.regression_targets(dataset)
            else:
                classification.check_labels(dataset, self.labels)
            self.datasets[split] = dataset

    @property
    def metrics(self) -> tuple[str, ...]:
        if self.options.regression:
            return ("pearson", "spearman")
        return ("accuracy", "macro_f1", "mcc") + (("f1",) if len(self.labels) == 2 else ())

    def featurize(self, tokenize, vocab, max_seq_length: int) -> None:
        from data import classification

        for split, dataset in self.datasets.items():
            self.features[split] = classification.featurize(
                dataset, tokenize, max_seq_length, vocab.cls_id, vocab.sep_id, vocab.pad_id,
                labels=self.labels, regression=self.options.regression,
            )

    def arrays(self, split: str) -> dict | None:
        features = self.features.get(split)
        return features.arrays if features is not None else None

    # -- model ---------------------------------------------------------------

    def build_model(self, config, dtype):
        from models.heads import build_classifier

        return build_classifier(config, len(self.labels or ()) or 1, self.options.regression, dtype)

    def compute(self, model, batch, training: bool) -> dict:
        from models.heads import classification_losses, regression_losses

        outputs = model(model_inputs(batch), training=training)
        if self.options.regression:
            return regression_losses(outputs, batch["label"])
        return classification_losses(outputs, batch["label"])

    def summarize(self, totals: dict) -> dict:
        batches = max(totals.get("batches", 0.0), 1.0)
        metrics = {"loss": totals.get("loss", 0.0) / batches}
        if not self.options.regression:
            metrics["accuracy"] = totals.get("correct", 0.0) / max(totals.get("examples", 0.0), 1.0)
        return metrics

    def outputs(self, model, batch) -> dict:
        return {"scores": model(model_inputs(batch), training=False)}

    # -- evaluation and predictions -------------------------------------------

    def _gold(self, split: str) -> np.ndarray:
        return self.features[split].arrays["label"]

    def evaluate(self, outputs: dict) -> dict[str, float]:
        from data import metrics

        scores = outputs["scores"]
        gold = self._gold("dev")
        if self.options.regression:
            return {
                "loss": float(np.mean((scores - gold) ** 2)),
                "pearson": metrics.pearson(gold, scores),
                "spearman": metrics.spearman(gold, scores),
            }
        predicted = scores.argmax(axis=-1)
        log_probabilities = log_softmax(scores.astype(np.float64))
        result = {
            "loss": float(-log_probabilities[np.arange(len(gold)), gold].mean()),
            "accuracy": metrics.accuracy(gold.tolist(), predicted.tolist()),
            "macro_f1": metrics.macro_f1(gold.tolist(), predicted.tolist()),
            "mcc": metrics.matthews_correlation(gold.tolist(), predicted.tolist()),
        }
        if len(self.labels) == 2:
            result["f1"] = metrics.binary_f1(gold.tolist(), predicted.tolist(), positive=1)
        return result

    def details(self, outputs: dict) -> dict:
        from data import metrics

        if self.options.regression:
            return {}
        gold = [self.labels[i] for i in self._gold("dev")]
        predicted = [self.labels[i] for i in outputs["scores"].argmax(axis=-1)]
        per_class = metrics.class_scores(gold, predicted)
        return {"per_label": {label: {"precision": s.precision, "recall": s.recall, "f1": s.f1, "support": s.gold}
                              for label, s in per_class.items()}}

    def prediction_file(self, split: str) -> str:
        return "predictions.tsv" if split == "dev" else f"{split}_predictions.tsv"

    def write_predictions(self, split: str, outputs: dict, path: Path) -> None:
        dataset = self.datasets[split]
        scores = outputs["scores"]
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            gold = dataset.has_labels
            if self.options.regression:
                writer.writerow(["line", "prediction"] + (["label"] if gold else []))
                for example, value in zip(dataset.examples, scores):
                    writer.writerow([example.line, f"{value:.6g}"] + ([example.label] if gold else []))
                return
            probabilities = np.exp(log_softmax(scores.astype(np.float64)))
            writer.writerow(["line", "prediction"] + (["label"] if gold else []) + self.labels)
            for example, row in zip(dataset.examples, probabilities):
                writer.writerow([example.line, self.labels[int(row.argmax())]] + ([example.label] if gold else [])
                                + [f"{p:.6f}" for p in row])

    # -- the model directory ------------------------------------------------

    def task_file(self) -> dict:
        columns = self.datasets["train"].columns
        return {
            "labels": self.labels or [],
            "regression": self.options.regression,
            "pair": columns.text_pair is not None,
            "text_column": columns.text,
            "text_pair_column": columns.text_pair,
            "label_column": columns.label,
            "head": "pooled",
        }

    def same_head(self, task: dict) -> bool:
        return (task.get("labels", []) == (self.labels or [])
                and bool(task.get("regression")) == self.options.regression)

    def signature(self) -> dict:
        return {
            "train_sha256": file_sha256(self.options.train),
            **{k: v for k, v in self.task_file().items() if k != "head"},
        }

    def describe(self) -> list[tuple[str, str]]:
        train = self.features["train"]
        pair = self.datasets["train"].columns.text_pair is not None
        kind = "sentence-pair" if pair else "single-sentence"
        if self.options.regression:
            what = f"{kind} regression"
        else:
            shown = ", ".join(self.labels[:10]) + (", ..." if len(self.labels) > 10 else "")
            what = f"{kind} classification, {len(self.labels)} labels: {shown}"
        columns = self.datasets["train"].columns
        rows = [("task", what),
                ("columns", f"{columns.text}" + (f" + {columns.text_pair}" if pair else "") + f" → {columns.label}")]
        data = [f"train {len(train):,}"]
        truncated = train.truncated
        for split in ("dev", "test"):
            if split in self.features:
                data.append(f"{split} {len(self.features[split]):,}")
                truncated += self.features[split].truncated
        rows.append(("examples", ", ".join(data) + (f" ({truncated:,} truncated to --max-seq-length)"
                                                    if truncated else "")))
        return rows


def report(result, options: Options) -> None:
    """After the results table: the dev scores of every label."""
    from bert_cli.display import print_detail_table

    print_detail_table((result.details or {}).get("per_label"), "label")


# ----------------------------------------------------------------------------
# bert distill
# ----------------------------------------------------------------------------


def _unlabeled(dataset):
    """``dataset`` with its labels dropped: unlabeled inputs may come from a labelled file, labels unseen."""
    from data import classification

    examples = [dataclasses.replace(example, label=None) for example in dataset.examples]
    return classification.Dataset(dataset.path, examples, dataset.columns)


def _plain_lines(path: Path, columns):
    """A ``.txt`` file as one text per line (blank lines skipped), for a single-sentence teacher."""
    from data import classification
    from data.textio import iter_lines

    examples = [classification.Example(line.strip(), None, None, number)
                for number, line in enumerate(iter_lines(path), start=1) if line.strip()]
    if not examples:
        raise UserError(f"{path}: the file is empty; it needs one text per line")
    return classification.Dataset(path, examples, columns)


class Distillation:
    """``bert distill`` of a classifier: per example, the teacher's class distribution (its score for regression).

    Unlabeled files are read with the teacher's text column(s) (TSV/CSV/JSONL, or
    for a single-sentence teacher a ``.txt`` file with one text per line); any
    labels they hold are ignored. Soft loss: KL at the temperature, times T²
    (mean squared error to the teacher's score for regression); agreement: the
    share of examples whose predicted label is the teacher's (Pearson
    correlation with the teacher's scores for regression).
    """

    SUMS = ("loss", "agree", "judged", "examples")
    TOKEN_KEYS = ("input_ids", "input_mask", "segment_ids")

    def __init__(self, task: dict) -> None:
        self.task = task
        self.regression = bool(task.get("regression"))

    def recipe(self, common) -> Recipe:
        t = self.task
        labels = tuple(t.get("labels") or ()) or None
        options = Options(train=Path("-"), text_column=t.get("text_column"),
                          text_pair_column=t.get("text_pair_column"), label_column=t.get("label_column"),
                          labels=labels, regression=self.regression)
        return Recipe(options, common)

    def _read(self, path: Path, require_labels: bool):
        from data import classification

        t = self.task
        columns = classification.Columns(t.get("text_column"), t.get("text_pair_column"), t.get("label_column"))
        name = path.name[:-3] if path.name.endswith(".gz") else path.name
        if not require_labels and name.endswith(".txt"):
            if columns.text_pair is not None:
                raise UserError(f"{path}: a .txt file holds one text per line, but the teacher classifies pairs "
                                f"({columns.text} + {columns.text_pair}); give TSV, CSV or JSONL with both columns")
            return _plain_lines(path, columns)
        dataset = classification.read_dataset(path, columns.text, columns.text_pair,
                                              columns.label if require_labels else None,
                                              require_labels=require_labels)
        if columns.text_pair is not None and dataset.columns.text_pair is None:
            raise UserError(f"{path}: has no {columns.text_pair!r} column (the teacher classifies pairs)")
        return dataset

    def read(self, recipe: Recipe, unlabeled: list[Path], train: Path | None, dev: Path | None) -> None:
        from data import classification

        recipe.labels = list(self.task.get("labels") or []) or None
        parts = [_unlabeled(self._read(path, False)) for path in unlabeled]
        examples = [example for part in parts for example in part.examples]
        recipe.datasets["unlabeled"] = classification.Dataset(parts[0].path, examples, parts[0].columns)
        for split, path in (("labeled", train), ("dev", dev)):
            if path is None:
                continue
            dataset = self._read(Path(path), True)
            if self.regression:
                classification.regression_targets(dataset)
            else:
                classification.check_labels(dataset, recipe.labels, "the teacher's labels")
            recipe.datasets[split] = dataset

    def teacher_outputs(self, model, batch) -> dict:
        return {"scores": model(model_inputs(batch), training=False)}  # [B, L] logits, or [B] scores

    def targets(self, teacher_view, outputs: dict, student, split: str, temperature: float) -> dict:
        scores = outputs["scores"].astype(np.float32)
        if self.regression:
            return {"teacher_scores": scores}  # [N]
        return {"teacher_probabilities": np.exp(log_softmax(scores.astype(np.float64) / temperature))
                .astype(np.float32)}  # [N, L]

    def compute(self, model, batch, temperature: float, training: bool) -> dict:
        import keras
        from keras import ops

        from models.heads import agreement, distillation_divergence

        outputs = model(model_inputs(batch), training=training)
        hard = ops.cast(batch["hard_weight"], "float32")  # [B]
        size = ops.cast(ops.shape(outputs)[0], "float32")
        if self.regression:
            soft = ops.mean(ops.square(outputs - batch["teacher_scores"]))
            hard_loss = ops.sum(hard * ops.square(outputs - batch["label"])) / size
            return {"loss": soft + hard_loss, "agree": ops.zeros(()), "judged": ops.zeros(()), "examples": size}
        soft = ops.mean(distillation_divergence(outputs, batch["teacher_probabilities"], temperature))
        labels = ops.cast(batch["label"], "int32")
        hard_loss = ops.sum(hard * keras.losses.sparse_categorical_crossentropy(labels, outputs, from_logits=True))
        return {"loss": soft + hard_loss / size, "agree": ops.sum(agreement(outputs, batch["teacher_probabilities"])),
                "judged": size, "examples": size}

    def agreement(self, student, student_outputs: dict, teacher_view, teacher_outputs: dict) -> float:
        from data import metrics

        ours, theirs = student_outputs["scores"], teacher_outputs["scores"]
        if self.regression:
            return metrics.pearson(theirs, ours)
        return float(np.mean(ours.argmax(axis=-1) == theirs.argmax(axis=-1)))


# ----------------------------------------------------------------------------
# A fine-tuned model directory
# ----------------------------------------------------------------------------


def build_model(model_dir):
    """A freshly built classifier of the shape ``task.json`` describes (weights not yet loaded)."""
    from models.heads import build_classifier

    task = model_dir.task
    labels = task.get("labels") or []
    if not task.get("regression") and len(labels) < 2:
        raise UserError(f"{model_dir.path / 'task.json'}: a classifier needs its \"labels\" (two or more)")
    return build_classifier(model_dir.config, len(labels) or 1, bool(task.get("regression")))


def min_seq_length(task: dict) -> int:
    """[CLS] A [SEP] (B [SEP]) with a piece of each text."""
    return 4 if task.get("pair") else 3


def hugging_face(task: dict) -> dict:
    """The Transformers class a classify model directory becomes, its head's tensors and config keys.

    ``BertForSequenceClassification``: dropout and ``classifier`` [L, H] on the pooled
    output, as our head; regression is one output and ``problem_type`` "regression".
    """
    from bert_cli.huggingface import label_maps

    if task.get("regression"):
        extra = {"problem_type": "regression", **label_maps(["LABEL_0"])}
    else:
        extra = {"problem_type": "single_label_classification", **label_maps(task.get("labels") or [])}
    return {"architecture": "BertForSequenceClassification", "head": "classifier", "config": extra}


# ----------------------------------------------------------------------------
# Serving (the export's serving_default)
# ----------------------------------------------------------------------------


class Serving:
    """Classification (or regression) of texts or text pairs, as ``bert finetune classify`` trained it.

    Args:
        module: The :class:`bert_cli.serving.TaskServing` this signature belongs to (tokenizer, model, ``pack``).
        task: The model's ``task.json``: labels in id order (empty for regression), ``pair``, ``regression``
            and the training file's text columns (``bert predict`` reads files that use them).
    """

    def __init__(self, module, task: dict) -> None:
        import tensorflow as tf

        self.module = module
        self.labels = list(task.get("labels") or [])
        self.pair = bool(task.get("pair"))
        self.regression = bool(task.get("regression"))
        self.columns = (task.get("text_column"), task.get("text_pair_column"))
        self._label_names = tf.constant(self.labels or [""], tf.string)

    @property
    def inputs(self) -> tuple[str, ...]:
        return ("text", "text_pair") if self.pair else ("text",)

    def serve(self, text, text_pair=None):
        """Strings (pairs) -> probabilities, label and label id; or score."""
        import tensorflow as tf

        outputs = self.module.model(self.module.pack(text, text_pair), training=False)
        if self.regression:
            return {"score": outputs}  # [B]
        label_id = tf.argmax(outputs, axis=-1, output_type=tf.int32)  # [B, L] -> [B]
        return {"probabilities": tf.nn.softmax(outputs, axis=-1), "label": tf.gather(self._label_names, label_id),
                "label_id": label_id}

    def describe(self) -> dict:
        return {"task": NAME, "labels": self.labels, "pair": self.pair, "regression": self.regression,
                "text_column": self.columns[0], "text_pair_column": self.columns[1]}


# ----------------------------------------------------------------------------
# bert predict
# ----------------------------------------------------------------------------

#: Whether a JSON example may give its text as a list of words (tagging's ``words``).
WORD_LIST_INPUT = False


def predict_fields(description: dict) -> tuple[str, ...]:
    """The fields each example needs: ``text`` (and ``text_pair`` for a pair model)."""
    return ("text", "text_pair") if description.get("pair") else ("text",)


def prediction_record(description: dict, outputs: dict, index: int) -> dict:
    """The model's answer for example ``index`` of a batch: label and probabilities, or score."""
    if description.get("regression"):
        return {"score": round(float(outputs["score"][index]), 6)}
    return {"label": text_of(outputs["label"][index]),
            "probabilities": {label: round(float(p), 6)
                              for label, p in zip(description["labels"], outputs["probabilities"][index])}}


def prediction_table(table, results: list[dict], description: dict) -> None:
    """Columns and rows of ``bert predict``'s table: the texts and the label (or score)."""
    from rich.markup import escape

    pair = description.get("pair")
    table.add_column("text")
    if pair:
        table.add_column("text pair")

    def texts(r):
        return [escape(r["text"])] + ([escape(r["text_pair"])] if pair else [])

    if description.get("regression"):
        table.add_column("score", justify="right")
        for number, r in enumerate(results, start=1):
            table.add_row(str(number), *texts(r), f"{r['score']:.4f}")
        return
    table.add_column("label", style="bold")
    table.add_column("probability", justify="right")
    for number, r in enumerate(results, start=1):
        table.add_row(str(number), *texts(r), escape(r["label"]), f"{r['probabilities'][r['label']]:.3f}")
