"""Original google-research/bert checkpoints in and out.

The checkpoints here are written the way the original code wrote them
(``tf.compat.v1`` variables under the original scope names, saved by a TF1
``Saver``), with random values, and never by the code under test. The
converted model is checked against an independent numpy transcription of the
original forward pass (``modeling.py`` + ``run_pretraining.py``'s heads),
written from the equations: tanh-approximated GELU, LayerNorm with epsilon
1e-12, attention masks that add -10000 to padded keys.

Shape legend: B = batch, T = sequence length, H = hidden, N = heads, D = H/N, V = vocabulary.
"""

from __future__ import annotations

import ast
import json

import numpy as np
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
UNCASED_VOCAB = SPECIALS + [f"w{i}" for i in range(95)]  # 100 entries, no upper case
CASED_VOCAB = SPECIALS + ["The", "Apple"] + [f"w{i}" for i in range(93)]
CONFIG = {
    "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
    "intermediate_size": 64, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 64, "type_vocab_size": 2,
    "initializer_range": 0.02,
}


# ----------------------------------------------------------------------------
# An original-layout checkpoint, written as the original code would
# ----------------------------------------------------------------------------


def original_arrays(config: dict, seed: int = 0, heads: bool = True) -> dict[str, np.ndarray]:
    """Random weights under the original variable names and shapes (DESIGN.md's list)."""
    rng = np.random.default_rng(seed)
    H, I, V = config["hidden_size"], config["intermediate_size"], config["vocab_size"]  # noqa: E741  (I: intermediate size, the paper's letter)
    arrays = {}

    def dense(name, fan_in, fan_out):
        arrays[f"{name}/kernel"] = rng.normal(0, fan_in ** -0.5, (fan_in, fan_out))
        arrays[f"{name}/bias"] = rng.normal(0, 0.1, (fan_out,))

    def layer_norm(name):
        arrays[f"{name}/gamma"] = 1 + rng.normal(0, 0.1, (H,))
        arrays[f"{name}/beta"] = rng.normal(0, 0.1, (H,))

    arrays["bert/embeddings/word_embeddings"] = rng.normal(0, 0.3, (V, H))
    arrays["bert/embeddings/token_type_embeddings"] = rng.normal(0, 0.3, (config["type_vocab_size"], H))
    arrays["bert/embeddings/position_embeddings"] = rng.normal(0, 0.3, (config["max_position_embeddings"], H))
    layer_norm("bert/embeddings/LayerNorm")
    for layer in range(config["num_hidden_layers"]):
        prefix = f"bert/encoder/layer_{layer}"
        for name in ("query", "key", "value"):
            dense(f"{prefix}/attention/self/{name}", H, H)
        dense(f"{prefix}/attention/output/dense", H, H)
        layer_norm(f"{prefix}/attention/output/LayerNorm")
        dense(f"{prefix}/intermediate/dense", H, I)
        dense(f"{prefix}/output/dense", I, H)
        layer_norm(f"{prefix}/output/LayerNorm")
    dense("bert/pooler/dense", H, H)
    if heads:
        dense("cls/predictions/transform/dense", H, H)
        layer_norm("cls/predictions/transform/LayerNorm")
        arrays["cls/predictions/output_bias"] = rng.normal(0, 0.1, (V,))
        arrays["cls/seq_relationship/output_weights"] = rng.normal(0, H ** -0.5, (2, H))
        arrays["cls/seq_relationship/output_bias"] = rng.normal(0, 0.1, (2,))
    return {name: value.astype(np.float32) for name, value in arrays.items()}


def write_original(directory, arrays: dict, config: dict = CONFIG, vocab: list[str] = UNCASED_VOCAB,
                   training_state: bool = False):
    """bert_model.ckpt.* by a TF1 Saver, plus bert_config.json and vocab.txt."""
    import tensorflow as tf

    directory.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        for name, value in arrays.items():
            tf.compat.v1.get_variable(name, initializer=tf.constant(value))
            if training_state and not name.startswith("cls/squad"):
                # What run_pretraining.py's AdamWeightDecayOptimizer leaves beside each weight.
                tf.compat.v1.get_variable(f"{name}/adam_m", initializer=tf.zeros_like(value))
                tf.compat.v1.get_variable(f"{name}/adam_v", initializer=tf.zeros_like(value))
        if training_state:
            tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(directory / "bert_model.ckpt"))
    (directory / "bert_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return directory


# ----------------------------------------------------------------------------
# The original forward pass in numpy (float64)
# ----------------------------------------------------------------------------


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def layer_norm(x, w, name):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + 1e-12) * w[f"{name}/gamma"] + w[f"{name}/beta"]


