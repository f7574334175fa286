"""Hugging Face Transformers ELECTRA checkpoints (safetensors) <-> this project's ELECTRA models.

Transformers keeps ELECTRA's two networks in two directories, as Google's
releases on the Hub do (``google/electra-small-discriminator`` and
``google/electra-small-generator``), each with its own ``config.json``
(``model_type`` "electra", ``embedding_size`` beside BERT's fields):

* the **discriminator**, ``ElectraForPreTraining``: ``electra.embeddings.*``
  (word / position / token-type tables [V|P|S, E] and their LayerNorm [E]),
  ``electra.embeddings_project`` (Linear E -> H, only when E != H),
  ``electra.encoder.layer.N.*`` named as BERT's, and the replaced-token head
  ``discriminator_predictions.dense`` (H -> H, then ``hidden_act``) and
  ``discriminator_predictions.dense_prediction`` (H -> 1). **No pooler.**
  ``ElectraModel`` saves the same encoder without the ``electra.`` prefix
  (``base_model_prefix``) and without the head.
* the **generator**, ``ElectraForMaskedLM``: an ``electra.*`` encoder of its
  own width G (``hidden_size`` in its ``config.json``) with its own copy of the
  embeddings [V, E] and an ``embeddings_project`` E -> G only when E != G, then
  ``generator_predictions.dense`` (G -> E) followed by the exact GELU whatever
  ``hidden_act`` says, ``generator_predictions.LayerNorm`` [E], and
  ``generator_lm_head`` (E -> V), whose weight is tied to the word embeddings,
  so files hold only ``generator_lm_head.bias``.

Ours (:class:`models.electra.ElectraPretrainer`) has one set of embeddings for
both networks, as ELECTRA pre-trains them (``untied_generator_embeddings=False``)
and as Transformers' converter of the original checkpoints copies them into
both directories; a generator whose embeddings are not its discriminator's is
refused. Our variables are named by :func:`models.electra.electra_variables`
(the generator's under ``generator/``, the head's ``discriminator_dense``,
``discriminator_output``); the tables are built from the same pieces as BERT's
(:mod:`models.huggingface`), with the same layouts: a PyTorch linear weight
``[out, in]`` is a Keras kernel transposed.

Shape legend: V = vocabulary, E = embedding width, H = discriminator hidden size,
G = generator hidden size, P = max positions, S = segment types.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from models.config import BertConfig
from models.errors import ModelError
from models.huggingface import (
    ACTIVATIONS_OUT,
    ENCODER,
    SafetensorsFiles,
    TensorMapping,
    check_shapes,
    config_to_hf,
    embedding_mappings,
    encoder_config_from_hf,
    found_names,
    hf_name,
    layer_mappings,
    layer_norm_mappings,
    linear_mappings,
    present_parts,
)

PREFIX = "electra."
DISCRIMINATOR_HEAD = "discriminator_head"
GENERATOR = "generator"
# The generator file's copy of the discriminator's embeddings: checked equal, never assigned.
SHARED_EMBEDDINGS = "shared_embeddings"
#: Tensors that never carry the ``electra.`` prefix.
HEADS = ("discriminator_predictions.", "generator_predictions.", "generator_lm_head.")
#: ElectraConfig's default ``embedding_size``, used when a config.json does not say.
DEFAULT_EMBEDDING_SIZE = 128
# Buffers older files persisted, and the tied decoder some writers store anyway.
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
_TIED = "generator_lm_head.weight"


def embedding_width(config: BertConfig) -> int:
    return config.embedding_size or config.hidden_size


def generator_config(config: BertConfig, shape) -> BertConfig:
    """The generator as a config of its own: its width, layers, heads and feed-forward size over the
    discriminator's embeddings (what its Transformers ``config.json`` describes)."""
    E = embedding_width(config)
    return dataclasses.replace(config, hidden_size=shape.hidden_size, num_hidden_layers=shape.num_layers,
                               num_attention_heads=shape.num_heads, intermediate_size=shape.intermediate_size,
                               embedding_size=E if E != shape.hidden_size else None)


# ----------------------------------------------------------------------------
# The tables
# ----------------------------------------------------------------------------


