"""google-research/bert TF1 checkpoints <-> this project's models.

The original release stores a model as a TF1 checkpoint (``bert_model.ckpt.index``
+ ``bert_model.ckpt.data-*``) whose variables carry the names of the
``tf.compat.v1.variable_scope``s in its ``modeling.py``. Our encoder is
keras-hub's ``BertBackbone`` and our pre-training heads are those of
:class:`models.pretraining.BertPretrainer`; the architecture is the same, only
names and a few layouts differ. This module is the one table that says which
original variable is which Keras variable, and the code that reads and writes
checkpoints through it. It is the only module of ``models/`` that imports
TensorFlow (``tf.train.load_checkpoint`` to read, the ``SaveV2`` op to write).

Shape legend: H = hidden size, N = attention heads, D = H / N head size,
I = intermediate size, V = vocabulary size, P = max positions, S = segment types.

Layouts that differ:

* Query, key and value: the original's dense kernel is [H, H] with the output
  axis laid out head-major (it reshapes the projection to [B, T, N, D]);
  keras' ``MultiHeadAttention`` keeps the heads as an axis: kernel [H, N, D],
  bias [N, D]. A reshape, no transpose.
* Attention output: the original's kernel [H, H] reads the heads concatenated
  head-major; keras' is [N, D, H]. Again a reshape.
* NSP: the original stores ``cls/seq_relationship/output_weights`` as [2, H]
  (it computes ``matmul(pooled, weights, transpose_b=True)``); a Keras Dense
  kernel is [H, 2]. A transpose.
* The MLM output layer has no kernel of its own in either: it is tied to the
  word embeddings, so only ``cls/predictions/output_bias`` maps.

Our side is named by Keras variable path relative to the layer that owns it
(as ``model.weights`` prints them, e.g.
``transformer_layer_0/self_attention_layer/query/kernel``), found by looking at
a built model rather than at keras-hub's private attributes.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import tensorflow as tf

from models.config import BertConfig
from models.errors import ModelError
from models.pretraining import keras_variables

# The file name prefix of every released checkpoint.
CHECKPOINT_NAME = "bert_model.ckpt"

ENCODER = "encoder"
MASKED_LM = "masked_lm"
NEXT_SENTENCE = "next_sentence"

# Training state that pre-training checkpoints of the original code carry next
# to the weights: the step counter and the optimizer's moments (AdamWeightDecay
# names them .../adam_m and .../adam_v). Not part of a model; skipped quietly.
_TRAINING_STATE = re.compile(r"(^|/)(global_step|adam_m|adam_v|Momentum|lamb_m|lamb_v)$")

# Releases whose directory names say nothing about case but which are uncased
# (the first multilingual and Chinese models), then the general rule.
_UNCASED_RELEASES = ("multilingual_L-12_H-768_A-12", "chinese_L-12_H-768_A-12")
_CASE_WORD = re.compile(r"(?:^|[^a-z])(un)?cased(?:[^a-z]|$)")


@dataclasses.dataclass(frozen=True)
class VariableMapping:
    """One original checkpoint variable and the Keras variable it becomes.

    Args:
        original: Name in the TF1 checkpoint, e.g. ``bert/pooler/dense/kernel``.
        ours: Keras variable path relative to the owning layer of the backbone or
            of a head, e.g. ``pooled_dense/kernel``, ``masked_lm_head/output_bias``.
        shape: The original's shape, as ``bert_config.json`` implies it.
        part: ``"encoder"``, ``"masked_lm"`` or ``"next_sentence"``.
        transposed: The Keras array is the transpose of the original (NSP weights);
            otherwise it is a reshape (attention) or the same array.
    """

    original: str
    ours: str
    shape: tuple[int, ...]
    part: str
    transposed: bool = False

    def to_ours(self, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return array.T if self.transposed else array.reshape(shape)

    def to_original(self, array: np.ndarray) -> np.ndarray:
        return array.T if self.transposed else array.reshape(self.shape)


def variable_mappings(config: BertConfig) -> list[VariableMapping]:
    """Every variable of an original pre-training checkpoint of ``config``'s shape, in checkpoint order."""
    _check_bert_layout(config)
    H, I, V = config.hidden_size, config.intermediate_size, config.vocab_size  # noqa: E741  (I: intermediate size, the paper's letter)
    P, S = config.max_position_embeddings, config.type_vocab_size
    table: list[VariableMapping] = []

    def add(original, ours, shape, part=ENCODER, transposed=False):
        table.append(VariableMapping(original, ours, tuple(shape), part, transposed))

    def dense(original, ours, fan_in, fan_out, part=ENCODER):
        add(f"{original}/kernel", f"{ours}/kernel", (fan_in, fan_out), part)
        add(f"{original}/bias", f"{ours}/bias", (fan_out,), part)

    def layer_norm(original, ours, part=ENCODER):
        add(f"{original}/gamma", f"{ours}/gamma", (H,), part)
        add(f"{original}/beta", f"{ours}/beta", (H,), part)

    add("bert/embeddings/word_embeddings", "token_embedding/embeddings", (V, H))
    add("bert/embeddings/token_type_embeddings", "segment_embedding/embeddings", (S, H))
    add("bert/embeddings/position_embeddings", "position_embedding/embeddings", (P, H))
    layer_norm("bert/embeddings/LayerNorm", "embeddings_layer_norm")
    for index in range(config.num_hidden_layers):
        original = f"bert/encoder/layer_{index}"
        ours = f"transformer_layer_{index}"
        for projection in ("query", "key", "value"):
            # [H, H] -> [H, N, D] and [H] -> [N, D]
            dense(f"{original}/attention/self/{projection}", f"{ours}/self_attention_layer/{projection}", H, H)
        # [H, H] -> [N, D, H]
        dense(f"{original}/attention/output/dense", f"{ours}/self_attention_layer/attention_output", H, H)
        layer_norm(f"{original}/attention/output/LayerNorm", f"{ours}/self_attention_layer_norm")
        dense(f"{original}/intermediate/dense", f"{ours}/feedforward_intermediate_dense", H, I)
        dense(f"{original}/output/dense", f"{ours}/feedforward_output_dense", I, H)
        layer_norm(f"{original}/output/LayerNorm", f"{ours}/feedforward_layer_norm")
    dense("bert/pooler/dense", "pooled_dense", H, H)

    dense("cls/predictions/transform/dense", "masked_lm_head/intermediate_dense", H, H, MASKED_LM)
    layer_norm("cls/predictions/transform/LayerNorm", "masked_lm_head/intermediate_layer_norm", MASKED_LM)
    add("cls/predictions/output_bias", "masked_lm_head/output_bias", (V,), MASKED_LM)
    # [2, H] in the original, [H, 2] as a Dense kernel.
    add("cls/seq_relationship/output_weights", "next_sentence_head/kernel", (2, H), NEXT_SENTENCE, transposed=True)
    add("cls/seq_relationship/output_bias", "next_sentence_head/bias", (2,), NEXT_SENTENCE)
    return table


