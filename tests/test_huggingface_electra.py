"""Hugging Face Transformers ELECTRA directories in and out of ``bert convert``.

The Hugging Face directories here are written by hand in Transformers' layout,
with random values, and never by the code under test: the discriminator as
``ElectraForPreTraining`` (``electra.`` prefix, ``discriminator_predictions.*``)
or ``ElectraModel`` (no prefix, no head), the generator as a second directory,
``ElectraForMaskedLM`` (its own ``config.json`` of width G, a copy of the
discriminator's embeddings, ``generator_predictions.*``, ``generator_lm_head.bias``;
the tied decoder weight is not stored). Linear weights are ``[out, in]``. The
converted models are checked against an independent numpy float64 transcription
of Transformers' ELECTRA forward pass, written from the equations: embeddings
then LayerNorm (epsilon 1e-12, biased variance) at the embedding width E, a
linear projection to the encoder's width only when the widths differ, BERT's
post-LayerNorm layers with a very large negative number on padded keys' scores,
the discriminator head dense -> ``hidden_act`` -> dense to one logit, and the
generator head dense -> exact GELU -> LayerNorm -> word embeddings^T + bias.

Shape legend: B = batch, T = sequence length, V = vocabulary, E = embedding width,
H = discriminator hidden size, G = generator hidden size, P = masked positions.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from cli_helpers import assert_one_line_error

pytestmark = pytest.mark.slow

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(295)]  # 300, uncased
BASE = {
    "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
    "intermediate_size": 64, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 64, "type_vocab_size": 2,
    "initializer_range": 0.02,
}
# name: embedding width E, generator (hidden G, heads, intermediate), discriminator file sharded
CASES = {
    # ELECTRA-Small-like: E < H (electra.embeddings_project), a generator as wide as the embeddings (no
    # projection of its own), of the shape `bert pretrain --generator-hidden-fraction 0.5` builds.
    "projected": (16, (16, 1, 64), True),
    # ELECTRA-Base-like: E == H (no projection), a narrower generator that projects E -> G.
    "unprojected": (32, (16, 2, 48), False),
}
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


# ----------------------------------------------------------------------------
# Hugging Face directories, written as Transformers lays them out
# ----------------------------------------------------------------------------


def hf_config(embedding: int, architecture: str = "ElectraForPreTraining", **changes) -> dict:
    """config.json as Transformers writes it for ELECTRA (ElectraConfig's keys besides the shape)."""
    return {
        "architectures": [architecture], "model_type": "electra", **BASE, "embedding_size": embedding,
        "layer_norm_eps": 1e-12, "position_embedding_type": "absolute", "pad_token_id": 0, "classifier_dropout": None,
        "summary_type": "first", "summary_use_proj": True, "summary_activation": "gelu", "summary_last_dropout": 0.1,
        "use_cache": True, "torch_dtype": "float32", "transformers_version": "4.40.0", **changes,
    }


def generator_config(embedding: int, generator: tuple[int, int, int], **changes) -> dict:
    hidden, heads, intermediate = generator
    return hf_config(embedding, "ElectraForMaskedLM", hidden_size=hidden, num_attention_heads=heads,
                     intermediate_size=intermediate, **changes)


class _Arrays:
    """Random float32 tensors under Transformers names, PyTorch shapes."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.arrays: dict[str, np.ndarray] = {}

    def linear(self, name, fan_in, fan_out):
        self.arrays[f"{name}.weight"] = self.rng.normal(0, fan_in ** -0.5, (fan_out, fan_in))  # [out, in]
        self.arrays[f"{name}.bias"] = self.rng.normal(0, 0.1, (fan_out,))

    def layer_norm(self, name, width):
        self.arrays[f"{name}.weight"] = 1 + self.rng.normal(0, 0.1, (width,))
        self.arrays[f"{name}.bias"] = self.rng.normal(0, 0.1, (width,))

    def encoder(self, prefix, embedding, width, intermediate, embeddings=None):
        if embeddings is None:
            for table, rows in (("word", BASE["vocab_size"]), ("position", BASE["max_position_embeddings"]),
                                ("token_type", BASE["type_vocab_size"])):
                self.arrays[f"{prefix}embeddings.{table}_embeddings.weight"] = self.rng.normal(0, 0.3,
                                                                                               (rows, embedding))
            self.layer_norm(f"{prefix}embeddings.LayerNorm", embedding)
        else:
            self.arrays.update(embeddings)
        if embedding != width:
            self.linear(f"{prefix}embeddings_project", embedding, width)
        for layer in range(BASE["num_hidden_layers"]):
            p = f"{prefix}encoder.layer.{layer}"
            for name in ("query", "key", "value"):
                self.linear(f"{p}.attention.self.{name}", width, width)
            self.linear(f"{p}.attention.output.dense", width, width)
            self.layer_norm(f"{p}.attention.output.LayerNorm", width)
            self.linear(f"{p}.intermediate.dense", width, intermediate)
            self.linear(f"{p}.output.dense", intermediate, width)
            self.layer_norm(f"{p}.output.LayerNorm", width)

    def done(self):
        return {name: value.astype(np.float32) for name, value in self.arrays.items()}


def discriminator_arrays(embedding: int, seed: int, head: bool = True, prefix: str = "electra.") -> dict:
    """ElectraForPreTraining's tensors (``head``), or ElectraModel's (``prefix`` "")."""
    made = _Arrays(seed)
    H = BASE["hidden_size"]
    made.encoder(prefix, embedding, H, BASE["intermediate_size"])
    if head:
        made.linear("discriminator_predictions.dense", H, H)
        made.linear("discriminator_predictions.dense_prediction", H, 1)
    return made.done()


def generator_arrays(embedding: int, generator: tuple[int, int, int], discriminator: dict, seed: int) -> dict:
    """ElectraForMaskedLM's tensors, the embeddings copied from the discriminator (as the releases hold them)."""
    made = _Arrays(seed)
    hidden, _, intermediate = generator
    shared = {name: value for name, value in discriminator.items() if name.startswith("electra.embeddings.")}
    made.encoder("electra.", embedding, hidden, intermediate, embeddings=shared)
    made.linear("generator_predictions.dense", hidden, embedding)
    made.layer_norm("generator_predictions.LayerNorm", embedding)
    made.arrays["generator_lm_head.bias"] = made.rng.normal(0, 0.1, (BASE["vocab_size"],))
    return made.done()


def write_hf(directory, weights: dict, config: dict, shards: int = 1):
    """A Transformers directory: config.json, model.safetensors (or 2 shards + index), vocab, tokenizer config."""
    import safetensors.numpy

    directory.mkdir(parents=True, exist_ok=True)
    names = sorted(weights)
    parts = [names] if shards == 1 else [names[: len(names) // 2], names[len(names) // 2:]]
    files = ["model.safetensors"] if shards == 1 else list(SHARDS)
    for file, part in zip(files, parts):
        safetensors.numpy.save_file({n: weights[n] for n in part}, str(directory / file), metadata={"format": "pt"})
    if shards > 1:
        weight_map = {name: file for file, part in zip(files, parts) for name in part}
        (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}),
                                                                 encoding="utf-8")
    (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (directory / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}), encoding="utf-8")
    return directory