def discriminator_mappings(config: BertConfig) -> list[TensorMapping]:
    """Every tensor of an ``ElectraForPreTraining`` file of ``config``'s shape (encoder names without
    ``electra.``); the encoder's are part ``encoder``, the head's ``discriminator_head``."""
    E, H = embedding_width(config), config.hidden_size
    table = embedding_mappings(config, E)
    if E != H:
        # [H, E] -> our embeddings_projection kernel [E, H]
        table += linear_mappings("embeddings_project", "embeddings_projection", E, H, ENCODER)
    table += layer_mappings(config)
    table += linear_mappings("discriminator_predictions.dense", "discriminator_dense", H, H, DISCRIMINATOR_HEAD)
    # [1, H] -> a Dense kernel [H, 1]
    table += linear_mappings("discriminator_predictions.dense_prediction", "discriminator_output", H, 1,
                             DISCRIMINATOR_HEAD)
    return table


def generator_mappings(config: BertConfig, shape) -> list[TensorMapping]:
    """Every tensor of an ``ElectraForMaskedLM`` file of the generator ``shape`` (a
    :class:`models.electra.GeneratorShape`) under the discriminator ``config``.

    Transformers has no tied generator: a tied one (``shape.tied``) is written as a full
    ``ElectraForMaskedLM`` whose encoder is a copy of the discriminator's (read back, it is an
    untied generator as wide as the discriminator, with the same weights)."""
    E, G, V = embedding_width(config), shape.hidden_size, config.vocab_size
    table = embedding_mappings(config, E, SHARED_EMBEDDINGS)
    prefix, projection = ("", "embeddings_projection") if shape.tied else ("generator/", "generator/embeddings_project")
    if E != G:
        table += linear_mappings("embeddings_project", projection, E, G, GENERATOR)
    table += layer_mappings(generator_config(config, shape), prefix, GENERATOR)
    head = "generator/masked_lm_head"
    table += linear_mappings("generator_predictions.dense", f"{head}/intermediate_dense", G, E, GENERATOR)
    table += layer_norm_mappings("generator_predictions.LayerNorm", f"{head}/intermediate_layer_norm", E, GENERATOR)
    table.append(TensorMapping("generator_lm_head.bias", f"{head}/output_bias", (V,), GENERATOR))
    return table


# ----------------------------------------------------------------------------
# config.json
# ----------------------------------------------------------------------------


def electra_config_from_hf(values: dict, source: str) -> tuple[BertConfig, list[str]]:
    """Our config from a Transformers ELECTRA ``config.json`` (either network's), and notes.

    Raises:
        ModelError: Not ``model_type`` "electra", or what
            :func:`models.huggingface.encoder_config_from_hf` refuses.
    """
    if values.get("model_type") != "electra":
        raise ModelError(f"{source}: has model_type {values.get('model_type')!r}, not \"electra\"")
    hidden = values.get("hidden_size")
    embedding = values.get("embedding_size", DEFAULT_EMBEDDING_SIZE)
    return encoder_config_from_hf(values, source, embedding if embedding != hidden else None)


def generator_shape_from_hf(values: dict, config: BertConfig, source: str):
    """The generator's shape from its ``config.json``, checked against the discriminator's ``config``.

    Returns:
        ``(GeneratorShape, notes)``.

    Raises:
        ModelError: Another vocabulary, embedding width, positions or segments (ours shares
            the discriminator's embeddings), or an activation ours would not reproduce:
            ours runs the generator with the discriminator's ``hidden_act`` and its MLM
            transform with it too, where Transformers always applies the exact GELU.
    """
    from models.electra import GeneratorShape

    generator, notes = electra_config_from_hf(values, source)
    for name, theirs, ours in (("vocab_size", generator.vocab_size, config.vocab_size),
                               ("embedding_size", embedding_width(generator), embedding_width(config)),
                               ("max_position_embeddings", generator.max_position_embeddings,
                                config.max_position_embeddings),
                               ("type_vocab_size", generator.type_vocab_size, config.type_vocab_size)):
        if theirs != ours:
            raise ModelError(f"{source}: {name} {theirs} differs from the discriminator's {ours}; the generator "
                             "shares the discriminator's embeddings: give the generator trained with it")
    if generator.hidden_act != "gelu_exact" or config.hidden_act != "gelu_exact":
        raise ModelError(f"{source}: hidden_act is {values.get('hidden_act', 'gelu')!r} here and "
                         f"{ACTIVATIONS_OUT[config.hidden_act]!r} in the discriminator's; the generator converts only "
                         "with \"gelu\" in both (Transformers' generator head always applies the exact GELU, ours "
                         "the discriminator's hidden_act)")
    if generator.hidden_dropout_prob != config.hidden_dropout_prob:
        notes.append(f"hidden_dropout_prob {generator.hidden_dropout_prob} differs from the discriminator's "
                     f"{config.hidden_dropout_prob}, which ours uses for both (only training is affected)")
    shape = GeneratorShape(generator.hidden_size, generator.num_hidden_layers, generator.num_attention_heads,
                           generator.intermediate_size)
    return shape, notes


