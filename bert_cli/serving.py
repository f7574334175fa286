"""SavedModel modules that serve raw text: tokenization in the TensorFlow graph, then the model.

:func:`build_serving` makes the ``tf.Module`` of a model directory; its
``signatures()`` are what ``bert export`` saves and what ``bert predict``
calls (in process, or through ``tf.saved_model.load``), so both give the same
answers. Only TensorFlow and tensorflow-text ops (no ``tf.py_function``): an
export loads with ``import tensorflow, tensorflow_text`` and nothing else.

Every model has the encoder's signatures, so any export is a feature
extractor (TF Hub BERT names; B = batch, T = sequence length, H = hidden, K = layers):
``preprocess(text)`` and ``preprocess_pair(text, text_pair)`` -> ``input_word_ids``,
``input_mask``, ``input_type_ids`` int32 [B, max_seq_length];
``encode(input_word_ids, input_mask, input_type_ids)`` -> ``pooled_output`` [B, H],
``sequence_output`` [B, T, H] (and ``encoder_outputs`` [B, K, T, H] with all layers).
A fine-tuned model adds ``serving_default``, built by its task module's
``Serving`` (:mod:`bert_cli.tasks`) from the graph helpers here; its in-graph
preprocessing gives exactly the ids fine-tuning trained on (tests check each
task's against the Python featurisation), padded only to the batch's longest input.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tensorflow as tf
import tensorflow_text  # noqa: F401  (the tokenizer's ops; an export needs them registered to load)

from bert_cli.errors import UserError

DEFAULT_MAX_SEQ_LENGTH = 128


@dataclasses.dataclass(frozen=True)
class ServingOptions:
    """What an export may change about the model it serves.

    Args:
        max_seq_length: Longest input in word pieces, [CLS]/[SEP] included;
            None for the model's own (``task.json``), else 128.
        batch_size: A fixed batch dimension for every signature; None for any batch size.
        all_layers: ``encode`` also returns every layer's output.
    """

    max_seq_length: int | None = None
    batch_size: int | None = None
    all_layers: bool = False


# ----------------------------------------------------------------------------
# Pure graph helpers (shared by the modules, tested on their own)
# ----------------------------------------------------------------------------


def truncated_pair_lengths(length_a: tf.Tensor, length_b: tf.Tensor, max_length: int) -> tuple[tf.Tensor, tf.Tensor]:
    """What ``data.classification.truncate_pair`` keeps of two segments, in closed form.

    The original removes one token at a time from the longer segment (from B on
    a tie) until both fit in ``max_length``. So when one segment is longer by at
    least the excess, only it is cut; otherwise both end up equal, A keeping
    the extra token of an odd total. Works on [B] lengths.
    """
    a = tf.cast(length_a, tf.int64)
    b = tf.cast(length_b, tf.int64)
    total = tf.constant(max_length, tf.int64)
    excess = tf.maximum(a + b - total, 0)
    only_a = a - b >= excess
    only_b = b - a >= excess - 1
    kept_a = tf.where(only_a, a - excess, tf.where(only_b, a, (total + 1) // 2))
    kept_b = tf.where(only_a, b, tf.where(only_b, b - excess, total // 2))
    return kept_a, kept_b


def python_whitespace_class() -> str:
    """An RE2 class of the characters Python's ``str.isspace()`` accepts (all below U+3001)."""
    return "[" + "".join(f"\\x{{{cp:X}}}" for cp in range(0x3001) if chr(cp).isspace()) + "]"


def split_on_whitespace(texts: tf.Tensor) -> tf.RaggedTensor:
    """``[B]`` strings -> ``[B, (W)]`` words exactly as Python's ``str.split()`` makes them.

    Tagging works on words (a CoNLL row holds one); at serving time a text's
    words are its whitespace-separated runs, the same in the graph as in
    ``bert predict``'s Python.
    """
    spaced = tf.strings.regex_replace(texts, python_whitespace_class(), " ")
    return tf.strings.split(spaced)  # splits on ASCII whitespace, drops empty words


