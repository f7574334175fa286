"""SQuAD v1.1 / v2.0 span prediction as a fine-tuning :class:`Recipe` (``bert finetune squad``).

The model is the encoder plus one ``hidden x 2`` dense layer over every
token's output (start and end logits, ``models.heads.BertSpanPredictor``);
the loss is the mean of the start and end cross-entropies. Reading,
windows, post-processing and scoring are in :mod:`data.squad`.

A training row is a *window*; evaluation puts the windows of each question
back together (n-best over all of them, the v2 null-answer decision) and
scores the answers with the official scripts' rules, so the dev ``f1`` and
``exact_match`` after each epoch are the numbers the official scripts give
for the written ``predictions.json``. Metrics are fractions (0-1) like the
other recipes'; the score tables show the scripts' 0-100.

Outputs for ``--dev``: ``predictions.json`` (id -> answer, "" = no answer),
``nbest_predictions.json`` and, for v2, ``null_odds.json`` (id -> score_null
- best span score, the v2 script's ``--na-prob-file``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from bert_cli import console
from bert_cli.finetuning import file_sha256, model_inputs
from data.metrics import log_softmax

SQUAD_SUMS = ("loss", "start_correct", "end_correct", "examples")
NBEST_FILE = "nbest_predictions.json"
NULL_ODDS_FILE = "null_odds.json"


@dataclasses.dataclass(frozen=True)
class SquadOptions:
    """The squad command's own options (names as the CLI options)."""

    train: Path
    dev: Path | None = None
    doc_stride: int = 128
    max_query_length: int = 64
    n_best_size: int = 20
    max_answer_length: int = 30
    null_score_diff_threshold: float = 0.0
    version_2_with_negative: bool | None = None  # None: detected from the training file
    cache_dir: Path | None = None  # fallback folder for the features cache


def _tokenizer_of(tokenize):
    """The runner passes ``Tokenizer.encode``; SQuAD needs the tokenizer itself (for the offsets)."""
    tokenizer = getattr(tokenize, "__self__", None)
    if tokenizer is None or not hasattr(tokenizer, "tokenize_with_offsets"):
        raise TypeError("the SQuAD recipe needs data.tokenization.Tokenizer.encode as its tokenize function")
    return tokenizer


