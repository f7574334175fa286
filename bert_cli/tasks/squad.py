"""``bert finetune squad``: SQuAD v1.1 / v2.0 span prediction, everything on the CLI side.

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

Serving: ``serving_default(question, context)`` -> ``answer``, ``start_char``,
``end_char``, ``score`` (and ``is_impossible`` for v2 models).

``bert distill`` of a SQuAD model: :class:`Distillation` (the teacher's start and
end distributions moved onto the student's own windows through the context's
characters, :func:`aligned_logits`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from bert_cli import console
from bert_cli.commands.options import DATA, argument, option
from bert_cli.errors import UserError
from bert_cli.finetuning import file_sha256, model_inputs
from bert_cli.predicting import text_of
from data.errors import DataError
from data.metrics import log_softmax

NAME = "squad"
HELP = "Fine-tune extractive question answering on SQuAD v1.1 / v2.0; rerun the same command to resume."
# Shared fine-tuning options whose default differs for this task: run_squad.py's.
DEFAULTS = {"max_seq_length": 384, "epochs": 2.0}
SQUAD_SUMS = ("loss", "start_correct", "end_correct", "examples")
NBEST_FILE = "nbest_predictions.json"
NULL_ODDS_FILE = "null_odds.json"


@dataclasses.dataclass(frozen=True)
class Options:
    """The squad command's own options (names as the CLI options)."""

    train: Path = argument(help="Training file: SQuAD v1.1 or v2.0 JSON.")
    dev: Path | None = option(
        None, help="SQuAD JSON to evaluate on after every epoch (EM/F1 as the official scripts); predictions.json, "
        "nbest_predictions.json (and null_odds.json) are written for it.", panel=DATA)
    doc_stride: int = option(128, help="Pieces between the starts of two windows over a long context.", panel=DATA)
    max_query_length: int = option(64, help="Questions are cut to this many pieces.", panel=DATA)
    n_best_size: int = option(20, help="Candidate answers kept per question (nbest_predictions.json).", panel=DATA)
    max_answer_length: int = option(30, help="Longest answer in pieces.", panel=DATA)
    null_score_diff_threshold: float = option(
        0.0, help="v2: answer \"\" when the null score beats the best span by more than this.", panel=DATA)
    version_2_with_negative: bool | None = option(  # None: detected from the training file
        None, help="SQuAD 2.0 (unanswerable questions) or v1.1; default: detected from the training file.",
        flags=("--version-2-with-negative/--version-1",), panel=DATA, show_default=False)
    cache_dir: Path | None = None  # fallback folder for the features cache (OUTPUT/cache); not an option


def _warn_mismatched(data, trained: bool) -> None:
    """A warning naming the questions of ``data`` whose answer text is not at its answer_start."""
    if not data.mismatched:
        return
    shown = ", ".join(data.mismatched[:3]) + (", ..." if len(data.mismatched) > 3 else "")
    use = "skipped for training" if trained else "scored on all their gold answers, no loss"
    console.warning(f"{data.path}: {len(data.mismatched):,} question(s) whose answer text is not at its "
                    f"answer_start ({use}): {shown}")


def _tokenizer_of(tokenize):
    """The runner passes ``Tokenizer.encode``; SQuAD needs the tokenizer itself (for the offsets)."""
    tokenizer = getattr(tokenize, "__self__", None)
    if tokenizer is None or not hasattr(tokenizer, "tokenize_with_offsets"):
        raise TypeError("the SQuAD recipe needs data.tokenization.Tokenizer.encode as its tokenize function")
    return tokenizer