def electra_config_to_hf(config: BertConfig, architecture: str, pad_token_id: int) -> dict:
    """A Transformers ``config.json`` for ``config`` as ``architecture`` (e.g. "ElectraForPreTraining")."""
    extra = {"embedding_size": embedding_width(config),
             # ElectraConfig's sequence-summary fields (its multiple-choice head), at their defaults.
             "summary_type": "first", "summary_use_proj": True, "summary_activation": "gelu",
             "summary_last_dropout": 0.1}
    return config_to_hf(config, architecture, pad_token_id, extra, model_type="electra")


def generator_config_to_hf(config: BertConfig, shape, pad_token_id: int) -> dict:
    """The ``config.json`` of the generator ``shape`` under ``config``, as ``ElectraForMaskedLM``."""
    return electra_config_to_hf(generator_config(config, shape), "ElectraForMaskedLM", pad_token_id)


# ----------------------------------------------------------------------------
# Checking a checkpoint against its config
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HFElectraCheckpoint:
    """A Transformers ELECTRA checkpoint, either network, checked against a config (no weights read).

    Attributes:
        files: Its safetensors files.
        table: Every tensor a file of its kind can hold (:func:`discriminator_mappings` or
            :func:`generator_mappings`).
        prefix: ``"electra."`` (the ``ElectraFor...`` classes) or ``""`` (``ElectraModel``).
        found: Mapped name -> the name in the file.
        parts: ``encoder`` (and ``discriminator_head`` when present), or ``generator`` and
            ``shared_embeddings``.
        unknown: Tensors that are none of these (listed in a warning).
    """

    files: SafetensorsFiles
    table: tuple[TensorMapping, ...]
    prefix: str
    found: dict
    parts: frozenset
    unknown: tuple[str, ...]

    @property
    def mappings(self) -> list[TensorMapping]:
        """The tensors to assign (the generator's embeddings are the discriminator's, already assigned)."""
        return [m for m in self.table if m.part in self.parts and m.part != SHARED_EMBEDDINGS]

    @property
    def discriminator_head(self) -> bool:
        return DISCRIMINATOR_HEAD in self.parts

    @property
    def dtypes(self) -> list[str]:
        return sorted({self.files.dtypes[self.found[m.name]] for m in self.table if m.part in self.parts})


def is_generator(files: SafetensorsFiles) -> bool:
    """Whether a file holds an ELECTRA generator (``generator_predictions.*``), not a discriminator."""
    return any(name.startswith(("generator_predictions.", "generator_lm_head.")) for name in files.shapes)


def inspect_hf_discriminator(files: SafetensorsFiles, config: BertConfig, source: str) -> HFElectraCheckpoint:
    """Checks an ``ElectraForPreTraining`` / ``ElectraModel`` file against ``config``.

    Raises:
        ModelError: A generator file; encoder tensors missing (listed); half a head; a shape
            that disagrees with ``config.json``; another number of layers or an embedding
            projection the config has no place for.
    """
    if is_generator(files):
        raise ModelError(f"{source}: is an ELECTRA generator (ElectraForMaskedLM: generator_predictions.*), not a "
                         "discriminator; convert the discriminator and give this directory as --generator")
    return _inspect(files, discriminator_mappings(config), config, source, {ENCODER}, (DISCRIMINATOR_HEAD,))