def dense(x, w, name):
    return x @ w[f"{name}/kernel"] + w[f"{name}/bias"]


def reference_forward(w, config, token_ids, segment_ids, input_mask, positions):
    w = {name: value.astype(np.float64) for name, value in w.items()}
    B, T = token_ids.shape
    N = config["num_attention_heads"]
    D = config["hidden_size"] // N
    x = (w["bert/embeddings/word_embeddings"][token_ids] + w["bert/embeddings/token_type_embeddings"][segment_ids]
         + w["bert/embeddings/position_embeddings"][:T][None])  # [B, T, H]
    x = layer_norm(x, w, "bert/embeddings/LayerNorm")
    adder = (1.0 - input_mask[:, None, None, :]) * -10000.0  # [B, 1, 1, T]: padded keys get no attention

    def heads(t):  # [B, T, H] -> [B, N, T, D]
        return t.reshape(B, T, N, D).transpose(0, 2, 1, 3)

    for layer in range(config["num_hidden_layers"]):
        p = f"bert/encoder/layer_{layer}"
        q, k, v = (heads(dense(x, w, f"{p}/attention/self/{name}")) for name in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(D) + adder  # [B, N, T, T]
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(B, T, N * D)  # [B, T, H]
        attention = layer_norm(dense(context, w, f"{p}/attention/output/dense") + x, w,
                               f"{p}/attention/output/LayerNorm")
        intermediate = gelu(dense(attention, w, f"{p}/intermediate/dense"))
        x = layer_norm(dense(intermediate, w, f"{p}/output/dense") + attention, w, f"{p}/output/LayerNorm")
    pooled = np.tanh(dense(x[:, 0], w, "bert/pooler/dense"))  # [B, H]
    gathered = np.take_along_axis(x, positions[:, :, None], axis=1)  # [B, P, H]
    transformed = layer_norm(gelu(dense(gathered, w, "cls/predictions/transform/dense")), w,
                             "cls/predictions/transform/LayerNorm")
    mlm = transformed @ w["bert/embeddings/word_embeddings"].T + w["cls/predictions/output_bias"]  # [B, P, V]
    nsp = pooled @ w["cls/seq_relationship/output_weights"].T + w["cls/seq_relationship/output_bias"]  # [B, 2]
    return {"sequence_output": x, "pooled_output": pooled, "mlm_logits": mlm, "nsp_logits": nsp}


# ----------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights():
    return original_arrays(CONFIG, seed=1)


@pytest.fixture(scope="module")
def original(tmp_path_factory, weights):
    return write_original(tmp_path_factory.mktemp("ckpt") / "uncased_L-2_H-32_A-4", weights)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, original):
    """``bert convert ORIGINAL MODEL_DIR`` once for the module."""
    from typer.testing import CliRunner

    from bert_cli.main import app

    target = tmp_path_factory.mktemp("converted") / "model"
    result = CliRunner().invoke(app, ["convert", str(original), str(target)])
    assert result.exit_code == 0, result.output
    return target, result


def _inputs():
    rng = np.random.default_rng(7)
    token_ids = rng.integers(5, 100, (2, 10)).astype(np.int32)
    token_ids[:, 0] = 2  # [CLS]
    segment_ids = np.zeros((2, 10), np.int32)
    segment_ids[:, 6:] = 1
    input_mask = np.ones((2, 10), np.int32)
    input_mask[1, 7:] = 0  # the second sequence is padded
    token_ids[1, 7:] = 0
    positions = np.array([[1, 4, 8], [2, 3, 5]], np.int32)
    return token_ids, segment_ids, input_mask, positions


# ----------------------------------------------------------------------------
# Reference match and round trips
# ----------------------------------------------------------------------------