def _check_bert_layout(config: BertConfig) -> None:
    if config.projects_embeddings:
        raise ModelError(f"config: embedding_size {config.embedding_size} differs from hidden_size "
                         f"{config.hidden_size}; BERT's checkpoint layout has no embedding projection (an ELECTRA "
                         "model: its layout is not written by this version)")


def lowercase_from_name(path: str | Path) -> bool | None:
    """The casing a released checkpoint's name states, or None when it states none.

    ``uncased_L-12_H-768_A-12`` -> True, ``multi_cased_L-12_H-768_A-12`` -> False,
    ``bert-base-uncased`` -> True, ``my_model`` -> None. Only the innermost
    directory and the file name are read: a parent directory called "cased"
    says nothing about the checkpoint inside it.
    """
    path = Path(path)
    names = [path.name, path.parent.name] if ".ckpt" in path.name else [path.name]
    for name in names:
        if name in _UNCASED_RELEASES:
            return True
        match = _CASE_WORD.search(name.lower())
        if match:
            return bool(match.group(1))
    return None


def find_checkpoint(path: str | Path) -> str | None:
    """The checkpoint prefix a directory or prefix path points at, or None if there is none.

    A directory: its ``bert_model.ckpt`` (the released name), else the latest
    checkpoint its ``checkpoint`` file names (a run of the original
    ``run_pretraining.py``), else its only ``*.index``. A prefix: itself.
    Several candidates and no ``checkpoint`` file is an error naming them.
    """
    path = Path(path)
    if not path.is_dir():
        return str(path) if Path(f"{path}.index").is_file() else None
    if (path / f"{CHECKPOINT_NAME}.index").is_file():
        return str(path / CHECKPOINT_NAME)
    if (path / "checkpoint").is_file():
        latest = tf.train.latest_checkpoint(str(path))
        if latest and Path(f"{latest}.index").is_file():
            return latest
    indexes = sorted(path.glob("*.index"))
    if len(indexes) == 1:
        return str(indexes[0])[: -len(".index")]
    if len(indexes) > 1:
        names = ", ".join(p.name[: -len(".index")] for p in indexes[:5])
        raise ModelError(f"{path}: holds several checkpoints ({names}{', ...' if len(indexes) > 5 else ''}); "
                         "give the one to use as DIRECTORY/PREFIX")
    return None


