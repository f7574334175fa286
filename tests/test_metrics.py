"""Metrics against hand-computed values and independent formulas."""

import itertools
import math
import random

import numpy as np
import pytest

from data import metrics as m


def test_accuracy_and_per_class_scores_by_hand():
    gold = ["a", "a", "a", "b", "b", "c"]
    predicted = ["a", "a", "b", "b", "c", "c"]
    assert m.accuracy(gold, predicted) == pytest.approx(4 / 6)
    scores = m.class_scores(gold, predicted)
    # a: 2 correct of 3 gold, 2 predicted; b: 1 of 2, 2 predicted; c: 1 of 1, 2 predicted.
    assert (scores["a"].precision, scores["a"].recall) == (1.0, pytest.approx(2 / 3))
    assert scores["a"].f1 == pytest.approx(0.8)
    assert scores["b"].f1 == pytest.approx(0.5)
    assert scores["c"].f1 == pytest.approx(2 / 3)
    assert m.macro_f1(gold, predicted) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_binary_f1_of_the_positive_class():
    gold = [1, 1, 1, 0, 0, 0, 0]
    predicted = [1, 1, 0, 1, 0, 0, 0]
    # tp 2, fp 1, fn 1: P = R = 2/3.
    assert m.binary_f1(gold, predicted, positive=1) == pytest.approx(2 / 3)
    assert m.binary_f1([0, 0], [0, 0], positive=1) == 0.0


def test_binary_mcc_is_the_textbook_formula_and_the_phi_coefficient():
    rng = random.Random(0)
    for _ in range(50):
        gold = [rng.randint(0, 1) for _ in range(40)]
        predicted = [g if rng.random() < 0.7 else 1 - g for g in gold]
        tp = sum(g == p == 1 for g, p in zip(gold, predicted))
        tn = sum(g == p == 0 for g, p in zip(gold, predicted))
        fp = sum(g == 0 and p == 1 for g, p in zip(gold, predicted))
        fn = sum(g == 1 and p == 0 for g, p in zip(gold, predicted))
        textbook = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        assert m.matthews_correlation(gold, predicted) == pytest.approx(textbook)
        assert m.matthews_correlation(gold, predicted) == pytest.approx(np.corrcoef(gold, predicted)[0, 1])


def test_multiclass_mcc_by_hand():
    gold = [0, 0, 1, 1, 2, 2]
    predicted = [0, 1, 1, 1, 2, 0]
    # s = 6, c = 4, t = (2, 2, 2), p = (2, 3, 1):
    # (4*6 - (4 + 6 + 2)) / sqrt((36 - (4 + 9 + 1)) * (36 - 12)) = 12 / sqrt(22 * 24)
    assert m.matthews_correlation(gold, predicted) == pytest.approx(12 / math.sqrt(22 * 24))
    assert m.matthews_correlation([1, 1, 1], [1, 1, 1]) == 0.0  # undefined: reported as 0


def test_pearson_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = 0.5 * x + rng.normal(size=50)
    assert m.pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert m.pearson([1, 1, 1], [1, 2, 3]) == 0.0


def test_spearman_without_ties_is_the_rank_difference_formula():
    rng = random.Random(1)
    x = rng.sample(range(1000), 30)
    y = [v + rng.randint(-300, 300) + 0.5 for v in x]  # .5: no ties with each other
    order_x = {v: r for r, v in enumerate(sorted(x), start=1)}
    order_y = {v: r for r, v in enumerate(sorted(y), start=1)}
    n = len(x)
    d2 = sum((order_x[a] - order_y[b]) ** 2 for a, b in zip(x, y))
    assert m.spearman(x, y) == pytest.approx(1 - 6 * d2 / (n * (n * n - 1)))


