"""`bert pretrain`'s speed choices: XLA picked by default where it was measured faster, and `--dropout`."""

import dataclasses
import json

import numpy as np
import pytest

from bert_cli.main import app
from bert_cli.pretraining import (
    BF16_MIN_HIDDEN,
    XLA_MIN_STEPS,
    PretrainOptions,
    cpu_bf16_units,
    resolve_precision,
    training_config,
    use_xla,
)
from cli_helpers import assert_one_line_error
from pretrain_helpers import TINY_CONFIG, make_examples, write_config, write_records, write_vocab

tf = pytest.importorskip("tensorflow")


@dataclasses.dataclass
class _Distribution:
    kind: str = "default"


def _options(**changes) -> PretrainOptions:
    changes.setdefault("precision", "fp32")  # as a run has resolved it
    return PretrainOptions(inputs=("r",), output="o", train_steps=changes.pop("train_steps", 1000), **changes)


def test_xla_by_default_for_long_fp32_runs_only():
    cpu = _Distribution()
    assert use_xla(_options(), cpu) is True
    assert use_xla(_options(train_steps=XLA_MIN_STEPS - 1), cpu) is False  # compile time would not pay back
    assert use_xla(_options(precision="mixed_bfloat16"), cpu) is False  # slower under XLA on a CPU
    assert use_xla(_options(), _Distribution("tpu")) is False  # compiled anyway
    assert use_xla(_options(jit=False), cpu) is False  # asked for: always as asked
    assert use_xla(_options(jit=True, train_steps=5, precision="mixed_bfloat16"), cpu) is True
    assert use_xla(_options(objective="electra"), cpu) is True  # 1.36x with threefry noise (L-2_H-128)
    assert use_xla(_options(objective="electra", precision="mixed_bfloat16"), cpu) is False
    assert use_xla(_options(objective="electra", jit=True), cpu) is True


def test_bf16_units_are_read_from_the_cpus_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\n")
    assert cpu_bf16_units(str(cpuinfo)) == "AMX bf16 units"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n")  # e.g. AMD Zen 4
    assert cpu_bf16_units(str(cpuinfo)) == "AVX-512-BF16 units"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n\n")  # AVX2 only: bf16 measured slower
    assert cpu_bf16_units(str(cpuinfo)) is None
    assert cpu_bf16_units(str(tmp_path / "absent")) is None  # not Linux: no claim


@pytest.mark.parametrize("amx, hidden, kind, asked, expected", [
    (True, BF16_MIN_HIDDEN, "default", "auto", "mixed_bfloat16"),
    (True, BF16_MIN_HIDDEN - 1, "default", "auto", "fp32"),  # element-wise work dominates: bf16 is slower
    (False, 1024, "default", "auto", "fp32"),  # no bf16 units: bf16 measured slower
    (True, 1024, "tpu", "auto", "fp32"),  # accelerators keep fp32 unless asked
    (False, 32, "default", "mixed_bfloat16", "mixed_bfloat16"),  # asked for: as asked
    (True, 1024, "default", "fp32", "fp32"),
])
def test_auto_precision_picks_bf16_only_where_it_was_measured_faster(monkeypatch, amx, hidden, kind, asked,
                                                                      expected):
    from models.config import BertConfig

    monkeypatch.setattr("bert_cli.pretraining.cpu_bf16_units", lambda: "AMX bf16 units" if amx else None)
    config = BertConfig(**{**TINY_CONFIG, "hidden_size": hidden, "num_attention_heads": 1})
    assert resolve_precision(_options(precision=asked), config, _Distribution(kind)) == expected


def test_training_config_replaces_dropout_only():
    from models.config import BertConfig

    config = BertConfig(**{**TINY_CONFIG, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1})
    assert training_config(config, None) is config
    off = training_config(config, 0.0)
    assert (off.hidden_dropout_prob, off.attention_probs_dropout_prob) == (0.0, 0.0)
    assert dataclasses.replace(off, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1) == config
    assert config.hidden_dropout_prob == 0.1  # the model's own config is untouched


def _training_outputs_differ(config) -> bool:
    from bert_cli.pretraining import record_inputs
    from models.pretraining import build_pretrainer

    model = build_pretrainer(config, next_sentence=True)
    batch = {key: tf.constant(value) for key, value in _batch().items()}
    first = model(record_inputs(batch), training=True)["mlm_logits"].numpy()
    second = model(record_inputs(batch), training=True)["mlm_logits"].numpy()
    return not np.array_equal(first, second)


def _batch() -> dict:
    rng = np.random.default_rng(0)
    ids = rng.integers(5, TINY_CONFIG["vocab_size"], (4, 16))
    return {"input_ids": ids, "input_mask": np.ones_like(ids), "segment_ids": np.zeros_like(ids),
            "masked_lm_positions": np.tile(np.arange(1, 5), (4, 1)), "masked_lm_ids": ids[:, 1:5],
            "masked_lm_weights": np.ones((4, 4), "float32")}


