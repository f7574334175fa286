"""The pre-training model: encoder + masked-LM head + next-sentence head, and their losses.

Heads as in the original release:

* MLM: gather the encoder output at the masked positions, dense + GELU +
  LayerNorm (epsilon 1e-12), then logits against the word-embedding matrix
  (weights tied, so the output layer adds only a bias of vocabulary size).
  keras-hub's ``MaskedLMHead`` does exactly that when handed the backbone's
  embedding; we configure it like the original (its defaults are exact GELU
  and epsilon 1e-5).
* NSP: a 2-way dense layer on the pooled [CLS] output (label 1 = random next).

Shape legend: B = batch, T = sequence length, P = max predictions per
sequence, H = hidden size, V = vocabulary size.
"""

from __future__ import annotations

import keras
import keras_hub
from keras import ops

from models.config import BertConfig
from models.encoder import activation, build_encoder

# Original: the MLM loss divides by sum(weights) + 1e-5 so a batch with no
# predictions gives 0, not NaN.
_MLM_DENOMINATOR_EPSILON = 1e-5


class BertPretrainer(keras.Model):
    """Encoder with the original MLM and NSP heads.

    Args:
        backbone: A ``keras_hub.models.BertBackbone`` (see :func:`models.encoder.build_encoder`).
        initializer_range: Std-dev of the heads' truncated-normal initializer.
        next_sentence: Build the NSP head (False for RoBERTa-style ``--no-nsp``).
        hidden_act: The config's activation, which the MLM transform uses too (as in the
            original and in Hugging Face's ``BertPredictionHeadTransform``).

    Call with a dict of ``token_ids``, ``segment_ids``, ``padding_mask`` ([B, T]
    int32) and ``masked_lm_positions`` ([B, P] int32); returns
    ``{"mlm_logits": [B, P, V], "nsp_logits": [B, 2]}`` (no ``nsp_logits``
    without the NSP head). Logits are float32 whatever the compute dtype.

    Example:
        >>> model = BertPretrainer(build_encoder(BertConfig.from_preset("tiny", vocab_size=100)))
    """

    def __init__(self, backbone, initializer_range: float = 0.02, next_sentence: bool = True,
                 hidden_act: str = "gelu", **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.initializer_range = initializer_range
        self.next_sentence = next_sentence
        self.hidden_act = hidden_act
        initializer = keras.initializers.TruncatedNormal(stddev=initializer_range)
        self.masked_lm_head = keras_hub.layers.MaskedLMHead(
            token_embedding=backbone.token_embedding,
            intermediate_activation=activation(hidden_act),
            layer_norm_epsilon=1e-12,
            kernel_initializer=initializer,
            dtype=backbone.dtype_policy,
            name="masked_lm_head",
        )
        self.next_sentence_head = (
            keras.layers.Dense(
                2, kernel_initializer=initializer, dtype=backbone.dtype_policy, name="next_sentence_head"
            )
            if next_sentence
            else None
        )
        if not next_sentence:
            # Without NSP nothing reads the pooled [CLS] output: keep the pooler as built, so the
            # optimizer gets no variable without a gradient (Keras warns of each, and gradient
            # accumulation cannot add them up). Fine-tuning a classifier trains it.
            backbone.get_layer("pooled_dense").trainable = False

    def call(self, inputs, training=False):
        encoded = self.backbone(
            {name: inputs[name] for name in ("token_ids", "segment_ids", "padding_mask")}, training=training
        )
        # [B, T, H] -> [B, P, V]: the head gathers the P masked positions first.
        mlm_logits = self.masked_lm_head(encoded["sequence_output"], mask_positions=inputs["masked_lm_positions"])
        outputs = {"mlm_logits": ops.cast(mlm_logits, "float32")}
        if self.next_sentence_head is not None:
            # [B, H] -> [B, 2]
            outputs["nsp_logits"] = ops.cast(self.next_sentence_head(encoded["pooled_output"]), "float32")
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "initializer_range": self.initializer_range,
            "next_sentence": self.next_sentence,
            "hidden_act": self.hidden_act,
        }