def frame(values: tf.Tensor, starts: tf.Tensor, lengths: tf.Tensor, cls_id: int, sep_id: int, pad_id: int) -> dict:
    """``[CLS] values[start:start + length] [SEP]`` per row, padded: the model's inputs.

    Args:
        values: [P] token ids; starts / lengths: [N] the slice of each row.

    Returns ``token_ids``, ``segment_ids`` (zeros), ``padding_mask`` int32 [N, T],
    T = the longest row. Position j of a row is [CLS] (j = 0), piece j - 1 of
    its slice, [SEP] or padding: dense index arithmetic, no ragged ops.
    """
    starts, lengths = tf.cast(starts, tf.int32)[:, tf.newaxis], tf.cast(lengths, tf.int32)[:, tf.newaxis]  # [N, 1]
    width = tf.maximum(tf.reduce_max(lengths), 0) + 2
    j = tf.range(width)[tf.newaxis, :]  # [1, T]
    index = tf.clip_by_value(starts + j - 1, 0, tf.size(values))  # [N, T]
    ids = tf.gather(tf.concat([tf.cast(values, tf.int32), [pad_id]], 0), index)
    ids = tf.where(j == 0, cls_id, tf.where(j <= lengths, ids, tf.where(j == lengths + 1, sep_id, pad_id)))
    mask = tf.cast(j < lengths + 2, tf.int32)
    return {"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": mask}


@tf.function(autograph=False)
def plan_windows(counts: tf.RaggedTensor, capacity: int, context: int) -> tf.Tensor:
    """``data.tagging.plan_windows`` for a batch, in the graph.

    Args:
        counts: ``[B, (W)]`` word pieces per word, each at least 1 and at most ``capacity``.
        capacity / context: As in ``data.tagging.plan_windows``.

    Returns ``[N, 5]`` int32 rows ``(sentence, start, core_start, core_end, end)``
    (word indices within the sentence), sentence by sentence, in order: the
    cores of a sentence's windows tile it, so the cores of all windows in order
    are the words of the batch in order. An empty sentence has one empty window.

    Each of the original's inner loops walks words while a sum of piece counts
    stays within a bound; since every count is at least 1, the running sums
    over the batch's words are strictly increasing, and each walk is one
    ``searchsorted`` over them. Only the chain of windows is a loop.
    """
    splits = tf.cast(counts.row_splits, tf.int32)  # [B + 1] first word of each sentence
    sums = tf.concat([[0], tf.cumsum(tf.cast(counts.flat_values, tf.int32))], 0)  # [W_all + 1] pieces before word i

    def first_at_least(value, side="left"):  # first word index i with sums[i] >= value (> value for "right")
        return tf.searchsorted(sums, tf.reshape(value, [1]), side=side, out_type=tf.int32)[0]

    def window(sentence, core_start):
        """One window of ``sentence`` whose core starts at (global) word ``core_start``."""
        first, stop = splits[sentence], splits[sentence + 1]
        # Left context: as many words before the core as fit in `context` pieces ...
        start = tf.maximum(first, first_at_least(sums[core_start] - context))
        # ... but the first core word must fit.
        start = tf.maximum(start, first_at_least(sums[tf.minimum(core_start + 1, stop)] - capacity))
        # As many words as fit in the window.
        end = tf.minimum(stop, first_at_least(sums[start] + capacity, "right") - 1)
        # Not the sentence's end: leave the last `context` pieces as right context for the words before them.
        core_end = tf.where(end < stop,
                            tf.maximum(core_start + 1, first_at_least(sums[end] - context)), end)
        return tf.stack([sentence, start - first, core_start - first, core_end - first, end - first]), core_end

    def body(sentence, core_start, windows):
        row, core_end = window(sentence, core_start)
        done = core_end >= splits[sentence + 1]  # the sentence is tiled: on to the next one
        return (tf.where(done, sentence + 1, sentence), tf.where(done, splits[tf.minimum(sentence + 1, tf.shape(
            splits)[0] - 1)], core_end), windows.write(windows.size(), row))

    windows = tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[5])
    _, _, windows = tf.while_loop(lambda sentence, *_: sentence < tf.shape(splits)[0] - 1, body,
                                  (tf.constant(0), splits[0], windows))
    return tf.reshape(windows.stack(), [-1, 5])  # [N, 5]


