"""Hugging Face Transformers BERT checkpoints (safetensors) <-> this project's models.

A Transformers BERT directory holds ``config.json`` (``model_type`` "bert"),
the weights as ``model.safetensors`` (or shards named by
``model.safetensors.index.json``), ``vocab.txt`` and the tokenizer's files.
This module is the table that says which Transformers tensor is which Keras
variable, the config translation, and the reading and writing of safetensors
files through the ``safetensors`` library (its format: a JSON header of names,
dtypes, shapes and offsets, then the raw bytes; nothing in it can run code,
unlike the pickles of ``pytorch_model.bin``, which are never opened).

Why not keras-hub's own Transformers converter (``BertBackbone.from_preset``
on a local directory): it converts the backbone only (no MLM or NSP head, so
no continued pre-training), always builds the tanh GELU although
Transformers' ``hidden_act: "gelu"`` is the exact erf GELU (logits then differ
by ~1e-3), ignores ``type_vocab_size``, and checks no shapes against
``config.json``. The names below are the same facts, with those checks.

Shape legend: H = hidden size, N = heads, D = H / N, I = intermediate size,
V = vocabulary size, P = max positions, S = segment types, L = labels.

Layouts: PyTorch's ``Linear.weight`` is ``[out, in]``; a Keras Dense kernel
is ``[in, out]``, and keras' attention keeps heads as an axis (query kernel
``[H, N, D]``, output kernel ``[N, D, H]``). So a Transformers linear weight
becomes ``weight.T`` reshaped to our shape; every other tensor (embeddings,
LayerNorm, biases) is a reshape. The MLM decoder is tied to the word
embeddings in both, so only ``cls.predictions.bias`` maps.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from models.config import BertConfig
from models.errors import ModelError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

ENCODER = "encoder"
POOLER = "pooler"
MASKED_LM = "masked_lm"
NEXT_SENTENCE = "next_sentence"

#: Transformers' ``hidden_act`` -> ours. Transformers' "gelu" is exact (erf); the
#: original BERT's, and so our "gelu", is the tanh approximation ("gelu_new" there).
ACTIVATIONS_IN = {"gelu": "gelu_exact", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "relu": "relu",
                  "silu": "silu", "swish": "silu", "tanh": "tanh"}
ACTIVATIONS_OUT = {"gelu": "gelu_new", "gelu_new": "gelu_new", "gelu_exact": "gelu", "relu": "relu",
                   "silu": "silu", "swish": "silu", "tanh": "tanh"}

# Tensors Transformers files carry that are no weights of ours: the position-ids
# buffer of older files, and the tied decoder (equal to the word embeddings and
# cls.predictions.bias) that some writers store anyway.
_IGNORED = ("embeddings.position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias")
# Fine-tuned heads of the BertFor... classes: [L, H] weight + [L] bias.
TASK_HEADS = ("classifier", "qa_outputs")
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


@dataclasses.dataclass(frozen=True)
class TensorMapping:
    """One Transformers tensor and the Keras variable it becomes.

    Args:
        name: Without the ``bert.`` prefix, e.g. ``encoder.layer.0.intermediate.dense.weight``.
            LayerNorm tensors carry the current names (``weight``/``bias``); old files'
            ``gamma``/``beta`` are found by :func:`alternatives`.
        ours: Keras variable path relative to its owning layer (as in ``models.checkpoints``).
        shape: The Transformers shape.
        part: ``encoder``, ``pooler``, ``masked_lm`` or ``next_sentence``.
        linear: A PyTorch ``Linear.weight``, stored ``[out, in]``.
    """

    name: str
    ours: str
    shape: tuple[int, ...]
    part: str
    linear: bool = False

    def to_ours(self, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return (array.T if self.linear else array).reshape(shape)

    def to_hf(self, array: np.ndarray) -> np.ndarray:
        # Linear: ours [in, ...] -> [in, out] -> [out, in].
        return np.ascontiguousarray(array.reshape(self.shape[::-1]).T if self.linear else array.reshape(self.shape))


def linear_mappings(name: str, ours: str, fan_in: int, fan_out: int, part: str) -> list[TensorMapping]:
    """A PyTorch ``Linear`` (weight ``[out, in]``, bias) and the Keras Dense (kernel, bias) it becomes."""
    return [TensorMapping(f"{name}.weight", f"{ours}/kernel", (fan_out, fan_in), part, linear=True),
            TensorMapping(f"{name}.bias", f"{ours}/bias", (fan_out,), part)]


def layer_norm_mappings(name: str, ours: str, width: int, part: str) -> list[TensorMapping]:
    return [TensorMapping(f"{name}.weight", f"{ours}/gamma", (width,), part),
            TensorMapping(f"{name}.bias", f"{ours}/beta", (width,), part)]


def embedding_mappings(config: BertConfig, width: int, part: str = ENCODER) -> list[TensorMapping]:
    """Word, position and segment tables ``[V|P|S, width]`` and their LayerNorm (``embeddings.*``)."""
    return [
        TensorMapping("embeddings.word_embeddings.weight", "token_embedding/embeddings", (config.vocab_size, width),
                      part),
        TensorMapping("embeddings.position_embeddings.weight", "position_embedding/embeddings",
                      (config.max_position_embeddings, width), part),
        TensorMapping("embeddings.token_type_embeddings.weight", "segment_embedding/embeddings",
                      (config.type_vocab_size, width), part),
        *layer_norm_mappings("embeddings.LayerNorm", "embeddings_layer_norm", width, part),
    ]


def layer_mappings(config: BertConfig, ours_prefix: str = "", part: str = ENCODER) -> list[TensorMapping]:
    """The ``encoder.layer.N.*`` tensors of ``config``'s layers; ours under ``{ours_prefix}transformer_layer_N``."""
    H, I = config.hidden_size, config.intermediate_size  # noqa: E741  (I: intermediate size)
    table: list[TensorMapping] = []
    for index in range(config.num_hidden_layers):
        name, ours = f"encoder.layer.{index}", f"{ours_prefix}transformer_layer_{index}"
        for projection in ("query", "key", "value"):
            # [H_out, H_in] -> [H_in, N, D]
            table += linear_mappings(f"{name}.attention.self.{projection}",
                                     f"{ours}/self_attention_layer/{projection}", H, H, part)
        # [H_out, H_in] -> [N, D, H_out]
        table += linear_mappings(f"{name}.attention.output.dense", f"{ours}/self_attention_layer/attention_output",
                                 H, H, part)
        table += layer_norm_mappings(f"{name}.attention.output.LayerNorm", f"{ours}/self_attention_layer_norm", H,
                                     part)
        table += linear_mappings(f"{name}.intermediate.dense", f"{ours}/feedforward_intermediate_dense", H, I, part)
        table += linear_mappings(f"{name}.output.dense", f"{ours}/feedforward_output_dense", I, H, part)
        table += layer_norm_mappings(f"{name}.output.LayerNorm", f"{ours}/feedforward_layer_norm", H, part)
    return table


