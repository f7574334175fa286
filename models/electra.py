"""ELECTRA pre-training: a small generator and the discriminator, trained jointly (Clark et al., 2020).

As google-research/electra does it:

* 15 % of the tokens are masked (in the input pipeline, see
  ``data.pretraining_input.DynamicMasking`` with ELECTRA's 85 % [MASK] / 15 %
  kept split); the **generator**, a small masked-LM encoder, predicts them
  (MLM loss, weight 1);
* each masked position is filled with a token **sampled** from the
  generator's softmax (temperature 1, Gumbel-max; no gradient flows through
  the sample);
* the **discriminator** (the encoder every other command fine-tunes, a
  keras-hub ``BertBackbone``) labels every real token original or replaced
  (sigmoid cross-entropy over non-padding tokens, weight 50). A sampled
  token equal to the original counts as original.

Token, position and segment embeddings and the embedding LayerNorm are the
discriminator's, shared by the generator (its own dense projection maps them
to its width when that differs from the embeddings'), and its MLM output
layer is tied to the word embeddings, as in the original with
``untied_generator_embeddings=False``. With a *tied* generator
(:class:`TiedGenerator`, ``untied_generator=False``) the generator is the
discriminator's own encoder with an MLM head of its own. The activation is the config's
``hidden_act``: the original ELECTRA's GELU is the exact erf form
(``"gelu_exact"``, as the ``electra-*`` presets say).

Shape legend: B = batch, T = sequence length, P = max predictions,
H = discriminator hidden size, G = generator hidden size, V = vocabulary.
"""

from __future__ import annotations

import dataclasses

import keras
import keras_hub
from keras import ops

from models.config import BertConfig
from models.encoder import activation, build_encoder
from models.pretraining import keras_variables

#: The original's discriminator loss weight (``disc_weight``) and generator size.
DISCRIMINATOR_WEIGHT = 50.0
GENERATOR_HIDDEN_FRACTION = 0.25