# ----------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------


class _Untracked:
    """Holds objects without making them dependencies of the tf.Module that holds this (see EncoderServing)."""

    def __init__(self, **values) -> None:
        self.__dict__.update(values)


class EncoderServing(tf.Module):
    """The tokenizer and the encoder: ``preprocess``, ``preprocess_pair`` and ``encode``.

    Every export has these, so any export is a feature extractor; a model
    directory that is not fine-tuned exports only them.

    Args:
        tokenizer: A ``data.tokenization.Tokenizer`` (its ops end up in the signatures that call it).
        encoder: The keras-hub ``BertBackbone`` with its trained weights.
        max_seq_length: Longest input, [CLS] and [SEP] included.
        batch_size: Fixed batch dimension, or None for any.
        all_layers: ``encode`` also returns ``encoder_outputs`` [B, K, T, H].
        assets: Files saved in the export's ``assets/`` (vocabulary, config).
    """

    task = "encoder"

    def __init__(self, tokenizer, encoder, max_seq_length: int, batch_size: int | None = None,
                 all_layers: bool = False, assets: tuple[Path, ...] = ()) -> None:
        super().__init__(name="bert_serving")
        import keras

        # The tokenizer and the Keras models are not tracked; only the weights
        # are. The export needs the ops the signatures capture and the
        # variables, not the tokenizer's other functions (saving would trace
        # them too) nor Keras' object structure (slow to walk, unused at serving).
        self._parts = _Untracked(tokenizer=tokenizer, encoder=encoder)
        self.max_seq_length = int(max_seq_length)
        self.batch_size = batch_size
        self.all_layers = bool(all_layers)
        vocab = tokenizer.vocab
        self.cls_id, self.sep_id, self.pad_id, self.unk_id = vocab.cls_id, vocab.sep_id, vocab.pad_id, vocab.unk_id
        outputs = dict(encoder.output)
        if all_layers:
            outputs["encoder_outputs"] = [layer.output for layer in encoder.transformer_layers]
        # Shares the encoder's layers and weights; only the outputs differ.
        self._parts.encode_model = keras.Model(encoder.input, outputs, name="bert_encode")
        self.model_variables = [variable.value for variable in encoder.weights]
        self.assets = [tf.saved_model.Asset(str(path)) for path in assets]
        # Each signature is a tf.function with a fixed input signature, traced
        # once: by tf.saved_model.save for an export, at the first call in process.
        self.preprocess = self._function(self._preprocess, "text")
        self.preprocess_pair = self._function(self._preprocess, "text", "text_pair")
        ids = [self._ids(name) for name in ("input_word_ids", "input_mask", "input_type_ids")]
        self.encode = tf.function(self._encode, input_signature=ids, autograph=False)

    def _function(self, method, *names: str):
        """``method`` as a tf.function of string tensors ``names`` ([B] each)."""
        return tf.function(method, input_signature=[self._strings(name) for name in names], autograph=False)

    @property
    def tokenizer(self):
        return self._parts.tokenizer

    @property
    def encoder(self):
        return self._parts.encoder

    @property
    def model(self):
        """The task's Keras model (the encoder for a feature extractor)."""
        return getattr(self._parts, "model", self._parts.encoder)

    def _set_model(self, model) -> None:
        self._parts.model = model
        self.model_variables = [variable.value for variable in model.weights]

    # -- specs ---------------------------------------------------------------

    def _strings(self, name: str) -> tf.TensorSpec:
        return tf.TensorSpec([self.batch_size], tf.string, name=name)

    def _ids(self, name: str) -> tf.TensorSpec:
        return tf.TensorSpec([self.batch_size, None], tf.int32, name=name)

    # -- building blocks -----------------------------------------------------

    def pack(self, text: tf.Tensor, text_pair: tf.Tensor | None = None, length: int | None = None) -> dict:
        """``[CLS] A [SEP] (B [SEP])`` as ``data.classification.pack`` builds it, padded: the model's inputs.

        Returns ``token_ids``, ``segment_ids``, ``padding_mask`` int32 [B, T], T =
        ``length``, or the longest packed row. Built with dense index arithmetic
        (position j of a row is [CLS], a piece of A, [SEP], a piece of B or
        padding) rather than ragged concatenation: fewer ops, faster to trace and to run.
        """
        a = self.tokenizer.tokenize(text)  # [B, (pieces)] int64
        if text_pair is None:
            kept_a = tf.minimum(a.row_lengths(), self.max_seq_length - 2)  # [B]
            b, kept_b, separators = None, tf.zeros_like(kept_a), 2
        else:
            b = self.tokenizer.tokenize(text_pair)  # [B, (pieces)]
            kept_a, kept_b = truncated_pair_lengths(a.row_lengths(), b.row_lengths(), self.max_seq_length - 3)
            separators = 3
        total = kept_a + kept_b + separators  # [B] packed length
        width = tf.maximum(tf.reduce_max(total), 2) if length is None else length  # 2: an empty batch
        j = tf.range(tf.cast(width, tf.int64))[tf.newaxis, :]  # [1, T] positions
        kept_a, kept_b, total = kept_a[:, tf.newaxis], kept_b[:, tf.newaxis], total[:, tf.newaxis]  # [B, 1]

        def pieces(ragged, offset):  # piece j - offset of each row, where it exists: [B, T]
            dense = ragged.to_tensor()  # [B, longest]
            index = tf.clip_by_value(j - offset, 0, tf.maximum(tf.shape(dense, out_type=tf.int64)[1] - 1, 0))
            return tf.gather(tf.pad(dense, [[0, 0], [0, 1]]), index + tf.zeros_like(kept_a), batch_dims=1)

        in_a = (j >= 1) & (j <= kept_a)
        in_b = (j >= kept_a + 2) & (j < total - 1)
        separator = (j == kept_a + 1) | ((j == total - 1) & (b is not None))
        ids = tf.fill(tf.shape(in_a), tf.constant(self.pad_id, tf.int64))
        ids = tf.where(j == 0, tf.constant(self.cls_id, tf.int64), ids)
        ids = tf.where(in_a, pieces(a, 1), ids)
        ids = tf.where(separator, tf.constant(self.sep_id, tf.int64), ids)
        if b is not None:
            ids = tf.where(in_b, pieces(b, kept_a + 2), ids)
        return {
            "token_ids": tf.cast(ids, tf.int32),
            "segment_ids": tf.cast(in_b | ((j == total - 1) & (b is not None)), tf.int32),
            "padding_mask": tf.cast(j < total, tf.int32),
        }

    # -- signatures ------------------------------------------------------------

    def _preprocess(self, text, text_pair=None):
        """Strings (and optional second segments) -> the encoder's inputs, padded to ``max_seq_length``."""
        inputs = self.pack(text, text_pair, length=self.max_seq_length)
        return {"input_word_ids": inputs["token_ids"], "input_mask": inputs["padding_mask"],
                "input_type_ids": inputs["segment_ids"]}

    def _encode(self, input_word_ids, input_mask, input_type_ids):
        """Encoder inputs -> pooled [B, H] and sequence [B, T, H] outputs (and every layer's)."""
        outputs = self._parts.encode_model(
            {"token_ids": input_word_ids, "segment_ids": input_type_ids, "padding_mask": input_mask},
            training=False)
        result = {"pooled_output": outputs["pooled_output"], "sequence_output": outputs["sequence_output"]}
        if self.all_layers:
            result["encoder_outputs"] = tf.stack(outputs["encoder_outputs"], axis=1)  # K x [B, T, H] -> [B, K, T, H]
        return result

    def signatures(self) -> dict:
        """Signature name -> tf.function, as ``tf.saved_model.save`` wants them."""
        return {"preprocess": self.preprocess, "preprocess_pair": self.preprocess_pair, "encode": self.encode}

    def describe(self) -> dict:
        """What ``bert_export.json`` records about the task (beyond the signatures)."""
        return {"task": self.task}