def test_converted_model_matches_the_original_forward_pass(converted, weights):
    from bert_cli.model_dir import load_encoder, read_model_dir
    from models.pretraining import build_pretrainer

    target, _ = converted
    model_dir = read_model_dir(target)
    assert model_dir.kind == "pretraining" and model_dir.lowercase is True
    assert model_dir.task["next_sentence"] is True and model_dir.model_weights.is_file()
    pretrainer = build_pretrainer(model_dir.config)
    pretrainer.load_weights(str(model_dir.model_weights))
    encoder = load_encoder(model_dir)

    token_ids, segment_ids, input_mask, positions = _inputs()
    inputs = {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": input_mask}
    expected = reference_forward(weights, CONFIG, token_ids, segment_ids, input_mask, positions)
    encoded = encoder(inputs)
    heads = pretrainer({**inputs, "masked_lm_positions": positions})
    got = {
        "sequence_output": np.asarray(encoded["sequence_output"]),
        "pooled_output": np.asarray(encoded["pooled_output"]),
        "mlm_logits": np.asarray(heads["mlm_logits"]),
        "nsp_logits": np.asarray(heads["nsp_logits"]),
    }
    for name, value in expected.items():
        assert got[name].shape == value.shape, name
        assert np.max(np.abs(got[name] - value)) <= 1e-5, (name, np.max(np.abs(got[name] - value)))
    # The encoder file and the whole-model file hold the same encoder.
    for ours, theirs in zip(encoder.weights, pretrainer.backbone.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_round_trip_through_the_original_layout_is_exact(runner, converted, weights, tmp_path):
    import tensorflow as tf

    from bert_cli.main import app

    first, convert_output = converted
    assert "original checkpoint → model directory" in convert_output.stdout
    exported = tmp_path / "export_uncased"
    result = runner.invoke(app, ["convert", str(first), str(exported)])
    assert result.exit_code == 0, result.output
    assert "model directory → original checkpoint" in result.stdout
    assert {"bert_model.ckpt.index", "bert_model.ckpt.data-00000-of-00001", "bert_config.json",
            "vocab.txt", "checkpoint"} <= {p.name for p in exported.iterdir()}
    assert json.loads((exported / "bert_config.json").read_text()) == CONFIG
    assert (exported / "vocab.txt").read_text().split("\n")[:-1] == UNCASED_VOCAB

    # Exactly the original's variables, names, shapes and values.
    reader = tf.train.load_checkpoint(str(exported / "bert_model.ckpt"))
    assert reader.get_variable_to_shape_map() == {name: list(value.shape) for name, value in weights.items()}
    for name, value in weights.items():
        np.testing.assert_array_equal(reader.get_tensor(name), value)
    assert tf.train.latest_checkpoint(str(exported)).endswith("bert_model.ckpt")

    # ... and back: the same weights, bit for bit.
    again = tmp_path / "again"
    result = runner.invoke(app, ["convert", str(exported), str(again)])
    assert result.exit_code == 0, result.output
    from models.config import BertConfig
    from models.pretraining import build_pretrainer

    config = BertConfig.from_dict(CONFIG)
    models = []
    for directory in (first, again):
        model = build_pretrainer(config)
        model.load_weights(str(directory / "model.weights.h5"))
        models.append(model)
    for a, b in zip(*(m.weights for m in models)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert json.loads((again / "task.json").read_text())["lowercase"] is True


def test_written_checkpoint_loads_through_the_original_name_mapping(converted, weights, tmp_path):
    """The original's get_assignment_map_from_checkpoint + tf.train.init_from_checkpoint, in a TF1 graph."""
    import tensorflow as tf

    from bert_cli.conversion import convert

    convert(converted[0], tmp_path / "out")
    checkpoint = str(tmp_path / "out" / "bert_model.ckpt")
    graph = tf.Graph()
    with graph.as_default():
        variables = {name: tf.compat.v1.get_variable(name, shape=value.shape, initializer=tf.zeros_initializer())
                     for name, value in weights.items()}
        in_checkpoint = {name for name, _ in tf.train.list_variables(checkpoint)}
        assignment = {name: name for name in variables if name in in_checkpoint}
        assert len(assignment) == len(variables)
        tf.compat.v1.train.init_from_checkpoint(checkpoint, assignment)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for name, variable in variables.items():
                np.testing.assert_array_equal(session.run(variable), weights[name])


def test_encoder_only_checkpoint_with_training_state_and_unknown_extras(runner, tmp_path):
    from bert_cli.main import app

    arrays = original_arrays(CONFIG, seed=2, heads=False)
    arrays["cls/squad/output_weights"] = np.zeros((2, 32), np.float32)
    source = write_original(tmp_path / "my_model", arrays, training_state=True)
    result = runner.invoke(app, ["convert", str(source), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "cls/squad/output_weights" in result.stderr and "adam_m" not in result.stderr
    assert "optimizer slots" in result.stdout
    task = json.loads((tmp_path / "out" / "task.json").read_text())
    assert task["task"] == "pretraining" and task["masked_lm"] is False and task["lowercase"] is True
    assert not (tmp_path / "out" / "model.weights.h5").exists()


# ----------------------------------------------------------------------------
# --init / --init-checkpoint take original checkpoints and keras-hub presets
# ----------------------------------------------------------------------------


def test_init_reads_an_original_checkpoint_directory(original, weights):
    from bert_cli.model_dir import load_encoder, read_model_dir
    from bert_cli.pretraining import _initializer
    from models.config import BertConfig
    from models.pretraining import build_pretrainer

    source = read_model_dir(original, "--init")
    assert source.path == original and source.vocab_path == original / "vocab.txt"
    assert source.kind == "pretraining" and source.lowercase is True
    encoder = load_encoder(source)
    np.testing.assert_array_equal(encoder.get_layer("pooled_dense").kernel.numpy(), weights["bert/pooler/dense/kernel"])

    config = BertConfig.from_dict(CONFIG)
    model = build_pretrainer(config)
    _initializer(original, config, lowercase=True)(model)
    bias = [w for w in model.weights if w.path.endswith("masked_lm_head/output_bias")][0]
    np.testing.assert_array_equal(bias.numpy(), weights["cls/predictions/output_bias"])
    with pytest.raises(Exception, match="trained uncased"):
        _initializer(original, config, lowercase=False)


def test_init_reads_a_keras_hub_preset(tmp_path):
    import keras_hub

    from bert_cli.main import app  # noqa: F401  (the CLI's environment)
    from bert_cli.model_dir import load_encoder, read_model_dir
    from models.config import BertConfig
    from models.encoder import build_encoder

    backbone = build_encoder(BertConfig.from_dict(CONFIG))
    preset = tmp_path / "preset"
    backbone.save_to_preset(str(preset))
    keras_hub.models.BertTokenizer(vocabulary=CASED_VOCAB, lowercase=False).save_to_preset(str(preset))
    source = read_model_dir(preset, "--init")
    assert source.config == BertConfig.from_dict(CONFIG) and source.lowercase is False
    assert not source.model_weights.is_file()
    for a, b in zip(load_encoder(source).weights, backbone.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# ----------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written
# ----------------------------------------------------------------------------


def _fails(runner, args, target, *needles):
    from bert_cli.main import app

    result = runner.invoke(app, ["convert", *map(str, args), str(target)])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.stderr, result.stderr
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]


def test_shape_mismatch_names_the_variable(runner, tmp_path):
    arrays = original_arrays(CONFIG, seed=3)
    arrays["bert/encoder/layer_1/intermediate/dense/kernel"] = np.zeros((32, 48), np.float32)
    source = write_original(tmp_path / "a", arrays)
    _fails(runner, [source], tmp_path / "out", "bert/encoder/layer_1/intermediate/dense/kernel is [32, 48]",
           "needs [32, 64]")


def test_missing_variables_are_listed(runner, tmp_path):
    arrays = original_arrays(CONFIG, seed=3)
    del arrays["bert/pooler/dense/kernel"], arrays["bert/encoder/layer_0/attention/self/key/bias"]
    source = write_original(tmp_path / "a", arrays)
    _fails(runner, [source], tmp_path / "out", "missing 2 variable(s)", "bert/pooler/dense/kernel",
           "bert/encoder/layer_0/attention/self/key/bias")


def test_half_a_head_is_missing_variables(runner, tmp_path):
    arrays = original_arrays(CONFIG, seed=3)
    del arrays["cls/predictions/output_bias"]
    source = write_original(tmp_path / "a", arrays)
    _fails(runner, [source], tmp_path / "out", "cls/predictions/output_bias")


def test_vocab_size_mismatch(runner, tmp_path):
    source = write_original(tmp_path / "a", original_arrays(CONFIG), vocab=UNCASED_VOCAB[:-1])
    _fails(runner, [source], tmp_path / "out", "99 tokens", "vocab_size 100")


def test_checkpoint_of_another_size(runner, tmp_path):
    source = write_original(tmp_path / "a", original_arrays({**CONFIG, "vocab_size": 120}))
    _fails(runner, [source], tmp_path / "out", "bert/embeddings/word_embeddings is [120, 32]", "vocab_size is 100")


def test_case_mismatches(runner, tmp_path, original):
    # A name saying uncased with a vocabulary that has upper-case tokens.
    source = write_original(tmp_path / "uncased_L-2_H-32_A-4", original_arrays(CONFIG), vocab=CASED_VOCAB)
    _fails(runner, [source], tmp_path / "out", "cased vocabulary", "'The'")
    # An explicit casing that contradicts the release's name (validate_case_matches_checkpoint).
    _fails(runner, [original, "--cased"], tmp_path / "out", "--cased contradicts", "uncased")


def test_export_name_must_match_the_model_casing(runner, converted, tmp_path):
    _fails(runner, [converted[0]], tmp_path / "cased_L-2_H-32_A-4", "the name says cased but the model is uncased")


def test_not_a_checkpoint_and_existing_target(runner, converted, tmp_path):
    (tmp_path / "empty").mkdir()
    _fails(runner, [tmp_path / "empty"], tmp_path / "out", "neither an original BERT checkpoint")
    (tmp_path / "exists").mkdir()
    from bert_cli.main import app

    result = runner.invoke(app, ["convert", str(converted[0]), str(tmp_path / "exists")])
    assert result.exit_code == 2 and "--overwrite" in result.stderr


def test_only_the_conversion_module_of_models_imports_tensorflow():
    for path in (REPO / "models").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        names |= {node.module.split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
        assert ("tensorflow" in names) == (path.name == "checkpoints.py"), path.name


def test_pretrain_continues_from_an_original_checkpoint(runner, tmp_path):
    from bert_cli.main import app
    from pretrain_helpers import TINY_CONFIG, VOCAB, make_examples, write_records

    source = write_original(tmp_path / "uncased_tiny", original_arrays(TINY_CONFIG, seed=4), TINY_CONFIG, VOCAB)
    write_records(tmp_path / "part-00000.tfrecord", make_examples(64, seed=1))
    result = runner.invoke(app, [
        "pretrain", str(tmp_path / "part-00000.tfrecord"), "-o", str(tmp_path / "out"),
        "--model", str(source / "bert_config.json"), "--vocab", str(source / "vocab.txt"), "--batch-size", "8",
        "--train-steps", "2", "--warmup-steps", "1", "--log-every", "1", "--init-checkpoint", str(source),
    ])
    assert result.exit_code == 0, result.output
    assert "converting the original checkpoint" in result.stderr
    assert json.loads((tmp_path / "out" / "task.json").read_text())["task"] == "pretraining"


def test_finetune_starts_from_an_original_checkpoint(runner, tmp_path):
    from bert_cli.main import app
    from finetune_helpers import TINY_CONFIG, VOCAB, sentiment_rows, write_tsv

    source = write_original(tmp_path / "cased_tiny", original_arrays(TINY_CONFIG, seed=5), TINY_CONFIG, VOCAB)
    write_tsv(tmp_path / "train.tsv", ["sentence", "label"], sentiment_rows(64, 1))
    result = runner.invoke(app, ["finetune", "classify", str(tmp_path / "train.tsv"), "-o", str(tmp_path / "out"),
                                 "--init", str(source), "--epochs", "1", "--batch-size", "32",
                                 "--max-seq-length", "16"])
    assert result.exit_code == 0, result.output
    task = json.loads((tmp_path / "out" / "task.json").read_text())
    assert task["task"] == "classify" and task["lowercase"] is False
    assert (tmp_path / "out" / "vocab.txt").read_text().split("\n")[:-1] == VOCAB