def read_hf(directory) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    assert (directory / "model.safetensors").is_file()
    return load_file(str(directory / "model.safetensors"))


# ----------------------------------------------------------------------------
# Transformers' ELECTRA forward pass in numpy (float64)
# ----------------------------------------------------------------------------

_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))  # Transformers' "gelu": the exact erf form


def layer_norm(x, w, name):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)  # biased
    return (x - mean) / np.sqrt(variance + 1e-12) * w[f"{name}.weight"] + w[f"{name}.bias"]


def linear(x, w, name):
    return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]  # weight [out, in]


def electra_model(w, prefix, heads, token_ids, segment_ids, padding_mask):
    """ElectraModel: embeddings [B, T, E], projection to the layers' width W if there is one, the layers."""
    B, T = token_ids.shape
    x = (w[f"{prefix}embeddings.word_embeddings.weight"][token_ids]
         + w[f"{prefix}embeddings.token_type_embeddings.weight"][segment_ids]
         + w[f"{prefix}embeddings.position_embeddings.weight"][:T][None])  # [B, T, E]
    x = layer_norm(x, w, f"{prefix}embeddings.LayerNorm")
    if f"{prefix}embeddings_project.weight" in w:
        x = linear(x, w, f"{prefix}embeddings_project")  # [B, T, E] -> [B, T, W]
    W = x.shape[-1]
    D = W // heads
    adder = np.where(padding_mask[:, None, None, :] == 1, 0.0, -1e9)  # [B, 1, 1, T]

    def split(t):  # [B, T, W] -> [B, N, T, D]
        return t.reshape(B, T, heads, D).transpose(0, 2, 1, 3)

    for layer in range(BASE["num_hidden_layers"]):
        p = f"{prefix}encoder.layer.{layer}"
        q, k, v = (split(linear(x, w, f"{p}.attention.self.{name}")) for name in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D) + adder  # [B, N, T, T]
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = ((scores / scores.sum(-1, keepdims=True)) @ v).transpose(0, 2, 1, 3).reshape(B, T, W)
        attention = layer_norm(linear(context, w, f"{p}.attention.output.dense") + x, w,
                               f"{p}.attention.output.LayerNorm")
        x = layer_norm(linear(gelu(linear(attention, w, f"{p}.intermediate.dense")), w, f"{p}.output.dense")
                       + attention, w, f"{p}.output.LayerNorm")
    return x  # [B, T, W]