class TaskServing(EncoderServing):
    """A fine-tuned model: the encoder's signatures plus ``serving_default``, whose graph is the task's.

    The task module's ``Serving`` (see :mod:`bert_cli.tasks`) builds the
    signature's graph from this module's tokenizer, ``pack`` and model; it is
    held untracked like the Keras objects, so only the weights are saved.

    Args:
        model: The fine-tuned keras model (it has a ``backbone``).
        serving: The task module's ``Serving`` class.
        task: The model's ``task.json``.
    """

    def __init__(self, tokenizer, model, serving, task: dict, **options) -> None:
        super().__init__(tokenizer, model.backbone, **options)
        self._set_model(model)
        self._parts.graph = serving(self, task)
        self.task = task["task"]
        self.serving_default = self._function(self._parts.graph.serve, *self._parts.graph.inputs)

    @property
    def graph(self):
        """The task's signature graph (its helpers, such as ``windows``, are tested on their own)."""
        return self._parts.graph

    def signatures(self) -> dict:
        return {**super().signatures(), "serving_default": self.serving_default}

    def describe(self) -> dict:
        return self._parts.graph.describe()


# ----------------------------------------------------------------------------
# From a model directory
# ----------------------------------------------------------------------------


def resolve_max_seq_length(model_dir, max_seq_length: int | None) -> int:
    """The export's sequence length: the option, else the model's ``task.json``, else 128; checked against
    the config."""
    from bert_cli.tasks import TASKS

    config = model_dir.config
    if max_seq_length is None:
        max_seq_length = int(model_dir.task.get("max_seq_length") or DEFAULT_MAX_SEQ_LENGTH)
        max_seq_length = min(max_seq_length, config.max_position_embeddings)
    module = TASKS.get(model_dir.kind)
    least = module.min_seq_length(model_dir.task) if module else 3
    if max_seq_length < least:
        raise UserError(f"--max-seq-length {max_seq_length} leaves no room for text; use at least {least}")
    if max_seq_length > config.max_position_embeddings:
        raise UserError(f"--max-seq-length {max_seq_length} is more than the model's max_position_embeddings "
                        f"{config.max_position_embeddings}")
    return max_seq_length