class Recipe:
    """The squad task as a :class:`bert_cli.finetuning.Recipe` (see the module docstring)."""

    task = NAME
    unit = "windows"
    sums = SQUAD_SUMS
    # Nothing is cut: the span loss is a softmax over the whole window, padding included (as the original's), so
    # cutting a batch's padding would change it.
    token_keys = ()

    def __init__(self, options: Options, common=None) -> None:
        from bert_cli.finetuning import CACHE_DIR

        if common is not None and options.cache_dir is None:
            # The features cache falls back to OUTPUT/cache when the data's own folder is read-only.
            options = dataclasses.replace(options, cache_dir=Path(common.output) / CACHE_DIR)
        self.options = options
        self.files = {"train": options.train, "dev": options.dev, "test": None}
        self.data: dict = {}
        self.features: dict = {}
        self.version_2 = False
        self.max_seq_length = 0
        self._predicted: tuple | None = None
        # Splits featurised without the on-disk features cache: data that is not one file as read
        # (bert distill's unlabeled questions: several files merged, answers dropped).
        self.uncached: set[str] = set()

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
            _warn_mismatched(data, trained=split == "train")

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
            if split in self.uncached:
                features = squad.featurize(data, tokenizer, max_seq_length, o.doc_stride, o.max_query_length)
                console.info(f"{split} features: {len(features):,} windows")
                self.features[split] = features
                continue
            features, path, hit = squad.cached_featurize(data, tokenizer, max_seq_length, o.doc_stride,
                                                         o.max_query_length, fallback_dir=o.cache_dir)
            if hit:
                console.info(f"{split} features: {len(features):,} windows read from the cache {path}")
            elif path is not None:
                console.info(f"{split} features: {len(features):,} windows, cached in {path}")
            self.features[split] = features
        # Fine-tuning needs something to train on; bert distill's splits ("unlabeled", "labeled") have no "train".
        if "train" in self.features and not len(self.features["train"].training_arrays()["input_ids"]):
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
        return task.get("task") == NAME

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


def report(result, options: Options) -> None:
    """After the results table: the official-style dev scores and, for v2, the best null threshold."""
    details = result.details or {}
    if "scores" in details:
        console.stdout.print(scores_table(details["scores"], f"dev scores ({Path(options.dev).name})"))
    threshold = details.get("threshold")
    if threshold:
        console.stdout.print(
            f"best dev F1 {threshold['best_f1']:.2f} with --null-score-diff-threshold "
            f"{threshold['best_f1_threshold']:.4g} (EM {threshold['best_exact']:.2f} with "
            f"{threshold['best_exact_threshold']:.4g}); this run used {threshold['current']:g}"
        )


def scores_table(scores: dict, title: str):
    """A rich table of :func:`data.squad.score`'s result (0-100, as the official scripts print)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", min_width=min(len(title), 100))
    for column, justify in (("questions", "left"), ("count", "right"), ("EM", "right"), ("F1", "right")):
        table.add_column(column, justify=justify)
    table.add_row("all", f"{scores['total']:,}", f"{scores['exact']:.2f}", f"{scores['f1']:.2f}", style="bold")
    for prefix, name in (("HasAns_", "with an answer"), ("NoAns_", "unanswerable")):
        if f"{prefix}total" in scores:
            table.add_row(name, f"{scores[prefix + 'total']:,}", f"{scores[prefix + 'exact']:.2f}",
                          f"{scores[prefix + 'f1']:.2f}")
    if "best_f1" in scores:
        table.add_row("best threshold", "", f"{scores['best_exact']:.2f} @ {scores['best_exact_thresh']:.4g}",
                      f"{scores['best_f1']:.2f} @ {scores['best_f1_thresh']:.4g}")
    if scores.get("missing"):
        table.caption = f"{scores['missing']:,} question(s) without a prediction count as wrong"
    return table


# ----------------------------------------------------------------------------
# bert distill
# ----------------------------------------------------------------------------


def _context_of_questions(data) -> np.ndarray:
    """[Q] int64: the context index of every question of ``data``."""
    return np.array([question.context for question in data.questions], dtype=np.int64)


def _piece_base(features, context: np.ndarray) -> np.ndarray:
    """[N] ``base``: the context piece at position j of window n is ``base[n] + j`` (an index into
    ``piece_starts``, all contexts laid end to end)."""
    return features.piece_splits[context[features.question]] + features.doc_start - features.doc_offset


def _grouped_logsumexp(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``keys`` [K] (sorted) and the log-sum-exp of the ``values`` sharing each: [M] -> [K]."""
    if not len(keys):
        return keys, values.astype(np.float64)
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order].astype(np.float64)
    new = np.r_[True, keys[1:] != keys[:-1]]  # [M] first of its key
    first = np.flatnonzero(new)
    top = np.maximum.reduceat(values, first)  # [K]
    total = np.add.reduceat(np.exp(values - top[np.cumsum(new) - 1]), first)
    return keys[first], top + np.log(total)


def _lookup(table: tuple[np.ndarray, np.ndarray], keys: np.ndarray) -> np.ndarray:
    """The values of ``keys`` in a sorted ``(keys, values)`` table, -inf where a key is absent."""
    known, values = table
    if not len(known):
        return np.full(len(keys), -np.inf)
    at = np.minimum(np.searchsorted(known, keys), len(known) - 1)
    return np.where(known[at] == keys, values[at], -np.inf)