def tensor_mappings(config: BertConfig) -> list[TensorMapping]:
    """Every tensor of a ``BertForPreTraining`` file of ``config``'s shape (without the ``bert.`` prefix)."""
    if config.projects_embeddings:
        raise ModelError(f"config: embedding_size {config.embedding_size} differs from hidden_size "
                         f"{config.hidden_size}; Transformers' BERT layout has no embedding projection")
    H = config.hidden_size
    return [
        *embedding_mappings(config, H),
        *layer_mappings(config),
        *linear_mappings("pooler.dense", "pooled_dense", H, H, POOLER),
        *linear_mappings("cls.predictions.transform.dense", "masked_lm_head/intermediate_dense", H, H, MASKED_LM),
        *layer_norm_mappings("cls.predictions.transform.LayerNorm", "masked_lm_head/intermediate_layer_norm", H,
                             MASKED_LM),
        TensorMapping("cls.predictions.bias", "masked_lm_head/output_bias", (config.vocab_size,), MASKED_LM),
        # [2, H] -> a Dense kernel [H, 2]
        *linear_mappings("cls.seq_relationship", "next_sentence_head", H, 2, NEXT_SENTENCE),
    ]


def hf_name(mapping: TensorMapping, prefix: str, heads: tuple[str, ...] = ("cls.",)) -> str:
    """The file's name of a mapped tensor: the heads (``cls.*``) never carry the ``bert.`` prefix."""
    return mapping.name if mapping.name.startswith(heads) else prefix + mapping.name