def inspect_hf_generator(files: SafetensorsFiles, config: BertConfig, shape, source: str) -> HFElectraCheckpoint:
    """Checks an ``ElectraForMaskedLM`` file against the generator ``shape`` under ``config``."""
    if not is_generator(files):
        raise ModelError(f"{source}: has no generator_predictions.*, so it is not an ELECTRA generator "
                         "(ElectraForMaskedLM); --generator takes the generator's directory")
    return _inspect(files, generator_mappings(config, shape), config, source, {SHARED_EMBEDDINGS, GENERATOR}, ())


def _inspect(files, table, config, source, required, optional) -> HFElectraCheckpoint:
    shapes = files.shapes
    if PREFIX + "embeddings.word_embeddings.weight" in shapes:
        prefix = PREFIX
    elif "embeddings.word_embeddings.weight" in shapes:
        prefix = ""
    else:
        raise ModelError(f"{source}: has no electra.embeddings.word_embeddings.weight; is it an ELECTRA checkpoint?")
    found = found_names(table, shapes, prefix, HEADS)
    parts = present_parts(table, found, required, optional, source, lambda m: hf_name(m, prefix, HEADS))
    check_shapes([m for m in table if m.part in parts], found, files, config, source)
    layers = {int(name[len(prefix):].split(".")[2]) for name in shapes if name.startswith(f"{prefix}encoder.layer.")}
    expected = max((int(m.name.split(".")[2]) + 1 for m in table if m.name.startswith("encoder.layer.")), default=0)
    if len(layers) != expected:
        raise ModelError(f"{source}: has {len(layers)} layers ({prefix}encoder.layer.N), config.json's "
                         f"num_hidden_layers is {expected}")
    projection = f"{prefix}embeddings_project.weight"
    if projection in shapes and projection not in found.values():
        raise ModelError(f"{source}: has {projection} {list(shapes[projection])} but config.json's embedding_size "
                         "equals hidden_size (no projection)")
    known = {found[m.name] for m in table if m.part in parts}
    ignored = {prefix + name for name in _BUFFERS} | {_TIED}
    return HFElectraCheckpoint(files, tuple(table), prefix, found, frozenset(parts),
                               tuple(sorted(set(shapes) - known - ignored)))


def check_shared_embeddings(generator: HFElectraCheckpoint, discriminator: HFElectraCheckpoint, source: str) -> None:
    """Refuses a generator whose embeddings are not its discriminator's (ours holds one set for both)."""
    for mapping in generator.table:
        if mapping.part != SHARED_EMBEDDINGS:
            continue
        name = generator.found[mapping.name]
        if not np.array_equal(generator.files.get(name), discriminator.files.get(discriminator.found[mapping.name])):
            raise ModelError(f"{source}: {name} differs from the discriminator's; ours shares one set of embeddings "
                             "between generator and discriminator, as ELECTRA pre-trains them: give the generator "
                             "trained with this discriminator")


# ----------------------------------------------------------------------------
# Our weights out
# ----------------------------------------------------------------------------


def hf_discriminator_weights(model, config: BertConfig) -> dict[str, np.ndarray]:
    """The discriminator under Transformers names (float32): ``ElectraForPreTraining`` for a model with the
    replaced-token head (an ``ElectraPretrainer`` or ``ElectraDiscriminator``), ``ElectraModel`` (no
    prefix) for an encoder alone."""
    from models.electra import electra_variables

    head = hasattr(model, "discriminator_dense")
    variables = electra_variables(model)
    weights = {}
    for mapping in discriminator_mappings(config):
        if head or mapping.part == ENCODER:
            value = np.asarray(variables[mapping.ours].numpy(), dtype=np.float32)
            weights[hf_name(mapping, PREFIX if head else "", HEADS)] = mapping.to_hf(value)
    return weights


def hf_generator_weights(model) -> dict[str, np.ndarray]:
    """An ``ElectraPretrainer``'s generator as ``ElectraForMaskedLM`` tensors (float32), the shared
    embeddings copied in, as the released generators hold them."""
    from models.electra import electra_variables

    variables = electra_variables(model)
    weights = {}
    for mapping in generator_mappings(model.bert_config, model.generator_shape):
        value = np.asarray(variables[mapping.ours].numpy(), dtype=np.float32)
        weights[hf_name(mapping, PREFIX, HEADS)] = mapping.to_hf(value)
    return weights
