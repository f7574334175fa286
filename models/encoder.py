"""The BERT encoder: keras-hub's ``BertBackbone`` built from a :class:`BertConfig`.

keras-hub's backbone is the original architecture (post-LayerNorm Transformer,
tanh-approximated GELU, LayerNorm epsilon 1e-12, learned positions, a tanh
pooler on [CLS]), so we build on it rather than write our own. Two differences
from the original config format are checked here instead of silently ignored:
keras-hub uses one dropout rate for hidden states and attention
probabilities, and only the GELU activation.
"""

from __future__ import annotations

import keras
import keras_hub

from models.config import BertConfig
from models.errors import ModelError

# Encoder inputs, in the names keras-hub uses.
#   token_ids    [B, T] int32 word-piece ids
#   segment_ids  [B, T] int32 0 for segment A, 1 for segment B
#   padding_mask [B, T] int32 1 for real tokens, 0 for padding (int, not bool:
#                Keras under MirroredStrategy cannot sum boolean inputs)
INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")


def build_encoder(config: BertConfig, dtype: str | None = None) -> keras_hub.models.BertBackbone:
    """A randomly initialised encoder of the config's shape.

    Args:
        config: The model's shape (``bert_config.json``).
        dtype: A Keras dtype policy name, e.g. ``"mixed_bfloat16"``; None for the global policy.
    """
    if config.hidden_act != "gelu":
        raise ModelError(
            f"config: hidden_act {config.hidden_act!r} is not supported by the encoder; "
            "BERT uses 'gelu' (tanh approximation)"
        )
    if config.attention_probs_dropout_prob != config.hidden_dropout_prob:
        raise ModelError(
            "config: attention_probs_dropout_prob and hidden_dropout_prob differ "
            f"({config.attention_probs_dropout_prob} vs {config.hidden_dropout_prob}); the encoder uses one rate "
            "for both, set them equal"
        )
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=config.vocab_size,
        num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        hidden_dim=config.hidden_size,
        intermediate_dim=config.intermediate_size,
        dropout=config.hidden_dropout_prob,
        max_sequence_length=config.max_position_embeddings,
        num_segments=config.type_vocab_size,
        dtype=dtype,
        name="bert",
    )
    _reinitialize(backbone, config.initializer_range)
    return backbone


def _reinitialize(backbone: keras.Model, stddev: float) -> None:
    """Applies the config's ``initializer_range`` when it is not keras-hub's fixed 0.02."""
    if abs(stddev - 0.02) < 1e-12:
        return
    initializer = keras.initializers.TruncatedNormal(stddev=stddev)
    for variable in backbone.weights:
        if len(variable.shape) >= 2:
            variable.assign(initializer(variable.shape, dtype=variable.dtype))