class SquadRecipe:
    task = "squad"
    unit = "windows"
    sums = SQUAD_SUMS

    def __init__(self, options: SquadOptions) -> None:
        self.options = options
        self.files = {"train": options.train, "dev": options.dev, "test": None}
        self.data: dict = {}
        self.features: dict = {}
        self.version_2 = False
        self.max_seq_length = 0
        self._predicted: tuple | None = None

    # -- reading -------------------------------------------------------------

    def read(self) -> None:
        from data import squad
        from data.errors import DataError

        o = self.options
        if o.n_best_size < 1:
            raise DataError(f"--n-best-size must be at least 1, got {o.n_best_size}")
        if o.max_answer_length < 1:
            raise DataError(f"--max-answer-length must be at least 1, got {o.max_answer_length}")
        train = squad.read_squad(o.train)
        detected = train.version_2
        if o.version_2_with_negative is False and detected:
            raise DataError(f"{o.train}: has {train.unanswerable:,} unanswerable questions (is_impossible) but "
                            "--version-1 was given; use --version-2-with-negative (or leave both out to detect)")
        self.version_2 = detected if o.version_2_with_negative is None else o.version_2_with_negative
        self.data["train"] = train
        if o.dev is not None:
            dev = squad.read_squad(o.dev)
            if dev.version_2 and not self.version_2:
                raise DataError(f"{o.dev}: has unanswerable questions but the model is trained as SQuAD v1.1; "
                                "pass --version-2-with-negative")
            self.data["dev"] = dev
        for split, data in self.data.items():
            if data.mismatched:
                shown = ", ".join(data.mismatched[:3]) + (", ..." if len(data.mismatched) > 3 else "")
                use = "skipped for training" if split == "train" else "scored on all their gold answers, no loss"
                console.warning(f"{data.path}: {len(data.mismatched):,} question(s) whose answer text is not at its "
                                f"answer_start ({use}): {shown}")

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("f1", "exact_match")

    def featurize(self, tokenize, vocab, max_seq_length: int) -> None:
        from data import squad

        o = self.options
        tokenizer = _tokenizer_of(tokenize)
        self.max_seq_length = max_seq_length
        squad.check_lengths(max_seq_length, o.doc_stride, o.max_query_length)
        for split, data in self.data.items():
            features, path, hit = squad.cached_featurize(data, tokenizer, max_seq_length, o.doc_stride,
                                                         o.max_query_length, fallback_dir=o.cache_dir)
            if hit:
                console.info(f"{split} features: {len(features):,} windows read from the cache {path}")
            elif path is not None:
                console.info(f"{split} features: {len(features):,} windows, cached in {path}")
            self.features[split] = features
        if not len(self.features["train"].training_arrays()["input_ids"]):
            from data.errors import DataError

            raise DataError(f"{o.train}: no question can be trained on (every answer mismatches its context)")

    def arrays(self, split: str) -> dict | None:
        features = self.features.get(split)
        if features is None:
            return None
        return features.training_arrays() if split == "train" else features.arrays

    # -- model ---------------------------------------------------------------

    def build_model(self, config, dtype):
        from models.heads import build_span_predictor

        return build_span_predictor(config, dtype)

    def compute(self, model, batch, training: bool) -> dict:
        from models.heads import span_losses

        logits = model(model_inputs(batch), training=training)
        return span_losses(logits["start_logits"], logits["end_logits"], batch["start_positions"],
                           batch["end_positions"])

    def summarize(self, totals: dict) -> dict:
        batches = max(totals.get("batches", 0.0), 1.0)
        windows = max(totals.get("examples", 0.0), 1.0)
        return {
            "loss": totals.get("loss", 0.0) / batches,
            # Start and end positions both right, on average: how often a window's target is hit.
            "accuracy": (totals.get("start_correct", 0.0) + totals.get("end_correct", 0.0)) / (2 * windows),
        }

    def outputs(self, model, batch) -> dict:
        logits = model(model_inputs(batch), training=False)
        return {"start_logits": logits["start_logits"], "end_logits": logits["end_logits"]}  # [B, T] each

    # -- evaluation and predictions -------------------------------------------

    def _predictions(self, split: str, outputs: dict):
        """Post-processing of a split's window outputs (computed once per outputs)."""
        from data import squad

        key = (split, id(outputs["start_logits"]))
        if self._predicted is None or self._predicted[0] != key:
            o = self.options
            predictions = squad.predict_answers(
                self.data[split], self.features[split], outputs["start_logits"], outputs["end_logits"],
                o.n_best_size, o.max_answer_length, self.version_2, o.null_score_diff_threshold)
            self._predicted = (key, predictions)
        return self._predicted[1]

    def _loss(self, outputs: dict) -> float:
        """Mean window loss over the dev windows of questions that can be trained on (as in training)."""
        features = self.features["dev"]
        keep = features.trainable[features.question]
        if not keep.any():
            return 0.0
        rows = np.flatnonzero(keep)
        total = 0.0
        for name, target in (("start_logits", "start_positions"), ("end_logits", "end_positions")):
            log_probabilities = log_softmax(outputs[name][rows].astype(np.float64))
            total += -log_probabilities[np.arange(len(rows)), features.arrays[target][rows]].mean()
        return float(total / 2)

    def evaluate(self, outputs: dict) -> dict[str, float]:
        from data import squad

        predictions = self._predictions("dev", outputs)
        scores = squad.score(self.data["dev"], predictions.answers)
        result = {"loss": self._loss(outputs), "f1": scores["f1"] / 100, "exact_match": scores["exact"] / 100}
        if "HasAns_f1" in scores:
            result["has_answer_f1"] = scores["HasAns_f1"] / 100
        if "NoAns_f1" in scores:
            result["no_answer_f1"] = scores["NoAns_f1"] / 100
        return result

    def details(self, outputs: dict) -> dict:
        """The official-style scores (0-100) and, for v2, the best null threshold on dev."""
        from data import squad

        predictions = self._predictions("dev", outputs)
        dev = self.data["dev"]
        result = {"scores": squad.score(dev, predictions.answers,
                                        predictions.null_odds if self.version_2 else None)}
        if self.version_2:
            # The sweep over the null odds with every question's best span as its answer:
            # the threshold that maximises dev F1 (and EM) for --null-score-diff-threshold.
            sweep = squad.score(dev, predictions.best_span, predictions.null_odds)
            result["threshold"] = {
                "current": self.options.null_score_diff_threshold,
                "best_f1": sweep["best_f1"], "best_f1_threshold": sweep["best_f1_thresh"],
                "best_exact": sweep["best_exact"], "best_exact_threshold": sweep["best_exact_thresh"],
            }
        return result

    def prediction_file(self, split: str) -> str:
        return "predictions.json" if split == "dev" else f"{split}_predictions.json"

    def write_predictions(self, split: str, outputs: dict, path: Path) -> None:
        """``predictions.json`` at ``path``; ``nbest_predictions.json`` and (v2) ``null_odds.json`` beside it."""
        from data.textio import atomic_path

        predictions = self._predictions(split, outputs)
        folder = Path(path).parent
        prefix = "" if split == "dev" else f"{split}_"

        def dump(target: Path, value) -> None:
            with atomic_path(target) as temporary:
                temporary.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

        dump(folder / f"{prefix}{NBEST_FILE}", predictions.nbest)
        null_odds = folder / f"{prefix}{NULL_ODDS_FILE}"
        if self.version_2:
            dump(null_odds, predictions.null_odds)
        else:
            null_odds.unlink(missing_ok=True)  # a v2 run's, now stale
        Path(path).write_text(json.dumps(predictions.answers, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    # -- the model directory ------------------------------------------------

    def task_file(self) -> dict:
        o = self.options
        return {
            "doc_stride": o.doc_stride,
            "max_query_length": o.max_query_length,
            "max_answer_length": o.max_answer_length,
            "n_best_size": o.n_best_size,
            "version_2_with_negative": self.version_2,
            "null_score_diff_threshold": o.null_score_diff_threshold,
            "head": "span",
        }

    def same_head(self, task: dict) -> bool:
        return task.get("task") == "squad"

    def signature(self) -> dict:
        o = self.options
        return {"train_sha256": file_sha256(o.train), "doc_stride": o.doc_stride,
                "max_query_length": o.max_query_length, "version_2_with_negative": self.version_2}

    def describe(self) -> list[tuple[str, str]]:
        o = self.options
        rows = [("task", "SQuAD 2.0 span prediction, unanswerable questions allowed" if self.version_2
                 else "SQuAD v1.1 span prediction")]
        parts = []
        truncated = out_of_window = 0
        for split in ("train", "dev"):
            if split in self.features:
                data, features = self.data[split], self.features[split]
                what = f"{split} {len(data.questions):,} questions"
                if data.unanswerable:
                    what += f" ({data.unanswerable:,} unanswerable)"
                parts.append(f"{what} → {len(features):,} windows")
                truncated += int(features.query_truncated.sum())
                out_of_window += features.out_of_window
        rows.append(("data", ", ".join(parts)))
        windows = (f"{self.max_seq_length} pieces, stride {o.doc_stride}, questions cut to {o.max_query_length}"
                   + (f" ({truncated:,} were longer)" if truncated else ""))
        if out_of_window:
            windows += f"; {out_of_window:,} windows hold only part of their answer or none (target [CLS])"
        rows.append(("windows", windows))
        skipped = len(self.data["train"].mismatched)
        if skipped:
            rows.append(("skipped", f"{skipped:,} training question(s) whose answer text is not at answer_start"))
        return rows
