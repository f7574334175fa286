"""Fine-tuning heads: classifier, regressor and tagger over the encoder, and their losses.

As in the BERT paper, fine-tuning adds only dropout and one dense layer
(hidden x outputs); the whole model is trained:

* classification: on the pooled [CLS] output (the tanh pooler), one logit per class;
* regression (STS-B style): the same with one output, trained with mean squared error;
* tagging: on every token's output, one logit per tag;
* span prediction (SQuAD): on every token's output, a start and an end logit.

Shape legend: B = batch, T = sequence length, H = hidden size, L = labels.
Logits are float32 whatever the compute dtype, so losses are computed in float32.
"""

from __future__ import annotations

import keras
from keras import ops

from models.config import BertConfig
from models.encoder import INPUT_NAMES, build_encoder


class TaskHead(keras.layers.Layer):
    """Dropout, then a dense layer over the last axis: ``[..., H] -> [..., units]``.

    Args:
        units: Outputs per position (labels, or 1 for regression).
        dropout: Dropout rate before the dense layer (the original uses the encoder's, 0.1).
        initializer_range: Std-dev of the truncated-normal kernel initializer (biases start at 0).

    Example:
        >>> head = TaskHead(3)
        >>> head(keras.ops.zeros((2, 8))).shape
        (2, 3)
    """

    def __init__(self, units: int, dropout: float = 0.1, initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dropout = dropout
        self.initializer_range = initializer_range
        self._dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy, name="dropout")
        self._dense = keras.layers.Dense(
            units,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range),
            dtype=self.dtype_policy,
            name="output",
        )

    def build(self, input_shape):
        self._dropout.build(input_shape)
        self._dense.build(input_shape)
        self.built = True

    @property
    def dense(self) -> keras.layers.Dense:
        """The output layer (kernel [H, units]): what checkpoint converters read and write."""
        return self._dense

    def call(self, inputs, training=False):
        return ops.cast(self._dense(self._dropout(inputs, training=training)), "float32")

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "dropout": self.dropout,
                "initializer_range": self.initializer_range}