def _teacher_by_character(features, context: np.ndarray, start_logits: np.ndarray, end_logits: np.ndarray,
                          stride: int):
    """The teacher's logit of an answer starting (ending) at each character where one of its words starts (ends).

    Keys are ``question * stride + character``. Each context piece counts in the
    window where it has most context (``is_max_context``, as post-processing
    reads it). Offsets are per word (all pieces of a word share its span), and
    any piece of a word makes the same answer text, so a word's logit is the
    log-sum-exp over its pieces: the teacher's odds of that start (end)
    character, whatever its own split into pieces.
    """
    rows, cols = np.nonzero(features.is_max_context)  # [M] scored context positions
    pieces = _piece_base(features, context)[rows] + cols
    question = features.question[rows].astype(np.int64) * stride
    starts = _grouped_logsumexp(question + features.piece_starts[pieces], start_logits[rows, cols])
    ends = _grouped_logsumexp(question + features.piece_ends[pieces], end_logits[rows, cols])
    return starts, ends


def _character_ranges(features, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N] each: the first character of the context a window holds and the one after its last (0, 0: empty)."""
    first = features.piece_splits[context[features.question]] + features.doc_start  # [N] global piece
    starts = np.append(features.piece_starts, 0)  # never empty; index -1 is the 0 of an empty window
    ends = np.append(features.piece_ends, 0)
    empty = features.doc_length == 0
    begin = np.where(empty, 0, starts[np.where(empty, -1, first)])
    end = np.where(empty, 0, ends[np.where(empty, -1, first + features.doc_length - 1)])
    return begin, end


def _most_overlapping(teacher, student, context: np.ndarray) -> np.ndarray:
    """[N student windows]: the teacher window of the same question sharing most context characters (the
    first on a tie), whose [CLS] logits the student window takes."""
    t_begin, t_end = _character_ranges(teacher, context)
    s_begin, s_end = _character_ranges(student, context)
    order = np.argsort(teacher.question, kind="stable")
    question = teacher.question[order]
    low = np.searchsorted(question, student.question, "left")  # [N]
    high = np.searchsorted(question, student.question, "right")
    if not len(low):
        return np.zeros(0, dtype=np.int64)
    width = int((high - low).max())  # every question has a window in both featurisations
    candidates = low[:, np.newaxis] + np.arange(width)[np.newaxis, :]  # [N, K]
    rows = order[np.minimum(candidates, len(order) - 1)]  # [N, K] teacher windows
    shared = np.minimum(s_end[:, np.newaxis], t_end[rows]) - np.maximum(s_begin[:, np.newaxis], t_begin[rows])
    shared = np.where(candidates < high[:, np.newaxis], np.maximum(shared, 0), -1)
    return rows[np.arange(len(rows)), shared.argmax(axis=1)]


def _word_edges(features) -> tuple[np.ndarray, np.ndarray]:
    """[P] bool each: whether a context piece is the first (last) piece of its word."""
    starts, ends, count = features.piece_starts, features.piece_ends, len(features.piece_starts)
    first, last = np.ones(count, dtype=bool), np.ones(count, dtype=bool)
    first[1:] = starts[1:] != starts[:-1]
    last[:-1] = ends[:-1] != ends[1:]
    first[features.piece_splits[:-1][features.piece_splits[:-1] < count]] = True  # a context's first piece
    last[features.piece_splits[1:][features.piece_splits[1:] > 0] - 1] = True
    return first, last


def aligned_logits(data, teacher, start_logits: np.ndarray, end_logits: np.ndarray, student,
                   length: int) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's start and end logits [Nt, Tt] moved onto the student's windows: float32 [N, length].

    Teacher and student tokenise the same ``data`` independently, so windows
    and pieces differ; they meet at the characters of the context. A
    student window's first piece of each word gets the teacher's logit of an
    answer starting at that word's first character, its last piece the logit of
    one ending at the word's last; [CLS] gets the [CLS] logits of the teacher
    window overlapping it most; every other position (other pieces of a word,
    words the teacher has no piece boundary at, question, [SEP], padding) -inf.
    These are the positions fine-tuning's targets point at.
    """
    context = _context_of_questions(data)
    stride = max((len(text) for text in data.contexts), default=0) + 1
    starts, ends = _teacher_by_character(teacher, context, np.asarray(start_logits), np.asarray(end_logits), stride)
    result_start = np.full((len(student), length), -np.inf, dtype=np.float32)  # [N, T]
    result_end = np.full((len(student), length), -np.inf, dtype=np.float32)
    positions = np.arange(length)[np.newaxis, :]
    inside = (positions >= student.doc_offset[:, np.newaxis]) \
        & (positions < (student.doc_offset + student.doc_length)[:, np.newaxis])  # [N, T]
    rows, cols = np.nonzero(inside)  # [M] the student's context positions
    pieces = _piece_base(student, context)[rows] + cols
    question = student.question[rows].astype(np.int64) * stride
    first, last = _word_edges(student)
    for result, table, edge, offsets in ((result_start, starts, first, student.piece_starts),
                                         (result_end, ends, last, student.piece_ends)):
        keep = edge[pieces]
        result[rows[keep], cols[keep]] = _lookup(table, question[keep] + offsets[pieces[keep]])
    window = _most_overlapping(teacher, student, context)
    result_start[:, 0] = np.asarray(start_logits)[window, 0]
    result_end[:, 0] = np.asarray(end_logits)[window, 0]
    return result_start, result_end


