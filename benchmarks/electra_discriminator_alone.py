"""Can the discriminator learn replaced-token detection at all on a small budget? (run by hand)

``bert pretrain --objective electra`` on a tiny model and a CPU budget ends with a discriminator
that calls every token original (see the README's ELECTRA section). This script takes the
generator out of the question: it trains the discriminator and its head **alone** on the same
records, ELECTRA's masking (15 %), with the masked positions filled by a fixed rule instead of a
generator's samples:

* ``uniform``: a token drawn uniformly from the vocabulary. Mostly rare tokens, so the token's
  identity alone gives most of them away (what an untrained generator's samples look like);
* ``unigram``: the batch's own masked tokens, shuffled across the batch. Same frequencies as the
  text, so identity tells nothing and only context does (what a generator that has learnt word
  frequencies but little context, as ours does at these budgets, produces).

For each rule it prints, per logged window, the discriminator's loss against the entropy of
"replaced" at the window's share of replaced tokens (the loss of the best context-free answer,
a constant), their difference in nats (what the model has learnt beyond the prior) and the
recall on replaced tokens, then one Markdown table of the last windows.

    .venv/bin/python benchmarks/electra_discriminator_alone.py --records /tmp/helps-v2/records \\
        --vocab /tmp/helps-v2/vocab/vocab.txt --steps 1000
    .venv/bin/python benchmarks/electra_discriminator_alone.py ... --init MODEL_DIR   # from an encoder's weights

The records are those ``benchmarks/pretraining_helps.py`` makes (``WORKDIR/records``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RULES = ("uniform", "unigram")


def replacements(rule: str, originals, vocab_size: int, seed):
    """``[N]`` tokens for the ``[N]`` masked ``originals`` of a batch, by ``rule``."""
    import tensorflow as tf

    if rule == "uniform":
        return tf.random.stateless_uniform(tf.shape(originals), seed, 0, vocab_size, tf.int32)
    return tf.gather(originals, tf.argsort(tf.random.stateless_uniform(tf.shape(originals), seed)))


def corrupted(batch, rule: str, vocab_size: int, seed):
    """The discriminator's input ``[B, T]`` and its labels (1.0 where a token was changed) for a masked batch."""
    import tensorflow as tf

    from models.electra import _scatter

    ids = tf.cast(batch["input_ids"], tf.int32)
    positions = tf.cast(batch["masked_lm_positions"], tf.int32)
    real = batch["masked_lm_weights"] > 0  # [B, P]
    originals = tf.cast(batch["masked_lm_ids"], tf.int32)
    text = _scatter(ids, positions, originals, real)  # [B, T], the uncorrupted text
    drawn = replacements(rule, tf.boolean_mask(originals, real), vocab_size, seed)  # [N]
    filled = tf.tensor_scatter_nd_update(originals, tf.where(real), drawn)  # [B, P]
    fake = _scatter(ids, positions, filled, real)
    mask = tf.cast(batch["input_mask"], tf.float32)
    return fake, tf.cast(tf.not_equal(fake, text), tf.float32) * mask


def train(rule: str, options, vocab) -> list[dict]:
    """``options.steps`` updates of the discriminator alone; one dict per logged window."""
    import keras
    import tensorflow as tf

    from bert_cli.electra import masking
    from data.pretraining_input import pretraining_dataset
    from models.config import BertConfig
    from models.electra import build_electra_discriminator, replaced_token_logits
    from models.optimization import build_optimizer

    keras.utils.set_random_seed(options.seed)
    config = BertConfig.from_preset(options.model, vocab_size=len(vocab), hidden_dropout_prob=0.0,
                                    attention_probs_dropout_prob=0.0)
    model = build_electra_discriminator(config)
    model.backbone.get_layer("pooled_dense").trainable = False  # no gradient reaches it
    if options.init:
        model.backbone.load_weights(str(options.init / "encoder.weights.h5"))
    optimizer = build_optimizer("adamw", options.learning_rate, options.steps, options.warmup_steps)
    files = sorted(str(p) for p in options.records.glob("*.tfrecord"))
    data = pretraining_dataset(files, 128, 20, options.batch_size, next_sentence=False, seed=options.seed,
                               dynamic_masking=masking(vocab, 0.15, whole_word=False))

    @tf.function
    def step(batch, seed):
        fake, replaced = corrupted(batch, rule, len(vocab), seed)
        mask = tf.cast(batch["input_mask"], tf.float32)
        with tf.GradientTape() as tape:
            encoded = model.backbone({"token_ids": fake, "segment_ids": batch["segment_ids"],
                                      "padding_mask": batch["input_mask"]}, training=True)
            logits = replaced_token_logits(model, encoded["sequence_output"])  # [B, T]
            loss = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(replaced, logits) * mask) / tf.reduce_sum(mask)
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        flagged = tf.cast(logits > 0, tf.float32) * mask
        return tf.stack([loss * tf.reduce_sum(mask), tf.reduce_sum(mask), tf.reduce_sum(replaced),
                         tf.reduce_sum(flagged * replaced)])

    windows, sums, start = [], tf.zeros(4), time.perf_counter()
    for index, batch in enumerate(data.take(options.steps), start=1):
        sums += step(batch, tf.constant([options.seed, index], tf.int64))
        if index % options.log_every == 0 or index == options.steps:
            windows.append(window(rule, index, sums.numpy(), time.perf_counter() - start))
            print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in windows[-1].items()),
                  flush=True)
            sums = tf.zeros(4)
    return windows


def window(rule: str, step: int, sums, seconds: float) -> dict:
    """One logged window: loss and the constant answer's loss (the entropy of the replaced share)."""
    loss_sum, tokens, replaced, hits = (float(x) for x in sums)
    share = replaced / tokens
    prior = -(share * math.log(share) + (1 - share) * math.log(1 - share)) if 0 < share < 1 else 0.0
    return {"rule": rule, "step": step, "loss": loss_sum / tokens, "prior": prior,
            "learnt": prior - loss_sum / tokens, "recall": hits / replaced if replaced else 0.0,
            "seconds": seconds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, required=True, help="a folder of pre-training records (T=128, P=20)")
    parser.add_argument("--vocab", type=Path, required=True, help="their vocab.txt")
    parser.add_argument("--model", default="L-2_H-128", help="preset of the discriminator")
    parser.add_argument("--init", type=Path, help="a model directory whose encoder.weights.h5 starts it")
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=12345)
    options = parser.parse_args(argv)

    from data.tokenization import Vocabulary

    vocab = Vocabulary.load(options.vocab)
    last = [train(rule, options, vocab)[-1] for rule in options.rules]
    print(f"\nDiscriminator alone, {options.model}, {options.steps} updates of {options.batch_size}, "
          f"lr {options.learning_rate:g}, init {options.init or 'random'}; last window of {options.log_every}:\n")
    print("| replacements | loss | constant answer's loss | learnt (nats/token) | recall | minutes |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in last:
        print(f"| {row['rule']} | {row['loss']:.4f} | {row['prior']:.4f} | {row['learnt']:.4f} | "
              f"{row['recall']:.1%} | {row['seconds'] / 60:.1f} |")


if __name__ == "__main__":
    main()
