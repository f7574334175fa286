"""benchmarks/electra_tied_generator.py: the tied generator is the discriminator's encoder plus one head.

Its measurement (does ELECTRA pay when the encoder also learns masked LM?) only means something if
the generator really shares every encoder weight with the discriminator, adds nothing but its own
masked-LM head, and passes the generator's loss into that encoder; checked here on a tiny model.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "electra_tied_generator.py"


def _script():
    spec = importlib.util.spec_from_file_location("electra_tied_generator", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tied(monkeypatch):
    """The script's :func:`install` for one test only."""
    import models.electra

    monkeypatch.setattr(models.electra, "ElectraGenerator", models.electra.ElectraGenerator)
    _script().install()
    return models.electra


def _tiny():
    from models.config import BertConfig

    return BertConfig(vocab_size=61, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=32)


def _inputs(rng, B=3, T=12, P=4):
    ids = rng.integers(5, 61, size=(B, T)).astype(np.int32)
    positions = np.stack([np.sort(rng.choice(np.arange(1, T), size=P, replace=False)) for _ in range(B)])
    return {"token_ids": ids, "segment_ids": np.zeros((B, T), np.int32), "padding_mask": np.ones((B, T), np.int32),
            "masked_lm_positions": positions.astype(np.int32), "masked_lm_ids": ids[np.arange(B)[:, None], positions],
            "masked_lm_weights": np.ones((B, P), np.float32)}


def test_the_generator_adds_only_its_head_and_runs_the_discriminators_encoder(tied):
    import keras

    model = tied.build_electra(_tiny())
    assert type(model.generator).__name__ == "TiedGenerator"
    backbone = {id(v) for v in model.backbone.weights}
    head = {id(v) for v in model.generator.masked_lm_head.weights}
    everything = [id(v) for v in model.weights]
    assert len(everything) == len(set(everything))
    # Beyond the encoder and the head: the discriminator's dense and output layers and the sampling
    # seed's state, nothing of a second encoder.
    disc = {id(v) for layer in (model.discriminator_dense, model.discriminator_output) for v in layer.weights}
    assert set(everything) - backbone - head - disc <= {id(model.sampling_seed.state)}
    # Its own: dense kernel and bias, LayerNorm gamma and beta, output bias (the table is the encoder's).
    assert len(head - backbone) == 5

    batch = _inputs(np.random.default_rng(0))
    logits = model.generator(batch["token_ids"], batch["segment_ids"], batch["padding_mask"],
                             batch["masked_lm_positions"])
    sequence = model.backbone({k: batch[k] for k in ("token_ids", "segment_ids", "padding_mask")})["sequence_output"]
    picked = np.take_along_axis(keras.ops.convert_to_numpy(sequence), batch["masked_lm_positions"][..., None], 1)
    h = model.generator.masked_lm_head
    x = keras.ops.convert_to_numpy(h._intermediate_layer_norm(h._intermediate_dense(picked)))
    table = keras.ops.convert_to_numpy(model.backbone.token_embedding.embeddings)
    expected = x @ table.T + keras.ops.convert_to_numpy(h._bias)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(logits), expected, atol=1e-5)


def test_the_generators_loss_trains_the_encoder(tied):
    """Untied, the generator's MLM loss reaches the shared embeddings only; tied, every encoder layer."""
    model = tied.build_electra(_tiny())
    batch = _inputs(np.random.default_rng(1))
    with tf.GradientTape() as tape:
        logits = model.generator(batch["token_ids"], batch["segment_ids"], batch["padding_mask"],
                                 batch["masked_lm_positions"], training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(batch["masked_lm_ids"], logits))
    layers = [v for v in model.backbone.trainable_variables if "transformer_layer" in v.path]
    gradients = tape.gradient(loss, layers)
    assert layers and all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in gradients)


def test_the_objective_name_is_read_as_electra_with_the_tied_generator():
    """``--as-bert`` hands ``bert`` the real objective name; ``bert --help`` through it still works."""
    script = _script()
    assert script.bert_arguments(["pretrain", "r/", "--objective", "electra-tied", "-o", "x"]) == (
        ["pretrain", "r/", "--objective", "electra", "-o", "x"], True)
    assert script.bert_arguments(["finetune", "classify", "t.tsv"]) == (["finetune", "classify", "t.tsv"], False)
    result = subprocess.run([sys.executable, str(SCRIPT), "--as-bert", "pretrain", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--objective" in result.stdout