class Distillation:
    """``bert distill`` of a SQuAD model: per window, the teacher's start and end distributions.

    Unlabeled input is SQuAD JSON whose questions need no answers (any are
    ignored); several files are read as one. The teacher's logits are
    aligned with the student's own windows at the characters of the context
    (:func:`aligned_logits`), then turned into distributions over each student
    window at the temperature. Soft loss: the mean of the start and end KL
    (times T²) per window; with ``--train``, the gold span's cross-entropy on
    the windows of its trainable questions. Agreement on dev: the share of
    questions whose answer text is the teacher's.
    """

    SUMS = ("loss", "agree", "judged", "examples")
    TOKEN_KEYS = ("input_ids", "input_mask", "segment_ids", "teacher_start", "teacher_end")

    def __init__(self, task: dict) -> None:
        self.task = task

    def recipe(self, common) -> Recipe:
        """An unread squad recipe windowed and post-processed as the teacher's task.json says."""
        t = self.task
        options = Options(
            train=Path("-"), doc_stride=int(t.get("doc_stride", 128)),
            max_query_length=int(t.get("max_query_length", 64)), n_best_size=int(t.get("n_best_size", 20)),
            max_answer_length=int(t.get("max_answer_length", 30)),
            null_score_diff_threshold=float(t.get("null_score_diff_threshold", 0.0)),
            version_2_with_negative=bool(t.get("version_2_with_negative", False)))
        if common is not None:
            self._check_length(common.max_seq_length, options)
        return Recipe(options, common)

    @staticmethod
    def _check_length(max_seq_length: int, options: Options) -> None:
        """The student's windows need room for the teacher's doc_stride (which bert distill cannot change)."""
        from data.squad import check_lengths

        try:
            check_lengths(max_seq_length, options.doc_stride, options.max_query_length)
        except DataError:
            shortest = options.doc_stride + options.max_query_length + 4
            raise UserError(f"--max-seq-length {max_seq_length}: too short for the teacher's windows (doc_stride "
                            f"{options.doc_stride}, max_query_length {options.max_query_length} in its task.json); "
                            f"give at least {shortest}") from None

    def read(self, recipe: Recipe, unlabeled: list[Path], train: Path | None, dev: Path | None) -> None:
        from data import squad

        recipe.version_2 = bool(recipe.options.version_2_with_negative)
        recipe.data["unlabeled"] = squad.without_answers(
            [squad.read_squad(path, require_answers=False) for path in unlabeled])
        recipe.uncached.add("unlabeled")  # merged, answers dropped: not the file the features cache keys on
        for split, path in (("labeled", train), ("dev", dev)):
            if path is None:
                continue
            data = squad.read_squad(path)
            if data.version_2 and not recipe.version_2:
                raise DataError(f"{path}: has unanswerable questions (is_impossible) but the teacher is a SQuAD "
                                "v1.1 model; give SQuAD v1.1 data")
            _warn_mismatched(data, trained=split == "labeled")
            recipe.data[split] = data

    def teacher_outputs(self, model, batch) -> dict:
        logits = model(model_inputs(batch), training=False)
        return {"start_logits": logits["start_logits"], "end_logits": logits["end_logits"]}  # [B, T] each

    def targets(self, teacher_view, outputs: dict, student, split: str, temperature: float) -> dict:
        """The teacher's start/end distributions over each student window [N, T] (and ``hard_mask`` [N])."""
        features = student.features[split]
        length = student.arrays(split)["input_ids"].shape[1]
        logits = aligned_logits(student.data[split], teacher_view.features[split], outputs["start_logits"],
                                outputs["end_logits"], features, length)
        result = {name: np.exp(log_softmax(value / temperature)).astype(np.float32)  # -inf -> probability 0
                  for name, value in zip(("teacher_start", "teacher_end"), logits)}
        if split == "labeled":
            result["hard_mask"] = features.trainable[features.question].astype(np.float32)
        return result

    def compute(self, model, batch, temperature: float, training: bool) -> dict:
        import keras
        from keras import ops

        from models.heads import agreement, distillation_divergence

        logits = model(model_inputs(batch), training=training)
        start, end = ops.cast(logits["start_logits"], "float32"), ops.cast(logits["end_logits"], "float32")  # [B, T]
        size = ops.cast(ops.shape(start)[0], "float32")
        soft = (distillation_divergence(start, batch["teacher_start"], temperature)
                + distillation_divergence(end, batch["teacher_end"], temperature)) / 2.0  # [B]
        gold = [keras.losses.sparse_categorical_crossentropy(ops.cast(batch[key], "int32"), value, from_logits=True)
                for key, value in (("start_positions", start), ("end_positions", end))]  # 2 x [B]
        hard = ops.sum(ops.cast(batch["hard_weight"], "float32") * (gold[0] + gold[1]) / 2.0) / size
        agree = ops.sum(agreement(start, batch["teacher_start"])) + ops.sum(agreement(end, batch["teacher_end"]))
        return {"loss": ops.mean(soft) + hard, "agree": agree, "judged": 2.0 * size, "examples": size}

    def agreement(self, student, student_outputs: dict, teacher_view, teacher_outputs: dict) -> float:
        """The share of dev questions whose predicted answer text (post-processed as fine-tuning's) is the
        teacher's ("" = no answer, v2)."""
        ours = student._predictions("dev", student_outputs).answers
        theirs = teacher_view._predictions("dev", teacher_outputs).answers
        return float(np.mean([ours.get(key) == answer for key, answer in theirs.items()])) if theirs else 0.0