@dataclasses.dataclass(frozen=True)
class GeneratorShape:
    """The generator's size: a fraction of the discriminator's width and (ELECTRA's ``generator_layers``,
    1 by default) of its layers.

    Heads are ``max(1, G / 64)``, the feed-forward width ``4 G`` and the layers
    ``round(L x layers_fraction)`` (at least 1), as the original's
    ``get_generator_config`` derives them (where G / 64 heads would not divide
    G, which the original cannot build, the count is lowered until it does).
    """

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    #: The generator is the discriminator's own encoder with a masked-LM head of its own (the paper's
    #: "all weights tied", google-research/electra's ``untied_generator=False``); the sizes are then
    #: the discriminator's.
    tied: bool = False

    @classmethod
    def of(cls, config: BertConfig, fraction: float = GENERATOR_HIDDEN_FRACTION,
           layers_fraction: float = 1.0) -> "GeneratorShape":
        hidden = max(1, int(round(config.hidden_size * fraction)))
        heads = max(1, hidden // 64)
        while hidden % heads:
            heads -= 1
        layers = max(1, int(round(config.num_hidden_layers * layers_fraction)))
        return cls(hidden, layers, heads, 4 * hidden)

    @classmethod
    def tied_to(cls, config: BertConfig) -> "GeneratorShape":
        """A generator tied to the discriminator of ``config`` (see :class:`TiedGenerator`)."""
        return cls(config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
                   config.intermediate_size, tied=True)

    def to_dict(self) -> dict:
        # ``tied`` only when set, so the task.json of untied runs made before it still matches.
        values = dataclasses.asdict(self)
        return values if self.tied else {k: v for k, v in values.items() if k != "tied"}


class ElectraGenerator(keras.layers.Layer):
    """A masked-LM encoder over the discriminator's embeddings: logits ``[B, P, V]`` at the masked positions.

    Args:
        backbone: The discriminator (a ``BertBackbone``) whose embedding layers are shared.
        shape: The generator's size.
        config: The discriminator's config (dropout, activation, initializer).
    """

    def __init__(self, backbone, shape: GeneratorShape, config: BertConfig, **kwargs):
        super().__init__(**kwargs)
        self.generator_shape = shape
        initializer = keras.initializers.TruncatedNormal(stddev=config.initializer_range)
        dtype = backbone.dtype_policy
        # Shared: built and owned by the discriminator, called here too.
        self.token_embedding = backbone.token_embedding
        self.position_embedding = backbone.get_layer("position_embedding")
        self.segment_embedding = backbone.get_layer("segment_embedding")
        self.embeddings_layer_norm = backbone.get_layer("embeddings_layer_norm")
        self.embeddings_dropout = keras.layers.Dropout(config.hidden_dropout_prob, dtype=dtype,
                                                       name="embeddings_dropout")
        # [B, T, E] -> [B, T, G], the original's generator/embeddings_project; like the
        # original, none when the generator is as wide as the embeddings.
        width = config.embedding_size or config.hidden_size
        self.embeddings_project = keras.layers.Dense(
            shape.hidden_size, kernel_initializer=initializer, dtype=dtype, name="embeddings_project",
        ) if shape.hidden_size != width else None
        self.transformer_layers = [
            keras_hub.layers.TransformerEncoder(
                num_heads=shape.num_heads, intermediate_dim=shape.intermediate_size,
                activation=activation(config.hidden_act), dropout=config.hidden_dropout_prob,
                layer_norm_epsilon=1e-12, kernel_initializer=initializer, dtype=dtype, name=f"transformer_layer_{i}")
            for i in range(shape.num_layers)
        ]
        # Dense G -> H (the embedding width), activation, LayerNorm, then logits against the
        # word embeddings plus a bias: generator_predictions in the original.
        self.masked_lm_head = keras_hub.layers.MaskedLMHead(
            token_embedding=backbone.token_embedding, intermediate_activation=activation(config.hidden_act),
            layer_norm_epsilon=1e-12, kernel_initializer=initializer, dtype=dtype, name="masked_lm_head")

    def call(self, token_ids, segment_ids, padding_mask, positions, training=False):
        tokens = self.token_embedding(token_ids)  # [B, T, H]
        x = tokens + self.position_embedding(tokens) + self.segment_embedding(segment_ids)
        x = self.embeddings_dropout(self.embeddings_layer_norm(x), training=training)
        if self.embeddings_project is not None:
            x = self.embeddings_project(x)  # [B, T, E] -> [B, T, G]
        for layer in self.transformer_layers:
            x = layer(x, padding_mask=padding_mask, training=training)
        return ops.cast(self.masked_lm_head(x, mask_positions=positions), "float32")  # [B, P, V]


class TiedGenerator(keras.layers.Layer):
    """The discriminator's own encoder with a masked-LM head of its own: logits ``[B, P, V]``.

    The generator of ``untied_generator=False`` in google-research/electra (the paper's
    weight-sharing study found tying all weights slightly better than tying the embeddings only,
    at a generator as large as the discriminator). Its MLM loss trains the encoder the
    discriminator's loss trains, so the encoder learns masked LM's signal too. The encoder runs
    twice per update: about 1.6x an MLM + NSP update of the same encoder, 2.4x a masked-LM-only
    update with dropout 0 (measured, L-2_H-128), against about 1.3x for the default quarter-width
    generator. On a small CPU budget it does not beat masked LM at equal minutes (see the
    README's ELECTRA section).

    Args:
        backbone: The discriminator (a ``BertBackbone`` or ``ElectraBackbone``).
        shape: ``GeneratorShape.tied_to(config)``.
        config: The discriminator's config (activation, initializer).
    """

    def __init__(self, backbone, shape: GeneratorShape, config: BertConfig, **kwargs):
        super().__init__(**kwargs)
        self.generator_shape = shape
        self.backbone = backbone
        # Dense H -> E, activation, LayerNorm, logits against the word embeddings plus a bias:
        # generator_predictions in the original, as for the untied generator.
        self.masked_lm_head = keras_hub.layers.MaskedLMHead(
            token_embedding=backbone.token_embedding, intermediate_activation=activation(config.hidden_act),
            layer_norm_epsilon=1e-12,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=config.initializer_range),
            dtype=backbone.dtype_policy, name="masked_lm_head")

    def call(self, token_ids, segment_ids, padding_mask, positions, training=False):
        encoded = self.backbone({"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask},
                                training=training)
        return ops.cast(self.masked_lm_head(encoded["sequence_output"], mask_positions=positions), "float32")


class ElectraPretrainer(keras.Model):
    """Generator + discriminator with the replaced-token-detection head.

    Call with ``token_ids`` (masked), ``segment_ids``, ``padding_mask`` [B, T],
    ``masked_lm_positions``, ``masked_lm_ids`` (the original tokens) and
    ``masked_lm_weights`` (1.0 for real predictions) [B, P]. Returns float32
    ``mlm_logits`` [B, P, V], ``sampled_ids`` [B, P], ``discriminator_logits``
    [B, T] and ``replaced`` [B, T] (1.0 where the discriminator's input differs
    from the original text).

    Args:
        backbone: The discriminator encoder (``models.encoder.build_encoder``).
        generator_shape: The generator's size.
        config: The discriminator's config.
        seed: Seed of the sampling noise (its state is a model variable, so a resumed run
            continues the same random stream).
    """

    def __init__(self, backbone, generator_shape: GeneratorShape, config: BertConfig, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.bert_config = config
        self.generator_shape = generator_shape
        dtype = backbone.dtype_policy
        generator = TiedGenerator if generator_shape.tied else ElectraGenerator
        self.generator = generator(backbone, generator_shape, config, name="generator")
        self.discriminator_dense, self.discriminator_output = discriminator_head(config, dtype)
        self.sampling_seed = keras.random.SeedGenerator(seed, name="sampling_seed")
        # ELECTRA trains no pooler (no NSP): keep it as built, and give the optimizer no
        # variable without a gradient. Fine-tuning a classifier trains it.
        backbone.get_layer("pooled_dense").trainable = False

    def call(self, inputs, training=False):
        token_ids = ops.cast(inputs["token_ids"], "int32")
        positions = ops.cast(inputs["masked_lm_positions"], "int32")
        real = ops.cast(inputs["masked_lm_weights"], "float32") > 0  # [B, P]
        padding_mask = inputs["padding_mask"]
        mlm_logits = self.generator(token_ids, inputs["segment_ids"], padding_mask, positions, training=training)
        sampled = self._sample(mlm_logits)  # [B, P]
        originals = _scatter(token_ids, positions, ops.cast(inputs["masked_lm_ids"], "int32"), real)  # [B, T]
        fake = _scatter(token_ids, positions, sampled, real)  # [B, T]
        replaced = ops.cast(ops.not_equal(fake, originals), "float32") * ops.cast(padding_mask, "float32")
        encoded = self.backbone({"token_ids": fake, "segment_ids": inputs["segment_ids"],
                                 "padding_mask": padding_mask}, training=training)
        logits = replaced_token_logits(self, encoded["sequence_output"])  # [B, T]
        return {"mlm_logits": mlm_logits, "sampled_ids": sampled, "discriminator_logits": logits,
                "replaced": replaced}

    def _sample(self, logits):
        """One token per position from ``softmax(logits)`` (Gumbel-max), without gradient: ``[B, P]``."""
        logits = ops.stop_gradient(logits)
        uniform = keras.random.uniform(ops.shape(logits), seed=self.sampling_seed)
        gumbel = -ops.log(-ops.log(uniform + 1e-9) + 1e-9)
        return first_max_index(logits + gumbel)

    def get_config(self):
        return {**super().get_config(), "generator_shape": self.generator_shape.to_dict()}


def first_max_index(scores):
    """``argmax(scores, axis=-1)`` as int32 ``[B, P]`` for ``scores`` [B, P, V]: the first index of the maximum.

    Written as a max, then the smallest index that reaches it, because XLA's CPU compiler
    spends minutes on an argmax fused with ``threefry`` noise (the generator the XLA training
    step draws with, :mod:`bert_cli.xla_random`): measured over 5 minutes against 0.9 s for
    this form, which then runs in 27 ms on ``[32, 20, 8000]`` (Keras' default generator alone
    takes 3 s to draw that noise under XLA).
    """
    size = ops.shape(scores)[-1]
    best = ops.max(scores, axis=-1, keepdims=True)  # [B, P, 1]
    index = ops.arange(size, dtype="int32")  # [V]
    return ops.min(ops.where(scores >= best, index, size), axis=-1)  # [B, P]


def discriminator_head(config: BertConfig, dtype=None) -> tuple[keras.layers.Dense, keras.layers.Dense]:
    """The replaced-token head, ``discriminator_predictions`` in the original: dense H -> H with the
    config's activation, then H -> 1 (layers named ``discriminator_dense``, ``discriminator_output``)."""
    initializer = keras.initializers.TruncatedNormal(stddev=config.initializer_range)
    dense = keras.layers.Dense(config.hidden_size, activation=activation(config.hidden_act),
                               kernel_initializer=initializer, dtype=dtype, name="discriminator_dense")
    output = keras.layers.Dense(1, kernel_initializer=initializer, dtype=dtype, name="discriminator_output")
    return dense, output


def replaced_token_logits(model, sequence_output):
    """The head of ``model`` (an :class:`ElectraPretrainer` or :class:`ElectraDiscriminator`) on
    ``sequence_output`` [B, T, H]: float32 logits [B, T], > 0 meaning "replaced"."""
    hidden = model.discriminator_dense(sequence_output)  # [B, T, H]
    return ops.squeeze(ops.cast(model.discriminator_output(hidden), "float32"), -1)  # [B, T, 1] -> [B, T]


class ElectraDiscriminator(keras.Model):
    """The discriminator and its replaced-token head without a generator, as ELECTRA's released
    discriminators are (Transformers' ``ElectraForPreTraining``).

    Call with ``token_ids``, ``segment_ids`` and ``padding_mask`` [B, T]; returns float32
    ``discriminator_logits`` [B, T]. Nothing trains it: ``bert pretrain --objective electra``
    needs the generator too (:class:`ElectraPretrainer`), fine-tuning only the encoder. It keeps
    the head so that a released discriminator converts back whole.

    Args:
        backbone: The discriminator encoder (``models.encoder.build_encoder``).
        config: Its config.

    Example:
        >>> model = build_electra_discriminator(config)
        >>> model({"token_ids": ids, "segment_ids": segments, "padding_mask": mask})["discriminator_logits"]
    """

    def __init__(self, backbone, config: BertConfig, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.bert_config = config
        self.discriminator_dense, self.discriminator_output = discriminator_head(config, backbone.dtype_policy)

    def call(self, inputs, training=False):
        encoded = self.backbone({name: inputs[name] for name in ("token_ids", "segment_ids", "padding_mask")},
                                training=training)
        return {"discriminator_logits": replaced_token_logits(self, encoded["sequence_output"])}


def build_electra_discriminator(config: BertConfig, dtype: str | None = None) -> ElectraDiscriminator:
    """A freshly initialised :class:`ElectraDiscriminator` of the config's shape, variables built."""
    model = ElectraDiscriminator(build_encoder(config, dtype=dtype), config)
    model({"token_ids": ops.zeros((1, 2), "int32"), "segment_ids": ops.zeros((1, 2), "int32"),
           "padding_mask": ops.ones((1, 2), "int32")})
    return model


def electra_variables(model) -> dict[str, object]:
    """Our variables by the names conversion tables use: the backbone's as :func:`keras_variables`
    names them, and for an :class:`ElectraPretrainer` or :class:`ElectraDiscriminator` the head's
    as ``discriminator_dense/...``, ``discriminator_output/...`` and the generator's under
    ``generator/`` (``generator/transformer_layer_0/...``, so they cannot be taken for the
    discriminator's layers of the same names).
    """
    if not isinstance(model, (ElectraPretrainer, ElectraDiscriminator)):
        return keras_variables(model)
    found = dict(keras_variables(model.backbone))
    owners = [model.discriminator_dense, model.discriminator_output]
    if isinstance(model, ElectraPretrainer):
        owners.insert(0, model.generator)
    for owner in owners:
        for variable in owner.weights:
            parts = variable.path.split("/")
            # The generator also lists the shared embeddings; those belong to the backbone.
            if owner.name in parts:
                found["/".join(parts[parts.index(owner.name):])] = variable
    return found


def _scatter(token_ids, positions, values, real):
    """``token_ids`` [B, T] with ``values`` [B, P] written at ``positions`` where ``real``; the rest kept."""
    T = ops.shape(token_ids)[1]
    # [B, P, T]: which position each prediction writes; padding predictions write nowhere.
    hits = ops.one_hot(positions, T, dtype="int32") * ops.expand_dims(ops.cast(real, "int32"), -1)
    written = ops.max(hits, axis=1)  # [B, T]
    new_values = ops.sum(hits * ops.expand_dims(values, -1), axis=1)  # [B, T] (positions are distinct)
    return token_ids * (1 - written) + new_values * written


def build_electra(config: BertConfig, generator_fraction: float = GENERATOR_HIDDEN_FRACTION,
                  dtype: str | None = None, seed: int = 0,
                  generator_shape: GeneratorShape | None = None,
                  generator_layers_fraction: float = 1.0, tied: bool = False) -> ElectraPretrainer:
    """A freshly initialised ELECTRA model of the discriminator config's shape, variables built.

    The generator is ``generator_shape`` when given (e.g. read from a checkpoint), else with
    ``tied`` the discriminator's own encoder (:class:`TiedGenerator`), else
    ``GeneratorShape.of(config, generator_fraction, generator_layers_fraction)``.
    """
    shape = generator_shape or (GeneratorShape.tied_to(config) if tied else
                                GeneratorShape.of(config, generator_fraction, generator_layers_fraction))
    model = ElectraPretrainer(build_encoder(config, dtype=dtype), shape, config, seed=seed)
    model({"token_ids": ops.zeros((1, 2), "int32"), "segment_ids": ops.zeros((1, 2), "int32"),
           "padding_mask": ops.ones((1, 2), "int32"), "masked_lm_positions": ops.zeros((1, 1), "int32"),
           "masked_lm_ids": ops.zeros((1, 1), "int32"), "masked_lm_weights": ops.zeros((1, 1), "float32")})
    return model


def electra_losses(outputs: dict, labels: dict, discriminator_weight: float = DISCRIMINATOR_WEIGHT) -> dict:
    """The joint loss and the sums ELECTRA's metrics pool over batches.

    Args:
        outputs: :class:`ElectraPretrainer`'s outputs.
        labels: ``masked_lm_ids``, ``masked_lm_weights`` [B, P] and ``padding_mask`` [B, T].

    Returns:
        ``loss`` (generator MLM loss + weight x discriminator loss), ``mlm_loss`` and
        ``discriminator_loss`` (means), and sums: ``mlm_loss_sum``, ``mlm_correct``,
        ``mlm_weight``, ``sampled_correct`` (masked tokens the generator's sample got
        right), ``disc_loss_sum``, ``disc_correct``, ``disc_tokens``, ``replaced``,
        ``predicted_replaced``, ``true_replaced`` (replaced tokens flagged as replaced).
    """
    mlm_ids = ops.cast(labels["masked_lm_ids"], "int32")
    weights = ops.cast(labels["masked_lm_weights"], "float32")
    mlm_logits = outputs["mlm_logits"]
    per_prediction = keras.losses.sparse_categorical_crossentropy(mlm_ids, mlm_logits, from_logits=True)  # [B, P]
    mlm_weight = ops.sum(weights)
    mlm_loss_sum = ops.sum(per_prediction * weights)

    def hits(predicted):
        return ops.sum(ops.cast(ops.equal(ops.cast(predicted, "int32"), mlm_ids), "float32") * weights)

    tokens = ops.cast(labels["padding_mask"], "float32")  # [B, T]
    replaced = outputs["replaced"]
    logits = outputs["discriminator_logits"]
    # Numerically stable sigmoid cross-entropy: max(x, 0) - x z + log(1 + exp(-|x|)).
    per_token = ops.maximum(logits, 0.0) - logits * replaced + ops.log1p(ops.exp(-ops.abs(logits)))  # [B, T]
    disc_tokens = ops.sum(tokens)
    disc_loss_sum = ops.sum(per_token * tokens)
    predicted = ops.cast(logits > 0, "float32") * tokens
    # The original's denominators: a batch without predictions gives 0, not NaN.
    mlm_loss = mlm_loss_sum / (mlm_weight + 1e-6)
    discriminator_loss = disc_loss_sum / (disc_tokens + 1e-6)
    return {
        "loss": mlm_loss + discriminator_weight * discriminator_loss,
        "mlm_loss": mlm_loss, "discriminator_loss": discriminator_loss,
        "mlm_loss_sum": mlm_loss_sum, "mlm_weight": mlm_weight,
        "mlm_correct": hits(ops.argmax(mlm_logits, axis=-1)), "sampled_correct": hits(outputs["sampled_ids"]),
        "disc_loss_sum": disc_loss_sum, "disc_tokens": disc_tokens,
        "disc_correct": ops.sum(ops.cast(ops.equal(predicted, replaced), "float32") * tokens),
        "replaced": ops.sum(replaced), "predicted_replaced": ops.sum(predicted),
        "true_replaced": ops.sum(predicted * replaced),
        "examples": ops.cast(ops.shape(logits)[0], "float32"),
    }