def test_spearman_with_ties_uses_mean_ranks():
    assert m.ranks([10, 20, 20, 30]).tolist() == [1.0, 2.5, 2.5, 4.0]
    # x ranks (1, 2.5, 2.5, 4), y ranks (1, 2, 3, 4): Pearson of the ranks.
    expected = np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1]
    assert m.spearman([10, 20, 20, 30], [1, 2, 3, 4]) == pytest.approx(expected)


@pytest.mark.parametrize("tags,expected", [
    (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
    # An I- after O (or at the start) begins an entity, as conlleval reads it.
    (["I-PER", "I-PER", "O"], [("PER", 0, 2)]),
    (["O", "I-LOC", "O", "I-LOC"], [("LOC", 1, 2), ("LOC", 3, 4)]),
    # A change of type ends one entity and starts another.
    (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 3)]),
    (["B-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 3)]),
    # IOB1: B- only separates two adjacent entities of a type.
    (["I-ORG", "B-ORG", "I-ORG", "O"], [("ORG", 0, 1), ("ORG", 1, 3)]),
    # IOBES and BILOU.
    (["S-PER", "B-LOC", "I-LOC", "E-LOC", "O"], [("PER", 0, 1), ("LOC", 1, 4)]),
    (["B-LOC", "E-LOC", "E-LOC"], [("LOC", 0, 2), ("LOC", 2, 3)]),
    (["U-PER", "B-LOC", "L-LOC"], [("PER", 0, 1), ("LOC", 1, 3)]),
    (["O", "O"], []),
    ([], []),
])
def test_entities_follow_the_conll_rules(tags, expected):
    assert m.entities(tags) == expected


def test_entities_need_prefixed_tags():
    with pytest.raises(ValueError, match="no B-/I-/E-/S- prefix"):
        m.entities(["NN", "VB"])


def test_entity_scores_by_hand():
    gold = [
        ["B-PER", "I-PER", "O", "B-LOC"],
        ["B-ORG", "O", "B-PER"],
    ]
    predicted = [
        ["B-PER", "I-PER", "O", "B-ORG"],  # PER right; LOC missed, ORG spurious
        ["I-ORG", "O", "B-PER", ],  # ORG right (an I- start counts), PER right
    ]
    scores = m.entity_scores(gold, predicted)
    overall = scores["overall"]
    assert (overall.correct, overall.gold, overall.predicted) == (3, 4, 4)
    assert overall.f1 == pytest.approx(0.75)
    assert (scores["PER"].precision, scores["PER"].recall) == (1.0, 1.0)
    assert (scores["LOC"].recall, scores["LOC"].predicted) == (0.0, 0)
    assert scores["ORG"].precision == pytest.approx(0.5) and scores["ORG"].recall == 1.0
    assert scores["ORG"].f1 == pytest.approx(2 / 3)


def test_boundaries_must_match_exactly():
    scores = m.entity_scores([["B-PER", "I-PER", "I-PER"]], [["B-PER", "I-PER", "O"]])
    assert scores["overall"].correct == 0 and scores["overall"].f1 == 0.0


def test_entity_properties_on_random_sequences():
    """Random BIO sequences: every non-O tag lies in exactly one entity of its type; correct = shared spans."""
    rng = random.Random(2)
    tags = ["O", "B-A", "I-A", "B-B", "I-B"]
    for _ in range(200):
        gold = [rng.choice(tags) for _ in range(rng.randint(0, 12))]
        predicted = [rng.choice(tags) for _ in gold]
        scores = m.entity_scores([gold], [predicted])["overall"]
        shared = set(m.entities(gold)) & set(m.entities(predicted))
        assert scores.correct == len(shared)
        # Every token of an entity has a tag of its type, and spans never overlap.
        spans = m.entities(gold)
        for kind, start, end in spans:
            assert all(gold[i].endswith(kind) for i in range(start, end))
        covered = list(itertools.chain.from_iterable(range(s, e) for _, s, e in spans))
        assert len(covered) == len(set(covered)) == sum(t != "O" for t in gold)