# ----------------------------------------------------------------------------
# A fine-tuned model directory
# ----------------------------------------------------------------------------


def build_model(model_dir):
    """A freshly built span predictor of the directory's config (weights not yet loaded)."""
    from models.heads import build_span_predictor

    return build_span_predictor(model_dir.config)


def min_seq_length(task: dict) -> int:
    """[CLS] question [SEP] context [SEP] with a piece of each."""
    return 5


def hugging_face(task: dict) -> dict:
    """The Transformers class a squad model directory becomes, its head's tensors and config keys.

    ``BertForQuestionAnswering``: ``qa_outputs`` [2, H] on every token's output, start
    logits in channel 0 and end logits in channel 1, no dropout: our span head.
    """
    return {"architecture": "BertForQuestionAnswering", "head": "qa_outputs", "config": {}}


# ----------------------------------------------------------------------------
# Serving (the export's serving_default)
# ----------------------------------------------------------------------------


class Serving:
    """Answers to questions about a context, as ``bert finetune squad`` trained it (``data.squad``).

    ``[CLS] question [SEP] context-window [SEP]``: the question cut to
    ``max_query_length`` pieces, the context in windows ``doc_stride`` pieces
    apart (``data.squad.window_spans``), each context piece scored only in the
    window where it has most context (``data.squad.max_context``). The answer
    is the best valid span over all windows (``data.squad.best_spans``: start
    scored in the window, ``start <= end < start + max_answer_length``), cut
    from the context's own characters through the tokenizer's offsets. v2
    models answer "" (``is_impossible``) when the smallest [CLS] score over the
    windows beats the best span by more than ``null_score_diff_threshold``.

    Args:
        module: The :class:`bert_cli.serving.TaskServing` this signature belongs to.
        task: The model's ``task.json`` (doc_stride, max_query_length, ...).
    """

    inputs = ("question", "context")

    def __init__(self, module, task: dict) -> None:
        from data.squad import check_lengths

        self.module = module
        self.doc_stride = int(task.get("doc_stride", 128))
        self.max_query_length = int(task.get("max_query_length", 64))
        self.max_answer_length = int(task.get("max_answer_length", 30))
        self.version_2 = bool(task.get("version_2_with_negative", False))
        self.null_score_diff_threshold = float(task.get("null_score_diff_threshold", 0.0))
        check_lengths(module.max_seq_length, self.doc_stride, self.max_query_length)

    def windows(self, question, context) -> dict:
        """The windows of each (question, context) pair: the graph twin of ``data.squad.featurize``.

        Returns ``inputs`` [N, T] (the model's), and per window ``question`` [N]
        (the batch row), ``doc_start``, ``doc_offset``, ``doc_length`` [N] as in
        ``data.squad.SquadFeatures``, ``in_context`` and ``is_max_context`` [N, T];
        and the context pieces' byte spans ``piece_starts``/``piece_ends`` [B, (P)].
        """
        import tensorflow as tf

        module = self.module
        query = module.tokenizer.tokenize(question)  # [B, (Q)]
        pieces, piece_starts, piece_ends = module.tokenizer.tokenize_with_offsets(context)  # [B, (P)] x3
        query_length = tf.minimum(tf.cast(query.row_lengths(), tf.int32), self.max_query_length)  # [B]
        num_pieces = tf.cast(pieces.row_lengths(), tf.int32)  # [B]
        room = module.max_seq_length - query_length - 3  # [B] context pieces per window
        stride = self.doc_stride
        # window_spans in closed form: doc_stride < room, so windows start at
        # k * doc_stride until one reaches the context's end (one for an empty context).
        windows = 1 + tf.maximum(0, (num_pieces - room + stride - 1) // stride)  # [B]
        row = tf.repeat(tf.range(tf.size(windows)), windows)  # [N] the question of each window
        k = tf.range(tf.size(row)) - tf.gather(tf.cumsum(windows, exclusive=True), row)  # [N] index within it
        w = {"question": row, "doc_start": k * stride,
             "context_first": tf.gather(tf.cast(pieces.row_starts(), tf.int32), row),  # [N] the context's first piece
             "piece_starts": piece_starts, "piece_ends": piece_ends}
        w["doc_length"] = tf.minimum(tf.gather(num_pieces, row) - w["doc_start"], tf.gather(room, row))  # [N]
        w["query_length"] = tf.gather(query_length, row)  # [N]
        w["doc_offset"] = w["query_length"] + 2
        self._pack(w, query, pieces)
        w["is_max_context"] = self._max_context(w)
        return w

    def _pack(self, w: dict, query, pieces) -> None:
        """``[CLS] query [SEP] context-window [SEP]`` of every window: adds ``inputs``, ``piece``, ``in_context``.

        Dense index arithmetic: position j of a window is [CLS], a query piece,
        [SEP], a context piece, [SEP] or padding.
        """
        import tensorflow as tf

        module = self.module
        total = w["doc_offset"] + w["doc_length"] + 1  # [N] [CLS] query [SEP] context [SEP]
        j = tf.range(tf.maximum(tf.reduce_max(total), 3))[tf.newaxis, :]  # [1, T]
        col = lambda v: v[:, tf.newaxis]  # noqa: E731  [N] -> [N, 1]
        query_values = tf.concat([tf.cast(query.flat_values, tf.int32), [module.pad_id]], 0)
        context_values = tf.concat([tf.cast(pieces.flat_values, tf.int32), [module.pad_id]], 0)
        query_index = col(tf.gather(tf.cast(query.row_starts(), tf.int32), w["question"])) + j - 1  # [N, T]
        piece = col(w["doc_start"]) + j - col(w["doc_offset"])  # [N, T] context piece (within its context) at j
        context_index = col(w["context_first"]) + piece  # [N, T] into all the batch's context pieces
        in_query = (j >= 1) & (j <= col(w["query_length"]))
        in_context = (j >= col(w["doc_offset"])) & (j < col(w["doc_offset"] + w["doc_length"]))
        separator = (j == col(w["query_length"]) + 1) | (j == col(total) - 1)
        ids = tf.fill(tf.shape(in_context), module.pad_id)
        ids = tf.where(j == 0, module.cls_id, ids)
        ids = tf.where(in_query, tf.gather(query_values, tf.clip_by_value(query_index, 0, tf.size(query_values) - 1)),
                       ids)
        ids = tf.where(in_context, tf.gather(context_values, tf.clip_by_value(
            context_index, 0, tf.size(context_values) - 1)), ids)
        ids = tf.where(separator, module.sep_id, ids)
        w["inputs"] = {"token_ids": ids,
                       "segment_ids": tf.cast((j >= col(w["doc_offset"])) & (j < col(total)), tf.int32),
                       "padding_mask": tf.cast(j < col(total), tf.int32)}
        w.update(piece=piece, context_index=context_index, in_context=in_context,
                 context_pieces=tf.size(context_values))

    def _max_context(self, w: dict):
        """[N, T]: whether each context piece is scored in this window (``data.squad.max_context``).

        A piece is scored in the window where min(left, right) + 0.01 * length is
        largest, the first such window on a tie (float64, the same arithmetic as numpy's).
        """
        import tensorflow as tf

        col = lambda v: v[:, tf.newaxis]  # noqa: E731  [N] -> [N, 1]
        piece, in_context, doc_start, doc_length = w["piece"], w["in_context"], w["doc_start"], w["doc_length"]
        score = tf.cast(tf.minimum(piece - col(doc_start), col(doc_start + doc_length) - 1 - piece), tf.float64) \
            + 0.01 * tf.cast(col(doc_length), tf.float64)  # [N, T]
        segments = w["context_pieces"]  # one per context piece, and one for every non-context position
        segment = tf.where(in_context, w["context_index"], segments - 1)  # [N, T]
        best = tf.math.unsorted_segment_max(tf.where(in_context, score, -1.0), segment, segments)  # [pieces + 1]
        windows = tf.size(w["question"])
        window = tf.broadcast_to(col(tf.range(windows)), tf.shape(segment))  # [N, T]
        achieves = in_context & tf.equal(score, tf.gather(best, segment))
        first = tf.math.unsorted_segment_min(tf.where(achieves, window, windows), segment, segments)
        return in_context & tf.equal(window, tf.gather(first, segment))

    def serve(self, question, context):
        """(question, context) strings -> ``answer``, ``start_char``, ``end_char``, ``score`` (+ ``is_impossible``)."""
        import tensorflow as tf

        w = self.windows(question, context)
        outputs = self.module.model(w["inputs"], training=False)
        start_logits = tf.cast(outputs["start_logits"], tf.float64)  # [N, T]
        end_logits = tf.cast(outputs["end_logits"], tf.float64)
        best, span_start, span_end = self._best_spans(w, start_logits, end_logits)
        winner, question_best, null = self._best_windows(w, best, start_logits, end_logits, tf.shape(question)[0])
        answered = question_best > -_infinity()
        if self.version_2:
            impossible = tf.logical_not(answered) | (null - question_best > self.null_score_diff_threshold)
            answered = tf.logical_not(impossible)
        result = self._characters(w, context, winner, span_start, span_end, answered)
        result["score"] = tf.cast(tf.where(answered, question_best, null), tf.float32)
        if self.version_2:
            result["is_impossible"] = impossible
        return result

    def _best_spans(self, w: dict, start_logits, end_logits):
        """Each window's best valid span: its score [N] (-inf: none) and its start and end positions [N].

        ``data.squad.best_spans`` with count 1: every (start, start + a) for
        a < max_answer_length, as a [N, T, A] band; the earliest span on a tie,
        as best_spans' lexsort.
        """
        import tensorflow as tf

        length, band = tf.shape(start_logits)[1], self.max_answer_length
        ends = tf.range(length)[:, tf.newaxis] + tf.range(band)[tf.newaxis, :]  # [T, A]
        clipped = tf.minimum(ends, length - 1)
        valid = (ends < length)[tf.newaxis] & w["is_max_context"][:, :, tf.newaxis] \
            & tf.gather(w["in_context"], clipped, axis=1)  # [N, T, A]
        scores = start_logits[:, :, tf.newaxis] + tf.gather(end_logits, clipped, axis=1)  # [N, T, A]
        flat_valid = tf.reshape(valid, [tf.shape(valid)[0], -1])  # [N, T * A]
        flat_scores = tf.where(flat_valid, tf.reshape(scores, tf.shape(flat_valid)), -_infinity())
        best = tf.reduce_max(flat_scores, axis=1)  # [N]
        flat_index = tf.range(tf.shape(flat_valid)[1])[tf.newaxis, :]
        choice = tf.reduce_min(tf.where(flat_valid & tf.equal(flat_scores, best[:, tf.newaxis]), flat_index,
                                        tf.shape(flat_valid)[1]), axis=1)  # [N]
        return best, choice // band, choice // band + choice % band  # positions in the window

    def _best_windows(self, w: dict, best, start_logits, end_logits, rows):
        """Per question [B]: the window of its best span (the earliest on a tie, as predict_answers' stable
        sort), that span's score (-inf: no valid span) and the smallest [CLS] (null) score of its windows."""
        import tensorflow as tf

        windows = tf.size(w["question"])
        question_best = tf.math.unsorted_segment_max(best, w["question"], rows)  # [B], -inf: no valid span
        winner = tf.math.unsorted_segment_min(
            tf.where(tf.equal(best, tf.gather(question_best, w["question"])) & (best > -_infinity()),
                     tf.range(windows), windows), w["question"], rows)  # [B]
        winner = tf.minimum(winner, windows - 1)  # questions without a span are masked by the caller
        null = tf.math.unsorted_segment_min(start_logits[:, 0] + end_logits[:, 0], w["question"], rows)  # [B]
        return winner, question_best, null

    def _characters(self, w: dict, context, winner, span_start, span_end, answered) -> dict:
        """Span positions -> context pieces -> bytes of the original context -> ``answer`` and its characters."""
        import tensorflow as tf

        def piece_of(position):  # [B] index into all the batch's context pieces
            return tf.gather(w["context_first"] + w["doc_start"] - w["doc_offset"], winner) \
                + tf.gather(position, winner)

        starts = tf.concat([tf.cast(w["piece_starts"].flat_values, tf.int32), [0]], 0)  # [pieces + 1]: never empty
        ends = tf.concat([tf.cast(w["piece_ends"].flat_values, tf.int32), [0]], 0)
        last = tf.size(starts) - 1
        byte_start = tf.where(answered, tf.gather(starts, tf.clip_by_value(piece_of(span_start), 0, last)), 0)
        byte_end = tf.where(answered, tf.gather(ends, tf.clip_by_value(piece_of(span_end), 0, last)), 0)
        answer = tf.strings.substr(context, byte_start, byte_end - byte_start, unit="BYTE")
        start_char = tf.strings.length(tf.strings.substr(context, tf.zeros_like(byte_start), byte_start,
                                                         unit="BYTE"), unit="UTF8_CHAR")
        end_char = start_char + tf.strings.length(answer, unit="UTF8_CHAR")
        return {"answer": answer, "start_char": tf.where(answered, start_char, -1),
                "end_char": tf.where(answered, end_char, -1)}

    def describe(self) -> dict:
        return {"task": NAME, "doc_stride": self.doc_stride, "max_query_length": self.max_query_length,
                "max_answer_length": self.max_answer_length, "version_2_with_negative": self.version_2,
                "null_score_diff_threshold": self.null_score_diff_threshold}


def _infinity():
    """+inf as a float64 tensor (the score of no valid span)."""
    import tensorflow as tf

    return tf.constant(float("inf"), tf.float64)


# ----------------------------------------------------------------------------
# bert predict
# ----------------------------------------------------------------------------

#: Whether a JSON example may give its text as a list of words (tagging's ``words``).
WORD_LIST_INPUT = False


def predict_fields(description: dict) -> tuple[str, ...]:
    """The fields each example needs."""
    return ("question", "context")


def prediction_record(description: dict, outputs: dict, index: int) -> dict:
    """The answer to question ``index`` of a batch: its text, characters and score (and v2's verdict)."""
    record = {"answer": text_of(outputs["answer"][index]), "start_char": int(outputs["start_char"][index]),
              "end_char": int(outputs["end_char"][index]), "score": round(float(outputs["score"][index]), 6)}
    if "is_impossible" in outputs:
        record["is_impossible"] = bool(outputs["is_impossible"][index])
    return record


def prediction_table(table, results: list[dict], description: dict) -> None:
    """Columns and rows of ``bert predict``'s table: question, answer, its characters and score."""
    from rich.markup import escape

    impossible = any("is_impossible" in r for r in results)
    for column in ("question", "answer", "chars", "score") + (("impossible",) if impossible else ()):
        table.add_column(column, justify="right" if column in ("chars", "score") else "left")
    for number, r in enumerate(results, start=1):
        row = [str(number), escape(r["question"]), escape(r["answer"]) or "[dim](no answer)[/]",
               f"{r['start_char']}-{r['end_char']}", f"{r['score']:.3f}"]
        if "is_impossible" in r:
            row.append("yes" if r["is_impossible"] else "no")
        table.add_row(*row)
