"""Original google-research/electra pre-training checkpoints in and out (models/electra_checkpoints.py).

The checkpoints here are written the way the original code wrote them
(``tf.compat.v1`` variables under the original scope names, optimizer slots and
``global_step`` beside them, saved by a TF1 ``Saver``), with random values, and
never by the code under test. The converted model is checked against an
independent numpy float64 transcription of the original forward pass
(``model/modeling.py``'s ``BertModel`` for the discriminator and the generator,
``run_pretraining.py``'s ``discriminator_predictions`` and ``get_token_logits``),
written from the equations: erf GELU (ELECTRA's ``modeling.gelu``), LayerNorm
with epsilon 1e-12, -10000 added to padded keys, the generator reading the
discriminator's embeddings and embedding LayerNorm, projections only where
widths differ.

Shape legend: B = batch, T = sequence length, V = vocabulary, E = embedding width,
H = discriminator hidden size, G = generator hidden size.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytestmark = pytest.mark.slow

V, H, LAYERS, HEADS, INTERMEDIATE, POSITIONS, SEGMENTS = 60, 32, 2, 2, 64, 16, 2

# name: (embedding width E, generator hidden G, generator heads, generator shape given to inspect)
CASES = {
    # ELECTRA-Small-like: narrow embeddings projected up for the discriminator and down for the generator.
    "projected": (16, 8, 1, False),
    # ELECTRA-Base/Large-like: E == H (no electra/embeddings_project); a generator of two heads.
    "unprojected": (32, 16, 2, True),
    # The generator as wide as the embeddings: the original has no generator/embeddings_project.
    "generator_as_wide_as_embeddings": (16, 16, 1, False),
}


def make_config(embedding: int):
    from models.config import BertConfig

    return BertConfig(vocab_size=V, hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                      intermediate_size=INTERMEDIATE, hidden_act="gelu_exact", max_position_embeddings=POSITIONS,
                      type_vocab_size=SEGMENTS, embedding_size=None if embedding == H else embedding)


def make_generator_shape(generator: int, heads: int):
    from models.electra import GeneratorShape

    return GeneratorShape(generator, LAYERS, heads, 4 * generator)


# ----------------------------------------------------------------------------
# An original-layout checkpoint, written as the original code would
# ----------------------------------------------------------------------------


def original_arrays(embedding: int, generator: int | None, head: bool = True, seed: int = 0) -> dict:
    """Random weights under the original ELECTRA names and shapes (run_pretraining.py's scopes)."""
    rng = np.random.default_rng(seed)
    arrays = {}

    def dense(name, fan_in, fan_out):
        arrays[f"{name}/kernel"] = rng.normal(0, fan_in ** -0.5, (fan_in, fan_out))
        arrays[f"{name}/bias"] = rng.normal(0, 0.1, (fan_out,))

    def layer_norm(name, width):
        arrays[f"{name}/gamma"] = 1 + rng.normal(0, 0.1, (width,))
        arrays[f"{name}/beta"] = rng.normal(0, 0.1, (width,))

    def encoder(scope, width, intermediate):
        for layer in range(LAYERS):
            prefix = f"{scope}/encoder/layer_{layer}"
            for name in ("query", "key", "value"):
                dense(f"{prefix}/attention/self/{name}", width, width)
            dense(f"{prefix}/attention/output/dense", width, width)
            layer_norm(f"{prefix}/attention/output/LayerNorm", width)
            dense(f"{prefix}/intermediate/dense", width, intermediate)
            dense(f"{prefix}/output/dense", intermediate, width)
            layer_norm(f"{prefix}/output/LayerNorm", width)

    arrays["electra/embeddings/word_embeddings"] = rng.normal(0, 0.3, (V, embedding))
    arrays["electra/embeddings/token_type_embeddings"] = rng.normal(0, 0.3, (SEGMENTS, embedding))
    arrays["electra/embeddings/position_embeddings"] = rng.normal(0, 0.3, (POSITIONS, embedding))
    layer_norm("electra/embeddings/LayerNorm", embedding)
    if embedding != H:
        dense("electra/embeddings_project", embedding, H)
    encoder("electra", H, INTERMEDIATE)
    if head:
        dense("discriminator_predictions/dense", H, H)
        dense("discriminator_predictions/dense_1", H, 1)
    if generator == "tied":  # untied_generator=False: the discriminator's encoder, a head of its own
        dense("generator_predictions/dense", H, embedding)
        layer_norm("generator_predictions/LayerNorm", embedding)
        arrays["generator_predictions/output_bias"] = rng.normal(0, 0.1, (V,))
    elif generator is not None:
        if embedding != generator:
            dense("generator/embeddings_project", embedding, generator)
        encoder("generator", generator, 4 * generator)
        dense("generator_predictions/dense", generator, embedding)
        layer_norm("generator_predictions/LayerNorm", embedding)
        arrays["generator_predictions/output_bias"] = rng.normal(0, 0.1, (V,))
    return {name: value.astype(np.float32) for name, value in arrays.items()}


def write_original(directory, arrays: dict, training_state: bool = True) -> str:
    """``<directory>/<directory name>.*`` (the release layout) by a TF1 Saver; returns the prefix."""
    import tensorflow as tf

    directory.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        for name, value in arrays.items():
            tf.compat.v1.get_variable(name, initializer=tf.constant(value))
            if training_state:
                # What the original's AdamWeightDecayOptimizer leaves beside each weight.
                tf.compat.v1.get_variable(f"{name}/adam_m", initializer=tf.zeros_like(value))
                tf.compat.v1.get_variable(f"{name}/adam_v", initializer=tf.zeros_like(value))
        if training_state:
            tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return saver.save(session, str(directory / directory.name))


# ----------------------------------------------------------------------------
# The original forward pass in numpy (float64)
# ----------------------------------------------------------------------------

_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    """ELECTRA's modeling.gelu: the exact (erf) form."""
    return x * 0.5 * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def layer_norm(x, w, name):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + 1e-12) * w[f"{name}/gamma"] + w[f"{name}/beta"]


