"""The original release's pre-training step as a TF1 graph, for ``benchmarks/pretrain.py``'s reference arm.

google-research/bert builds its step in graph mode (``modeling.py``,
``run_pretraining.py``, ``optimization.py``) and runs it in a session; that
code needs ``tf.contrib`` and does not import under TensorFlow 2. This module
builds the same graph with ``tf.compat.v1`` ops, written here from the
release's published structure, so its speed can be measured beside ours on
the same machine, shapes and batches:

* embeddings: word ids gathered from the table, segment ids as a one-hot
  matmul, positions sliced, summed, LayerNorm, dropout;
* each layer: query/key/value dense layers on the flattened [B*T, H] tensor,
  reshaped to [B, A, T, H/A], scores scaled by 1/sqrt(H/A) plus an additive
  -10000 mask, softmax, dropout, weighted sum, output dense + dropout +
  residual + LayerNorm; feed-forward with the tanh GELU, the same tail;
* heads: the masked positions gathered from the flat sequence output, dense +
  GELU + LayerNorm, logits against the tied word embeddings plus a bias,
  one-hot cross-entropy weighted by ``masked_lm_weights``; NSP on the tanh
  pooler of [CLS];
* the update: gradients clipped to global norm 1.0, then the release's
  ``AdamWeightDecayOptimizer`` (Adam without bias correction, decoupled
  decay 0.01 except LayerNorm and biases) under linear warm-up and decay,
  one assign per variable and slot.

No XLA, as the release runs on CPUs and GPUs. Timing only: nothing here is
used by ``bert``.
"""

from __future__ import annotations

import math
import time


def _dense(tf, x, units: int, name: str, stddev: float, activation=None):
    """``tf.layers.dense`` as the release uses it: x @ kernel + bias."""
    kernel = tf.compat.v1.get_variable(f"{name}/kernel", [x.shape[-1], units],
                                       initializer=tf.compat.v1.truncated_normal_initializer(stddev=stddev))
    bias = tf.compat.v1.get_variable(f"{name}/bias", [units], initializer=tf.compat.v1.zeros_initializer())
    y = tf.matmul(x, kernel) + bias
    return activation(y) if activation else y


def _layer_norm(tf, x, name: str):
    """LayerNorm over the last axis (``tf.contrib.layers.layer_norm``: moments, then scale and shift)."""
    gamma = tf.compat.v1.get_variable(f"{name}/gamma", [x.shape[-1]], initializer=tf.compat.v1.ones_initializer())
    beta = tf.compat.v1.get_variable(f"{name}/beta", [x.shape[-1]], initializer=tf.compat.v1.zeros_initializer())
    mean, variance = tf.nn.moments(x, [-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + 1e-12) * gamma + beta


def _gelu(tf, x):
    return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * tf.pow(x, 3))))


def _dropout(tf, x, rate: float):
    return tf.nn.dropout(x, rate=rate) if rate > 0 else x


def _attention(tf, x, additive_mask, config, batch: int, seq: int, name: str):
    """Multi-head self-attention on the flat [B*T, H] tensor; returns [B*T, H]."""
    heads, hidden = config.num_attention_heads, config.hidden_size
    size, stddev = hidden // heads, config.initializer_range

    def split(t):  # [B*T, H] -> [B, A, T, H/A]
        return tf.transpose(tf.reshape(t, [batch, seq, heads, size]), [0, 2, 1, 3])

    query = split(_dense(tf, x, hidden, f"{name}/self/query", stddev))
    key = split(_dense(tf, x, hidden, f"{name}/self/key", stddev))
    value = split(_dense(tf, x, hidden, f"{name}/self/value", stddev))
    scores = tf.matmul(query, key, transpose_b=True) * (1.0 / math.sqrt(size)) + additive_mask  # [B, A, T, T]
    probabilities = _dropout(tf, tf.nn.softmax(scores), config.attention_probs_dropout_prob)
    context = tf.transpose(tf.matmul(probabilities, value), [0, 2, 1, 3])  # [B, T, A, H/A]
    return tf.reshape(context, [batch * seq, hidden])


