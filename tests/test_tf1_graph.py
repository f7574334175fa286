"""benchmarks/tf1_graph.py, the speed benchmark's reference arm, computes the same function as our model.

Its step is the original release's built with ``tf.compat.v1``; a speed ratio against it only means
something if it is the same model. With our weights written under the original names (the table of
``models/checkpoints.py``) its loss on a batch with padding equals ours.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from models.checkpoints import original_weights  # noqa: E402
from models.config import BertConfig  # noqa: E402
from models.pretraining import build_pretrainer, pretraining_losses  # noqa: E402

TINY = BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _tf1_graph():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "tf1_graph.py"
    spec = importlib.util.spec_from_file_location("tf1_graph", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _batch(rng, batch=3, length=16, predictions=4):
    lengths = np.array([length, 11, 7])[:batch]
    mask = (np.arange(length)[None] < lengths[:, None]).astype("int64")  # padding on two of the rows
    return {
        "input_ids": rng.integers(5, TINY.vocab_size, (batch, length)) * mask,
        "input_mask": mask,
        "segment_ids": (np.arange(length)[None] >= lengths[:, None] // 2).astype("int64") * mask,
        "masked_lm_positions": np.sort(rng.permuted(np.tile(np.arange(1, 7), (batch, 1)), axis=1)[:, :predictions]),
        "masked_lm_ids": rng.integers(5, TINY.vocab_size, (batch, predictions)),
        "masked_lm_weights": np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]], "float32")[:batch],
        "next_sentence_labels": np.array([[0], [1], [1]])[:batch],
    }


def test_the_tf1_graph_computes_our_loss():
    rng = np.random.default_rng(7)
    model = build_pretrainer(TINY)
    for variable in model.weights:  # away from the initial zeros and ones, so every weight matters
        variable.assign(variable.numpy() + rng.normal(0.0, 0.05, variable.shape).astype("float32"))
    data = _batch(rng)
    outputs = model({"token_ids": data["input_ids"], "segment_ids": data["segment_ids"],
                     "padding_mask": data["input_mask"], "masked_lm_positions": data["masked_lm_positions"]})
    ours = float(pretraining_losses(outputs, data)["loss"])
    theirs = _tf1_graph().first_loss(TINY, data, original_weights(TINY, model.backbone, model))
    assert np.isfinite(ours) and abs(ours - theirs) < 1e-5, (ours, theirs)