def load_task_model(model_dir):
    """The directory's fine-tuned keras model (``model.weights.h5``), or None for an encoder-only directory."""
    from bert_cli.tasks import TASKS

    module = TASKS.get(model_dir.kind)
    if module is None:
        return None
    if not model_dir.model_weights.is_file():
        raise UserError(f"{model_dir.path}: task.json says {model_dir.kind!r} but there is no "
                        f"{model_dir.model_weights.name}; the fine-tuning run did not finish "
                        "(rerun bert finetune to complete it)")
    model = module.build_model(model_dir)
    try:
        model.load_weights(str(model_dir.model_weights))
    except (ValueError, OSError) as error:
        raise UserError(f"{model_dir.model_weights}: does not fit the directory's bert_config.json and task.json "
                        f"({error})") from None
    return model


def build_serving(model_dir, options: ServingOptions = ServingOptions()) -> EncoderServing:
    """The serving module of a model directory (``bert_cli.model_dir.read_model_dir``): its task's, or the encoder's."""
    from bert_cli.model_dir import CONFIG_FILE, load_encoder
    from bert_cli.tasks import TASKS
    from data.tokenization import Tokenizer, Vocabulary, resolve_lowercase

    vocab = Vocabulary.load(model_dir.vocab_path)
    if len(vocab) != model_dir.config.vocab_size:
        raise UserError(f"{model_dir.vocab_path}: {len(vocab)} tokens but the model's vocab_size is "
                        f"{model_dir.config.vocab_size}; the directory's vocabulary and config do not match")
    tokenizer = Tokenizer(vocab, resolve_lowercase(vocab, model_dir.lowercase))
    common = dict(
        max_seq_length=resolve_max_seq_length(model_dir, options.max_seq_length),
        batch_size=options.batch_size,
        all_layers=options.all_layers,
        assets=tuple(p for p in (model_dir.vocab_path, model_dir.path / CONFIG_FILE) if p.is_file()),
    )
    model = load_task_model(model_dir)
    if model is None:
        return EncoderServing(tokenizer, load_encoder(model_dir), **common)
    return TaskServing(tokenizer, model, TASKS[model_dir.kind].Serving, model_dir.task, **common)