def alternatives(name: str) -> tuple[str, ...]:
    """A tensor's current name and, for LayerNorm, the old ``gamma``/``beta`` one."""
    if ".LayerNorm." in name:
        old = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        return (name, old)
    return (name,)


# ----------------------------------------------------------------------------
# config.json
# ----------------------------------------------------------------------------


def config_from_hf(values: dict, source: str) -> tuple[BertConfig, list[str]]:
    """Our config from a Transformers BERT ``config.json``, and notes on what was adapted.

    Raises:
        ModelError: Not ``model_type`` "bert", or what :func:`encoder_config_from_hf` refuses.
    """
    model_type = values.get("model_type")
    if model_type != "bert":
        found = f"model_type {model_type!r}" if model_type else "no model_type"
        raise ModelError(f"{source}: has {found}, not \"bert\" or \"electra\"; bert convert reads Hugging Face "
                         "BERT checkpoints (BertModel, BertForPreTraining, BertForMaskedLM and the fine-tuned "
                         "BertFor... classes) and ELECTRA ones (ElectraModel, ElectraForPreTraining)")
    return encoder_config_from_hf(values, source)


def encoder_config_from_hf(values: dict, source: str, embedding_size: int | None = None,
                           ) -> tuple[BertConfig, list[str]]:
    """Our config from a Transformers ``config.json`` of the BERT family (BERT, ELECTRA), and notes.

    Args:
        values: The ``config.json`` object.
        source: How to name it in errors.
        embedding_size: The embeddings' width when it differs from ``hidden_size`` (ELECTRA).

    Raises:
        ModelError: A missing or invalid size, an activation, LayerNorm epsilon, position
            embedding type or decoder setting our encoder cannot reproduce exactly (named,
            with the value).
    """
    activation = values.get("hidden_act", "gelu")
    if activation not in ACTIVATIONS_IN:
        raise ModelError(f"{source}: hidden_act {activation!r} is not supported; the encoder reproduces "
                         f"{', '.join(sorted(ACTIVATIONS_IN))}")
    epsilon = values.get("layer_norm_eps", 1e-12)
    if not isinstance(epsilon, (int, float)) or abs(epsilon - 1e-12) > 1e-15:
        raise ModelError(f"{source}: layer_norm_eps {epsilon!r} is not supported; the encoder uses BERT's 1e-12")
    if values.get("position_embedding_type", "absolute") != "absolute":
        raise ModelError(f"{source}: position_embedding_type {values['position_embedding_type']!r} is not "
                         "supported; the encoder has BERT's learned absolute positions")
    if values.get("tie_word_embeddings") is False:
        raise ModelError(f"{source}: tie_word_embeddings is false; BERT's (and ELECTRA's generator's) MLM decoder "
                         "is the word-embedding matrix")
    if values.get("is_decoder") or values.get("add_cross_attention"):
        raise ModelError(f"{source}: is a decoder (is_decoder / add_cross_attention); the encoder is BERT's")
    notes = []
    hidden_dropout = values.get("hidden_dropout_prob", 0.1)
    attention_dropout = values.get("attention_probs_dropout_prob", hidden_dropout)
    if attention_dropout != hidden_dropout:
        notes.append(f"attention_probs_dropout_prob {attention_dropout} differs from hidden_dropout_prob "
                     f"{hidden_dropout}; the encoder uses one rate, {hidden_dropout} (only training is affected)")
    fields = {"vocab_size": None, "hidden_size": None, "num_hidden_layers": None, "num_attention_heads": None,
              "intermediate_size": None, "max_position_embeddings": 512, "type_vocab_size": 2,
              "initializer_range": 0.02}
    missing = [name for name, default in fields.items() if default is None and name not in values]
    if missing:
        raise ModelError(f"{source}: has no {', '.join(missing)}; is it a Transformers config.json?")
    chosen = {name: values.get(name, default) for name, default in fields.items()}
    try:
        config = BertConfig(**chosen, hidden_act=ACTIVATIONS_IN[activation], hidden_dropout_prob=hidden_dropout,
                            attention_probs_dropout_prob=hidden_dropout, embedding_size=embedding_size)
    except ModelError as error:
        raise ModelError(str(error).replace("config:", f"{source}:", 1)) from None
    return config, notes


