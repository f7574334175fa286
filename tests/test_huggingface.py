"""Hugging Face Transformers BERT directories in and out of ``bert convert``.

The Hugging Face directories here are written by hand, the way Transformers
lays them out (``config.json``, ``model.safetensors`` or shards with
``model.safetensors.index.json``, ``vocab.txt``, ``tokenizer_config.json``),
with random values, and never by the code under test: neither PyTorch nor
Transformers is needed. Linear weights are stored [out, in] as PyTorch keeps
them. The converted models are checked against an independent numpy float64
transcription of the Transformers BERT forward pass, written from the
equations: LayerNorm with epsilon 1e-12 and biased variance, a very large
negative number added to the scores of padded keys, and the activation that
``hidden_act`` names ("gelu" is the exact erf form there; "gelu_new" and
"gelu_pytorch_tanh" are the tanh approximation).

Shape legend: B = batch, T = sequence length, H = hidden, N = heads, D = H/N,
V = vocabulary, P = masked positions, L = labels.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from cli_helpers import assert_one_line_error

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
SHAPE_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "max_position_embeddings", "type_vocab_size")
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


# ----------------------------------------------------------------------------
# A Hugging Face directory, written as Transformers would lay it out
# ----------------------------------------------------------------------------


def hf_config(base: dict = CONFIG, architecture: str = "BertForPreTraining", **changes) -> dict:
    """config.json as Transformers writes it for BERT, with the keys a real file carries besides the shape."""
    return {
        "architectures": [architecture], "model_type": "bert", **base, "layer_norm_eps": 1e-12,
        "position_embedding_type": "absolute", "pad_token_id": 0, "classifier_dropout": None,
        "use_cache": True, "torch_dtype": "float32", "transformers_version": "4.40.0", **changes,
    }


def hf_weights(config: dict, seed: int = 0, heads: str = "pretraining") -> dict[str, np.ndarray]:
    """Random float32 weights under the current Transformers names (``bert.`` prefix), PyTorch shapes.

    ``heads``: "pretraining" (MLM + NSP), "mlm" (MLM only) or "none" (the encoder alone).
    """
    rng = np.random.default_rng(seed)
    H, I, V = config["hidden_size"], config["intermediate_size"], config["vocab_size"]  # noqa: E741  (I: intermediate size)
    arrays = {}

    def linear(name, fan_in, fan_out):
        arrays[f"{name}.weight"] = rng.normal(0, fan_in ** -0.5, (fan_out, fan_in))  # [out, in]
        arrays[f"{name}.bias"] = rng.normal(0, 0.1, (fan_out,))

    def layer_norm(name):
        arrays[f"{name}.weight"] = 1 + rng.normal(0, 0.1, (H,))
        arrays[f"{name}.bias"] = rng.normal(0, 0.1, (H,))

    arrays["bert.embeddings.word_embeddings.weight"] = rng.normal(0, 0.3, (V, H))
    arrays["bert.embeddings.position_embeddings.weight"] = rng.normal(0, 0.3, (config["max_position_embeddings"], H))
    arrays["bert.embeddings.token_type_embeddings.weight"] = rng.normal(0, 0.3, (config["type_vocab_size"], H))
    layer_norm("bert.embeddings.LayerNorm")
    for layer in range(config["num_hidden_layers"]):
        prefix = f"bert.encoder.layer.{layer}"
        for name in ("query", "key", "value"):
            linear(f"{prefix}.attention.self.{name}", H, H)
        linear(f"{prefix}.attention.output.dense", H, H)
        layer_norm(f"{prefix}.attention.output.LayerNorm")
        linear(f"{prefix}.intermediate.dense", H, I)
        linear(f"{prefix}.output.dense", I, H)
        layer_norm(f"{prefix}.output.LayerNorm")
    linear("bert.pooler.dense", H, H)
    if heads in ("pretraining", "mlm"):
        linear("cls.predictions.transform.dense", H, H)
        layer_norm("cls.predictions.transform.LayerNorm")
        arrays["cls.predictions.bias"] = rng.normal(0, 0.1, (V,))  # the decoder weight is the word embeddings
    if heads == "pretraining":
        linear("cls.seq_relationship", H, 2)
    return {name: value.astype(np.float32) for name, value in arrays.items()}


def file_name(name: str, prefix: bool = True, old_names: bool = False) -> str:
    """A current, ``bert.``-prefixed name as a file of another kind spells it."""
    if not prefix:
        name = name.removeprefix("bert.")
    if old_names:
        name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
    return name


def write_hf(directory, weights: dict, config: dict, vocab: list[str] = UNCASED_VOCAB, lowercase: bool = True, *,
             shards: int = 1, old_names: bool = False, dtype=np.float32, prefix: bool = True):
    """A Hugging Face BERT directory: config.json, model.safetensors (or 2 shards + index), vocab, tokenizer config."""
    import safetensors.numpy

    directory.mkdir(parents=True, exist_ok=True)
    tensors = {file_name(name, prefix, old_names): value.astype(dtype) for name, value in weights.items()}
    if shards == 1:
        safetensors.numpy.save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    else:
        assert shards == 2
        names = sorted(tensors)
        halves = (names[: len(names) // 2], names[len(names) // 2:])
        weight_map = {}
        for shard, part in zip(SHARDS, halves):
            safetensors.numpy.save_file({name: tensors[name] for name in part}, str(directory / shard),
                                        metadata={"format": "pt"})
            weight_map.update({name: shard for name in part})
        index = {"metadata": {"total_size": int(sum(t.nbytes for t in tensors.values()))}, "weight_map": weight_map}
        (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": lowercase, "tokenizer_class": "BertTokenizer"}), encoding="utf-8")
    return directory


def read_hf(directory) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Every tensor of a Hugging Face directory (one file or shards), and each file's metadata."""
    from safetensors import safe_open

    if (directory / "model.safetensors.index.json").is_file():
        index = json.loads((directory / "model.safetensors.index.json").read_text(encoding="utf-8"))
        files = sorted(set(index["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors, metadata = {}, []
    for name in files:
        with safe_open(str(directory / name), framework="numpy") as handle:
            metadata.append(handle.metadata())
            for key in handle.keys():
                tensors[key] = handle.get_tensor(key)
    return tensors, metadata


# ----------------------------------------------------------------------------
# The Transformers BERT forward pass in numpy (float64)
# ----------------------------------------------------------------------------

_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu_exact(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


ACTIVATIONS = {"gelu": gelu_exact, "gelu_new": gelu_tanh, "gelu_pytorch_tanh": gelu_tanh,
               "relu": lambda x: np.maximum(x, 0.0)}


def layer_norm(x, w, name):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)  # biased
    return (x - mean) / np.sqrt(variance + 1e-12) * w[f"{name}.weight"] + w[f"{name}.bias"]


def linear(x, w, name):
    return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]  # PyTorch Linear: weight [out, in]


def reference_forward(weights, config, token_ids, segment_ids, padding_mask, positions=None):
    """Outputs of the heads ``weights`` holds (current names, ``bert.`` prefix), computed in float64."""
    w = {name: np.asarray(value).astype(np.float64) for name, value in weights.items()}
    act = ACTIVATIONS[config["hidden_act"]]
    B, T = token_ids.shape
    N = config["num_attention_heads"]
    D = config["hidden_size"] // N
    x = (w["bert.embeddings.word_embeddings.weight"][token_ids]
         + w["bert.embeddings.token_type_embeddings.weight"][segment_ids]
         + w["bert.embeddings.position_embeddings.weight"][:T][None])  # [B, T, H]
    x = layer_norm(x, w, "bert.embeddings.LayerNorm")
    adder = np.where(padding_mask[:, None, None, :] == 1, 0.0, -1e9)  # [B, 1, 1, T]: padded keys get nothing

    def heads(t):  # [B, T, H] -> [B, N, T, D]
        return t.reshape(B, T, N, D).transpose(0, 2, 1, 3)

    for layer in range(config["num_hidden_layers"]):
        p = f"bert.encoder.layer.{layer}"
        q, k, v = (heads(linear(x, w, f"{p}.attention.self.{name}")) for name in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D) + adder  # [B, N, T, T]
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(B, T, N * D)  # [B, T, H]
        attention = layer_norm(linear(context, w, f"{p}.attention.output.dense") + x, w,
                               f"{p}.attention.output.LayerNorm")
        intermediate = act(linear(attention, w, f"{p}.intermediate.dense"))  # [B, T, I]
        x = layer_norm(linear(intermediate, w, f"{p}.output.dense") + attention, w, f"{p}.output.LayerNorm")
    pooled = np.tanh(linear(x[:, 0], w, "bert.pooler.dense"))  # [B, H]
    outputs = {"sequence_output": x, "pooled_output": pooled}
    if "cls.predictions.bias" in w and positions is not None:
        gathered = np.take_along_axis(x, positions[:, :, None], axis=1)  # [B, P, H]
        transformed = layer_norm(act(linear(gathered, w, "cls.predictions.transform.dense")), w,
                                 "cls.predictions.transform.LayerNorm")
        outputs["mlm_logits"] = (transformed @ w["bert.embeddings.word_embeddings.weight"].T
                                 + w["cls.predictions.bias"])  # [B, P, V]
    if "cls.seq_relationship.weight" in w:
        outputs["nsp_logits"] = linear(pooled, w, "cls.seq_relationship")  # [B, 2]
    if "classifier.weight" in w:
        outputs["logits"] = linear(pooled, w, "classifier")  # [B, L]
    return outputs


def _inputs(vocab_size: int = 100):
    rng = np.random.default_rng(7)
    token_ids = rng.integers(5, vocab_size, (2, 10)).astype(np.int32)
    token_ids[:, 0] = 2  # [CLS]
    segment_ids = np.zeros((2, 10), np.int32)
    segment_ids[:, 6:] = 1
    padding_mask = np.ones((2, 10), np.int32)
    padding_mask[1, 7:] = 0  # the second sequence is padded
    token_ids[1, 7:] = 0
    positions = np.array([[1, 4, 8], [2, 3, 5]], np.int32)
    return {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}, positions


def _reference(weights, config, vocab_size: int = 100):
    inputs, positions = _inputs(vocab_size)
    return reference_forward(weights, config, inputs["token_ids"], inputs["segment_ids"], inputs["padding_mask"],
                             positions)


def _ours(source):
    """A model directory's (or Hugging Face directory's) outputs on ``_inputs()``, loaded as the tests of
    original checkpoints load them. ``source``: a path or an already read ``ModelDir``."""
    from bert_cli.model_dir import ModelDir, load_encoder, read_model_dir
    from models.pretraining import build_pretrainer

    model_dir = source if isinstance(source, ModelDir) else read_model_dir(source)
    inputs, positions = _inputs(model_dir.config.vocab_size)
    encoder = load_encoder(model_dir)
    encoded = encoder(inputs)
    got = {"sequence_output": np.asarray(encoded["sequence_output"]),
           "pooled_output": np.asarray(encoded["pooled_output"])}
    if model_dir.task.get("masked_lm"):
        pretrainer = build_pretrainer(model_dir.config, next_sentence=model_dir.task["next_sentence"])
        pretrainer.load_weights(str(model_dir.model_weights))
        heads = pretrainer({**inputs, "masked_lm_positions": positions})
        got["mlm_logits"] = np.asarray(heads["mlm_logits"])
        if "nsp_logits" in heads:
            got["nsp_logits"] = np.asarray(heads["nsp_logits"])
        for ours, theirs in zip(encoder.weights, pretrainer.backbone.weights):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    return got, model_dir


def _assert_close(got: dict, expected: dict, tolerance: float = 1e-5) -> None:
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for name, value in expected.items():
        assert got[name].shape == value.shape, (name, got[name].shape, value.shape)
        difference = float(np.max(np.abs(got[name].astype(np.float64) - value)))
        assert difference <= tolerance, (name, difference)


def _convert(args):
    from typer.testing import CliRunner

    from bert_cli.main import app

    return CliRunner().invoke(app, ["convert", *map(str, args)])


def _classifier_logits(path):
    from bert_cli.model_dir import read_model_dir
    from bert_cli.tasks.classify import build_model

    model_dir = read_model_dir(path)
    model = build_model(model_dir)
    model.load_weights(str(model_dir.model_weights))
    inputs, _ = _inputs(model_dir.config.vocab_size)
    return np.asarray(model(inputs)), model, model_dir


# ----------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights():
    return hf_weights(CONFIG, seed=1)


@pytest.fixture(scope="module")
def hf_pretraining(tmp_path_factory, weights):
    """BertForPreTraining, current names, float32, exact GELU: the plain case."""
    return write_hf(tmp_path_factory.mktemp("hf") / "bert-tiny-uncased", weights, hf_config())


@pytest.fixture(scope="module")
def converted(tmp_path_factory, hf_pretraining):
    """``bert convert HF_DIR MODEL_DIR`` once for the module."""
    target = tmp_path_factory.mktemp("converted") / "model"
    result = _convert([hf_pretraining, target])
    assert result.exit_code == 0, result.output
    return target, result


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """``bert finetune classify --init HF_DIR`` for two steps, once for the module (cased, 2 heads)."""
    from typer.testing import CliRunner

    from bert_cli.main import app
    from finetune_helpers import TINY_CONFIG, VOCAB, sentiment_rows, write_tsv

    root = tmp_path_factory.mktemp("finetune")
    weights = hf_weights(TINY_CONFIG, seed=11)
    source = write_hf(root / "hf", weights, hf_config(TINY_CONFIG), VOCAB, lowercase=False)
    write_tsv(root / "train.tsv", ["sentence", "label"], sentiment_rows(64, 1))
    output = root / "out"
    result = CliRunner().invoke(app, ["finetune", "classify", str(root / "train.tsv"), "-o", str(output),
                                      "--init", str(source), "--epochs", "1", "--batch-size", "32",
                                      "--max-seq-length", "16"])
    return {"source": source, "weights": weights, "output": output, "result": result, "vocab": VOCAB,
            "config": TINY_CONFIG}


# ----------------------------------------------------------------------------
# The reference on its own
# ----------------------------------------------------------------------------


def test_numpy_reference_is_right_on_its_own(weights):
    x = np.linspace(-6, 6, 1201)
    assert gelu_exact(np.array([1.0]))[0] == pytest.approx(0.8413447460685429, abs=1e-15)
    assert gelu_exact(np.array([-1.0]))[0] == pytest.approx(-0.15865525393145707, abs=1e-15)
    assert gelu_exact(np.array([0.0]))[0] == 0.0
    # The tanh form approximates the erf form closely, but not so closely a test could not tell them apart.
    difference = np.max(np.abs(gelu_exact(x) - gelu_tanh(x)))
    assert 1e-5 < difference < 1e-3, difference
    np.testing.assert_allclose(gelu_exact(x)[x > 5], x[x > 5], atol=1e-6)

    # Padded keys do not reach the real positions: changing a padded token changes nothing there.
    inputs, positions = _inputs()
    args = (inputs["token_ids"], inputs["segment_ids"], inputs["padding_mask"], positions)
    first = reference_forward(weights, CONFIG, *args)
    changed = inputs["token_ids"].copy()
    changed[1, 7:] = 42
    second = reference_forward(weights, CONFIG, changed, *args[1:])
    np.testing.assert_allclose(second["sequence_output"][1, :7], first["sequence_output"][1, :7], atol=1e-12)
    np.testing.assert_allclose(second["nsp_logits"], first["nsp_logits"], atol=1e-12)
    assert np.max(np.abs(second["sequence_output"][1, 7:] - first["sequence_output"][1, 7:])) > 1e-3
    # LayerNorm output: zero mean and unit (biased) variance before the scale and shift.
    unit = {"n.weight": np.ones(4), "n.bias": np.zeros(4)}
    normed = layer_norm(np.array([[1.0, 2.0, 3.0, 6.0]]), unit, "n")
    assert abs(normed.mean()) < 1e-12 and abs(normed.var() - 1) < 1e-9
    assert {"sequence_output", "pooled_output", "mlm_logits", "nsp_logits"} == set(first)
    assert first["mlm_logits"].shape == (2, 3, 100) and first["nsp_logits"].shape == (2, 2)


# ----------------------------------------------------------------------------
# Hugging Face -> model directory matches the reference
# ----------------------------------------------------------------------------

VARIANTS = {
    # name: how the Hugging Face directory is written, and the hidden_act our bert_config.json gets
    "pretraining": {},
    "sharded_old_names": {"seed": 2, "shards": 2, "old_names": True, "hidden_act": "gelu_pytorch_tanh",
                          "ours": "gelu"},
    "bfloat16": {"seed": 3, "dtype": "bfloat16", "hidden_act": "gelu_new", "ours": "gelu"},
    "bert_model": {"seed": 4, "prefix": False, "heads": "none", "hidden_act": "relu", "ours": "relu",
                   "architecture": "BertModel"},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_converted_model_matches_the_transformers_forward_pass(request, tmp_path, variant):
    import ml_dtypes

    spec = VARIANTS[variant]
    hidden_act = spec.get("hidden_act", "gelu")
    config = {**CONFIG, "hidden_act": hidden_act}
    if variant == "pretraining":
        weights = request.getfixturevalue("weights")
        target, result = request.getfixturevalue("converted")
    else:
        weights = hf_weights(config, spec["seed"], spec.get("heads", "pretraining"))
        dtype = np.float32
        if spec.get("dtype") == "bfloat16":
            dtype = ml_dtypes.bfloat16
            weights = {name: value.astype(dtype) for name, value in weights.items()}  # the reference sees bf16 values
        extra = {"torch_dtype": "bfloat16"} if spec.get("dtype") else {}
        source = write_hf(tmp_path / "hf", weights, hf_config(config, spec.get("architecture", "BertForPreTraining"),
                                                             **extra),
                          shards=spec.get("shards", 1), old_names=spec.get("old_names", False), dtype=dtype,
                          prefix=spec.get("prefix", True))
        if spec.get("shards"):
            assert not (source / "model.safetensors").exists()
        target = tmp_path / "model"
        result = _convert([source, target])
    assert result.exit_code == 0, result.output
    assert "Hugging Face → model directory" in result.stdout

    heads = spec.get("heads", "pretraining")
    expected_files = {"bert_config.json", "vocab.txt", "encoder.weights.h5", "task.json"}
    if heads != "none":
        expected_files.add("model.weights.h5")
    assert expected_files <= {p.name for p in target.iterdir()}
    assert (heads == "none") == (not (target / "model.weights.h5").exists())
    ours_config = json.loads((target / "bert_config.json").read_text(encoding="utf-8"))
    assert ours_config["hidden_act"] == spec.get("ours", "gelu_exact")
    assert {key: ours_config[key] for key in SHAPE_KEYS} == {key: CONFIG[key] for key in SHAPE_KEYS}
    task = json.loads((target / "task.json").read_text(encoding="utf-8"))
    assert task["task"] == "pretraining" and task["lowercase"] is True and "converted_from" in task
    assert task["masked_lm"] is (heads != "none") and task["next_sentence"] is (heads == "pretraining")
    assert (target / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1] == UNCASED_VOCAB

    got, model_dir = _ours(target)
    assert model_dir.kind == "pretraining" and model_dir.lowercase is True
    _assert_close(got, _reference(weights, config))


def test_read_model_dir_converts_a_hugging_face_directory_on_the_fly(hf_pretraining, converted, weights):
    from bert_cli.model_dir import load_encoder, read_model_dir

    model_dir = read_model_dir(hf_pretraining)
    assert model_dir.kind == "pretraining" and model_dir.lowercase is True
    assert model_dir.task["masked_lm"] is True and model_dir.task["next_sentence"] is True
    assert model_dir.config.hidden_act == "gelu_exact" and model_dir.config.vocab_size == 100
    assert model_dir.vocab_path.read_text(encoding="utf-8").split("\n")[:-1] == UNCASED_VOCAB
    assert model_dir.encoder_weights.is_file() and model_dir.model_weights.is_file()
    # The scratch conversion is the same model as `bert convert`'s.
    converted_dir = read_model_dir(converted[0])
    for a, b in zip(load_encoder(model_dir).weights, load_encoder(converted_dir).weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # ... and nothing was written into the Hugging Face directory itself.
    assert {p.name for p in hf_pretraining.iterdir()} == {"config.json", "model.safetensors", "vocab.txt",
                                                         "tokenizer_config.json"}
    _assert_close(_ours(model_dir)[0], _reference(weights, CONFIG))


# ----------------------------------------------------------------------------
# Round trips
# ----------------------------------------------------------------------------


def _special_tokens(path) -> set[str]:
    values = json.loads(path.read_text(encoding="utf-8")).values()
    return {value["content"] if isinstance(value, dict) else value
            for value in values if isinstance(value, (str, dict))}


def _check_hf_export(exported, architecture: str, hidden_act: str, lowercase: bool, vocab: list[str],
                     base: dict = CONFIG) -> dict:
    """The files and config of an exported Hugging Face directory; returns its tensors (all float32)."""
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
            "special_tokens_map.json"} <= {p.name for p in exported.iterdir()}
    assert not (exported / "pytorch_model.bin").exists()
    config = json.loads((exported / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "bert" and config["architectures"] == [architecture]
    assert config["hidden_act"] == hidden_act and config["layer_norm_eps"] == 1e-12
    assert {key: config[key] for key in SHAPE_KEYS} == {key: base[key] for key in SHAPE_KEYS}
    assert config.get("position_embedding_type", "absolute") == "absolute"
    tokenizer = json.loads((exported / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tokenizer["do_lower_case"] is lowercase
    assert (exported / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1] == vocab
    assert set(SPECIALS) <= _special_tokens(exported / "special_tokens_map.json")
    tensors, metadata = read_hf(exported)
    assert metadata == [{"format": "pt"}]
    assert all(value.dtype == np.float32 for value in tensors.values())
    return tensors


def test_hugging_face_round_trip_is_exact(runner, converted, weights, tmp_path):
    from bert_cli.main import app

    first, _ = converted
    exported = tmp_path / "hf_again"
    result = runner.invoke(app, ["convert", str(first), str(exported), "--format", "huggingface"])
    assert result.exit_code == 0, result.output
    assert "model directory → Hugging Face" in result.stdout
    tensors = _check_hf_export(exported, "BertForPreTraining", "gelu", True, UNCASED_VOCAB)
    # Exactly the input's tensors: names, shapes, values.
    assert set(tensors) == set(weights)
    for name, value in weights.items():
        np.testing.assert_array_equal(tensors[name], value, err_msg=name)
    # TO exists now: refused without --overwrite.
    again = runner.invoke(app, ["convert", str(first), str(exported), "--format", "huggingface"])
    assert again.exit_code == 2 and "--overwrite" in again.stderr


def _native_model_dir(directory, config_values: dict, vocab: list[str], lowercase: bool, seed: int = 5):
    """A model directory of ours (not made from Hugging Face files), every weight random."""
    from bert_cli.model_dir import write_model_dir
    from models.config import BertConfig
    from models.pretraining import build_pretrainer

    config = BertConfig.from_dict(config_values)
    pretrainer = build_pretrainer(config)
    rng = np.random.default_rng(seed)
    for variable in pretrainer.weights:
        value = rng.normal(0, 0.2, tuple(variable.shape))
        if variable.path.endswith("gamma"):
            value += 1.0
        variable.assign(value.astype(np.float32))
    directory.mkdir(parents=True)
    vocab_file = directory.parent / "native_vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    write_model_dir(directory, config, vocab_file, pretrainer.backbone, pretrainer,
                    {"task": "pretraining", "masked_lm": True, "next_sentence": True, "lowercase": lowercase,
                     "max_seq_length": 64})
    return pretrainer


def test_model_directory_round_trip_is_exact(runner, tmp_path):
    from bert_cli.main import app
    from models.config import BertConfig
    from models.encoder import build_encoder
    from models.pretraining import build_pretrainer

    native = tmp_path / "native"
    config = {**CONFIG, "hidden_act": "gelu"}  # ours: the tanh approximation
    pretrainer = _native_model_dir(native, config, CASED_VOCAB, lowercase=False)
    exported = tmp_path / "hf"
    result = runner.invoke(app, ["convert", str(native), str(exported), "--format", "huggingface"])
    assert result.exit_code == 0, result.output
    tensors = _check_hf_export(exported, "BertForPreTraining", "gelu_new", False, CASED_VOCAB)
    assert set(tensors) == set(hf_weights(CONFIG))

    # The exported tensors, read as Transformers reads them, give our model's outputs.
    inputs, positions = _inputs()
    encoded = pretrainer.backbone(inputs)
    heads = pretrainer({**inputs, "masked_lm_positions": positions})
    ours = {"sequence_output": np.asarray(encoded["sequence_output"]),
            "pooled_output": np.asarray(encoded["pooled_output"]),
            "mlm_logits": np.asarray(heads["mlm_logits"]), "nsp_logits": np.asarray(heads["nsp_logits"])}
    _assert_close(ours, _reference(tensors, {**CONFIG, "hidden_act": "gelu_new"}))

    # ... and back: the same weights, bit for bit.
    again = tmp_path / "again"
    result = runner.invoke(app, ["convert", str(exported), str(again)])
    assert result.exit_code == 0, result.output
    back = json.loads((again / "bert_config.json").read_text(encoding="utf-8"))
    assert back["hidden_act"] == "gelu" and {key: back[key] for key in SHAPE_KEYS} == \
        {key: config[key] for key in SHAPE_KEYS}
    task = json.loads((again / "task.json").read_text(encoding="utf-8"))
    assert task["lowercase"] is False and task["masked_lm"] is True and task["next_sentence"] is True
    models = []
    for directory in (native, again):
        model = build_pretrainer(BertConfig.from_dict(config))
        model.load_weights(str(directory / "model.weights.h5"))
        models.append(model)
        encoder = build_encoder(BertConfig.from_dict(config))
        encoder.load_weights(str(directory / "encoder.weights.h5"))
        for a, b in zip(encoder.weights, pretrainer.backbone.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(*(m.weights for m in models)):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_encoder_only_and_masked_lm_only_directories_export_as_such(runner, tmp_path):
    from bert_cli.main import app

    # BertModel: no `bert.` prefix in, none out.
    encoder_only = hf_weights({**CONFIG, "hidden_act": "relu"}, seed=6, heads="none")
    source = write_hf(tmp_path / "hf_model", encoder_only, hf_config({**CONFIG, "hidden_act": "relu"}, "BertModel"),
                      prefix=False)
    # BertForMaskedLM: the MLM head without NSP.
    masked_lm = hf_weights(CONFIG, seed=7, heads="mlm")
    mlm_source = write_hf(tmp_path / "hf_mlm", masked_lm, hf_config(CONFIG, "BertForMaskedLM"))
    for hf, weights, architecture, hidden_act in ((source, encoder_only, "BertModel", "relu"),
                                                  (mlm_source, masked_lm, "BertForMaskedLM", "gelu")):
        ours, exported = tmp_path / f"{hf.name}_ours", tmp_path / f"{hf.name}_out"
        result = runner.invoke(app, ["convert", str(hf), str(ours)])
        assert result.exit_code == 0, result.output
        task = json.loads((ours / "task.json").read_text(encoding="utf-8"))
        assert task["masked_lm"] is (architecture == "BertForMaskedLM") and task["next_sentence"] is False
        if architecture == "BertForMaskedLM":
            got, _ = _ours(ours)
            assert "nsp_logits" not in got
            _assert_close(got, _reference(weights, CONFIG))
        result = runner.invoke(app, ["convert", str(ours), str(exported), "--format", "huggingface"])
        assert result.exit_code == 0, result.output
        tensors = _check_hf_export(exported, architecture, hidden_act, True, UNCASED_VOCAB)
        names = {file_name(name, prefix=architecture != "BertModel"): value for name, value in weights.items()}
        assert set(tensors) == set(names)
        for name, value in names.items():
            np.testing.assert_array_equal(tensors[name], value, err_msg=name)


# ----------------------------------------------------------------------------
# Fine-tuning from, and fine-tuned models to, Hugging Face
# ----------------------------------------------------------------------------


def test_finetune_starts_from_a_hugging_face_directory(finetuned):
    from bert_cli.model_dir import load_encoder, read_model_dir

    result = finetuned["result"]
    assert result.exit_code == 0, result.output
    output = finetuned["output"]
    task = json.loads((output / "task.json").read_text(encoding="utf-8"))
    assert task["task"] == "classify" and task["labels"] == ["neg", "pos"] and task["lowercase"] is False
    assert (output / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1] == finetuned["vocab"]
    assert json.loads((output / "bert_config.json").read_text(encoding="utf-8"))["hidden_act"] == "gelu_exact"
    # Two steps at 5e-5 move no weight far from where the Hugging Face file started it (random ones differ by ~0.3).
    encoder = load_encoder(read_model_dir(output))
    start = finetuned["weights"]
    np.testing.assert_allclose(encoder.token_embedding.embeddings.numpy(),
                               start["bert.embeddings.word_embeddings.weight"], atol=2e-3)
    np.testing.assert_allclose(encoder.get_layer("pooled_dense").kernel.numpy(),
                               start["bert.pooler.dense.weight"].T, atol=2e-3)


def test_fine_tuned_classifier_round_trip(runner, finetuned, tmp_path):
    from bert_cli.main import app

    assert finetuned["result"].exit_code == 0, finetuned["result"].output
    config = finetuned["config"]
    output = finetuned["output"]
    logits, model, _ = _classifier_logits(output)
    exported = tmp_path / "hf_classifier"
    result = runner.invoke(app, ["convert", str(output), str(exported), "--format", "huggingface"])
    assert result.exit_code == 0, result.output
    assert "model directory → Hugging Face" in result.stdout
    tensors = _check_hf_export(exported, "BertForSequenceClassification", "gelu", False, finetuned["vocab"], config)
    hf = json.loads((exported / "config.json").read_text(encoding="utf-8"))
    assert hf["id2label"] == {"0": "neg", "1": "pos"} and hf["label2id"] == {"neg": 0, "pos": 1}
    assert set(tensors) == set(hf_weights(config, heads="none")) | {"classifier.weight", "classifier.bias"}
    assert tensors["classifier.weight"].shape == (2, config["hidden_size"])
    head = {w.path.rsplit("/", 1)[-1]: w.numpy() for w in model.weights if "/classifier/" in w.path}
    np.testing.assert_array_equal(tensors["classifier.weight"], head["kernel"].T)  # ours [H, L], theirs [L, H]
    np.testing.assert_array_equal(tensors["classifier.bias"], head["bias"])
    expected = _reference(tensors, {**config, "hidden_act": "gelu"}, len(finetuned["vocab"]))
    assert np.max(np.abs(logits - expected["logits"])) <= 1e-5

    # ... and back: the fine-tuned model directory again.
    again = tmp_path / "classifier_again"
    result = runner.invoke(app, ["convert", str(exported), str(again)])
    assert result.exit_code == 0, result.output
    task = json.loads((again / "task.json").read_text(encoding="utf-8"))
    assert task["task"] == "classify" and task["labels"] == ["neg", "pos"] and task["lowercase"] is False
    logits_again, model_again, _ = _classifier_logits(again)
    np.testing.assert_array_equal(logits_again, logits)
    for a, b in zip(model_again.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


# ----------------------------------------------------------------------------
# Never unpickle; bad input is one line, exit 2, nothing written
# ----------------------------------------------------------------------------


def test_pytorch_pickles_are_refused_and_never_loaded(runner, tmp_path, monkeypatch, hf_pretraining):
    import pickle
    import shutil

    from bert_cli.main import app

    marker = tmp_path / "unpickled"
    assert "'" not in str(marker)
    # Protocol 0: os.system("touch MARKER") when unpickled.
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("the test forbids unpickling")

    class RefusingUnpickler:
        def __init__(self, *args, **kwargs):
            refuse(*args)

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", RefusingUnpickler)

    torch_only = tmp_path / "torch_only"
    torch_only.mkdir()
    (torch_only / "config.json").write_text(json.dumps(hf_config()), encoding="utf-8")
    (torch_only / "vocab.txt").write_text("\n".join(UNCASED_VOCAB) + "\n", encoding="utf-8")
    (torch_only / "pytorch_model.bin").write_bytes(payload)
    target = tmp_path / "out"
    result = runner.invoke(app, ["convert", str(torch_only), str(target)])
    assert_one_line_error(result, "pytorch_model.bin", "safetensors")
    assert not target.exists() and not marker.exists() and not calls

    # Beside a model.safetensors, the pickle is left alone and the safetensors file is used.
    both = tmp_path / "both"
    shutil.copytree(hf_pretraining, both)
    (both / "pytorch_model.bin").write_bytes(payload)
    result = runner.invoke(app, ["convert", str(both), str(target)])
    assert result.exit_code == 0, result.output
    assert not marker.exists() and not calls
    assert json.loads((target / "task.json").read_text(encoding="utf-8"))["next_sentence"] is True


def _bad_roberta(root):
    return write_hf(root / "hf", hf_weights(CONFIG, 9), hf_config(model_type="roberta")), []


def _bad_shape(root):
    weights = hf_weights(CONFIG, 9)
    weights["bert.encoder.layer.1.intermediate.dense.weight"] = np.zeros((48, 32), np.float32)
    return write_hf(root / "hf", weights, hf_config()), []


def _bad_vocab(root):
    return write_hf(root / "hf", hf_weights(CONFIG, 9), hf_config(), UNCASED_VOCAB[:-1]), []


def _bad_casing(root):
    return write_hf(root / "hf", hf_weights(CONFIG, 9), hf_config(), lowercase=True), ["--cased"]


def _bad_shard(root):
    source = write_hf(root / "hf", hf_weights(CONFIG, 9), hf_config(), shards=2)
    (source / SHARDS[1]).unlink()
    return source, []


def _bad_activation(root):
    return write_hf(root / "hf", hf_weights(CONFIG, 9), hf_config(hidden_act="quick_gelu")), []


BAD_CASES = {
    "model_type roberta": (_bad_roberta, ("roberta",)),
    "tensor shape": (_bad_shape, ("bert.encoder.layer.1.intermediate.dense.weight",)),
    "vocab size": (_bad_vocab, ("vocab.txt",)),
    "casing": (_bad_casing, ("tokenizer_config.json",)),
    "missing shard": (_bad_shard, (SHARDS[1],)),
    "hidden_act": (_bad_activation, ("hidden_act", "quick_gelu")),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_hugging_face_input_is_one_line_and_exit_2(runner, tmp_path, case):
    from bert_cli.main import app

    make, fragments = BAD_CASES[case]
    source, extra = make(tmp_path)
    before = sorted(os.listdir(tmp_path))
    target = tmp_path / "out"
    result = runner.invoke(app, ["convert", str(source), str(target), *extra])
    assert_one_line_error(result, *fragments)
    assert not target.exists()
    assert sorted(os.listdir(tmp_path)) == before  # no half-written output beside it either


def test_tokenizer_json_alone_gives_the_vocabulary_and_casing(runner, tmp_path, weights):
    """Newer directories may ship only tokenizer.json: its WordPiece vocabulary (by id) and BertNormalizer casing."""
    from bert_cli.main import app

    source = write_hf(tmp_path / "hf", weights, hf_config(), CASED_VOCAB)
    (source / "vocab.txt").unlink()
    (source / "tokenizer_config.json").unlink()
    shuffled = list(enumerate(CASED_VOCAB))[::-1]  # a JSON object's order says nothing; ids do
    tokenizer = {"normalizer": {"type": "BertNormalizer", "lowercase": False, "strip_accents": None},
                 "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {token: i for i, token in shuffled}}}
    (source / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    target = tmp_path / "model"
    result = runner.invoke(app, ["convert", str(source), str(target)])
    assert result.exit_code == 0, result.output
    assert (target / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1] == CASED_VOCAB
    assert json.loads((target / "task.json").read_text(encoding="utf-8"))["lowercase"] is False
    # A gap in the ids is refused in one line.
    del tokenizer["model"]["vocab"]["Apple"]
    (source / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    result = runner.invoke(app, ["convert", str(source), str(tmp_path / "again")])
    assert_one_line_error(result, "tokenizer.json", "ids")


def test_pretrain_continues_from_a_hugging_face_directory(runner, tmp_path):
    """--model HF_DIR --init-checkpoint HF_DIR: the encoder and both heads start from the file's tensors.

    With a learning rate of 1e-20 one step changes no float32 weight, so the run's
    model written back as Transformers tensors must equal the input's.
    """
    from bert_cli.main import app
    from pretrain_helpers import TINY_CONFIG, VOCAB, make_examples, write_records

    weights = hf_weights(TINY_CONFIG, seed=21)
    source = write_hf(tmp_path / "hf", weights, hf_config(TINY_CONFIG), VOCAB)
    write_records(tmp_path / "train.tfrecord", make_examples(16))
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    output = tmp_path / "adapted"
    result = runner.invoke(app, [
        "pretrain", str(tmp_path / "train.tfrecord"), "-o", str(output), "--model", str(source),
        "--init-checkpoint", str(source), "--vocab", str(tmp_path / "vocab.txt"), "--train-steps", "1",
        "--warmup-steps", "0", "--learning-rate", "1e-20", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert json.loads((output / "bert_config.json").read_text(encoding="utf-8"))["hidden_act"] == "gelu_exact"
    exported = tmp_path / "exported"
    result = runner.invoke(app, ["convert", str(output), str(exported), "--format", "huggingface"])
    assert result.exit_code == 0, result.output
    tensors, _ = read_hf(exported)
    assert set(tensors) == set(weights)
    for name, value in weights.items():
        np.testing.assert_allclose(tensors[name], value.astype(np.float32), rtol=0, atol=1e-12, err_msg=name)