def reference(discriminator: dict, inputs, positions, generator: dict | None = None, generator_heads: int = 1):
    """sequence_output (and discriminator_logits with the head; mlm_logits of a generator's tensors)."""
    w = {name: value.astype(np.float64) for name, value in discriminator.items()}
    prefix = "electra." if "electra.embeddings.word_embeddings.weight" in w else ""
    args = (inputs["token_ids"], inputs["segment_ids"], inputs["padding_mask"])
    sequence = electra_model(w, prefix, BASE["num_attention_heads"], *args)
    result = {"sequence_output": sequence}
    if "discriminator_predictions.dense.weight" in w:
        hidden = gelu(linear(sequence, w, "discriminator_predictions.dense"))  # hidden_act "gelu"
        result["discriminator_logits"] = linear(hidden, w, "discriminator_predictions.dense_prediction")[..., 0]
    if generator is not None:
        g = {name: value.astype(np.float64) for name, value in generator.items()}
        states = electra_model(g, "electra.", generator_heads, *args)  # [B, T, G]
        gathered = np.take_along_axis(states, positions[:, :, None], axis=1)  # [B, P, G]
        transformed = layer_norm(gelu(linear(gathered, g, "generator_predictions.dense")), g,
                                 "generator_predictions.LayerNorm")  # [B, P, E]
        result["mlm_logits"] = (transformed @ g["electra.embeddings.word_embeddings.weight"].T
                                + g["generator_lm_head.bias"])  # [B, P, V]
    return result


def _inputs():
    rng = np.random.default_rng(7)
    token_ids = rng.integers(5, BASE["vocab_size"], (2, 10)).astype(np.int32)
    token_ids[:, 0] = 2  # [CLS]
    segment_ids = np.zeros((2, 10), np.int32)
    segment_ids[:, 6:] = 1
    padding_mask = np.ones((2, 10), np.int32)
    padding_mask[1, 7:] = 0  # the second sequence is padded
    token_ids[1, 7:] = 0
    positions = np.array([[1, 4, 8], [2, 3, 5]], np.int32)
    return {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}, positions


# ----------------------------------------------------------------------------
# Our side
# ----------------------------------------------------------------------------