def config_to_hf(config: BertConfig, architecture: str, pad_token_id: int, extra: dict | None = None,
                 model_type: str = "bert") -> dict:
    """A Transformers ``config.json`` for ``config`` as ``architecture`` (e.g. "BertForPreTraining")."""
    return {
        "architectures": [architecture],
        "model_type": model_type,
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_act": ACTIVATIONS_OUT[config.hidden_act],
        "hidden_dropout_prob": config.hidden_dropout_prob,
        "attention_probs_dropout_prob": config.attention_probs_dropout_prob,
        "max_position_embeddings": config.max_position_embeddings,
        "type_vocab_size": config.type_vocab_size,
        "initializer_range": config.initializer_range,
        "layer_norm_eps": 1e-12,
        "position_embedding_type": "absolute",
        "pad_token_id": pad_token_id,
        "classifier_dropout": None,
        "torch_dtype": "float32",
        **(extra or {}),
    }


# ----------------------------------------------------------------------------
# safetensors files
# ----------------------------------------------------------------------------


class SafetensorsFiles:
    """The tensors of a directory's ``model.safetensors``, or of the shards its index names.

    Only headers are read on opening (names, dtypes, shapes, checked offsets);
    values are read per tensor by :meth:`get`, upcast to float32.

    Raises:
        ModelError: No safetensors file; an index that is not JSON, names a shard that
            is missing, or names a tensor its shard lacks; a file that is not safetensors.
    """

    def __init__(self, directory: str | Path):
        import safetensors

        self._open = safetensors.safe_open
        self._error = safetensors.SafetensorError
        self.directory = Path(directory)
        self._handles: dict[Path, object] = {}
        self.files: dict[str, Path] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, str] = {}
        index = self.directory / INDEX_FILE
        if index.is_file():
            self._read_index(index)
        elif (self.directory / WEIGHTS_FILE).is_file():
            self._read_header(self.directory / WEIGHTS_FILE)
        else:
            raise ModelError(f"{self.directory}: has no {WEIGHTS_FILE} or {INDEX_FILE}")

    def _read_index(self, index: Path) -> None:
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError("weight_map is not an object")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise ModelError(f"{index}: not a safetensors index ({error})") from None
        for shard in sorted(set(weight_map.values())):
            if not (self.directory / shard).is_file():
                raise ModelError(f"{index}: names the shard {shard}, which is not in {self.directory}; "
                                 "fetch every shard the index lists")
            self._read_header(self.directory / shard)
        for name, shard in weight_map.items():
            if self.files.get(name) != self.directory / shard:
                raise ModelError(f"{index}: puts {name} in {shard}, which does not hold it")

    def _handle(self, path: Path):
        if path not in self._handles:
            try:
                self._handles[path] = self._open(str(path), framework="numpy")
            except (self._error, OSError, ValueError) as error:
                raise ModelError(f"{path}: not a readable safetensors file ({error})") from None
        return self._handles[path]

    def _read_header(self, path: Path) -> None:
        handle = self._handle(path)
        for name in handle.keys():
            part = handle.get_slice(name)
            self.files[name] = path
            self.shapes[name] = tuple(int(n) for n in part.get_shape())
            self.dtypes[name] = str(part.get_dtype())

    def get(self, name: str) -> np.ndarray:
        """A tensor's values as float32 (bf16 / fp16 upcast)."""
        try:
            value = self._handle(self.files[name]).get_tensor(name)
        except (self._error, OSError, ValueError) as error:
            raise ModelError(f"{self.files[name]}: cannot read {name} ({error})") from None
        return np.asarray(value, dtype=np.float32)