def dense(x, w, name):
    return x @ w[f"{name}/kernel"] + w[f"{name}/bias"]


def transformer(x, w, scope, heads, input_mask):
    B, T, W = x.shape
    D = W // heads
    adder = (1.0 - input_mask[:, None, None, :]) * -10000.0  # [B, 1, 1, T]

    def split(t):  # [B, T, W] -> [B, N, T, D]
        return t.reshape(B, T, heads, D).transpose(0, 2, 1, 3)

    for layer in range(LAYERS):
        p = f"{scope}/encoder/layer_{layer}"
        q, k, v = (split(dense(x, w, f"{p}/attention/self/{name}")) for name in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(D) + adder  # [B, N, T, T]
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = ((scores / scores.sum(-1, keepdims=True)) @ v).transpose(0, 2, 1, 3).reshape(B, T, W)
        attention = layer_norm(dense(context, w, f"{p}/attention/output/dense") + x, w,
                               f"{p}/attention/output/LayerNorm")
        intermediate = gelu(dense(attention, w, f"{p}/intermediate/dense"))
        x = layer_norm(dense(intermediate, w, f"{p}/output/dense") + attention, w, f"{p}/output/LayerNorm")
    return x


def embeddings(w, token_ids, segment_ids):
    T = token_ids.shape[1]
    x = (w["electra/embeddings/word_embeddings"][token_ids] + w["electra/embeddings/token_type_embeddings"][segment_ids]
         + w["electra/embeddings/position_embeddings"][:T][None])  # [B, T, E]
    return layer_norm(x, w, "electra/embeddings/LayerNorm")


def reference_forward(arrays, token_ids, segment_ids, input_mask, positions, generator_heads=None,
                      discriminator_heads=HEADS):
    w = {name: value.astype(np.float64) for name, value in arrays.items()}
    x = embeddings(w, token_ids, segment_ids)
    if "electra/embeddings_project/kernel" in w:
        x = dense(x, w, "electra/embeddings_project")  # [B, T, E] -> [B, T, H]
    sequence = transformer(x, w, "electra", discriminator_heads, input_mask)
    result = {"sequence_output": sequence}
    if "discriminator_predictions/dense/kernel" in w:
        hidden = gelu(dense(sequence, w, "discriminator_predictions/dense"))
        result["discriminator_logits"] = dense(hidden, w, "discriminator_predictions/dense_1")[..., 0]  # [B, T]
    if generator_heads is not None:
        g = embeddings(w, token_ids, segment_ids)  # the discriminator's tables and LayerNorm
        if "generator/embeddings_project/kernel" in w:
            g = dense(g, w, "generator/embeddings_project")  # [B, T, E] -> [B, T, G]
        if generator_heads == "tied":  # the discriminator's own encoder output
            g = sequence
        else:
            g = transformer(g, w, "generator", generator_heads, input_mask)
        gathered = np.take_along_axis(g, positions[:, :, None], axis=1)  # [B, P, G]
        transformed = layer_norm(gelu(dense(gathered, w, "generator_predictions/dense")), w,
                                 "generator_predictions/LayerNorm")  # [B, P, E]
        result["mlm_logits"] = (transformed @ w["electra/embeddings/word_embeddings"].T
                                + w["generator_predictions/output_bias"])  # [B, P, V]
    return result


def _inputs():
    rng = np.random.default_rng(7)
    token_ids = rng.integers(5, V, (2, 10)).astype(np.int32)
    token_ids[:, 0] = 2
    segment_ids = np.zeros((2, 10), np.int32)
    segment_ids[:, 6:] = 1
    input_mask = np.ones((2, 10), np.int32)
    input_mask[1, 7:] = 0  # the second sequence is padded
    token_ids[1, 7:] = 0
    positions = np.array([[1, 4, 8], [2, 3, 5]], np.int32)
    return token_ids, segment_ids, input_mask, positions


# ----------------------------------------------------------------------------
# Our model
# ----------------------------------------------------------------------------


def build_model(config, shape, seed: int = 0):
    """An ElectraPretrainer with this generator shape, variables built."""
    from keras import ops

    from models.electra import ElectraPretrainer, GeneratorShape, build_electra
    from models.encoder import build_encoder

    fraction = shape.hidden_size / config.hidden_size
    if GeneratorShape.of(config, fraction) == shape:
        return build_electra(config, fraction, seed=seed)
    model = ElectraPretrainer(build_encoder(config), shape, config, seed=seed)
    model({"token_ids": ops.zeros((1, 2), "int32"), "segment_ids": ops.zeros((1, 2), "int32"),
           "padding_mask": ops.ones((1, 2), "int32"), "masked_lm_positions": ops.zeros((1, 1), "int32"),
           "masked_lm_ids": ops.zeros((1, 1), "int32"), "masked_lm_weights": ops.zeros((1, 1), "float32")})
    return model


def run_ours(model, token_ids, segment_ids, input_mask, positions):
    inputs = {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": input_mask}
    backbone = model.backbone if hasattr(model, "backbone") else model
    sequence = backbone(inputs)["sequence_output"]
    result = {"sequence_output": np.asarray(sequence)}
    if hasattr(model, "generator"):
        logits = model.discriminator_output(model.discriminator_dense(sequence))  # [B, T, 1]
        result["discriminator_logits"] = np.asarray(logits)[..., 0]
        result["mlm_logits"] = np.asarray(model.generator(token_ids, segment_ids, input_mask, positions))
    return result


def assert_close(got: dict, expected: dict):
    for name, value in got.items():
        assert value.shape == expected[name].shape, name
        error = np.max(np.abs(value - expected[name]))
        assert error <= 1e-5, (name, error)


# ----------------------------------------------------------------------------
# Fixtures: one original checkpoint per case
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    embedding, generator, heads, given = CASES[request.param]
    arrays = original_arrays(embedding, generator, seed=len(request.param))
    prefix = write_original(tmp_path_factory.mktemp(request.param) / "electra_tiny", arrays)
    return {"name": request.param, "arrays": arrays, "prefix": prefix, "config": make_config(embedding),
            "shape": make_generator_shape(generator, heads), "given": given}


def inspected(case):
    from models.electra_checkpoints import inspect_electra_checkpoint

    return inspect_electra_checkpoint(case["prefix"], case["config"], case["shape"] if case["given"] else None)


# ----------------------------------------------------------------------------
# Reference match and round trips
# ----------------------------------------------------------------------------


def test_converted_model_matches_the_original_forward_pass(case):
    from models.electra_checkpoints import assign_from_electra_checkpoint, find_electra_checkpoint

    arrays = case["arrays"]
    assert find_electra_checkpoint(case["prefix"].rsplit("/", 1)[0]) == case["prefix"]  # the release layout
    checkpoint = inspected(case)
    assert checkpoint.generator and checkpoint.discriminator_head and checkpoint.unknown == ()
    assert checkpoint.generator_shape == case["shape"]  # inferred ones by max(1, G // 64) heads
    assert checkpoint.training_state == 2 * len(arrays) + 1
    assert checkpoint.generator_projection == ("generator/embeddings_project/kernel" in arrays)

    model = build_model(case["config"], case["shape"])
    scalars = assign_from_electra_checkpoint(checkpoint, model)
    assert scalars == sum(value.size for value in arrays.values())
    token_ids, segment_ids, input_mask, positions = _inputs()
    expected = reference_forward(arrays, token_ids, segment_ids, input_mask, positions, case["shape"].num_heads)
    assert_close(run_ours(model, token_ids, segment_ids, input_mask, positions), expected)


def test_original_to_ours_to_original_is_exact(case, tmp_path):
    import tensorflow as tf

    from models.electra_checkpoints import assign_from_electra_checkpoint, electra_weights, write_checkpoint

    arrays = case["arrays"]
    model = build_model(case["config"], case["shape"])
    assign_from_electra_checkpoint(inspected(case), model)
    weights = electra_weights(model)
    assert sorted(weights) == sorted(arrays)
    for name, value in arrays.items():
        assert weights[name].dtype == np.float32 and weights[name].shape == value.shape, name
        np.testing.assert_array_equal(weights[name], value)

    write_checkpoint(weights, tmp_path / "out")
    reader = tf.train.load_checkpoint(str(tmp_path / "out"))
    assert reader.get_variable_to_shape_map() == {name: list(value.shape) for name, value in arrays.items()}
    for name, value in arrays.items():
        np.testing.assert_array_equal(reader.get_tensor(name), value)


@pytest.mark.parametrize("name", ["projected", "unprojected"])
def test_ours_to_original_to_ours_is_exact(name, tmp_path):
    from models.electra_checkpoints import (
        assign_from_electra_checkpoint,
        electra_weights,
        inspect_electra_checkpoint,
        write_checkpoint,
    )

    embedding, generator, heads, _ = CASES[name]
    config, shape = make_config(embedding), make_generator_shape(generator, heads)
    first = build_model(config, shape, seed=1)
    rng = np.random.default_rng(11)
    for variable in first.weights:  # every value distinct, biases and LayerNorms included
        variable.assign(rng.normal(0, 0.5, tuple(variable.shape)).astype(np.float32))
    write_checkpoint(electra_weights(first), tmp_path / "ours")
    checkpoint = inspect_electra_checkpoint(str(tmp_path / "ours"), config, shape)
    assert checkpoint.training_state == 0 and checkpoint.unknown == ()
    second = build_model(config, shape, seed=2)
    assign_from_electra_checkpoint(checkpoint, second)
    compared = 0
    for a, b in zip(first.weights, second.weights, strict=True):
        assert a.path.split("/")[-2:] == b.path.split("/")[-2:]
        if "pooled_dense" in a.path:  # the original has no pooler: ours keeps its own
            continue
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
        compared += 1
    assert compared == len(first.weights) - 2


@pytest.mark.parametrize("embedding", [16, H])
def test_a_tied_generator_checkpoint_matches_the_original_and_round_trips(embedding, tmp_path):
    """untied_generator=False: no generator/... at all, only generator_predictions/ on the discriminator."""
    from models.electra import build_electra
    from models.electra_checkpoints import (
        assign_from_electra_checkpoint,
        config_from_electra_checkpoint,
        electra_weights,
        inspect_electra_checkpoint,
    )

    arrays = original_arrays(embedding, "tied", seed=5)
    prefix = write_original(tmp_path / "electra_tied", arrays)
    config = make_config(embedding)
    checkpoint = inspect_electra_checkpoint(prefix, config)
    assert checkpoint.generator_shape.tied and checkpoint.discriminator_head and checkpoint.unknown == ()
    assert not checkpoint.generator_projection
    derived, shape = config_from_electra_checkpoint(prefix)  # heads there by the original's rule
    assert shape.tied and (shape.hidden_size, shape.num_layers, shape.num_heads) == (
        H, LAYERS, derived.num_attention_heads)
    model = build_electra(config, tied=True)
    assert checkpoint.generator_shape == model.generator_shape
    assert assign_from_electra_checkpoint(checkpoint, model) == sum(value.size for value in arrays.values())
    token_ids, segment_ids, input_mask, positions = _inputs()
    expected = reference_forward(arrays, token_ids, segment_ids, input_mask, positions, "tied")
    assert_close(run_ours(model, token_ids, segment_ids, input_mask, positions), expected)
    weights = electra_weights(model)
    assert sorted(weights) == sorted(arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(weights[name], value, err_msg=name)


def test_generator_as_wide_as_embeddings_has_no_projection_on_either_side():
    from models.electra_checkpoints import electra_weights

    embedding, generator, heads, _ = CASES["generator_as_wide_as_embeddings"]
    model = build_model(make_config(embedding), make_generator_shape(generator, heads))
    assert model.generator.embeddings_project is None  # as the original: E == G, nothing to project
    assert not any("embeddings_project" in v.path for v in model.generator.weights if "generator" in v.path)
    assert "generator/embeddings_project/kernel" not in electra_weights(model)


def test_discriminator_only_checkpoint_converts_to_an_encoder(tmp_path):
    from models.electra_checkpoints import (
        assign_from_electra_checkpoint,
        config_from_electra_checkpoint,
        electra_weights,
        inspect_electra_checkpoint,
    )
    from models.encoder import build_encoder

    config = make_config(16)
    arrays = original_arrays(16, None, head=False, seed=5)
    arrays["finetune/classifier/kernel"] = np.zeros((H, 3), np.float32)  # a task head: reported, not loaded
    prefix = write_original(tmp_path / "electra_discriminator", arrays)
    checkpoint = inspect_electra_checkpoint(prefix, config)
    assert not checkpoint.generator and checkpoint.generator_shape is None and not checkpoint.discriminator_head
    assert checkpoint.unknown == ("finetune/classifier/kernel",)
    derived, generator = config_from_electra_checkpoint(prefix, vocab_size=V, num_attention_heads=HEADS)
    assert derived == config and generator is None

    backbone = build_encoder(config)
    assign_from_electra_checkpoint(checkpoint, backbone)
    token_ids, segment_ids, input_mask, positions = _inputs()
    expected = reference_forward(arrays, token_ids, segment_ids, input_mask, positions)
    assert_close(run_ours(backbone, token_ids, segment_ids, input_mask, positions), expected)
    weights = electra_weights(backbone, config)
    del arrays["finetune/classifier/kernel"]
    assert sorted(weights) == sorted(arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(weights[name], value)


def test_config_from_the_checkpoint_shapes(case):
    from models.electra_checkpoints import config_from_electra_checkpoint

    config, shape = config_from_electra_checkpoint(case["prefix"], vocab_size=V)
    embedding, generator, _, _ = CASES[case["name"]]
    # Heads by the original's max(1, H // 64): 1 for these tiny widths; the rest from the shapes.
    assert config == case["config"].replace(num_attention_heads=1)
    assert config.hidden_act == "gelu_exact" and config.hidden_dropout_prob == 0.1
    assert shape == make_generator_shape(generator, 1)
    config, shape = config_from_electra_checkpoint(case["prefix"], num_attention_heads=HEADS,
                                                   generator_num_heads=case["shape"].num_heads)
    assert config == case["config"] and shape == case["shape"]


# ----------------------------------------------------------------------------
# Bad input: one line, naming what is wrong
# ----------------------------------------------------------------------------


def _error(call, *needles):
    from models.errors import ModelError

    with pytest.raises(ModelError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


def test_missing_variables_are_named(tmp_path):
    from models.electra_checkpoints import inspect_electra_checkpoint

    arrays = original_arrays(16, 8, seed=3)
    del arrays["electra/encoder/layer_1/attention/self/key/bias"], arrays["generator_predictions/output_bias"]
    prefix = write_original(tmp_path / "a", arrays)
    _error(lambda: inspect_electra_checkpoint(prefix, make_config(16)), "missing 2 variable(s)",
           "electra/encoder/layer_1/attention/self/key/bias", "generator_predictions/output_bias")


def test_wrong_shapes_are_named(tmp_path):
    from models.electra_checkpoints import config_from_electra_checkpoint, inspect_electra_checkpoint

    arrays = original_arrays(16, 8, seed=3)
    arrays["electra/encoder/layer_1/intermediate/dense/kernel"] = np.zeros((H, 48), np.float32)
    prefix = write_original(tmp_path / "a", arrays)
    _error(lambda: inspect_electra_checkpoint(prefix, make_config(16)),
           "electra/encoder/layer_1/intermediate/dense/kernel is [32, 48]", "needs [32, 64]")

    good = write_original(tmp_path / "b", original_arrays(16, 8, seed=3), training_state=False)
    # A config of another embedding width (a BERT-layout config for ELECTRA-Small-like weights).
    _error(lambda: inspect_electra_checkpoint(good, make_config(H)), "electra/embeddings/word_embeddings is [60, 16]")
    # A generator shape that is not the checkpoint's.
    _error(lambda: inspect_electra_checkpoint(good, make_config(16), make_generator_shape(16, 1)),
           "generator/encoder/layer_0/attention/self/query/kernel is [8, 8]", "generator shape needs [16, 16]")
    _error(lambda: config_from_electra_checkpoint(good, vocab_size=V + 1), "60 rows", f"{V + 1} tokens")


def test_generator_layouts_ours_cannot_hold_are_refused(tmp_path):
    from models.electra_checkpoints import inspect_electra_checkpoint

    arrays = original_arrays(16, 8, seed=3)
    arrays["generator/embeddings/word_embeddings"] = arrays["electra/embeddings/word_embeddings"]
    prefix = write_original(tmp_path / "untied", arrays, training_state=False)
    _error(lambda: inspect_electra_checkpoint(prefix, make_config(16)), "untied_generator_embeddings")


def test_a_model_of_another_shape_is_refused(case):
    from models.electra_checkpoints import assign_from_electra_checkpoint

    checkpoint = inspected(case)
    other = make_generator_shape(case["shape"].hidden_size * 2, 1)
    model = build_model(case["config"], other)
    _error(lambda: assign_from_electra_checkpoint(checkpoint, model), "generator")


def test_a_bert_checkpoint_is_not_an_electra_one(tmp_path):
    from models.electra_checkpoints import inspect_electra_checkpoint

    arrays = {name.replace("electra/", "bert/"): value for name, value in original_arrays(32, None).items()}
    prefix = write_original(tmp_path / "bert", arrays, training_state=False)
    _error(lambda: inspect_electra_checkpoint(prefix, make_config(32)), "google-research/bert checkpoint")
    _error(lambda: inspect_electra_checkpoint(str(tmp_path / "nothing"), make_config(32)),
           "not a readable TensorFlow checkpoint")


# ----------------------------------------------------------------------------
# Through the command line: bert convert, --init-checkpoint, records without masks
# ----------------------------------------------------------------------------


def _release(tmp_path, vocab_size: int = V):
    """An ELECTRA release directory as the original ships it: the checkpoint and vocab.txt, no config file."""
    arrays = original_arrays(16, 8, seed=3)
    prefix = write_original(tmp_path / "electra_tiny", arrays)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(vocab_size - 5)]
    (tmp_path / "electra_tiny" / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return tmp_path / "electra_tiny", prefix, arrays


def test_bert_convert_reads_and_writes_an_electra_release(runner, tmp_path):
    import json

    import tensorflow as tf

    from bert_cli.main import app
    from bert_cli.model_dir import read_model_dir
    from models.electra import GeneratorShape, build_electra

    release, prefix, arrays = _release(tmp_path)
    ours = tmp_path / "model"
    result = runner.invoke(app, ["convert", str(release), str(ours)])
    assert result.exit_code == 0, result.output
    assert "ELECTRA checkpoint → model directory" in result.stdout
    model_dir = read_model_dir(ours)
    task = model_dir.task
    assert task["objective"] == "electra" and task["generator"] == make_generator_shape(8, 1).to_dict()
    # Sizes read from the shapes alone: heads by max(1, H // 64), ELECTRA's erf GELU.
    assert model_dir.config.embedding_size == 16 and model_dir.config.hidden_act == "gelu_exact"
    model = build_electra(model_dir.config, generator_shape=GeneratorShape(**task["generator"]))
    model.load_weights(str(model_dir.model_weights))
    token_ids, segment_ids, input_mask, positions = _inputs()
    heads = model_dir.config.num_attention_heads
    assert heads == 1  # hidden 32 by the original's rule
    expected = reference_forward(arrays, token_ids, segment_ids, input_mask, positions, 1, discriminator_heads=1)
    assert_close(run_ours(model, token_ids, segment_ids, input_mask, positions), expected)

    back = tmp_path / "exported"
    result = runner.invoke(app, ["convert", str(ours), str(back)])
    assert result.exit_code == 0, result.output
    assert "model directory → ELECTRA checkpoint" in result.stdout
    reader = tf.train.load_checkpoint(str(back / "exported"))
    assert reader.get_variable_to_shape_map() == {name: list(value.shape) for name, value in arrays.items()}
    for name, value in arrays.items():
        np.testing.assert_array_equal(reader.get_tensor(name), value.astype(np.float32), err_msg=name)
    assert json.loads((back / "bert_config.json").read_text())["embedding_size"] == 16


def _unmasked_records(path, count: int = 32):
    """ELECTRA-style records: the original text's input_ids, input_mask and segment_ids, no masks, no NSP."""
    import tensorflow as tf

    from pretrain_helpers import make_examples

    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in make_examples(count, seq_length=POSITIONS):
            ids = list(example["input_ids"])
            for position, token, weight in zip(example["masked_lm_positions"], example["masked_lm_ids"],
                                               example["masked_lm_weights"]):
                if weight:
                    ids[position] = token  # the text before masking
            features = {"input_ids": ids, "input_mask": example["input_mask"], "segment_ids": example["segment_ids"]}
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                key: tf.train.Feature(int64_list=tf.train.Int64List(value=value)) for key, value in features.items()
            })).SerializeToString())
    return path


def test_pretrain_continues_an_electra_release_on_records_without_masks(runner, tmp_path):
    """--init-checkpoint RELEASE_DIR (converted on the fly) brings the whole model; unmasked records train it."""
    from bert_cli.main import app
    from bert_cli.model_dir import read_model_dir
    from models.electra import GeneratorShape, build_electra

    release, _, _ = _release(tmp_path)
    converted = tmp_path / "converted"
    assert runner.invoke(app, ["convert", str(release), str(converted)]).exit_code == 0
    records = _unmasked_records(tmp_path / "unmasked.tfrecord")
    output = tmp_path / "continued"
    args = ["pretrain", str(records), "-o", str(output), "--objective", "electra", "--model", str(converted),
            "--vocab", str(release / "vocab.txt"), "--init-checkpoint", str(release), "--train-steps", "1",
            "--warmup-steps", "0", "--learning-rate", "1e-20", "--batch-size", "4", "--no-nsp",
            "--generator-hidden-fraction", "0.25"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    before, after = read_model_dir(converted), read_model_dir(output)
    models = []
    for model_dir in (before, after):
        model = build_electra(model_dir.config, generator_shape=GeneratorShape(**model_dir.task["generator"]))
        model.load_weights(str(model_dir.model_weights))
        models.append(model)
    for old, new in zip(*(m.weights for m in models)):
        np.testing.assert_allclose(new.numpy(), old.numpy(), rtol=0, atol=1e-12, err_msg=old.path)
    # Masked-LM pre-training cannot use records without masks unless it masks them itself.
    result = runner.invoke(app, ["pretrain", str(records), "-o", str(tmp_path / "mlm"), "--model", str(converted),
                                 "--vocab", str(release / "vocab.txt"), "--train-steps", "1", "--warmup-steps", "0",
                                 "--no-nsp"])
    assert result.exit_code == 2 and "no masked_lm_* features" in result.stderr