def _encoder(tf, features, config, batch: int, seq: int):
    """Embeddings and the Transformer blocks; returns the word table and the [B*T, H] output."""
    hidden, stddev, drop = config.hidden_size, config.initializer_range, config.hidden_dropout_prob
    init = tf.compat.v1.truncated_normal_initializer(stddev=stddev)
    table = tf.compat.v1.get_variable("bert/embeddings/word_embeddings", [config.vocab_size, hidden],
                                      initializer=init)
    segments = tf.compat.v1.get_variable("bert/embeddings/token_type_embeddings", [config.type_vocab_size, hidden],
                                         initializer=init)
    positions = tf.compat.v1.get_variable("bert/embeddings/position_embeddings",
                                          [config.max_position_embeddings, hidden], initializer=init)
    one_hot = tf.one_hot(tf.reshape(features["segment_ids"], [-1]), config.type_vocab_size)  # [B*T, S]
    x = (tf.reshape(tf.gather(table, features["input_ids"]), [batch * seq, hidden])
         + tf.matmul(one_hot, segments) + tf.tile(positions[:seq], [batch, 1]))
    x = _dropout(tf, _layer_norm(tf, x, "bert/embeddings/LayerNorm"), drop)
    mask = tf.cast(tf.reshape(features["input_mask"], [batch, 1, 1, seq]), tf.float32)
    additive_mask = (1.0 - mask) * -10000.0  # [B, 1, 1, T]
    for index in range(config.num_hidden_layers):
        name = f"bert/encoder/layer_{index}"
        attended = _dense(tf, _attention(tf, x, additive_mask, config, batch, seq, f"{name}/attention"),
                          hidden, f"{name}/attention/output/dense", stddev)
        x = _layer_norm(tf, _dropout(tf, attended, drop) + x, f"{name}/attention/output/LayerNorm")
        inner = _dense(tf, x, config.intermediate_size, f"{name}/intermediate/dense", stddev,
                       activation=lambda t: _gelu(tf, t))
        x = _layer_norm(tf, _dropout(tf, _dense(tf, inner, hidden, f"{name}/output/dense", stddev), drop) + x,
                        f"{name}/output/LayerNorm")
    return table, x


def _losses(tf, features, table, sequence, config, batch: int, seq: int):
    """Masked-LM loss (weighted mean) + NSP loss (mean), as the release's ``run_pretraining.py``."""
    hidden, stddev = config.hidden_size, config.initializer_range
    positions = features["masked_lm_positions"]
    offsets = tf.reshape(tf.range(batch, dtype=positions.dtype) * seq, [-1, 1])
    picked = tf.gather(sequence, tf.reshape(positions + offsets, [-1]))  # [B*P, H]
    transformed = _layer_norm(tf, _dense(tf, picked, hidden, "cls/predictions/transform/dense", stddev,
                                         activation=lambda t: _gelu(tf, t)), "cls/predictions/transform/LayerNorm")
    bias = tf.compat.v1.get_variable("cls/predictions/output_bias", [config.vocab_size],
                                     initializer=tf.compat.v1.zeros_initializer())
    log_probs = tf.nn.log_softmax(tf.matmul(transformed, table, transpose_b=True) + bias)  # [B*P, V]
    labels = tf.one_hot(tf.reshape(features["masked_lm_ids"], [-1]), config.vocab_size)
    weights = tf.reshape(features["masked_lm_weights"], [-1])
    per_example = -tf.reduce_sum(log_probs * labels, axis=-1)
    mlm = tf.reduce_sum(weights * per_example) / (tf.reduce_sum(weights) + 1e-5)
    first = tf.reshape(sequence, [batch, seq, hidden])[:, 0]
    pooled = _dense(tf, first, hidden, "bert/pooler/dense", stddev, activation=tf.tanh)
    nsp_weights = tf.compat.v1.get_variable("cls/seq_relationship/output_weights", [2, hidden],
                                            initializer=tf.compat.v1.truncated_normal_initializer(stddev=stddev))
    nsp_bias = tf.compat.v1.get_variable("cls/seq_relationship/output_bias", [2],
                                         initializer=tf.compat.v1.zeros_initializer())
    nsp_logits = tf.matmul(pooled, nsp_weights, transpose_b=True) + nsp_bias
    nsp_labels = tf.one_hot(tf.reshape(features["next_sentence_labels"], [-1]), 2)
    nsp = tf.reduce_mean(-tf.reduce_sum(nsp_labels * tf.nn.log_softmax(nsp_logits), axis=-1))
    return mlm + nsp


