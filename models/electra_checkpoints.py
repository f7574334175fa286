"""google-research/electra TF1 pre-training checkpoints <-> :class:`models.electra.ElectraPretrainer`.

The original (``run_pretraining.py`` + ``model/modeling.py``) saves one TF1
checkpoint holding the discriminator, its replaced-token head, the generator
and the generator's masked-LM head, each under the ``tf.compat.v1``
variable scopes of its code. This module is the table from those names to our
Keras variables and the code that reads and writes through it, in the manner
of :mod:`models.checkpoints` (same :class:`~models.checkpoints.VariableMapping`
rows, same reshape conventions, same ``SaveV2`` writer).

Shape legend: V = vocabulary, E = embedding width, H = discriminator hidden size,
I = its intermediate size, G = generator hidden size (its intermediate size is 4G),
P = max positions, S = segment types.

What the original's code implies (``run_pretraining.py``, ``model/modeling.py``):

* Discriminator: ``BertModel`` under the scope ``electra``. Embeddings
  ``electra/embeddings/{word,token_type,position}_embeddings`` ([V|S|P, E]) and
  ``electra/embeddings/LayerNorm`` ([E]); ``electra/embeddings_project`` (a dense
  [E, H]) only when E != H; ``electra/encoder/layer_N/...`` named as in BERT.
  **No pooler**: ``get_pooled_output()`` is the [CLS] vector itself, so there is no
  ``electra/pooler/dense``; our backbone's ``pooled_dense`` has no counterpart and
  keeps the value it was built with.
* Replaced-token head: ``discriminator_predictions/dense`` ([H, H], the config's
  activation) and ``discriminator_predictions/dense_1`` ([H, 1]).
* Generator (``untied_generator_embeddings=False``, the default): ``BertModel`` with
  ``scope="generator"`` whose embeddings are looked up under ``electra/embeddings``
  with ``AUTO_REUSE``, i.e. the discriminator's tables *and* embedding LayerNorm;
  it owns ``generator/embeddings_project`` ([E, G]) **only when E != G** (the
  original creates the projection only when the widths differ) and
  ``generator/encoder/layer_N/...`` of width G.
* Tied generator (``untied_generator=False``): the generator *is* the discriminator
  (``_build_transformer`` under the same ``electra`` scope, ``AUTO_REUSE``), so the
  checkpoint has no ``generator/...`` at all, only its head below, whose dense is
  then [H, E]. A checkpoint with ``generator_predictions/...`` and no
  ``generator/...`` reads as that (``GeneratorShape.tied``).
* Generator head (``get_token_logits`` under ``generator_predictions``): ``dense``
  [G, E] with the config's activation, ``LayerNorm`` [E], ``output_bias`` [V];
  logits against the word-embedding table (tied).
* Training state beside the weights: ``global_step`` and AdamWeightDecay's
  ``.../adam_m``, ``.../adam_v`` slots (``model/optimization.py``): skipped.

Our side: the backbone's variables by path relative to their layer
(:func:`models.pretraining.keras_variables`); the generator's under a
``generator/`` prefix (``generator/transformer_layer_0/...``, so they cannot be
taken for the discriminator's layers of the same names); the head's as
``discriminator_dense/...`` and ``discriminator_output/...``.

A generator as wide as the embeddings (E == G) has no ``embeddings_project``,
in the original and in ours alike.

Config facts (no ``bert_config.json`` ships with the release; a release directory
``electra_small/`` holds ``electra_small.{index,data-00000-of-00001,meta}``,
``checkpoint`` and ``vocab.txt``; sizes come from ``--hparams`` ``model_size``):
``training_utils.get_bert_config`` gives H = 256 / 768 / 1024 and L = 12 / 12 / 24
for small / base / large, heads ``max(1, H // 64)`` and I = 4H;
``configure_pretraining.py`` sets E = 128 for small (E = H otherwise);
``get_generator_config`` gives G = round(H x generator_hidden_size), its layers
round(L x generator_layers), heads ``max(1, G // 64)``, intermediate 4G. The
activation is ``modeling.gelu``, the **erf** form (our ``"gelu_exact"``), dropout
0.1, initializer range 0.02. :func:`config_from_electra_checkpoint` rebuilds our
config and generator shape from a checkpoint's shapes with those rules.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable

import numpy as np

from models import checkpoints
from models.checkpoints import VariableMapping, write_checkpoint
from models.config import BertConfig
from models.electra import ElectraDiscriminator, ElectraPretrainer, GeneratorShape, electra_variables
from models.errors import ModelError

__all__ = [
    "DISCRIMINATOR", "DISCRIMINATOR_HEAD", "ELECTRA_HIDDEN_ACT", "GENERATOR", "RELEASE_NAMES", "ElectraCheckpoint",
    "assign_from_electra_checkpoint", "config_from_electra_checkpoint", "electra_variable_mappings",
    "electra_variables", "electra_weights", "find_electra_checkpoint",
    "inspect_electra_checkpoint", "original_num_heads", "write_checkpoint",
]

# Parts of a checkpoint: the discriminator encoder (always), its replaced-token head and
# the generator with its masked-LM head (each optional, but never half there).
DISCRIMINATOR = "discriminator"
DISCRIMINATOR_HEAD = "discriminator_head"
GENERATOR = "generator"
_PARTS = (DISCRIMINATOR, DISCRIMINATOR_HEAD, GENERATOR)

#: The released models' directory and checkpoint prefix names (``electra_small/electra_small.index``);
#: all three were trained on uncased English text with BERT's uncased vocabulary.
RELEASE_NAMES = ("electra_small", "electra_base", "electra_large")
#: ``modeling.get_activation("gelu")`` of the original is ``x * 0.5 (1 + erf(x / sqrt 2))``.
ELECTRA_HIDDEN_ACT = "gelu_exact"

# The step counter and the optimizer's moments (model/optimization.py's AdamWeightDecayOptimizer).
_TRAINING_STATE = re.compile(r"(^|/)(global_step|adam_m|adam_v)$")
_LAYER = re.compile(r"^(electra|generator)/encoder/layer_(\d+)/")

_WORD_EMBEDDINGS = "electra/embeddings/word_embeddings"
_DISCRIMINATOR_PROJECTION = "electra/embeddings_project/kernel"
_GENERATOR_PROJECTION = "generator/embeddings_project"
_QUERY = "{scope}/encoder/layer_0/attention/self/query/kernel"
_INTERMEDIATE = "{scope}/encoder/layer_0/intermediate/dense/kernel"


def original_num_heads(hidden_size: int) -> int:
    """The original's heads for a width: ``max(1, hidden // 64)`` (get_bert_config, get_generator_config).

    Shapes cannot tell heads apart (a query kernel is [H, H] for any number of
    heads), so this rule is what a checkpoint without a config is read with.
    """
    return max(1, hidden_size // 64)


def electra_variable_mappings(config: BertConfig, generator_shape: GeneratorShape | None = None,
                              head: bool = True) -> list[VariableMapping]:
    """The variables of an original ELECTRA checkpoint of these shapes, in the original's order.

    Args:
        config: The discriminator's shape (``embedding_size`` None means E = H).
        generator_shape: The generator's, or None for a discriminator-only table.
        head: Include the replaced-token head (``discriminator_predictions``).
    """
    H, I, V = config.hidden_size, config.intermediate_size, config.vocab_size  # noqa: E741  (I: intermediate size)
    E = config.embedding_size or H
    P, S = config.max_position_embeddings, config.type_vocab_size
    table: list[VariableMapping] = []

    def add(original, ours, shape, part):
        table.append(VariableMapping(original, ours, tuple(shape), part))

    def dense(original, ours, fan_in, fan_out, part):
        add(f"{original}/kernel", f"{ours}/kernel", (fan_in, fan_out), part)
        add(f"{original}/bias", f"{ours}/bias", (fan_out,), part)

    def layer_norm(original, ours, width, part):
        add(f"{original}/gamma", f"{ours}/gamma", (width,), part)
        add(f"{original}/beta", f"{ours}/beta", (width,), part)

    def encoder(scope, ours_prefix, width, intermediate, layers, part):
        for index in range(layers):
            original = f"{scope}/encoder/layer_{index}"
            ours = f"{ours_prefix}transformer_layer_{index}"
            for projection in ("query", "key", "value"):
                # [W, W] -> [W, N, D] and [W] -> [N, D] (reshapes: the original lays heads out head-major)
                dense(f"{original}/attention/self/{projection}", f"{ours}/self_attention_layer/{projection}",
                      width, width, part)
            # [W, W] -> [N, D, W]
            dense(f"{original}/attention/output/dense", f"{ours}/self_attention_layer/attention_output",
                  width, width, part)
            layer_norm(f"{original}/attention/output/LayerNorm", f"{ours}/self_attention_layer_norm", width, part)
            dense(f"{original}/intermediate/dense", f"{ours}/feedforward_intermediate_dense", width, intermediate,
                  part)
            dense(f"{original}/output/dense", f"{ours}/feedforward_output_dense", intermediate, width, part)
            layer_norm(f"{original}/output/LayerNorm", f"{ours}/feedforward_layer_norm", width, part)

    add(_WORD_EMBEDDINGS, "token_embedding/embeddings", (V, E), DISCRIMINATOR)
    add("electra/embeddings/token_type_embeddings", "segment_embedding/embeddings", (S, E), DISCRIMINATOR)
    add("electra/embeddings/position_embeddings", "position_embedding/embeddings", (P, E), DISCRIMINATOR)
    layer_norm("electra/embeddings/LayerNorm", "embeddings_layer_norm", E, DISCRIMINATOR)
    if E != H:
        dense("electra/embeddings_project", "embeddings_projection", E, H, DISCRIMINATOR)
    encoder("electra", "", H, I, config.num_hidden_layers, DISCRIMINATOR)

    if head:
        dense("discriminator_predictions/dense", "discriminator_dense", H, H, DISCRIMINATOR_HEAD)
        dense("discriminator_predictions/dense_1", "discriminator_output", H, 1, DISCRIMINATOR_HEAD)

    if generator_shape is not None:
        G = generator_shape.hidden_size  # H when tied: the discriminator's encoder, only the head its own
        if not generator_shape.tied:
            if E != G:  # the original projects only when the widths differ
                dense(_GENERATOR_PROJECTION, "generator/embeddings_project", E, G, GENERATOR)
            encoder("generator", "generator/", G, generator_shape.intermediate_size, generator_shape.num_layers,
                    GENERATOR)
        dense("generator_predictions/dense", "generator/masked_lm_head/intermediate_dense", G, E, GENERATOR)
        layer_norm("generator_predictions/LayerNorm", "generator/masked_lm_head/intermediate_layer_norm", E,
                   GENERATOR)
        add("generator_predictions/output_bias", "generator/masked_lm_head/output_bias", (V,), GENERATOR)
    return table


# ----------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ElectraCheckpoint:
    """An original ELECTRA checkpoint checked against a config.

    Attributes:
        prefix: The checkpoint prefix (``.../electra_small``).
        config: The discriminator config its shapes were checked against.
        generator_shape: The generator's shape (given, or inferred from the shapes with
            the original's heads rule); None when the checkpoint has no generator (a
            discriminator-only checkpoint: it converts to an encoder alone).
        discriminator_head: It holds ``discriminator_predictions/*``.
        unknown: Variables that are neither weights we know nor training state
            (e.g. a fine-tuning head).
        training_state: How many optimizer slots / step counters were skipped.
    """

    prefix: str
    config: BertConfig
    generator_shape: GeneratorShape | None
    discriminator_head: bool
    unknown: tuple[str, ...]
    training_state: int

    @property
    def generator(self) -> bool:
        """Whether the generator (and its masked-LM head) is in the checkpoint."""
        return self.generator_shape is not None

    @property
    def generator_projection(self) -> bool:
        """Whether the checkpoint has ``generator/embeddings_project`` (False when E == G)."""
        return (self.generator and not self.generator_shape.tied
                and self.generator_shape.hidden_size != _embedding_size(self.config))

    @property
    def mappings(self) -> list[VariableMapping]:
        return electra_variable_mappings(self.config, self.generator_shape, self.discriminator_head)


def find_electra_checkpoint(path: str | Path) -> str | None:
    """The checkpoint prefix a directory or prefix path points at, or None if there is none.

    A directory: its ``<directory name>`` prefix (the release layout,
    ``electra_small/electra_small.index``), else what :func:`models.checkpoints.find_checkpoint`
    finds there (the ``checkpoint`` file's latest, as ``run_pretraining.py`` leaves, or the only ``*.index``).
    """
    path = Path(path)
    if path.is_dir() and (path / f"{path.name}.index").is_file():
        return str(path / path.name)
    return checkpoints.find_checkpoint(path)


def _shapes(prefix: str) -> dict[str, tuple[int, ...]]:
    # models.checkpoints owns the TensorFlow reader (and its one-line error for an unreadable file).
    reader = checkpoints._reader(prefix)
    return {name: tuple(shape) for name, shape in reader.get_variable_to_shape_map().items()}


def _embedding_size(config: BertConfig) -> int:
    return config.embedding_size or config.hidden_size


def _layers(shapes: dict, scope: str) -> int:
    found = {int(m.group(2)) for name in shapes for m in [_LAYER.match(name)] if m and m.group(1) == scope}
    return max(found) + 1 if found else 0


def _has_generator(shapes: dict) -> bool:
    return any(name.startswith(("generator/", "generator_predictions/")) for name in shapes)


def _check_generator_layout(prefix: str, shapes: dict) -> None:
    """Refuses the generator layouts ours cannot hold (non-default ``run_pretraining.py`` hparams)."""
    if any(name.startswith("generator/embeddings/") for name in shapes):
        raise ModelError(f"{prefix}: its generator has embeddings of its own (untied_generator_embeddings=true); "
                         "ours shares the discriminator's: convert the discriminator alone")


def _inferred_generator(prefix: str, shapes: dict, config: BertConfig) -> GeneratorShape:
    """The generator's shape from the checkpoint's: tied to the discriminator when it has
    ``generator_predictions/...`` but no ``generator/...`` encoder (``untied_generator=False``)."""
    if not any(name.startswith("generator/") for name in shapes):
        return GeneratorShape.tied_to(config)
    query, intermediate = _QUERY.format(scope="generator"), _INTERMEDIATE.format(scope="generator")
    absent = [name for name in (query, intermediate) if name not in shapes]
    if absent:
        raise ModelError(f"{prefix}: has generator variables but not {', '.join(absent)}, which give the "
                         "generator's size; the checkpoint is damaged or not an ELECTRA pre-training checkpoint")
    hidden = shapes[query][0]
    heads = original_num_heads(hidden)
    if hidden % heads:
        raise ModelError(f"{prefix}: the generator's hidden size {hidden} is not divisible by the original's "
                         f"max(1, {hidden} // 64) = {heads} heads; give its generator shape explicitly")
    return GeneratorShape(hidden, _layers(shapes, "generator"), heads, shapes[intermediate][1])


def inspect_electra_checkpoint(prefix: str, config: BertConfig,
                               generator_shape: GeneratorShape | None = None) -> ElectraCheckpoint:
    """Checks an original ELECTRA checkpoint's names and shapes against ``config`` (reads no weights).

    Args:
        prefix: The checkpoint prefix (see :func:`find_electra_checkpoint`).
        config: The discriminator's shape.
        generator_shape: The generator's shape; None to infer it from the checkpoint (hidden
            size and intermediate size from ``generator/encoder/layer_0``, layers by counting,
            heads by the original's ``max(1, G // 64)`` since shapes cannot tell them). Ignored
            when the checkpoint has no generator.

    Raises:
        ModelError: Discriminator variables are missing (all named), the head or the generator
            is only partly there, or a shape disagrees with the config (each named).
    """
    shapes = _shapes(prefix)
    E, H = _embedding_size(config), config.hidden_size
    if generator_shape is not None and generator_shape.hidden_size % generator_shape.num_heads:
        raise ModelError(f"generator: hidden size {generator_shape.hidden_size} is not divisible by its "
                         f"{generator_shape.num_heads} heads")
    generator = None
    if _has_generator(shapes):
        _check_generator_layout(prefix, shapes)
        generator = generator_shape or _inferred_generator(prefix, shapes, config)
    table = electra_variable_mappings(config, generator, head=True)
    expected = {part: [m for m in table if m.part == part] for part in _PARTS}
    present = {part: [m for m in rows if m.original in shapes] for part, rows in expected.items()}

    missing = [m.original for m in expected[DISCRIMINATOR] if m.original not in shapes]
    for part in (DISCRIMINATOR_HEAD, GENERATOR):
        if present[part] and len(present[part]) < len(expected[part]):  # a part is optional, half of one is damage
            missing += [m.original for m in expected[part] if m.original not in shapes]
    if missing:
        raise ModelError(f"{prefix}: missing {len(missing)} variable(s) that the config calls for: "
                         f"{checkpoints._listing(missing)}{_missing_hint(shapes, config)}")
    _check_layers(prefix, shapes, config, generator)

    wrong = [m for rows in present.values() for m in rows if shapes[m.original] != m.shape]
    if wrong:
        details = "; ".join(f"{m.original} is {checkpoints._shape(shapes[m.original])}, the "
                            f"{'generator shape' if m.part == GENERATOR else 'config'} needs "
                            f"{checkpoints._shape(m.shape)}" for m in wrong[:3])
        more = f"; and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        hint = ""
        if wrong[0].original == _WORD_EMBEDDINGS:
            hint = f" (vocab_size is {config.vocab_size}; the checkpoint has {shapes[_WORD_EMBEDDINGS][0]} rows)"
        raise ModelError(f"{prefix}: shapes disagree with the config: {details}{more}{hint}")

    # Projections the config has no place for: a checkpoint of another embedding width.
    if E == H and _DISCRIMINATOR_PROJECTION in shapes:
        found = checkpoints._shape(shapes[_DISCRIMINATOR_PROJECTION])
        raise ModelError(f"{prefix}: has {_DISCRIMINATOR_PROJECTION} {found} but the config's embedding_size "
                         f"equals hidden_size {H} (no projection)")
    if generator is not None and generator.tied and any(name.startswith("generator/") for name in shapes):
        raise ModelError(f"{prefix}: has generator/... variables but the generator given is tied to the "
                         "discriminator (it has none of its own)")
    if generator is not None and E == generator.hidden_size and f"{_GENERATOR_PROJECTION}/kernel" in shapes:
        raise ModelError(f"{prefix}: has {_GENERATOR_PROJECTION}/kernel but the generator's hidden size "
                         f"{generator.hidden_size} equals the embedding size (the original builds no projection then)")

    known = {m.original for rows in present.values() for m in rows}
    rest = sorted(set(shapes) - known)
    training_state = [name for name in rest if _TRAINING_STATE.search(name)]
    unknown = tuple(name for name in rest if not _TRAINING_STATE.search(name))
    return ElectraCheckpoint(prefix, config, generator, bool(present[DISCRIMINATOR_HEAD]), unknown,
                             len(training_state))


def _missing_hint(shapes: dict, config: BertConfig | None = None) -> str:
    if not any(name.startswith("electra/") for name in shapes):
        if any(name.startswith("bert/") for name in shapes):
            return " (it has bert/... variables: a google-research/bert checkpoint, not an ELECTRA one)"
        return " (it has no electra/... variables at all: is it a google-research/electra checkpoint?)"
    if config is None:
        return ""
    if config.projects_embeddings and _DISCRIMINATOR_PROJECTION not in shapes and _WORD_EMBEDDINGS in shapes:
        return (f" (it has no embedding projection: its embeddings are {shapes[_WORD_EMBEDDINGS][1]} wide, "
                f"the config's embedding_size is {config.embedding_size})")
    return ""


def _check_layers(prefix: str, shapes: dict, config: BertConfig, generator: GeneratorShape | None) -> None:
    found = _layers(shapes, "electra")
    if found != config.num_hidden_layers:
        raise ModelError(f"{prefix}: has {found} discriminator layers (electra/encoder/layer_N), the config's "
                         f"num_hidden_layers is {config.num_hidden_layers}")
    if generator is not None and not generator.tied and _layers(shapes, "generator") != generator.num_layers:
        raise ModelError(f"{prefix}: has {_layers(shapes, 'generator')} generator layers (generator/encoder/layer_N),"
                         f" the generator shape {generator.num_layers}")


def config_from_electra_checkpoint(prefix: str, vocab_size: int | None = None,
                                   num_attention_heads: int | None = None,
                                   generator_num_heads: int | None = None,
                                   ) -> tuple[BertConfig, GeneratorShape | None]:
    """Our config and generator shape from a checkpoint's shapes alone (the release ships no config file).

    Sizes are read from the shapes; heads follow the original's ``max(1, width // 64)``
    (ELECTRA-Small 4, -Base 12, -Large 16; its generators 4) unless given (the
    original's ``model_hparam_overrides`` can change them, and nothing in a checkpoint
    records it); ``hidden_act`` is the original's erf GELU, dropout 0.1, initializer 0.02.

    Args:
        prefix: The checkpoint prefix.
        vocab_size: The vocabulary's size, checked against the word embeddings' rows.
        num_attention_heads: The discriminator's heads, if not by the rule.
        generator_num_heads: The generator's heads, if not by the rule.

    Returns:
        The discriminator config and the generator shape (None: no generator in the checkpoint).
        Check the pair with :func:`inspect_electra_checkpoint` before assigning.
    """
    shapes = _shapes(prefix)
    query, intermediate = _QUERY.format(scope="electra"), _INTERMEDIATE.format(scope="electra")
    needed = [name for name in (_WORD_EMBEDDINGS, "electra/embeddings/position_embeddings",
                                "electra/embeddings/token_type_embeddings", query, intermediate) if name not in shapes]
    if needed:
        raise ModelError(f"{prefix}: missing {checkpoints._listing(needed)}, which give the model's size"
                         f"{_missing_hint(shapes)}")
    V, E = shapes[_WORD_EMBEDDINGS]
    H = shapes[query][0]
    if vocab_size is not None and vocab_size != V:
        raise ModelError(f"{prefix}: {_WORD_EMBEDDINGS} has {V} rows but the vocabulary has {vocab_size} tokens; "
                         "use the vocab.txt the checkpoint was trained with")
    heads = num_attention_heads or original_num_heads(H)
    if H % heads:
        rule = "" if num_attention_heads else " (the original's rule max(1, H // 64))"
        raise ModelError(f"{prefix}: hidden size {H} is not divisible by {heads} heads{rule}; give the number of heads")
    config = BertConfig(
        vocab_size=V, hidden_size=H, num_hidden_layers=_layers(shapes, "electra"), num_attention_heads=heads,
        intermediate_size=shapes[intermediate][1], hidden_act=ELECTRA_HIDDEN_ACT, hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1, max_position_embeddings=shapes["electra/embeddings/position_embeddings"][0],
        type_vocab_size=shapes["electra/embeddings/token_type_embeddings"][0], initializer_range=0.02,
        embedding_size=E if E != H else None)
    generator = None
    if _has_generator(shapes):
        _check_generator_layout(prefix, shapes)
        generator = _inferred_generator(prefix, shapes, config)
        if generator_num_heads and not generator.tied:
            if generator.hidden_size % generator_num_heads:
                raise ModelError(f"{prefix}: the generator's hidden size {generator.hidden_size} is not divisible "
                                 f"by {generator_num_heads} heads")
            generator = dataclasses.replace(generator, num_heads=generator_num_heads)
    return config, generator


# ----------------------------------------------------------------------------
# Our variables
# ----------------------------------------------------------------------------


def _model_parts(model) -> tuple[object, BertConfig | None, GeneratorShape | None]:
    if isinstance(model, ElectraPretrainer):
        return model.backbone, model.bert_config, model.generator_shape
    if isinstance(model, ElectraDiscriminator):
        return model.backbone, model.bert_config, None
    return model, None, None


def assign_from_electra_checkpoint(checkpoint: ElectraCheckpoint, model_or_backbone,
                                   on_variable: Callable[[str], None] | None = None) -> int:
    """Assigns an inspected checkpoint's weights to a built model.

    Args:
        checkpoint: From :func:`inspect_electra_checkpoint`.
        model_or_backbone: An :class:`ElectraPretrainer` (the discriminator, and the head and
            generator the checkpoint has; parts it lacks keep their values), an
            :class:`~models.electra.ElectraDiscriminator` (the discriminator and its head) or a
            backbone of ``checkpoint.config``'s shape (the discriminator alone).
        on_variable: Called with each original name once assigned (progress).

    Returns:
        The number of scalars loaded.

    Raises:
        ModelError: The model's shape is not the checkpoint's.
    """
    backbone, _, generator_shape = _model_parts(model_or_backbone)
    config = checkpoint.config
    if getattr(backbone, "num_heads", config.num_attention_heads) != config.num_attention_heads:
        raise ModelError(f"model: has {backbone.num_heads} attention heads, the checkpoint's config "
                         f"{config.num_attention_heads}")
    if generator_shape is not None and checkpoint.generator and generator_shape != checkpoint.generator_shape:
        raise ModelError(f"model: its generator is {generator_shape}, the checkpoint's {checkpoint.generator_shape}")
    parts = {DISCRIMINATOR}
    if isinstance(model_or_backbone, (ElectraPretrainer, ElectraDiscriminator)):
        parts.add(DISCRIMINATOR_HEAD)
    if isinstance(model_or_backbone, ElectraPretrainer):
        parts.add(GENERATOR)
    variables = electra_variables(model_or_backbone)
    reader = checkpoints._reader(checkpoint.prefix)
    scalars = 0
    for mapping in checkpoint.mappings:
        if mapping.part not in parts:
            continue
        variable = checkpoints._ours(variables, mapping)
        if int(np.prod(variable.shape)) != int(np.prod(mapping.shape)):
            raise ModelError(f"model: {mapping.ours} is {checkpoints._shape(variable.shape)}, the checkpoint's "
                             f"{mapping.original} {checkpoints._shape(mapping.shape)}")
        value = mapping.to_ours(reader.get_tensor(mapping.original), tuple(variable.shape))
        variable.assign(value.astype(variable.dtype, copy=False))
        scalars += value.size
        if on_variable is not None:
            on_variable(mapping.original)
    return scalars


# ----------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------


def electra_weights(model, config: BertConfig | None = None) -> dict[str, np.ndarray]:
    """Our weights under the original names and in the original layouts (float32), for :func:`write_checkpoint`.

    Args:
        model: An :class:`ElectraPretrainer` (discriminator, head and generator: a
            pre-training checkpoint the original's ``run_pretraining.py`` continues from), an
            :class:`~models.electra.ElectraDiscriminator` (discriminator and head) or a
            backbone alone (the discriminator encoder; then ``config`` is required).
        config: The backbone's config; the two models carry their own.
    """
    backbone, model_config, generator_shape = _model_parts(model)
    config = model_config or config
    if config is None:
        raise ModelError("electra_weights: a backbone alone needs its config")
    variables = electra_variables(model)
    head = isinstance(model, (ElectraPretrainer, ElectraDiscriminator))
    weights = {}
    for mapping in electra_variable_mappings(config, generator_shape, head=head):
        value = np.asarray(checkpoints._ours(variables, mapping).numpy(), dtype=np.float32)
        weights[mapping.original] = mapping.to_original(value)
    return weights
