"""Evaluation metrics of the fine-tuning recipes, in plain Python and numpy.

* Classification: accuracy, per-class and macro F1, binary F1 of a positive
  class, Matthews correlation (the multi-class form, Gorodkin 2004, which is
  the usual two-class formula when there are two classes).
* Regression: Pearson and Spearman correlation (ranks of ties averaged).
* Tagging: entity-level precision / recall / F1 overall and per type with the
  rules of the CoNLL-2000 ``conlleval`` script: an entity counts as correct only
  when its type and both boundaries match, and a tag sequence that breaks the
  scheme is read the way conlleval reads it (an ``I-X`` after ``O`` or after
  another type starts a new entity).

Undefined values (a ratio with a zero denominator, a correlation with a
constant series) are reported as 0.0, so "best so far" comparisons stay total.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Hashable, Iterable, Sequence

import numpy as np

OUTSIDE = "O"


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2 * precision * recall, precision + recall)


def accuracy(gold: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    _same_length(gold, predicted)
    return _ratio(sum(g == p for g, p in zip(gold, predicted)), len(gold))


def _same_length(gold: Sequence, predicted: Sequence) -> None:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold values but {len(predicted)} predictions")


@dataclasses.dataclass(frozen=True)
class Scores:
    """Precision, recall and F1 with the counts they come from."""

    precision: float
    recall: float
    f1: float
    correct: int
    gold: int
    predicted: int

    @classmethod
    def from_counts(cls, correct: int, gold: int, predicted: int) -> "Scores":
        precision, recall = _ratio(correct, predicted), _ratio(correct, gold)
        return cls(precision, recall, _f1(precision, recall), correct, gold, predicted)


def class_scores(gold: Sequence[Hashable], predicted: Sequence[Hashable]) -> dict[Hashable, Scores]:
    """Per-class precision / recall / F1, for every class seen in ``gold`` or ``predicted``."""
    _same_length(gold, predicted)
    gold_counts, predicted_counts = Counter(gold), Counter(predicted)
    correct = Counter(g for g, p in zip(gold, predicted) if g == p)
    classes = sorted(set(gold_counts) | set(predicted_counts), key=str)
    return {c: Scores.from_counts(correct[c], gold_counts[c], predicted_counts[c]) for c in classes}


def macro_f1(gold: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Unweighted mean of the per-class F1 over classes seen in gold or predictions."""
    scores = class_scores(gold, predicted)
    return _ratio(sum(s.f1 for s in scores.values()), len(scores))


def binary_f1(gold: Sequence[Hashable], predicted: Sequence[Hashable], positive: Hashable) -> float:
    """F1 of the ``positive`` class (GLUE's F1 for MRPC and QQP, with positive = "1")."""
    _same_length(gold, predicted)
    correct = sum(g == p == positive for g, p in zip(gold, predicted))
    return Scores.from_counts(correct, sum(g == positive for g in gold), sum(p == positive for p in predicted)).f1


def matthews_correlation(gold: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Matthews correlation coefficient for any number of classes (GLUE's CoLA metric).

    With C the confusion matrix, s the number of samples, c the correct count,
    t_k / p_k the gold / predicted counts of class k:
    ``(c*s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2) (s^2 - sum_k t_k^2))``.
    """
    _same_length(gold, predicted)
    samples = len(gold)
    correct = sum(g == p for g, p in zip(gold, predicted))
    gold_counts, predicted_counts = Counter(gold), Counter(predicted)
    classes = set(gold_counts) | set(predicted_counts)
    covariance = correct * samples - sum(predicted_counts[k] * gold_counts[k] for k in classes)
    predicted_spread = samples * samples - sum(v * v for v in predicted_counts.values())
    gold_spread = samples * samples - sum(v * v for v in gold_counts.values())
    denominator = float(predicted_spread) * float(gold_spread)
    return covariance / np.sqrt(denominator) if denominator > 0 else 0.0


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    _same_length(x, y)
    if len(x) < 2:
        return 0.0
    dx, dy = x - x.mean(), y - y.mean()
    denominator = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / denominator) if denominator > 0 else 0.0


def ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    result = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        result[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of the ranks."""
    return pearson(ranks(x), ranks(y))


# ----------------------------------------------------------------------------
# Entities of BIO / IOB2 / IOBES tag sequences, CoNLL rules
# ----------------------------------------------------------------------------

# BILOU's L (last) and U (unit) are IOBES's E and S.
_PREFIX_ALIASES = {"L": "E", "U": "S"}
ENTITY_PREFIXES = ("B", "I", "E", "S", "L", "U")


def split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", "")``; a tag without a prefix -> ``("", tag)``."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    head, dash, rest = tag.partition("-")
    if dash and head in ENTITY_PREFIXES and rest:
        return head, rest
    return "", tag


def _ends(previous: str, previous_type: str, current: str, current_type: str) -> bool:
    """Whether an entity open at the previous tag ends before the current one."""
    if previous in ("E", "S"):
        return True
    if previous in ("B", "I") and current in ("B", "S", OUTSIDE):
        return True
    return previous != OUTSIDE and previous_type != current_type


def _starts(previous: str, previous_type: str, current: str, current_type: str) -> bool:
    """Whether an entity starts at the current tag."""
    if current in ("B", "S"):
        return True
    if current in ("I", "E") and previous in ("E", "S", OUTSIDE):
        return True
    return current != OUTSIDE and previous_type != current_type


def entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities of one sentence as ``(type, start, end)`` spans (end exclusive), CoNLL rules.

    Example:
        >>> entities(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"])
        [('PER', 0, 2), ('LOC', 3, 4), ('LOC', 4, 5), ('ORG', 5, 6)]
    """
    found = []
    previous, previous_type = OUTSIDE, ""
    start = None
    for position, tag in enumerate(list(tags) + [OUTSIDE]):  # a final O closes an open entity
        prefix, kind = split_tag(tag)
        prefix = _PREFIX_ALIASES.get(prefix, prefix)
        if prefix == "":
            raise ValueError(f"tag {tag!r} has no B-/I-/E-/S- prefix; entity metrics need a BIO or IOBES scheme")
        if start is not None and _ends(previous, previous_type, prefix, kind):
            found.append((previous_type, start, position))
            start = None
        if _starts(previous, previous_type, prefix, kind):
            start = position
        previous, previous_type = prefix, kind
    return found


def entity_scores(gold: Iterable[Sequence[str]], predicted: Iterable[Sequence[str]]) -> dict[str, Scores]:
    """Entity precision / recall / F1 over sentences: ``{"overall": ..., type: ...}``.

    An entity is correct when a predicted span has exactly a gold span's type,
    start and end.
    """
    correct: Counter = Counter()
    gold_counts: Counter = Counter()
    predicted_counts: Counter = Counter()
    for gold_tags, predicted_tags in zip(gold, predicted, strict=True):
        _same_length(gold_tags, predicted_tags)
        gold_spans = set(entities(gold_tags))
        predicted_spans = set(entities(predicted_tags))
        gold_counts.update(span[0] for span in gold_spans)
        predicted_counts.update(span[0] for span in predicted_spans)
        correct.update(span[0] for span in gold_spans & predicted_spans)
    result = {
        "overall": Scores.from_counts(sum(correct.values()), sum(gold_counts.values()), sum(predicted_counts.values()))
    }
    for kind in sorted(set(gold_counts) | set(predicted_counts)):
        result[kind] = Scores.from_counts(correct[kind], gold_counts[kind], predicted_counts[kind])
    return result


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis, computed stably (the max is subtracted first)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