def _adam_weight_decay(tf, loss, learning_rate: float, total_steps: int):
    """Clip to global norm 1.0, then Adam without bias correction plus decoupled weight decay, under linear
    warm-up and decay."""
    step = tf.compat.v1.train.get_or_create_global_step()
    decayed = tf.compat.v1.train.polynomial_decay(learning_rate, step, total_steps, end_learning_rate=0.0, power=1.0)
    warmup = max(1, total_steps // 10)
    done = tf.cast(step, tf.float32) / warmup
    rate = tf.where(done < 1.0, learning_rate * done, decayed)  # linear warm-up over the first 10 %
    variables = tf.compat.v1.trainable_variables()
    gradients, _ = tf.clip_by_global_norm(tf.gradients(loss, variables), 1.0)
    updates = []
    for variable, gradient in zip(variables, gradients):
        base = variable.op.name
        m = tf.compat.v1.get_variable(f"{base}/adam_m", variable.shape, initializer=tf.compat.v1.zeros_initializer(),
                                      trainable=False)
        v = tf.compat.v1.get_variable(f"{base}/adam_v", variable.shape, initializer=tf.compat.v1.zeros_initializer(),
                                      trainable=False)
        gradient = tf.convert_to_tensor(gradient)
        next_m = 0.9 * m + 0.1 * gradient
        next_v = 0.999 * v + 0.001 * tf.square(gradient)
        update = next_m / (tf.sqrt(next_v) + 1e-6)
        if not any(part in base for part in ("LayerNorm", "layer_norm", "bias")):
            update += 0.01 * variable
        updates += [variable.assign(variable - rate * update), m.assign(next_m), v.assign(next_v)]
    return tf.group(*updates, step.assign_add(1))


def _graph(tf, config, data: dict, batch: int):
    """Input pipeline over ``data`` (held in memory, repeated) and the loss of one batch."""
    seq = data["input_ids"].shape[1]
    dataset = tf.data.Dataset.from_tensor_slices(data).repeat().batch(batch, drop_remainder=True).prefetch(4)
    features = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
    features = {k: tf.cast(v, tf.int32) if v.dtype == tf.int64 else v for k, v in features.items()}
    table, sequence = _encoder(tf, features, config, batch, seq)
    return _losses(tf, features, table, sequence, config, batch, seq)


def first_loss(config, data: dict, weights: dict) -> float:
    """The graph's loss on the first batch of ``data`` (all of it) with ``weights`` (original names and
    layouts), dropout off: what the test compares with our model's loss on the same weights."""
    import dataclasses

    import tensorflow as tf

    config = dataclasses.replace(config, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    graph = tf.Graph()
    with graph.as_default():
        loss = _graph(tf, config, data, len(data["input_ids"]))
        variables = {v.op.name: v for v in tf.compat.v1.global_variables()}
        if set(variables) != set(weights):
            raise ValueError(f"names differ: {sorted(set(variables) ^ set(weights))}")
        with tf.compat.v1.Session(graph=graph) as session:
            for name, variable in variables.items():
                variable.load(weights[name], session)
            return float(session.run(loss))


def time_tf1_graph(config, data: dict, batch: int, steps: int) -> float:
    """Examples/s of ``steps`` session runs of the release's pre-training step (after one warm-up run)."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(0)
        loss = _graph(tf, config, data, batch)
        train = _adam_weight_decay(tf, loss, 1e-4, steps + 1)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            first = session.run([train, loss])[1]
            if not abs(first - (math.log(config.vocab_size) + math.log(2))) < 1.0:
                raise RuntimeError(f"TF1 graph: first loss {first:.3f}, expected about ln(V) + ln(2)")
            start = time.perf_counter()
            for _ in range(steps):
                session.run(train)
            return steps * batch / (time.perf_counter() - start)