def write_safetensors(tensors: dict[str, np.ndarray], path: str | Path) -> None:
    """Writes ``model.safetensors`` as Transformers does (metadata ``format: pt``, which it requires)."""
    import safetensors.numpy

    safetensors.numpy.save_file({name: np.ascontiguousarray(value) for name, value in tensors.items()}, str(path),
                                metadata={"format": "pt"})


# ----------------------------------------------------------------------------
# Checking a checkpoint against its config, reading and writing our weights
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HFCheckpoint:
    """A Transformers BERT checkpoint checked against its config (no weights read).

    Attributes:
        files: Its safetensors files.
        config: Our config of it.
        prefix: ``"bert."`` (BertForPreTraining and the task classes) or ``""`` (BertModel).
        found: Mapped name (:class:`TensorMapping` ``.name``) -> the name in the file.
        parts: ``encoder`` and those of ``pooler``, ``masked_lm``, ``next_sentence`` it holds.
        heads: Fine-tuned heads it holds (``classifier``, ``qa_outputs``) -> their [L, H] shape.
        unknown: Tensors that are none of these (listed in a warning).
    """

    files: SafetensorsFiles
    config: BertConfig
    prefix: str
    found: dict
    parts: frozenset
    heads: dict
    unknown: tuple[str, ...]

    @property
    def mappings(self) -> list[TensorMapping]:
        return [m for m in tensor_mappings(self.config) if m.part in self.parts]

    @property
    def dtypes(self) -> list[str]:
        return sorted({self.files.dtypes[self.found[m.name]] for m in self.mappings})


def inspect_hf(files: SafetensorsFiles, config: BertConfig, source: str) -> HFCheckpoint:
    """Checks names, shapes and dtypes of a Transformers BERT checkpoint against ``config``.

    Raises:
        ModelError: Encoder tensors missing (listed), half a head, a shape that disagrees
            with ``config.json`` (the tensor named) or a tensor that is not floating point.
    """
    shapes = files.shapes
    if "bert.embeddings.word_embeddings.weight" in shapes:
        prefix = "bert."
    elif "embeddings.word_embeddings.weight" in shapes:
        prefix = ""
    else:
        raise ModelError(f"{source}: has no bert.embeddings.word_embeddings.weight; is it a BERT checkpoint?")
    table = tensor_mappings(config)
    found = found_names(table, shapes, prefix)
    parts = _present_parts(table, found, config, source)
    check_shapes([m for m in table if m.part in parts], found, files, config, source)
    heads = _task_heads(shapes, config, source)
    known = {found[m.name] for m in table if m.part in parts}
    known |= {f"{head}.{kind}" for head in heads for kind in ("weight", "bias")}
    ignored = {prefix + name if name.startswith("embeddings.") else name for name in _IGNORED}
    unknown = tuple(sorted(set(shapes) - known - ignored))
    return HFCheckpoint(files, config, prefix, found, frozenset(parts), heads, unknown)


def found_names(table, shapes: dict, prefix: str, heads: tuple[str, ...] = ("cls.",)) -> dict[str, str]:
    """Mapped name -> the name a file holds it under (prefixed or not, current or old LayerNorm names)."""
    found = {}
    for mapping in table:
        name = next((n for n in alternatives(hf_name(mapping, prefix, heads)) if n in shapes), None)
        if name is not None:
            found[mapping.name] = name
    return found


def _present_parts(table, found, config, source) -> set[str]:
    parts = present_parts(table, found, {ENCODER}, (POOLER, MASKED_LM, NEXT_SENTENCE), source)
    if NEXT_SENTENCE in parts and MASKED_LM not in parts:
        parts.discard(NEXT_SENTENCE)  # our pre-training model has no NSP-only form
    return parts