@dataclasses.dataclass(frozen=True)
class OriginalCheckpoint:
    """An original-layout checkpoint checked against a config.

    Attributes:
        prefix: The checkpoint prefix (``.../bert_model.ckpt``).
        config: The config its shapes were checked against.
        masked_lm: It holds the MLM head (``cls/predictions/*``).
        next_sentence: It holds the NSP head (``cls/seq_relationship/*``) too.
        unknown: Variables that are neither weights we know nor training state,
            e.g. a fine-tuned task's head (``cls/squad/*``, ``output_weights``).
        training_state: How many optimizer slots / step counters were skipped.
    """

    prefix: str
    config: BertConfig
    masked_lm: bool
    next_sentence: bool
    unknown: tuple[str, ...]
    training_state: int

    @property
    def mappings(self) -> list[VariableMapping]:
        parts = (
            {ENCODER}
            | ({MASKED_LM} if self.masked_lm else set())
            | ({NEXT_SENTENCE} if self.next_sentence else set())
        )
        return [m for m in variable_mappings(self.config) if m.part in parts]


def _listing(names: Iterable[str], limit: int = 8) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _shape(shape) -> str:
    return "[" + ", ".join(str(n) for n in shape) + "]"


def _reader(prefix: str):
    try:
        return tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as error:
        message = getattr(error, "message", str(error)).splitlines()[0]
        raise ModelError(f"{prefix}: not a readable TensorFlow checkpoint ({message})") from None


def inspect_checkpoint(prefix: str, config: BertConfig) -> OriginalCheckpoint:
    """Checks an original-layout checkpoint's names and shapes against ``config`` (reads no weights).

    Raises:
        ModelError: Encoder variables are missing (all named), a head is only partly
            there, or a shape disagrees with ``bert_config.json`` (each named).
    """
    shapes = {name: tuple(shape) for name, shape in _reader(prefix).get_variable_to_shape_map().items()}
    table = variable_mappings(config)
    present = {part: [m for m in table if m.part == part and m.original in shapes] for part in
               (ENCODER, MASKED_LM, NEXT_SENTENCE)}
    expected = {part: [m for m in table if m.part == part] for part in (ENCODER, MASKED_LM, NEXT_SENTENCE)}

    missing = [m.original for m in expected[ENCODER] if m.original not in shapes]
    for part in (MASKED_LM, NEXT_SENTENCE):
        # A head is optional, but half a head is a damaged checkpoint.
        if present[part] and len(present[part]) < len(expected[part]):
            missing += [m.original for m in expected[part] if m.original not in shapes]
    if missing:
        hint = ""
        if not any(name.startswith("bert/") for name in shapes):
            hint = " (it has no bert/... variables at all: is it a google-research/bert checkpoint?)"
        elif any(name.startswith(f"bert/encoder/layer_{config.num_hidden_layers}/") for name in shapes):
            hint = f" (it has more layers than num_hidden_layers {config.num_hidden_layers})"
        raise ModelError(f"{prefix}: missing {len(missing)} variable(s) that bert_config.json calls for: "
                         f"{_listing(missing)}{hint}")

    wrong = [m for part in present.values() for m in part if shapes[m.original] != m.shape]
    if wrong:
        first = wrong[0]
        details = "; ".join(f"{m.original} is {_shape(shapes[m.original])}, bert_config.json needs {_shape(m.shape)}"
                            for m in wrong[:3])
        more = f"; and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        hint = ""
        if first.original == "bert/embeddings/word_embeddings" or first.original == "cls/predictions/output_bias":
            hint = f" (vocab_size is {config.vocab_size}; the checkpoint has {shapes[first.original][0]} rows)"
        raise ModelError(f"{prefix}: shapes disagree with bert_config.json: {details}{more}{hint}")

    masked_lm = bool(present[MASKED_LM])
    # The NSP head only travels with the MLM head: BertPretrainer has no NSP-only form.
    next_sentence = masked_lm and bool(present[NEXT_SENTENCE])
    known = {m.original for m in present[ENCODER]}
    if masked_lm:
        known |= {m.original for m in present[MASKED_LM]}
    if next_sentence:
        known |= {m.original for m in present[NEXT_SENTENCE]}
    rest = sorted(set(shapes) - known)
    training_state = [name for name in rest if _TRAINING_STATE.search(name)]
    unknown = tuple(name for name in rest if not _TRAINING_STATE.search(name))
    return OriginalCheckpoint(prefix, config, masked_lm, next_sentence, unknown, len(training_state))