def _ours(path):
    """A model directory's (or Hugging Face directory's) encoder outputs and head / generator logits."""
    from bert_cli.model_dir import load_encoder, read_model_dir
    from models.electra import GeneratorShape, build_electra, build_electra_discriminator

    model_dir = read_model_dir(path)
    inputs, positions = _inputs()
    encoder = load_encoder(model_dir)
    sequence = encoder(inputs)["sequence_output"]
    got = {"sequence_output": np.asarray(sequence)}
    task = model_dir.task
    if task.get("generator"):
        model = build_electra(model_dir.config, generator_shape=GeneratorShape(**task["generator"]))
    elif task.get("discriminator_head"):
        model = build_electra_discriminator(model_dir.config)
    else:
        return got, model_dir, encoder
    model.load_weights(str(model_dir.model_weights))
    for ours, theirs in zip(encoder.weights, model.backbone.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    logits = model.discriminator_output(model.discriminator_dense(sequence))  # [B, T, 1]
    got["discriminator_logits"] = np.asarray(logits)[..., 0]
    if task.get("generator"):
        got["mlm_logits"] = np.asarray(model.generator(inputs["token_ids"], inputs["segment_ids"],
                                                        inputs["padding_mask"], positions))
    return got, model_dir, model


def _assert_close(got: dict, expected: dict, tolerance: float = 1e-5) -> None:
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for name, value in expected.items():
        assert got[name].shape == value.shape, (name, got[name].shape, value.shape)
        difference = float(np.max(np.abs(got[name].astype(np.float64) - value)))
        assert difference <= tolerance, (name, difference)


def _convert(*args):
    from typer.testing import CliRunner

    from bert_cli.main import app

    return CliRunner().invoke(app, ["convert", *map(str, args)])


def _assert_same_tensors(directory, expected: dict) -> None:
    tensors = read_hf(directory)
    assert sorted(tensors) == sorted(expected)
    for name, value in expected.items():
        assert tensors[name].dtype == np.float32, name
        np.testing.assert_array_equal(tensors[name], value, err_msg=name)


def _hf_values(directory) -> dict:
    return json.loads((directory / "config.json").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------
# Fixtures: each case's Hugging Face pair, converted once
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    embedding, generator, sharded = CASES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    discriminator = discriminator_arrays(embedding, seed=len(request.param))
    generated = generator_arrays(embedding, generator, discriminator, seed=len(request.param) + 1)
    source = write_hf(root / "electra-discriminator", discriminator, hf_config(embedding), shards=2 if sharded else 1)
    generator_dir = write_hf(root / "electra-generator", generated, generator_config(embedding, generator))
    converted = root / "model"
    result = _convert(source, converted, "--generator", generator_dir)
    assert result.exit_code == 0, result.output
    return {"name": request.param, "embedding": embedding, "generator": generator, "root": root,
            "discriminator": discriminator, "generated": generated, "source": source, "generator_dir": generator_dir,
            "converted": converted, "result": result}


# ----------------------------------------------------------------------------
# The reference on its own
# ----------------------------------------------------------------------------


def test_numpy_reference_is_right_on_its_own():
    assert gelu(np.array([1.0]))[0] == pytest.approx(0.8413447460685429, abs=1e-15)
    inputs, positions = _inputs()
    weights = discriminator_arrays(16, seed=1)
    first = reference(weights, inputs, positions)
    changed = {**inputs, "token_ids": inputs["token_ids"].copy()}
    changed["token_ids"][1, 7:] = 42  # padded tokens reach no real position
    second = reference(weights, changed, positions)
    np.testing.assert_allclose(second["sequence_output"][1, :7], first["sequence_output"][1, :7], atol=1e-12)
    assert np.max(np.abs(second["sequence_output"][1, 7:] - first["sequence_output"][1, 7:])) > 1e-3
    assert first["sequence_output"].shape == (2, 10, 32) and first["discriminator_logits"].shape == (2, 10)
    # Without the projection (E == H) and with the prefix-less ElectraModel names, the same function runs.
    plain = reference(discriminator_arrays(32, seed=1, head=False, prefix=""), inputs, positions)
    assert set(plain) == {"sequence_output"}


# ----------------------------------------------------------------------------
# Hugging Face -> model directory matches the reference; and back, tensor for tensor
# ----------------------------------------------------------------------------


def test_discriminator_and_generator_match_the_transformers_forward_pass(case):
    result, converted = case["result"], case["converted"]
    assert "Hugging Face ELECTRA → model directory" in result.stdout
    assert {"bert_config.json", "vocab.txt", "encoder.weights.h5", "model.weights.h5", "task.json"} <= \
        {p.name for p in converted.iterdir()}
    config = json.loads((converted / "bert_config.json").read_text(encoding="utf-8"))
    assert config["hidden_act"] == "gelu_exact" and config["hidden_size"] == 32
    assert config.get("embedding_size") == (case["embedding"] if case["embedding"] != 32 else None)
    hidden, heads, intermediate = case["generator"]
    task = json.loads((converted / "task.json").read_text(encoding="utf-8"))
    assert task["objective"] == "electra" and task["discriminator_head"] is True and task["lowercase"] is True
    assert task["generator"] == {"hidden_size": hidden, "num_layers": 2, "num_heads": heads,
                                 "intermediate_size": intermediate}
    got, model_dir, _ = _ours(converted)
    inputs, positions = _inputs()
    _assert_close(got, reference(case["discriminator"], inputs, positions, case["generated"], heads))


def test_hugging_face_to_ours_to_hugging_face_is_identical(case):
    exported, generator = case["root"] / "hf-again", case["root"] / "hf-generator-again"
    result = _convert(case["converted"], exported, "--format", "huggingface", "--generator", generator)
    assert result.exit_code == 0, result.output
    assert "ElectraForPreTraining" in result.stdout and "ElectraForMaskedLM" in result.stdout
    _assert_same_tensors(exported, case["discriminator"])
    _assert_same_tensors(generator, case["generated"])
    for directory, original in ((exported, hf_config(case["embedding"])),
                                (generator, generator_config(case["embedding"], case["generator"]))):
        values = _hf_values(directory)
        assert {key: values[key] for key in (*BASE, "embedding_size", "model_type", "architectures")} == \
            {key: original[key] for key in (*BASE, "embedding_size", "model_type", "architectures")}
        assert values["layer_norm_eps"] == 1e-12 and values["pad_token_id"] == 0
        tokenizer = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        assert tokenizer["do_lower_case"] is True and tokenizer["tokenizer_class"] == "ElectraTokenizer"
        assert (directory / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1] == VOCAB


def test_discriminator_alone_keeps_its_head_and_electra_model_has_none(tmp_path):
    """ElectraForPreTraining without --generator keeps the head; ElectraModel (no prefix) is the encoder alone."""
    inputs, positions = _inputs()
    for name, weights, architecture in (
            ("discriminator", discriminator_arrays(16, seed=5), "ElectraForPreTraining"),
            ("encoder", discriminator_arrays(16, seed=6, head=False, prefix=""), "ElectraModel")):
        source = write_hf(tmp_path / f"hf-{name}", weights, hf_config(16, architecture))
        ours, back = tmp_path / f"ours-{name}", tmp_path / f"back-{name}"
        result = _convert(source, ours)
        assert result.exit_code == 0, result.output
        task = json.loads((ours / "task.json").read_text(encoding="utf-8"))
        assert "generator" not in task and task.get("discriminator_head", False) is (name == "discriminator")
        assert (ours / "model.weights.h5").is_file() is (name == "discriminator")
        got, _, _ = _ours(ours)
        _assert_close(got, reference(weights, inputs, positions))
        # --generator on writing: refused for the original layout, inside TO, and where there is no generator.
        for args, fragments in (((), ("--format huggingface",)), (("--format", "huggingface"), ("no generator",))):
            result = _convert(ours, back, *args, "--generator", tmp_path / "gen")
            assert_one_line_error(result, "--generator", *fragments)
        result = _convert(ours, back, "--format", "huggingface", "--generator", back / "gen")
        assert_one_line_error(result, "--generator", "inside")
        assert not back.exists() and not (tmp_path / "gen").exists()
        result = _convert(ours, back, "--format", "huggingface")
        assert result.exit_code == 0, result.output
        assert _hf_values(back)["architectures"] == [architecture]
        _assert_same_tensors(back, weights)
    # The head travels to google-research/electra's layout too (discriminator_predictions/dense_1 there).
    import tensorflow as tf

    result = _convert(tmp_path / "ours-discriminator", tmp_path / "tf1")
    assert result.exit_code == 0, result.output
    reader = tf.train.load_checkpoint(str(tmp_path / "tf1" / "tf1"))
    head = discriminator_arrays(16, seed=5)["discriminator_predictions.dense_prediction.weight"]
    np.testing.assert_array_equal(reader.get_tensor("discriminator_predictions/dense_1/kernel"), head.T)
    # --init / --init-checkpoint read a Hugging Face ELECTRA directory on the fly, as bert convert does.
    from bert_cli.model_dir import read_model_dir

    on_the_fly = read_model_dir(tmp_path / "hf-discriminator")
    assert on_the_fly.objective == "electra" and on_the_fly.config.embedding_size == 16
    got, _, _ = _ours(tmp_path / "hf-discriminator")
    _assert_close(got, reference(discriminator_arrays(16, seed=5), inputs, positions))


# ----------------------------------------------------------------------------
# A model directory of ours -> Hugging Face -> ours
# ----------------------------------------------------------------------------


def _native_electra(tmp_path, model, seed: int):
    """``model`` (an ElectraPretrainer), every weight random, as ``bert pretrain --objective electra``
    writes its model directory; returns the directory."""
    from bert_cli.model_dir import write_model_dir

    rng = np.random.default_rng(seed)
    for variable in model.weights:
        value = rng.normal(0, 0.3, tuple(variable.shape)) + (1.0 if variable.path.endswith("gamma") else 0.0)
        variable.assign(value.astype(np.float32))
    native = tmp_path / "native"
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    shape = model.generator_shape
    write_model_dir(native, model.bert_config, tmp_path / "vocab.txt", model.backbone, model,
                    {"task": "pretraining", "objective": "electra", "masked_lm": False, "next_sentence": False,
                     "generator": shape.to_dict(), "lowercase": True,
                     "generator_hidden_fraction": shape.hidden_size / model.bert_config.hidden_size})
    return native


def _exported_with_generator(tmp_path, model, seed: int):
    """``model`` written as a native directory (:func:`_native_electra`) and converted with ``--generator``:
    ``(native, exported, generator)`` directories."""
    native = _native_electra(tmp_path, model, seed)
    exported, generator = tmp_path / "hf", tmp_path / "hf-generator"
    result = _convert(native, exported, "--format", "huggingface", "--generator", generator)
    assert result.exit_code == 0, result.output
    return native, exported, generator


def _our_outputs(model, inputs, positions) -> dict:
    """An ElectraPretrainer's sequence output, replaced-token logits and generator MLM logits (numpy)."""
    sequence = model.backbone(inputs)["sequence_output"]
    return {"sequence_output": np.asarray(sequence),
            "discriminator_logits": np.asarray(model.discriminator_output(model.discriminator_dense(sequence)))[..., 0],
            "mlm_logits": np.asarray(model.generator(inputs["token_ids"], inputs["segment_ids"],
                                                     inputs["padding_mask"], positions))}


def test_ours_to_hugging_face_to_ours_is_exact(tmp_path):
    """A native ELECTRA model directory (as bert pretrain --objective electra writes it), every weight random."""
    from models.config import BertConfig
    from models.electra import GeneratorShape, build_electra

    config = BertConfig.from_dict({**BASE, "hidden_act": "gelu_exact", "embedding_size": 16})
    shape = GeneratorShape(8, 2, 2, 24)  # 8 wide: the generator projects 16 -> 8
    model = build_electra(config, generator_shape=shape)
    native, exported, generator = _exported_with_generator(tmp_path, model, seed=3)
    values = _hf_values(generator)
    assert values["hidden_size"] == 8 and values["num_attention_heads"] == 2 and values["embedding_size"] == 16
    # The exported tensors, run as Transformers runs them, give our model's outputs.
    discriminator, generated = read_hf(exported), read_hf(generator)
    assert "generator_lm_head.weight" not in generated and "electra.embeddings_project.weight" in generated
    inputs, positions = _inputs()
    ours = _our_outputs(model, inputs, positions)
    _assert_close(ours, reference(discriminator, inputs, positions, generated, generator_heads=2))

    # Without --generator: the discriminator alone, and the summary says the generator was left out.
    alone = tmp_path / "hf-alone"
    result = _convert(native, alone, "--format", "huggingface")
    assert result.exit_code == 0, result.output
    assert "left out" in result.stdout and "--generator" in result.stdout
    _assert_same_tensors(alone, discriminator)

    again = tmp_path / "again"
    result = _convert(exported, again, "--generator", generator)
    assert result.exit_code == 0, result.output
    _, _, back = _ours(again)
    compared = 0
    for a, b in zip(model.weights, back.weights, strict=True):
        assert a.path.split("/")[1:] == b.path.split("/")[1:]
        if "pooled_dense" in a.path:  # ELECTRA has no pooler: ours is redrawn from the fixed seed
            continue
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
        compared += 1
    assert compared == len(model.weights) - 2


def test_a_tied_generator_is_written_as_a_full_generator_with_the_discriminators_encoder(tmp_path):
    """Transformers has no tied generator: --generator writes an ElectraForMaskedLM as wide as the
    discriminator whose encoder tensors are the discriminator's, and it computes our generator's logits."""
    from models.config import BertConfig
    from models.electra import build_electra

    config = BertConfig.from_dict({**BASE, "hidden_act": "gelu_exact", "embedding_size": 16})
    model = build_electra(config, tied=True)
    _, exported, generator = _exported_with_generator(tmp_path, model, seed=4)
    values = _hf_values(generator)
    assert values["hidden_size"] == config.hidden_size and values["num_hidden_layers"] == config.num_hidden_layers
    discriminator, generated = read_hf(exported), read_hf(generator)
    shared = [name for name in generated if ".encoder." in name or "embeddings_project" in name]
    assert shared
    for name in shared:  # the generator's encoder is the discriminator's, tensor for tensor
        np.testing.assert_array_equal(generated[name], discriminator[name], err_msg=name)
    inputs, positions = _inputs()
    heads = config.num_attention_heads
    _assert_close(_our_outputs(model, inputs, positions),
                  reference(discriminator, inputs, positions, generated, generator_heads=heads))


def test_pretrain_init_checkpoint_takes_the_whole_converted_pair(case):
    """``bert pretrain --objective electra --init-checkpoint`` of the converted pair loads the whole model
    (generator and head too) into the model it builds, when the generator is of the shape it builds."""
    from bert_cli.model_dir import read_model_dir
    from bert_cli.pretraining import _initializer
    from models.electra import GeneratorShape, build_electra

    converted = read_model_dir(case["converted"])
    hidden, heads, intermediate = case["generator"]
    fraction = hidden / converted.config.hidden_size
    fresh = build_electra(converted.config, fraction, seed=1)
    _initializer(case["converted"], converted.config, lowercase=True)(fresh)
    whole = GeneratorShape.of(converted.config, fraction) == GeneratorShape(hidden, 2, heads, intermediate)
    assert whole is (case["name"] == "projected")  # the other case's 2-head generator is not what pretrain builds
    stored = build_electra(converted.config, generator_shape=GeneratorShape(**converted.task["generator"]))
    stored.load_weights(str(converted.model_weights))
    for a, b in zip(fresh.backbone.weights, stored.backbone.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    if whole:
        for a, b in zip(fresh.weights, stored.weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


# ----------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written
# ----------------------------------------------------------------------------


def _missing_tensor(root):
    weights = discriminator_arrays(16, seed=9)
    del weights["electra.encoder.layer.1.output.dense.weight"]
    return [write_hf(root / "hf", weights, hf_config(16))]


def _unknown_model_type(root):
    return [write_hf(root / "hf", discriminator_arrays(16, seed=9), hf_config(16, model_type="electrum"))]


def _shape_mismatch(root):
    weights = discriminator_arrays(16, seed=9)
    weights["electra.embeddings_project.weight"] = np.zeros((32, 24), np.float32)
    return [write_hf(root / "hf", weights, hf_config(16))]


def _no_projection_in_config(root):
    weights = discriminator_arrays(32, seed=9)
    weights["electra.embeddings_project.weight"] = np.zeros((32, 32), np.float32)
    weights["electra.embeddings_project.bias"] = np.zeros((32,), np.float32)
    return [write_hf(root / "hf", weights, hf_config(32))]


def _generator_as_from(root):
    discriminator = discriminator_arrays(16, seed=9)
    return [write_hf(root / "gen", generator_arrays(16, (16, 1, 64), discriminator, 10),
                     generator_config(16, (16, 1, 64)))]


def _generator_of_another_discriminator(root):
    discriminator = discriminator_arrays(16, seed=9)
    other = generator_arrays(16, (16, 1, 64), discriminator_arrays(16, seed=11), 10)
    return [write_hf(root / "hf", discriminator, hf_config(16)), "--generator",
            write_hf(root / "gen", other, generator_config(16, (16, 1, 64)))]


def _generator_beside_bert(root):
    config = {**hf_config(32, "BertModel"), "model_type": "bert"}
    del config["embedding_size"]
    bert = discriminator_arrays(32, seed=9, head=False, prefix="")  # BertModel's names, no pooler
    return [write_hf(root / "hf", bert, config), "--generator", root]


def _generator_activation(root):
    discriminator = discriminator_arrays(16, seed=9)
    return [write_hf(root / "hf", discriminator, hf_config(16)), "--generator",
            write_hf(root / "gen", generator_arrays(16, (16, 1, 64), discriminator, 10),
                     generator_config(16, (16, 1, 64), hidden_act="relu"))]


BAD_CASES = {
    "missing tensor": (_missing_tensor, ("missing 1 tensor", "electra.encoder.layer.1.output.dense.weight")),
    "unknown model_type": (_unknown_model_type, ("electrum", "\"electra\"")),
    "shape mismatch": (_shape_mismatch, ("electra.embeddings_project.weight", "[32, 24]", "[32, 16]")),
    "projection the config lacks": (_no_projection_in_config, ("electra.embeddings_project.weight",
                                                               "embedding_size equals hidden_size")),
    "generator as FROM": (_generator_as_from, ("ElectraForMaskedLM", "--generator")),
    "generator of another discriminator": (_generator_of_another_discriminator,
                                           ("electra.embeddings.", "differs from the discriminator's")),
    "--generator beside BERT": (_generator_beside_bert, ("--generator", "BERT")),
    "generator activation": (_generator_activation, ("hidden_act", "relu")),
}


@pytest.mark.parametrize("bad", sorted(BAD_CASES))
def test_bad_hugging_face_electra_input_is_one_line_and_exit_2(tmp_path, bad):
    make, fragments = BAD_CASES[bad]
    args = make(tmp_path)
    before = sorted(os.listdir(tmp_path))
    target = tmp_path / "out"
    result = _convert(args[0], target, *args[1:])
    assert_one_line_error(result, *fragments)
    assert not target.exists()
    assert sorted(os.listdir(tmp_path)) == before  # no half-written output beside it either