class BertClassifier(keras.Model):
    """Encoder + a head on the pooled [CLS] output: class logits, or one score for regression.

    Args:
        backbone: A ``keras_hub.models.BertBackbone`` (see :func:`models.encoder.build_encoder`).
        num_labels: Classes (ignored for regression).
        regression: One real-valued output per example instead of class logits.
        dropout / initializer_range: The head's (see :class:`TaskHead`).

    Call with ``token_ids``, ``segment_ids``, ``padding_mask`` ([B, T] int32); returns
    logits [B, L], or scores [B] for regression.

    Example:
        >>> model = build_classifier(BertConfig.from_preset("tiny", vocab_size=100), num_labels=2)
    """

    def __init__(self, backbone, num_labels: int = 2, regression: bool = False, dropout: float = 0.1,
                 initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.num_labels = num_labels
        self.regression = regression
        self.dropout = dropout
        self.initializer_range = initializer_range
        self.head = TaskHead(1 if regression else num_labels, dropout, initializer_range,
                             dtype=backbone.dtype_policy, name="classifier")

    def call(self, inputs, training=False):
        encoded = self.backbone({name: inputs[name] for name in INPUT_NAMES}, training=training)
        outputs = self.head(encoded["pooled_output"], training=training)  # [B, H] -> [B, L]
        return ops.squeeze(outputs, -1) if self.regression else outputs  # regression: [B, 1] -> [B]

    def get_config(self):
        return {**super().get_config(), "num_labels": self.num_labels, "regression": self.regression,
                "dropout": self.dropout, "initializer_range": self.initializer_range}


class BertTagger(keras.Model):
    """Encoder + a head on every token's output: tag logits [B, T, L].

    Args:
        backbone: A ``keras_hub.models.BertBackbone``.
        num_labels: Tags.
        dropout / initializer_range: The head's (see :class:`TaskHead`).

    Example:
        >>> model = build_tagger(BertConfig.from_preset("tiny", vocab_size=100), num_labels=5)
    """

    def __init__(self, backbone, num_labels: int, dropout: float = 0.1, initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.num_labels = num_labels
        self.dropout = dropout
        self.initializer_range = initializer_range
        self.head = TaskHead(num_labels, dropout, initializer_range, dtype=backbone.dtype_policy, name="tagger")
        # Tagging never uses the pooled [CLS] output: keep the pooler as it came
        # (and give the optimizer no variables without gradients).
        backbone.get_layer("pooled_dense").trainable = False

    def call(self, inputs, training=False):
        encoded = self.backbone({name: inputs[name] for name in INPUT_NAMES}, training=training)
        return self.head(encoded["sequence_output"], training=training)  # [B, T, H] -> [B, T, L]

    def get_config(self):
        return {**super().get_config(), "num_labels": self.num_labels, "dropout": self.dropout,
                "initializer_range": self.initializer_range}


class BertSpanPredictor(keras.Model):
    """Encoder + a dense layer on every token's output: start and end logits (SQuAD).

    As the original ``run_squad.py``: one ``hidden x 2`` dense layer over the
    sequence output, no dropout before it. Returns float32 logits
    ``{"start_logits": [B, T], "end_logits": [B, T]}``.

    Example:
        >>> model = build_span_predictor(BertConfig.from_preset("tiny", vocab_size=100))
    """

    def __init__(self, backbone, initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.initializer_range = initializer_range
        self.head = TaskHead(2, 0.0, initializer_range, dtype=backbone.dtype_policy, name="span")
        # Spans never use the pooled [CLS] output (as the tagger).
        backbone.get_layer("pooled_dense").trainable = False

    def call(self, inputs, training=False):
        encoded = self.backbone({name: inputs[name] for name in INPUT_NAMES}, training=training)
        logits = self.head(encoded["sequence_output"], training=training)  # [B, T, H] -> [B, T, 2]
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}  # [B, T, 2] -> 2 x [B, T]

    def get_config(self):
        return {**super().get_config(), "initializer_range": self.initializer_range}


def _built(model: keras.Model) -> keras.Model:
    # One tiny forward pass builds every variable, so weights can be loaded and
    # optimizers created before the first real batch.
    model({"token_ids": ops.zeros((1, 2), "int32"), "segment_ids": ops.zeros((1, 2), "int32"),
           "padding_mask": ops.ones((1, 2), "int32")})
    return model


def build_classifier(config: BertConfig, num_labels: int, regression: bool = False,
                     dtype: str | None = None) -> BertClassifier:
    """A freshly initialised classifier (or regressor) of the config's shape, variables built."""
    return _built(BertClassifier(build_encoder(config, dtype=dtype), num_labels, regression,
                                 config.hidden_dropout_prob, config.initializer_range))


def build_tagger(config: BertConfig, num_labels: int, dtype: str | None = None) -> BertTagger:
    """A freshly initialised tagger of the config's shape, variables built."""
    return _built(BertTagger(build_encoder(config, dtype=dtype), num_labels, config.hidden_dropout_prob,
                             config.initializer_range))


def build_span_predictor(config: BertConfig, dtype: str | None = None) -> BertSpanPredictor:
    """A freshly initialised SQuAD span predictor of the config's shape, variables built."""
    return _built(BertSpanPredictor(build_encoder(config, dtype=dtype), config.initializer_range))


# ----------------------------------------------------------------------------
# Losses: the mean loss of a batch plus sums that pool exactly over batches
# ----------------------------------------------------------------------------


def classification_losses(logits, labels) -> dict:
    """Cross-entropy of class logits [B, L] against class ids [B].

    Returns ``loss`` (mean over the batch), ``correct`` and ``examples`` (sums).
    """
    labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
    per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)  # [B]
    hits = ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), labels), "float32")
    return {
        "loss": ops.mean(per_example),
        "correct": ops.sum(hits),
        "examples": ops.cast(ops.shape(logits)[0], "float32"),
    }