def assign_from_checkpoint(checkpoint: OriginalCheckpoint, backbone, pretrainer=None,
                           on_variable: Callable[[str], None] | None = None) -> int:
    """Assigns an inspected checkpoint's weights to a built backbone (and pretrainer heads).

    Args:
        checkpoint: From :func:`inspect_checkpoint`.
        backbone: A ``BertBackbone`` of ``checkpoint.config``'s shape.
        pretrainer: A :class:`BertPretrainer` around ``backbone`` to receive the heads the
            checkpoint has; heads it lacks keep their initial values.
        on_variable: Called with each original name once assigned (progress).

    Returns:
        The number of scalars loaded.
    """
    variables = keras_variables(backbone, pretrainer)
    reader = _reader(checkpoint.prefix)
    scalars = 0
    for mapping in checkpoint.mappings:
        if mapping.part != ENCODER and pretrainer is None:
            continue
        variable = _ours(variables, mapping)
        value = mapping.to_ours(reader.get_tensor(mapping.original), tuple(variable.shape))
        variable.assign(value.astype(variable.dtype, copy=False))
        scalars += value.size
        if on_variable is not None:
            on_variable(mapping.original)
    return scalars


def original_weights(config: BertConfig, backbone, pretrainer=None) -> dict[str, np.ndarray]:
    """Our weights under the original names and in the original layouts (float32 arrays).

    With ``pretrainer`` the MLM head, and the NSP head when it has one, come too.
    """
    variables = keras_variables(backbone, pretrainer)
    parts = {ENCODER}
    if pretrainer is not None:
        parts.add(MASKED_LM)
        if pretrainer.next_sentence_head is not None:
            parts.add(NEXT_SENTENCE)
    weights = {}
    for mapping in variable_mappings(config):
        if mapping.part in parts:
            value = np.asarray(_ours(variables, mapping).numpy(), dtype=np.float32)
            weights[mapping.original] = mapping.to_original(value)
    return weights


def write_checkpoint(weights: dict[str, np.ndarray], prefix: str | Path) -> None:
    """Writes a TF1-style checkpoint (``prefix.index`` + ``prefix.data-00000-of-00001``).

    The ``SaveV2`` op stores each tensor under exactly the given name, as
    ``tf.compat.v1.train.Saver`` did for the original code, so
    ``tf.train.load_checkpoint``, ``tf.compat.v1.train.init_from_checkpoint``
    and the original's ``get_assignment_map_from_checkpoint`` all read it.
    (``tf.train.Checkpoint`` would instead name variables by object path.)
    """
    names = sorted(weights)
    with tf.device("/cpu:0"):
        tf.raw_ops.SaveV2(
            prefix=str(prefix),
            tensor_names=names,
            shape_and_slices=[""] * len(names),
            tensors=[tf.constant(weights[name]) for name in names],
        )


def _ours(variables: dict, mapping: VariableMapping):
    try:
        return variables[mapping.ours]
    except KeyError:
        # Only a keras-hub release that renamed its layers gets here.
        raise RuntimeError(f"no Keras variable {mapping.ours!r} for {mapping.original}; "
                           f"the model has {sorted(variables)[:5]}...") from None
