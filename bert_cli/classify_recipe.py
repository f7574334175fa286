"""Sentence and sentence-pair classification (and regression) as a fine-tuning :class:`Recipe`.

The head is dropout + dense on the pooled [CLS] output (models.heads). Metrics
on dev: accuracy, macro-F1, Matthews correlation and, with two labels, the F1
of the second label (the positive class: "1" in GLUE's files); for
``--regression`` the mean squared error, Pearson and Spearman correlation.

``predictions.tsv`` (dev) and ``test_predictions.tsv`` have one row per
example: the line it came from, the predicted label, the gold label when the
file has one, and the probability of every label (or the predicted value for
regression).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from bert_cli.finetuning import file_sha256, model_inputs
from data.metrics import log_softmax

CLASSIFICATION_SUMS = ("loss", "correct", "examples")
REGRESSION_SUMS = ("loss", "squared_error", "examples")


@dataclasses.dataclass(frozen=True)
class ClassifyOptions:
    """The classify command's own options (names as the CLI options)."""

    train: Path
    dev: Path | None = None
    test: Path | None = None
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    labels: tuple[str, ...] | None = None
    regression: bool = False
    file_format: str | None = None
    header: bool | None = None


class ClassifyRecipe:
    task = "classify"
    unit = "examples"

    def __init__(self, options: ClassifyOptions) -> None:
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