def regression_losses(scores, targets) -> dict:
    """Mean squared error of scores [B] against targets [B]; ``squared_error`` and ``examples`` are sums."""
    targets = ops.cast(ops.reshape(targets, (-1,)), "float32")
    squared = ops.square(scores - targets)  # [B]
    return {
        "loss": ops.mean(squared),
        "squared_error": ops.sum(squared),
        "examples": ops.cast(ops.shape(scores)[0], "float32"),
    }


def tagging_losses(logits, labels, weights) -> dict:
    """Cross-entropy of tag logits [B, T, L] at the positions where ``weights`` [B, T] is 1.

    Returns ``loss`` (mean over weighted positions; 0 for a batch without any),
    ``correct`` and ``words`` (sums over weighted positions: a word is weighted at its
    first piece) and ``examples``.
    """
    labels = ops.cast(labels, "int32")
    weights = ops.cast(weights, "float32")
    per_token = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)  # [B, T]
    words = ops.sum(weights)
    hits = ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), labels), "float32")
    return {
        "loss": ops.sum(per_token * weights) / ops.maximum(words, 1.0),
        "correct": ops.sum(hits * weights),
        "words": words,
        "examples": ops.cast(ops.shape(logits)[0], "float32"),
    }


def span_losses(start_logits, end_logits, start_positions, end_positions) -> dict:
    """The original SQuAD loss: mean of the start and end cross-entropies over the sequence.

    ``start_logits``/``end_logits`` [B, T]; positions [B] (0, the [CLS] token, for
    no answer in this window). Returns ``loss`` (mean over the batch), and sums
    ``start_correct``, ``end_correct``, ``examples``.
    """
    start_positions = ops.cast(ops.reshape(start_positions, (-1,)), "int32")
    end_positions = ops.cast(ops.reshape(end_positions, (-1,)), "int32")
    start_loss = keras.losses.sparse_categorical_crossentropy(start_positions, start_logits, from_logits=True)  # [B]
    end_loss = keras.losses.sparse_categorical_crossentropy(end_positions, end_logits, from_logits=True)  # [B]

    def hits(logits, positions):
        return ops.sum(ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), positions), "float32"))

    return {
        "loss": ops.mean((start_loss + end_loss) / 2.0),
        "start_correct": hits(start_logits, start_positions),
        "end_correct": hits(end_logits, end_positions),
        "examples": ops.cast(ops.shape(start_logits)[0], "float32"),
    }


# ----------------------------------------------------------------------------
# Distillation (bert distill): the student learns the teacher's distributions
# ----------------------------------------------------------------------------


def soft_targets(teacher_logits, temperature: float):
    """The teacher's distribution at ``temperature`` (numpy or tensors, classes on the last axis).

    Positions whose logits are all ``-inf`` in a class axis cannot occur here:
    callers mask positions with ``-inf`` only along the axis they normalise.
    """
    return ops.softmax(ops.cast(teacher_logits, "float32") / temperature, axis=-1)


def distillation_divergence(student_logits, teacher_probabilities, temperature: float):
    """KL(teacher || student) at ``temperature``, times T², per row: [..., C] -> [...].

    Hinton et al. (2015) scale the soft loss by T² so that its gradients keep
    their size when the temperature changes; at T = 1 this is the plain KL,
    which differs from the soft cross-entropy only by the teacher's entropy (a
    constant: same gradients, but 0 when the student matches, easier to read).
    Classes the teacher gives probability 0 (masked positions) add nothing.
    """
    p = ops.cast(teacher_probabilities, "float32")
    log_q = ops.log_softmax(ops.cast(student_logits, "float32") / temperature, axis=-1)
    log_p = ops.log(ops.maximum(p, 1e-30))
    return ops.sum(ops.where(p > 0, p * (log_p - log_q), 0.0), axis=-1) * (temperature * temperature)


def agreement(student_logits, teacher_probabilities):
    """1.0 where the student's best class is the teacher's best class: [..., C] -> [...]."""
    same = ops.equal(ops.argmax(student_logits, axis=-1), ops.argmax(teacher_probabilities, axis=-1))
    return ops.cast(same, "float32")