def build_pretrainer(config: BertConfig, next_sentence: bool = True, dtype: str | None = None) -> BertPretrainer:
    """A freshly initialised pre-training model of the config's shape, with its variables built."""
    model = BertPretrainer(build_encoder(config, dtype=dtype), config.initializer_range, next_sentence,
                           config.hidden_act)
    # Build the heads' variables now (one tiny forward pass) so weights can be
    # loaded and optimizers created before the first real batch.
    dummy = {
        "token_ids": ops.zeros((1, 2), "int32"),
        "segment_ids": ops.zeros((1, 2), "int32"),
        "padding_mask": ops.ones((1, 2), "int32"),
        "masked_lm_positions": ops.zeros((1, 1), "int32"),
    }
    model(dummy)
    return model


def keras_variables(backbone, pretrainer=None) -> dict[str, object]:
    """Our variables by path relative to their owning layer (the names checkpoint tables use).

    Args:
        backbone: A keras-hub ``BertBackbone``.
        pretrainer: Its :class:`models.pretraining.BertPretrainer`, for the MLM and NSP heads.
    """
    owners = list(backbone.layers)
    if pretrainer is not None:
        owners += [head for head in (pretrainer.masked_lm_head, pretrainer.next_sentence_head) if head is not None]
    found = {}
    for layer in owners:
        for variable in layer.weights:
            parts = variable.path.split("/")
            # The MLM head also lists the tied word embedding, which belongs to the backbone.
            if layer.name in parts:
                found["/".join(parts[parts.index(layer.name):])] = variable
    return found


def pretraining_losses(outputs: dict, labels: dict) -> dict:
    """Per-batch losses and accuracies, as the original computes them.

    Args:
        outputs: The model's ``mlm_logits`` [B, P, V] and optional ``nsp_logits`` [B, 2].
        labels: ``masked_lm_ids`` [B, P], ``masked_lm_weights`` [B, P] (1.0 for real
            predictions, 0.0 for padding) and, with NSP, ``next_sentence_labels`` [B] or [B, 1].

    Returns:
        ``loss`` (MLM + NSP), ``mlm_loss`` (weighted mean over real predictions),
        ``mlm_accuracy``, and with NSP ``nsp_loss`` (mean) and ``nsp_accuracy``.
        Also the raw sums (``mlm_weight``, ``mlm_correct``, ``mlm_loss_sum``,
        ``nsp_correct``, ``nsp_loss_sum``, ``examples``) so metrics can be pooled
        exactly over many batches, as the original's ``metric_fn`` does.
    """
    mlm_logits = outputs["mlm_logits"]
    mlm_ids = ops.cast(labels["masked_lm_ids"], "int32")
    weights = ops.cast(labels["masked_lm_weights"], "float32")
    per_prediction = keras.losses.sparse_categorical_crossentropy(mlm_ids, mlm_logits, from_logits=True)  # [B, P]
    weight_sum = ops.sum(weights)
    mlm_loss = ops.sum(per_prediction * weights) / (weight_sum + _MLM_DENOMINATOR_EPSILON)
    mlm_hits = ops.cast(ops.equal(ops.cast(ops.argmax(mlm_logits, axis=-1), "int32"), mlm_ids), "float32")
    mlm_correct = ops.sum(mlm_hits * weights)
    result = {
        "mlm_loss": mlm_loss,
        "mlm_accuracy": mlm_correct / ops.maximum(weight_sum, 1.0),
        "mlm_weight": weight_sum,
        "mlm_correct": mlm_correct,
        "mlm_loss_sum": ops.sum(per_prediction * weights),
        "examples": ops.cast(ops.shape(mlm_logits)[0], "float32"),
    }
    loss = mlm_loss
    if "nsp_logits" in outputs:
        nsp_logits = outputs["nsp_logits"]
        nsp_labels = ops.reshape(ops.cast(labels["next_sentence_labels"], "int32"), (-1,))  # [B, 1] -> [B]
        per_example = keras.losses.sparse_categorical_crossentropy(nsp_labels, nsp_logits, from_logits=True)  # [B]
        nsp_loss = ops.mean(per_example)
        nsp_hits = ops.cast(ops.equal(ops.cast(ops.argmax(nsp_logits, axis=-1), "int32"), nsp_labels), "float32")
        result["nsp_loss"] = nsp_loss
        result["nsp_loss_sum"] = ops.sum(per_example)
        result["nsp_correct"] = ops.sum(nsp_hits)
        result["nsp_accuracy"] = ops.mean(nsp_hits)
        loss = loss + nsp_loss
    result["loss"] = loss
    return result