def test_dropout_reaches_the_model_layers():
    from models.config import BertConfig

    config = BertConfig(**{**TINY_CONFIG, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1})
    assert _training_outputs_differ(config)  # the model's own dropout draws new masks each call
    assert not _training_outputs_differ(training_config(config, 0.0))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("records")
    write_vocab(directory)
    config = write_config(directory, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    write_records(directory / "part-00000.tfrecord", make_examples(256, seed=1))
    return directory, config


def _pretrain(runner, corpus, output, *extra):
    directory, config = corpus
    return runner.invoke(app, [
        "pretrain", str(directory / "part-00000.tfrecord"), "-o", str(output), "--model", str(config), "--vocab",
        str(directory / "vocab.txt"), "--batch-size", "16", "--train-steps", "6", "--warmup-steps", "1", *extra])


def test_dropout_option_keeps_the_models_config_and_is_part_of_the_run(runner, corpus, tmp_path):
    output = tmp_path / "model"
    result = _pretrain(runner, corpus, output, "--dropout", "0")
    assert result.exit_code == 0, result.output
    assert "XLA off (auto), fp32 (auto), dropout 0" in " ".join(result.stderr.split())
    saved = json.loads((output / "bert_config.json").read_text())
    assert saved["hidden_dropout_prob"] == 0.1 and saved["attention_probs_dropout_prob"] == 0.1
    refused = _pretrain(runner, corpus, output, "--dropout", "0.2")
    assert refused.exit_code == 2 and "--overwrite" in refused.stderr


def test_auto_precision_is_said_and_recorded(runner, corpus, tmp_path, monkeypatch):
    monkeypatch.setattr("bert_cli.pretraining.cpu_bf16_units", lambda: "AMX bf16 units")
    monkeypatch.setattr("bert_cli.pretraining.BF16_MIN_HIDDEN", 32)  # the tiny model counts as large here
    output = tmp_path / "model"
    result = _pretrain(runner, corpus, output)
    assert result.exit_code == 0, result.output
    assert "mixed_bfloat16 (auto: AMX bf16 units)" in " ".join(result.stderr.split())
    options = json.loads((output / "pretrain.json").read_text())["options"]
    assert (options["precision"], options["precision_auto"]) == ("mixed_bfloat16", True)


@pytest.mark.parametrize("value", ["-0.1", "1"])
def test_dropout_out_of_range_is_one_line(runner, corpus, tmp_path, value):
    result = _pretrain(runner, corpus, tmp_path / "model", "--dropout", value)
    assert_one_line_error(result, "--dropout")
    assert not (tmp_path / "model" / "model.weights.h5").exists()


def _manifest(chunks: int, instances: int, created_by: str = "bert make-data") -> dict:
    return {"created_by": created_by, "options": {"chunk_size_mb": 1.0},
            "counts": {"chunks": chunks, "instances": instances}}


def test_a_run_shorter_than_one_pass_over_chunked_records_is_warned():
    from bert_cli.pretraining import chunk_order_note

    # 4,950 updates of 32 over 503,423 instances in 18 chunks: 158,400 examples, 31 %, 5.66 -> 6 chunks.
    note = chunk_order_note(_manifest(18, 503_423), 4_950 * 32)
    assert note is not None
    for fragment in ("18 chunks", "158,400 of their 503,423", "(31%)", "first 6 chunks", "--chunk-size-mb"):
        assert fragment in note, note
    # One pass or more, one chunk, records of the original script, or no manifest: nothing to say.
    assert chunk_order_note(_manifest(18, 503_423), 503_423) is None
    assert chunk_order_note(_manifest(1, 503_423), 32) is None
    assert chunk_order_note(_manifest(18, 503_423, created_by="create_pretraining_data.py"), 32) is None
    assert chunk_order_note(None, 32) is None


def _matmul_dtypes(model, batch) -> set:
    """The dtypes of every matrix product in the traced forward pass of ``model`` on ``batch``."""
    from bert_cli.pretraining import record_inputs

    inputs = record_inputs({key: tf.constant(value) for key, value in batch.items()})
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(inputs).graph
    products = [op for op in graph.get_operations() if op.type in ("MatMul", "BatchMatMulV2", "Einsum")]
    assert products
    return {op.get_attr("T").name for op in products}


def test_mixed_bfloat16_runs_every_matmul_in_bfloat16_the_vocabulary_projection_too():
    """Keras' Embedding does not autocast its table: the tied MLM output projection ran in float32."""
    from models.config import BertConfig
    from models.pretraining import build_pretrainer

    config = BertConfig(**TINY_CONFIG)
    assert _matmul_dtypes(build_pretrainer(config, dtype="mixed_bfloat16"), _batch()) == {"bfloat16"}
    assert _matmul_dtypes(build_pretrainer(config), _batch()) == {"float32"}
