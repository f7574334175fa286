"""The pre-training model, its losses, and the optimizer of the original recipe."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from models.config import BertConfig  # noqa: E402
from models.errors import ModelError  # noqa: E402
from models.optimization import WarmupLinearDecay, build_optimizer, decays  # noqa: E402
from models.pretraining import build_pretrainer, pretraining_losses  # noqa: E402

TINY = BertConfig(
    vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    max_position_embeddings=64,
)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    return build_pretrainer(TINY)


def _batch(rng, batch=3, length=12, predictions=4):
    return {
        "token_ids": rng.integers(5, TINY.vocab_size, (batch, length)).astype("int32"),
        "segment_ids": np.concatenate(
            [np.zeros((batch, length // 2)), np.ones((batch, length // 2))], 1
        ).astype("int32"),
        "padding_mask": np.ones((batch, length), "int32"),
        "masked_lm_positions": rng.integers(1, length, (batch, predictions)).astype("int32"),
    }


def test_output_weights_are_the_word_embeddings(model):
    head = model.masked_lm_head
    assert head.token_embedding is model.backbone.token_embedding
    vocab_sized = [w for w in model.weights if tuple(w.shape) == (TINY.vocab_size, TINY.hidden_size)]
    assert len(vocab_sized) == 1, "only one [V, H] matrix: the embedding, used for input and output"
    # Changing the embedding changes the MLM logits: they really use it.
    rng = np.random.default_rng(0)
    inputs = _batch(rng)
    before = np.asarray(model(inputs)["mlm_logits"])
    embedding = model.backbone.token_embedding.embeddings
    saved = np.asarray(embedding.value)
    try:
        embedding.assign(saved * 2.0)
        after = np.asarray(model(inputs)["mlm_logits"])
    finally:
        embedding.assign(saved)
    assert not np.allclose(before, after)


def test_output_shapes(model):
    outputs = model(_batch(np.random.default_rng(1), batch=2, length=10, predictions=3))
    assert tuple(outputs["mlm_logits"].shape) == (2, 3, TINY.vocab_size)
    assert tuple(outputs["nsp_logits"].shape) == (2, 2)


def test_no_nsp_model_has_no_next_sentence_output():
    outputs = build_pretrainer(TINY, next_sentence=False)(_batch(np.random.default_rng(2)))
    assert set(outputs) == {"mlm_logits"}


@pytest.mark.parametrize("next_sentence", [True, False])
def test_every_trainable_variable_gets_a_gradient(next_sentence):
    """Without NSP the pooler is unused: it must not be trainable (the optimizer would warn, and
    gradient accumulation would add None); with NSP every variable, the pooler included, learns."""
    import tensorflow as tf

    model = build_pretrainer(TINY, next_sentence=next_sentence)
    with tf.GradientTape() as tape:
        outputs = model(_batch(np.random.default_rng(4)), training=True)
        loss = sum(tf.reduce_sum(value) for value in outputs.values())
    gradients = tape.gradient(loss, model.trainable_variables)
    assert [v.path for v, g in zip(model.trainable_variables, gradients) if g is None] == []
    pooler = {v.path for v in model.backbone.get_layer("pooled_dense").weights}
    assert bool(pooler & {v.path for v in model.trainable_variables}) == next_sentence


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_losses_match_a_hand_computation():
    rng = np.random.default_rng(3)
    mlm_logits = rng.normal(size=(2, 3, 7)).astype("float32")
    nsp_logits = rng.normal(size=(2, 2)).astype("float32")
    ids = np.array([[1, 2, 0], [4, 0, 0]])
    weights = np.array([[1, 1, 0], [1, 0, 0]], "float32")
    nsp = np.array([[1], [0]])
    got = pretraining_losses(
        {"mlm_logits": mlm_logits, "nsp_logits": nsp_logits},
        {"masked_lm_ids": ids, "masked_lm_weights": weights, "next_sentence_labels": nsp},
    )
    log_p = _log_softmax(mlm_logits.astype("float64"))
    picked = -np.take_along_axis(log_p, ids[..., None], -1)[..., 0]
    mlm = (picked * weights).sum() / (weights.sum() + 1e-5)
    nsp_loss = -_log_softmax(nsp_logits.astype("float64"))[[0, 1], nsp[:, 0]].mean()
    assert float(got["mlm_loss"]) == pytest.approx(mlm, rel=1e-5)
    assert float(got["nsp_loss"]) == pytest.approx(nsp_loss, rel=1e-5)
    assert float(got["loss"]) == pytest.approx(mlm + nsp_loss, rel=1e-5)
    hits = (mlm_logits.argmax(-1) == ids) * weights
    assert float(got["mlm_accuracy"]) == pytest.approx(hits.sum() / weights.sum())
    assert float(got["nsp_accuracy"]) == pytest.approx((nsp_logits.argmax(-1) == nsp[:, 0]).mean())


def test_no_decay_on_layer_norm_and_biases(model):
    optimizer = build_optimizer("adamw", 1e-4, train_steps=10, warmup_steps=1)
    optimizer.build(model.trainable_variables)
    for variable in model.trainable_variables:
        path = variable.path
        is_norm_or_bias = ("norm" in path and variable.name in ("gamma", "beta")) or path.endswith("bias")
        assert decays(optimizer, variable) != is_norm_or_bias, path
    assert any(decays(optimizer, v) for v in model.trainable_variables if "embeddings" in v.path)


def test_optimizer_settings_are_the_originals():
    optimizer = build_optimizer("adamw", 1e-4, train_steps=10, warmup_steps=1)
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.9, 0.999, 1e-6)
    assert optimizer.weight_decay == pytest.approx(0.01)
    assert optimizer.global_clipnorm == 1.0
    assert isinstance(build_optimizer("lamb", 1e-3, 10, 1), keras.optimizers.Lamb)
    with pytest.raises(ModelError, match="--optimizer"):
        build_optimizer("sgd", 1e-3, 10, 1)


def test_schedule_is_warmup_then_the_original_linear_decay():
    schedule = WarmupLinearDecay(1e-3, train_steps=100, warmup_steps=10)
    expected = {0: 0.0, 5: 5e-4, 9: 9e-4, 10: 1e-3 * 0.9, 55: 1e-3 * 0.45, 100: 0.0, 150: 0.0}
    for step, value in expected.items():
        assert float(schedule(step)) == pytest.approx(value, abs=1e-9), step
    with pytest.raises(ModelError, match="--warmup-steps"):
        WarmupLinearDecay(1e-3, train_steps=10, warmup_steps=11)


def _original_adamw(weights, gradients, lr, weight_decay, steps, correct):
    """google-research/bert's AdamWeightDecayOptimizer in numpy (with Adam's bias correction when ``correct``)."""
    w, m, v = weights.astype(np.float64), np.zeros_like(weights, np.float64), np.zeros_like(weights, np.float64)
    for t in range(1, steps + 1):
        g = gradients[t - 1]
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        step = lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) if correct else lr
        w = w - step * m / (np.sqrt(v) + 1e-6) - lr * weight_decay * w
    return w


@pytest.mark.parametrize("bias_correction", [True, False])
def test_adamw_with_and_without_bias_correction_matches_the_reference(bias_correction):
    rng = np.random.default_rng(4)
    start = rng.normal(size=(5, 3)).astype("float32")
    gradients = rng.normal(size=(4, 5, 3)).astype("float32") * 0.1
    variable = keras.Variable(start, name="kernel")
    optimizer = build_optimizer("adamw", 1e-2, train_steps=10**6, warmup_steps=0, clip_norm=None,
                                bias_correction=bias_correction)
    optimizer.build([variable])
    for g in gradients:
        optimizer.apply([keras.ops.convert_to_tensor(g)], [variable])
    got = keras.ops.convert_to_numpy(variable)
    # Over 4 of 10**6 scheduled steps the rate decays by 4e-6 of itself: the constant rate of the reference.
    expected = _original_adamw(start, gradients, 1e-2, 0.01, len(gradients), bias_correction)
    other = _original_adamw(start, gradients, 1e-2, 0.01, len(gradients), not bias_correction)
    assert np.abs(got - expected).max() < 1e-5
    assert np.abs(got - other).max() > 1e-3  # the two updates really differ


def test_no_bias_correction_is_for_adamw_only():
    with pytest.raises(ModelError, match="adamw"):
        build_optimizer("lamb", 1e-3, train_steps=10, warmup_steps=0, bias_correction=False)
