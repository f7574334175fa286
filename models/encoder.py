"""The BERT encoder: keras-hub's ``BertBackbone`` built from a :class:`BertConfig`.

keras-hub's backbone is the original architecture (post-LayerNorm Transformer,
tanh-approximated GELU, LayerNorm epsilon 1e-12, learned positions, a tanh
pooler on [CLS]), so we build on it rather than write our own. Two differences
from the original config format are handled here instead of silently ignored:
keras-hub uses one dropout rate for hidden states and attention
probabilities (a config with two is refused), and it always builds the
tanh-approximated GELU; other ``hidden_act`` values (the exact erf GELU of
Hugging Face checkpoints, ReLU, ...) are set on each layer's feed-forward
dense layer after building (:func:`activation`).
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
    """A randomly initialised encoder of the config's shape (an ``ElectraBackbone`` when ``embedding_size``
    differs from ``hidden_size``: the same layers and outputs, plus the embedding projection).

    Args:
        config: The model's shape (``bert_config.json``).
        dtype: A Keras dtype policy name, e.g. ``"mixed_bfloat16"``; None for the global policy.
    """
    if config.attention_probs_dropout_prob != config.hidden_dropout_prob:
        raise ModelError(
            "config: attention_probs_dropout_prob and hidden_dropout_prob differ "
            f"({config.attention_probs_dropout_prob} vs {config.hidden_dropout_prob}); the encoder uses one rate "
            "for both, set them equal"
        )
    shape = dict(num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
                 hidden_dim=config.hidden_size, intermediate_dim=config.intermediate_size,
                 dropout=config.hidden_dropout_prob, max_sequence_length=config.max_position_embeddings,
                 num_segments=config.type_vocab_size, dtype=dtype, name="bert")
    if config.projects_embeddings:
        # keras-hub's ElectraBackbone: BERT's layers (the same names) plus the dense
        # "embeddings_projection" from the embedding width to the hidden size.
        backbone = keras_hub.models.ElectraBackbone(vocab_size=config.vocab_size,
                                                    embedding_dim=config.embedding_size, **shape)
    else:
        backbone = keras_hub.models.BertBackbone(vocabulary_size=config.vocab_size, **shape)
    _reinitialize(backbone, config.initializer_range)
    _reverse_projection_in_compute_dtype(backbone)
    if config.hidden_act not in _TANH_GELU:
        function = activation(config.hidden_act)
        for index in range(config.num_hidden_layers):
            # The layer calls this Dense (and so its activation) on every forward pass.
            backbone.get_layer(f"transformer_layer_{index}")._feedforward_intermediate_dense.activation = function
    return backbone


def _reverse_projection_in_compute_dtype(backbone) -> None:
    """Makes the tied output projection (hidden -> vocabulary logits) run in the compute dtype.

    Keras' Embedding does not autocast its table, so under a mixed policy the
    MLM head's ``token_embedding(x, reverse=True)`` multiplied bf16 hidden
    states by the float32 table: the largest matmul of a pre-training step
    ([B x P, H] x [H, V]) ran in float32. Measured on a 2-core AMX CPU
    (L-4_H-256, vocabulary 30,522, mixed_bfloat16): 787 -> 662 ms a step.
    Casting both operands is what ``reverse_dtype`` is for.
    """
    embedding = backbone.token_embedding
    if embedding.compute_dtype != embedding.variable_dtype:
        embedding.reverse_dtype = embedding.compute_dtype


# The names of the original's tanh-approximated GELU (ours and Hugging Face's).
_TANH_GELU = ("gelu", "gelu_new")


def activation(name: str):
    """The function a ``hidden_act`` value names (see :class:`models.config.BertConfig`).

    "gelu" and "gelu_new" are the tanh approximation the original uses; "gelu_exact" is
    ``0.5 x (1 + erf(x / sqrt 2))``. The same function is used by the MLM head's transform.
    """
    if name in _TANH_GELU:
        return _gelu_tanh
    if name == "gelu_exact":
        return _gelu_exact
    if name in ("relu", "tanh"):
        return keras.activations.get(name)
    if name in ("swish", "silu"):
        return keras.activations.silu
    raise ModelError(f"config: hidden_act {name!r} is not supported")


def _gelu_tanh(x):
    return keras.activations.gelu(x, approximate=True)


def _gelu_exact(x):
    return keras.activations.gelu(x, approximate=False)


def seeded_pooler(backbone: keras.Model, stddev: float, seed: int = 0) -> None:
    """Draws the pooler (``pooled_dense``) from a fixed seed: truncated normal at two std-devs, zero bias.

    For checkpoints that have no pooler (ELECTRA, BertForMaskedLM): the converted model
    directory is then the same, byte for byte, on every run.
    """
    import numpy as np

    dense = backbone.get_layer("pooled_dense")
    rng = np.random.default_rng(seed)
    kernel = rng.normal(0.0, stddev, dense.kernel.shape)
    outside = np.abs(kernel) > 2 * stddev
    while outside.any():  # redrawn, as a truncated normal initializer does
        kernel[outside] = rng.normal(0.0, stddev, int(outside.sum()))
        outside = np.abs(kernel) > 2 * stddev
    dense.kernel.assign(kernel.astype(dense.kernel.dtype))
    dense.bias.assign(np.zeros(dense.bias.shape, dense.bias.dtype))


def _reinitialize(backbone: keras.Model, stddev: float) -> None:
    """Applies the config's ``initializer_range`` when it is not keras-hub's fixed 0.02."""
    if abs(stddev - 0.02) < 1e-12:
        return
    initializer = keras.initializers.TruncatedNormal(stddev=stddev)
    for variable in backbone.weights:
        if len(variable.shape) >= 2:
            variable.assign(initializer(variable.shape, dtype=variable.dtype))
