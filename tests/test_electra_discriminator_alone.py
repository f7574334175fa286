"""benchmarks/electra_discriminator_alone.py: the corrupted inputs it trains on are what it says.

Its finding (the discriminator alone learns nothing from replacements that keep the text's word
frequencies) only means something if ``unigram`` really keeps them and the labels mark exactly
the changed tokens; checked here against a numpy reading of the same batch.
"""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")


def _script():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "electra_discriminator_alone.py"
    spec = importlib.util.spec_from_file_location("electra_discriminator_alone", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _batch(rng, B=4, T=16, P=5, vocab=50):
    """A masked batch: [MASK]=4 at most positions of each row's predictions, padding after ``length``."""
    ids, positions, originals, weights, input_mask = [], [], [], [], []
    for _ in range(B):
        length = int(rng.integers(8, T + 1))
        row = rng.integers(5, vocab, size=T) * (np.arange(T) < length)
        picked = np.sort(rng.choice(np.arange(1, length), size=P, replace=False))
        used = int(rng.integers(1, P + 1))  # the rest are padding predictions
        originals.append(np.where(np.arange(P) < used, row[picked], 0))
        row = row.copy()
        row[picked[:used]] = np.where(rng.random(used) < 0.85, 4, row[picked[:used]])
        ids.append(row)
        positions.append(np.where(np.arange(P) < used, picked, 0))
        weights.append((np.arange(P) < used).astype(np.float32))
        input_mask.append((np.arange(T) < length).astype(np.int64))
    return {"input_ids": tf.constant(np.array(ids)), "masked_lm_positions": tf.constant(np.array(positions)),
            "masked_lm_ids": tf.constant(np.array(originals)), "masked_lm_weights": tf.constant(np.array(weights)),
            "input_mask": tf.constant(np.array(input_mask))}


@pytest.mark.parametrize("rule", ["uniform", "unigram"])
def test_labels_mark_exactly_the_changed_tokens_and_unigram_keeps_the_masked_tokens(rule):
    script = _script()
    batch = _batch(np.random.default_rng(3))
    fake, replaced = script.corrupted(batch, rule, 50, tf.constant([1, 2], tf.int64))
    fake, replaced = fake.numpy(), replaced.numpy()
    text = batch["input_ids"].numpy().copy()
    drawn = []
    for b, (pos, orig, w) in enumerate(zip(batch["masked_lm_positions"].numpy(), batch["masked_lm_ids"].numpy(),
                                           batch["masked_lm_weights"].numpy())):
        text[b, pos[w > 0]] = orig[w > 0]
        drawn.extend(fake[b, pos[w > 0]])
    outside = np.ones_like(text, bool)
    for b, (pos, w) in enumerate(zip(batch["masked_lm_positions"].numpy(), batch["masked_lm_weights"].numpy())):
        outside[b, pos[w > 0]] = False
    np.testing.assert_array_equal(fake[outside], text[outside])  # only predicted positions change
    np.testing.assert_array_equal(replaced, ((fake != text) & (batch["input_mask"].numpy() > 0)).astype(np.float32))
    masked = batch["masked_lm_ids"].numpy()[batch["masked_lm_weights"].numpy() > 0]
    if rule == "unigram":
        assert sorted(drawn) == sorted(masked)  # the same tokens, moved about
    else:
        assert all(0 <= t < 50 for t in drawn) and sorted(drawn) != sorted(masked)


def test_window_compares_the_loss_with_the_constant_answers():
    window = _script().window("unigram", 10, np.array([0.5 * 200, 200.0, 30.0, 3.0]), 6.0)
    share = 30 / 200
    prior = -(share * math.log(share) + (1 - share) * math.log(1 - share))
    assert window["prior"] == pytest.approx(prior) and window["learnt"] == pytest.approx(prior - 0.5)
    assert window["recall"] == pytest.approx(0.1)
