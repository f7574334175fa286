"""Synthetic pre-training records and tiny configs for the pretrain tests.

The records follow the original feature spec, written here independently of
``bert make-data``. Their text is learnable: words follow a Zipf-like
distribution (a model first learns the skewed prior) and, half of the time, a
word is the successor of the one before it (learnable from the neighbours).
For NSP, segment B either continues from A's last word (label 0) or is drawn
afresh (label 1).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(40)]
VOCAB = SPECIALS + WORDS
PAD, UNK, CLS, SEP, MASK = range(5)
TINY_CONFIG = {
    "vocab_size": len(VOCAB), "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 64, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0, "max_position_embeddings": 64, "type_vocab_size": 2,
    "initializer_range": 0.02,
}


def write_vocab(directory: Path, tokens: list[str] = VOCAB) -> Path:
    path = directory / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def write_config(directory: Path, base: dict = TINY_CONFIG, **changes) -> Path:
    path = directory / "bert_config.json"
    path.write_text(json.dumps({**base, **changes}), encoding="utf-8")
    return path


def make_examples(count: int, seq_length: int = 24, predictions: int = 4, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    first = len(SPECIALS)
    n_words = len(WORDS)
    examples = []
    weights = 1.0 / np.arange(1, n_words + 1) ** 1.3
    weights /= weights.sum()

    def sentence(length, previous):
        words = []
        for _ in range(length):
            if previous is not None and rng.random() < 0.5:
                previous = (previous + 1) % n_words
            else:
                previous = int(rng.choice(n_words, p=weights))
            words.append(previous)
        return words

    for _ in range(count):
        a_len = int(rng.integers(4, (seq_length - 3) // 2 + 1))
        b_len = int(rng.integers(4, seq_length - 3 - a_len + 1))
        a = sentence(a_len, None)
        random_next = bool(rng.random() < 0.5)
        b = sentence(b_len, None if random_next else a[-1])
        tokens = [CLS] + [first + w for w in a] + [SEP] + [first + w for w in b] + [SEP]
        segments = [0] * (a_len + 2) + [1] * (b_len + 1)
        candidates = [i for i, t in enumerate(tokens) if t not in (CLS, SEP)]
        real = min(predictions, max(1, round(len(tokens) * 0.15)))
        positions = sorted(rng.choice(candidates, size=real, replace=False).tolist())
        labels = [tokens[p] for p in positions]
        masked = list(tokens)
        for p in positions:
            masked[p] = MASK
        pad = seq_length - len(tokens)
        spare = predictions - real
        examples.append({
            "input_ids": masked + [0] * pad,
            "input_mask": [1] * len(tokens) + [0] * pad,
            "segment_ids": segments + [0] * pad,
            "masked_lm_positions": positions + [0] * spare,
            "masked_lm_ids": labels + [0] * spare,
            "masked_lm_weights": [1.0] * real + [0.0] * spare,
            "next_sentence_labels": [int(random_next)],
        })
    return examples


def write_records(path: Path, examples: list[dict], gzip: bool = False) -> Path:
    import tensorflow as tf

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    options = tf.io.TFRecordOptions(compression_type="GZIP" if gzip else "")
    with tf.io.TFRecordWriter(str(path), options) as writer:
        for example in examples:
            features = {key: ints(value) for key, value in example.items() if key != "masked_lm_weights"}
            features["masked_lm_weights"] = tf.train.Feature(
                float_list=tf.train.FloatList(value=example["masked_lm_weights"])
            )
            writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    return path