def present_parts(table, found, required: set[str], optional: tuple[str, ...], source: str,
                  shown=lambda mapping: mapping.name) -> set[str]:
    """The parts a checkpoint holds: every ``required`` one and the ``optional`` ones it has whole.

    Raises:
        ModelError: A tensor of a required part is missing, or an optional part is only
            partly there (a damaged file): the missing tensors are listed (as ``shown`` names them).
    """
    parts = set(required)
    missing = [shown(m) for m in table if m.part in required and m.name not in found]
    for part in optional:
        present = [m for m in table if m.part == part and m.name in found]
        expected = [m for m in table if m.part == part]
        if present and len(present) < len(expected):
            missing += [shown(m) for m in expected if m.name not in found]  # half a head: damaged
        elif present:
            parts.add(part)
    if missing:
        names = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise ModelError(f"{source}: missing {len(missing)} tensor(s) that config.json calls for: {names}")
    return parts


def check_shapes(mappings, found, files, config, source) -> None:
    """Refuses a tensor whose shape is not the one ``config.json`` implies, or that is not floating point."""
    for mapping in mappings:
        name = found[mapping.name]
        shape = files.shapes[name]
        if shape != mapping.shape:
            hint = ""
            if mapping.part in (ENCODER, MASKED_LM) and mapping.shape[0] == config.vocab_size and shape:
                hint = f" (vocab_size is {config.vocab_size:,}; the tensor has {shape[0]:,} rows)"
            raise ModelError(f"{source}: {name} is {list(shape)}, config.json needs {list(mapping.shape)}{hint}")
        if files.dtypes[name] not in _FLOAT_DTYPES:
            raise ModelError(f"{source}: {name} is {files.dtypes[name]}, not a floating-point tensor")


def _task_heads(shapes, config, source) -> dict:
    heads = {}
    for head in TASK_HEADS:
        weight, bias = shapes.get(f"{head}.weight"), shapes.get(f"{head}.bias")
        if weight is None and bias is None:
            continue
        if weight is None or bias is None or len(weight) != 2 or weight[1] != config.hidden_size \
                or bias != (weight[0],):
            raise ModelError(f"{source}: the {head} head is {list(weight or ())} + {list(bias or ())}, expected "
                             f"[labels, {config.hidden_size}] + [labels]")
        heads[head] = weight
    return heads


def assign_from_hf(checkpoint: HFCheckpoint, variables: dict, on_variable=None) -> int:
    """Assigns a checkpoint's tensors to our variables (from ``models.pretraining.keras_variables``).

    Parts the checkpoint lacks (a BertModel's heads, a BertForMaskedLM's pooler) keep
    their initial values. Returns the number of scalars loaded.
    """
    scalars = 0
    for mapping in checkpoint.mappings:
        variable = variables.get(mapping.ours)
        if variable is None:
            continue  # a head that was not built: the caller asked for the encoder only
        value = mapping.to_ours(checkpoint.files.get(checkpoint.found[mapping.name]), tuple(variable.shape))
        variable.assign(value.astype(variable.dtype, copy=False))
        scalars += value.size
        if on_variable is not None:
            on_variable(mapping.name)
    return scalars


def head_from_hf(checkpoint: HFCheckpoint, head: str, dense) -> None:
    """Assigns a fine-tuned head (``classifier``: [L, H] weight) to our task head's Dense layer ([H, L] kernel)."""
    dense.kernel.assign(checkpoint.files.get(f"{head}.weight").T)
    dense.bias.assign(checkpoint.files.get(f"{head}.bias"))


def hf_weights(config: BertConfig, variables: dict, parts: set[str], prefix: str) -> dict[str, np.ndarray]:
    """Our weights under Transformers names and layouts (float32), for the ``parts`` given."""
    weights = {}
    for mapping in tensor_mappings(config):
        if mapping.part in parts:
            value = np.asarray(variables[mapping.ours].numpy(), dtype=np.float32)
            weights[hf_name(mapping, prefix)] = mapping.to_hf(value)
    return weights
