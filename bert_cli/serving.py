"""SavedModel modules that serve raw text: tokenization in the TensorFlow graph, then the model.

One ``tf.Module`` per kind of model, each built from a model directory by
:func:`build_serving`. The module's ``signatures()`` are what ``bert export``
saves and what ``bert predict`` calls (in process for a model directory,
through ``tf.saved_model.load`` for an export), so both give the same
answers. Every op is a TensorFlow or tensorflow-text op (no ``tf.py_function``):
an export loads with ``import tensorflow, tensorflow_text`` and nothing else.

Signatures (B = batch, T = sequence length, H = hidden size, L = labels,
W = words, N = windows, K = layers):

* every model, so an export is a feature extractor (TF Hub BERT names):
  ``preprocess(text)`` and ``preprocess_pair(text, text_pair)`` -> ``input_word_ids``,
  ``input_mask``, ``input_type_ids`` int32 [B, max_seq_length];
  ``encode(input_word_ids, input_mask, input_type_ids)`` -> ``pooled_output`` [B, H],
  ``sequence_output`` [B, T, H] (and ``encoder_outputs`` [B, K, T, H] with all layers);
* classification: ``serving_default(text[, text_pair])`` -> ``probabilities`` [B, L],
  ``label`` [B] string, ``label_id`` [B]; regression -> ``score`` [B];
* tagging: ``serving_default(text)`` -> ``words`` and ``tags`` [B, W] strings (padded
  with ""), ``num_words`` [B];
* SQuAD: ``serving_default(question, context)`` -> ``answer``, ``start_char``,
  ``end_char``, ``score`` (and ``is_impossible`` for v2 models).

The in-graph preprocessing gives exactly the ids that fine-tuning trained on
(``data.classification.pack`` with its pair truncation, ``data.tagging``'s
words and windows, ``data.squad``'s windows and max-context rule); tests
check each against the Python featurisation.
``serving_default`` pads a batch only to its longest input rather than to
``max_seq_length``: the padding mask makes the outputs the same, and short
requests cost less.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tensorflow as tf
import tensorflow_text  # noqa: F401  (the tokenizer's ops; an export needs them registered to load)

from bert_cli.errors import UserError

FINE_TUNED_TASKS = ("classify", "tag", "squad")
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


class ClassifierServing(EncoderServing):
    """Classification (or regression) of texts or text pairs, as ``bert finetune classify`` trained it.

    Args:
        model: The fine-tuned ``models.heads.BertClassifier``.
        labels: Class names in id order (empty for regression).
        pair: Whether the model reads text pairs.
        regression: One real-valued score instead of class probabilities.
    """

    task = "classify"

    def __init__(self, tokenizer, model, labels, pair: bool, regression: bool,
                 columns: tuple[str | None, str | None] = (None, None), **options) -> None:
        super().__init__(tokenizer, model.backbone, **options)
        self._set_model(model)
        self.labels = list(labels)
        self.pair = bool(pair)
        self.regression = bool(regression)
        self.columns = columns  # the training file's text columns: bert predict reads files that use them
        self._label_names = tf.constant(self.labels or [""], tf.string)
        self.classify = self._function(self._classify, "text", *(["text_pair"] if self.pair else []))

    def _classify(self, text, text_pair=None):
        """Strings (pairs) -> probabilities, label and label id; or score."""
        outputs = self.model(self.pack(text, text_pair), training=False)
        if self.regression:
            return {"score": outputs}  # [B]
        label_id = tf.argmax(outputs, axis=-1, output_type=tf.int32)  # [B, L] -> [B]
        return {"probabilities": tf.nn.softmax(outputs, axis=-1), "label": tf.gather(self._label_names, label_id),
                "label_id": label_id}

    def signatures(self) -> dict:
        return {**super().signatures(), "serving_default": self.classify}

    def describe(self) -> dict:
        return {"task": self.task, "labels": self.labels, "pair": self.pair, "regression": self.regression,
                "text_column": self.columns[0], "text_pair_column": self.columns[1]}


class TaggerServing(EncoderServing):
    """Per-word tags of texts, as ``bert finetune tag`` trained it.

    A text's words are its whitespace-separated runs (:func:`split_on_whitespace`);
    each word is tokenized on its own, its first piece carries its tag, and a
    text longer than one window is cut into the same overlapping windows as in
    training (``data.tagging.plan_windows``), each word predicted in the window
    where it has context on both sides.

    Args:
        model: The fine-tuned ``models.heads.BertTagger``.
        labels: Tag names in id order.
    """

    task = "tag"

    def __init__(self, tokenizer, model, labels, **options) -> None:
        super().__init__(tokenizer, model.backbone, **options)
        self._set_model(model)
        self.labels = list(labels)
        self._tag_names = tf.constant(self.labels, tf.string)
        self.tag = self._function(self._tag, "text")

    def windows(self, text: tf.Tensor) -> dict:
        """The words of ``text`` and the model inputs of their windows (the graph twin of ``data.tagging.featurize``).

        Returns ``words`` [B, (W)]; ``plan`` [N, 5] as :func:`plan_windows`;
        ``inputs``, the windows' padded model inputs [N, T]; and for every word of
        the batch in order (W_all of them) the window that predicts it,
        ``word_window`` [W_all], and the position of its first piece there,
        ``first_pieces`` [W_all]. Flat index arithmetic throughout: the words of a
        window are consecutive, so its pieces are one slice of all the pieces.
        """
        capacity = self.max_seq_length - 2
        words = split_on_whitespace(text)  # [B, (W)]
        pieces = self.tokenizer.tokenize(words.flat_values)  # [W_all, (P)]
        lengths = tf.cast(pieces.row_lengths(), tf.int32)  # [W_all]
        # A word with no pieces (only control characters) becomes [UNK]; a word
        # longer than a window keeps its first `capacity` pieces, as in training.
        counts = tf.clip_by_value(lengths, 1, capacity)  # [W_all]
        sums = tf.concat([[0], tf.cumsum(counts)], 0)  # [W_all + 1]: word w's pieces are sums[w]:sums[w + 1]
        word = tf.repeat(tf.range(tf.size(counts)), counts)  # [pieces] the word of each kept piece
        within = tf.range(sums[-1]) - tf.gather(sums, word)  # [pieces] its index within the word
        values = pieces.flat_values
        source = tf.where(tf.gather(lengths, word) > 0,
                          tf.gather(tf.cast(pieces.row_starts(), tf.int32), word) + within, tf.size(values))
        flat = tf.gather(tf.concat([values, [self.unk_id]], 0), source)  # [pieces] ids, [UNK] for empty words

        plan = plan_windows(words.with_flat_values(counts), capacity, capacity // 4)  # [N, 5]
        offsets = tf.gather(tf.cast(words.row_starts(), tf.int32), plan[:, 0])  # [N] first word of the sentence
        first_piece = tf.gather(sums, offsets + plan[:, 1])  # [N]
        inputs = frame(flat, first_piece, tf.gather(sums, offsets + plan[:, 4]) - first_piece,
                       self.cls_id, self.sep_id, self.pad_id)
        # Cores tile the sentences in order, so the windows' core words in order are every word in order.
        word_window = tf.repeat(tf.range(tf.shape(plan)[0]), plan[:, 3] - plan[:, 2])  # [W_all]
        first_pieces = 1 + sums[:-1] - tf.gather(first_piece, word_window)  # [W_all] after [CLS]
        return {"words": words, "plan": plan, "inputs": inputs, "word_window": word_window,
                "first_pieces": first_pieces}

    def _tag(self, text):
        """Strings -> padded ``words`` and ``tags`` [B, W] and ``num_words`` [B]."""
        windows = self.windows(text)
        logits = self.model(windows["inputs"], training=False)  # [N, T, L]
        where = tf.stack([windows["word_window"], windows["first_pieces"]], axis=1)  # [W_all, 2]
        tag_ids = tf.argmax(tf.gather_nd(logits, where), axis=-1, output_type=tf.int32)  # [W_all, L] -> [W_all]
        words = windows["words"]
        tags = words.with_flat_values(tf.gather(self._tag_names, tag_ids))  # [B, (W)]
        return {"words": words.to_tensor(""), "tags": tags.to_tensor(""),
                "num_words": tf.cast(words.row_lengths(), tf.int32)}

    def signatures(self) -> dict:
        return {**super().signatures(), "serving_default": self.tag}

    def describe(self) -> dict:
        return {"task": self.task, "labels": self.labels, "words": "whitespace-separated"}


class SquadServing(EncoderServing):
    """Answers to questions about a context, as ``bert finetune squad`` trained it (``data.squad``).

    ``[CLS] question [SEP] context-window [SEP]``: the question cut to
    ``max_query_length`` pieces, the context in windows ``doc_stride`` pieces
    apart (``data.squad.window_spans``), each context piece scored only in the
    window where it has most context (``data.squad.max_context``). The answer
    is the best valid span over all windows (``data.squad.best_spans``: start
    scored in the window, ``start <= end < start + max_answer_length``), cut
    from the context's own characters through the tokenizer's offsets. v2
    models answer "" (``is_impossible``) when the smallest [CLS] score over the
    windows beats the best span by more than ``null_score_diff_threshold``.

    Args:
        model: The fine-tuned ``models.heads.BertSpanPredictor``.
        task: The model's ``task.json`` (doc_stride, max_query_length, ...).
    """

    task = "squad"

    def __init__(self, tokenizer, model, task: dict, **options) -> None:
        from data.squad import check_lengths

        super().__init__(tokenizer, model.backbone, **options)
        self._set_model(model)
        self.doc_stride = int(task.get("doc_stride", 128))
        self.max_query_length = int(task.get("max_query_length", 64))
        self.max_answer_length = int(task.get("max_answer_length", 30))
        self.version_2 = bool(task.get("version_2_with_negative", False))
        self.null_score_diff_threshold = float(task.get("null_score_diff_threshold", 0.0))
        check_lengths(self.max_seq_length, self.doc_stride, self.max_query_length)
        self.answer = self._function(self._answer, "question", "context")

    def windows(self, question: tf.Tensor, context: tf.Tensor) -> dict:
        """The windows of each (question, context) pair: the graph twin of ``data.squad.featurize``.

        Returns ``inputs`` [N, T] (the model's), and per window ``question`` [N]
        (the batch row), ``doc_start``, ``doc_offset``, ``doc_length`` [N] as in
        ``data.squad.SquadFeatures``, ``in_context`` and ``is_max_context`` [N, T];
        and the context pieces' byte spans ``piece_starts``/``piece_ends`` [B, (P)].
        """
        query = self.tokenizer.tokenize(question)  # [B, (Q)]
        pieces, piece_starts, piece_ends = self.tokenizer.tokenize_with_offsets(context)  # [B, (P)] x3
        query_length = tf.minimum(tf.cast(query.row_lengths(), tf.int32), self.max_query_length)  # [B]
        num_pieces = tf.cast(pieces.row_lengths(), tf.int32)  # [B]
        room = self.max_seq_length - query_length - 3  # [B] context pieces per window
        stride = self.doc_stride
        # window_spans in closed form: doc_stride < room, so windows start at
        # k * doc_stride until one reaches the context's end (one for an empty context).
        windows = 1 + tf.maximum(0, (num_pieces - room + stride - 1) // stride)  # [B]
        row = tf.repeat(tf.range(tf.size(windows)), windows)  # [N] the question of each window
        k = tf.range(tf.size(row)) - tf.gather(tf.cumsum(windows, exclusive=True), row)  # [N] index within it
        doc_start = k * stride
        doc_length = tf.minimum(tf.gather(num_pieces, row) - doc_start, tf.gather(room, row))  # [N]
        query_of = tf.gather(query_length, row)  # [N]
        doc_offset = query_of + 2
        total = doc_offset + doc_length + 1  # [N] [CLS] query [SEP] context [SEP]

        # Dense index arithmetic: position j of a window is [CLS], a query piece, [SEP], a context piece, [SEP] or padding.
        j = tf.range(tf.maximum(tf.reduce_max(total), 3))[tf.newaxis, :]  # [1, T]
        col = lambda v: v[:, tf.newaxis]  # noqa: E731  [N] -> [N, 1]
        query_values = tf.concat([tf.cast(query.flat_values, tf.int32), [self.pad_id]], 0)
        context_values = tf.concat([tf.cast(pieces.flat_values, tf.int32), [self.pad_id]], 0)
        context_first = tf.gather(tf.cast(pieces.row_starts(), tf.int32), row)  # [N] the context's first piece
        query_index = col(tf.gather(tf.cast(query.row_starts(), tf.int32), row)) + j - 1  # [N, T]
        piece = col(doc_start) + j - col(doc_offset)  # [N, T] context piece (within its context) at j
        context_index = col(context_first) + piece  # [N, T] into all the batch's context pieces
        in_query = (j >= 1) & (j <= col(query_of))
        in_context = (j >= col(doc_offset)) & (j < col(doc_offset + doc_length))
        separator = (j == col(query_of) + 1) | (j == col(total) - 1)
        ids = tf.fill(tf.shape(in_context), self.pad_id)
        ids = tf.where(j == 0, self.cls_id, ids)
        ids = tf.where(in_query, tf.gather(query_values, tf.clip_by_value(query_index, 0, tf.size(query_values) - 1)),
                       ids)
        ids = tf.where(in_context, tf.gather(context_values, tf.clip_by_value(
            context_index, 0, tf.size(context_values) - 1)), ids)
        ids = tf.where(separator, self.sep_id, ids)
        inputs = {"token_ids": ids, "segment_ids": tf.cast((j >= col(doc_offset)) & (j < col(total)), tf.int32),
                  "padding_mask": tf.cast(j < col(total), tf.int32)}

        # max_context: a piece is scored in the window where min(left, right) + 0.01 * length is
        # largest, the first such window on a tie (float64, the same arithmetic as numpy's).
        score = tf.cast(tf.minimum(piece - col(doc_start), col(doc_start + doc_length) - 1 - piece), tf.float64) \
            + 0.01 * tf.cast(col(doc_length), tf.float64)  # [N, T]
        segments = tf.size(context_values)  # one per context piece, and one for every non-context position
        segment = tf.where(in_context, context_index, segments - 1)  # [N, T]
        best = tf.math.unsorted_segment_max(tf.where(in_context, score, -1.0), segment, segments)  # [pieces + 1]
        window = tf.broadcast_to(col(tf.range(tf.size(row))), tf.shape(segment))  # [N, T]
        achieves = in_context & tf.equal(score, tf.gather(best, segment))
        first = tf.math.unsorted_segment_min(tf.where(achieves, window, tf.size(row)), segment, segments)
        is_max_context = in_context & tf.equal(window, tf.gather(first, segment))
        return {"inputs": inputs, "question": row, "doc_start": doc_start, "doc_offset": doc_offset,
                "doc_length": doc_length, "in_context": in_context, "is_max_context": is_max_context,
                "context_first": context_first, "piece_starts": piece_starts, "piece_ends": piece_ends}

    def _answer(self, question, context):
        """(question, context) strings -> ``answer``, ``start_char``, ``end_char``, ``score`` (+ ``is_impossible``)."""
        w = self.windows(question, context)
        outputs = self.model(w["inputs"], training=False)
        start_logits = tf.cast(outputs["start_logits"], tf.float64)  # [N, T]
        end_logits = tf.cast(outputs["end_logits"], tf.float64)
        length, band = tf.shape(start_logits)[1], self.max_answer_length
        # best_spans with count 1: every (start, start + a) for a < max_answer_length, as a [N, T, A] band.
        ends = tf.range(length)[:, tf.newaxis] + tf.range(band)[tf.newaxis, :]  # [T, A]
        clipped = tf.minimum(ends, length - 1)
        valid = (ends < length)[tf.newaxis] & w["is_max_context"][:, :, tf.newaxis] \
            & tf.gather(w["in_context"], clipped, axis=1)  # [N, T, A]
        scores = start_logits[:, :, tf.newaxis] + tf.gather(end_logits, clipped, axis=1)  # [N, T, A]
        flat_valid = tf.reshape(valid, [tf.shape(valid)[0], -1])  # [N, T * A]
        flat_scores = tf.where(flat_valid, tf.reshape(scores, tf.shape(flat_valid)), -_infinity())
        best = tf.reduce_max(flat_scores, axis=1)  # [N]
        flat_index = tf.range(tf.shape(flat_valid)[1])[tf.newaxis, :]
        # The earliest span on a tie, as best_spans' lexsort.
        choice = tf.reduce_min(tf.where(flat_valid & tf.equal(flat_scores, best[:, tf.newaxis]), flat_index,
                                        tf.shape(flat_valid)[1]), axis=1)  # [N]
        span_start, span_end = choice // band, choice // band + choice % band  # [N] positions in the window

        # The best window of each question (the earliest on a tie), as predict_answers' stable sort.
        rows = tf.shape(question)[0]
        windows = tf.size(w["question"])
        question_best = tf.math.unsorted_segment_max(best, w["question"], rows)  # [B], -inf: no valid span
        has_span = question_best > -_infinity()
        winner = tf.math.unsorted_segment_min(
            tf.where(tf.equal(best, tf.gather(question_best, w["question"])) & (best > -_infinity()),
                     tf.range(windows), windows), w["question"], rows)  # [B]
        winner = tf.minimum(winner, windows - 1)  # questions without a span are masked below
        null = tf.math.unsorted_segment_min(start_logits[:, 0] + end_logits[:, 0], w["question"], rows)  # [B]
        answered = has_span
        if self.version_2:
            impossible = tf.logical_not(has_span) | (null - question_best > self.null_score_diff_threshold)
            answered = tf.logical_not(impossible)

        # Span positions -> context pieces -> bytes of the original context -> characters.
        def piece_of(position):  # [B] index into all the batch's context pieces
            return tf.gather(w["context_first"] + w["doc_start"] - w["doc_offset"], winner) \
                + tf.gather(position, winner)

        starts = tf.concat([tf.cast(w["piece_starts"].flat_values, tf.int32), [0]], 0)  # [pieces + 1]: never empty
        ends = tf.concat([tf.cast(w["piece_ends"].flat_values, tf.int32), [0]], 0)
        last = tf.size(starts) - 1
        byte_start = tf.where(answered, tf.gather(starts, tf.clip_by_value(piece_of(span_start), 0, last)), 0)
        byte_end = tf.where(answered, tf.gather(ends, tf.clip_by_value(piece_of(span_end), 0, last)), 0)
        answer = tf.strings.substr(context, byte_start, byte_end - byte_start, unit="BYTE")
        start_char = tf.strings.length(tf.strings.substr(context, tf.zeros_like(byte_start), byte_start, unit="BYTE"), unit="UTF8_CHAR")
        end_char = start_char + tf.strings.length(answer, unit="UTF8_CHAR")
        result = {
            "answer": answer,
            "start_char": tf.where(answered, start_char, -1),
            "end_char": tf.where(answered, end_char, -1),
            "score": tf.cast(tf.where(answered, question_best, null), tf.float32),
        }
        if self.version_2:
            result["is_impossible"] = impossible
        return result

    def signatures(self) -> dict:
        return {**super().signatures(), "serving_default": self.answer}

    def describe(self) -> dict:
        return {"task": self.task, "doc_stride": self.doc_stride, "max_query_length": self.max_query_length,
                "max_answer_length": self.max_answer_length, "version_2_with_negative": self.version_2,
                "null_score_diff_threshold": self.null_score_diff_threshold}


def _infinity() -> tf.Tensor:
    """+inf as a float64 tensor (the score of no valid span)."""
    return tf.constant(float("inf"), tf.float64)


# ----------------------------------------------------------------------------
# From a model directory
# ----------------------------------------------------------------------------


def resolve_max_seq_length(model_dir, max_seq_length: int | None) -> int:
    """The export's sequence length: the option, else the model's ``task.json``, else 128; checked against the config."""
    config = model_dir.config
    if max_seq_length is None:
        max_seq_length = int(model_dir.task.get("max_seq_length") or DEFAULT_MAX_SEQ_LENGTH)
        max_seq_length = min(max_seq_length, config.max_position_embeddings)
    least = 5 if model_dir.kind == "squad" else 4 if model_dir.task.get("pair") else 3
    if max_seq_length < least:
        raise UserError(f"--max-seq-length {max_seq_length} leaves no room for text; use at least {least}")
    if max_seq_length > config.max_position_embeddings:
        raise UserError(f"--max-seq-length {max_seq_length} is more than the model's max_position_embeddings "
                        f"{config.max_position_embeddings}")
    return max_seq_length


def load_task_model(model_dir):
    """The directory's fine-tuned keras model (``model.weights.h5``), or None for an encoder-only directory."""
    from models import heads

    task = model_dir.task
    kind = model_dir.kind
    if kind not in FINE_TUNED_TASKS:
        return None
    if not model_dir.model_weights.is_file():
        raise UserError(f"{model_dir.path}: task.json says {kind!r} but there is no {model_dir.model_weights.name}; "
                        "the fine-tuning run did not finish (rerun bert finetune to complete it)")
    if kind == "classify":
        labels = task.get("labels") or []
        if not task.get("regression") and len(labels) < 2:
            raise UserError(f"{model_dir.path / 'task.json'}: a classifier needs its \"labels\" (two or more)")
        model = heads.build_classifier(model_dir.config, len(labels) or 1, bool(task.get("regression")))
    elif kind == "tag":
        if len(task.get("labels") or []) < 2:
            raise UserError(f"{model_dir.path / 'task.json'}: a tagger needs its \"labels\" (two or more)")
        model = heads.build_tagger(model_dir.config, len(task["labels"]))
    else:
        model = heads.build_span_predictor(model_dir.config)
    try:
        model.load_weights(str(model_dir.model_weights))
    except (ValueError, OSError) as error:
        raise UserError(f"{model_dir.model_weights}: does not fit the directory's bert_config.json and task.json "
                        f"({error})") from None
    return model


def build_serving(model_dir, options: ServingOptions = ServingOptions()) -> EncoderServing:
    """The serving module of a model directory (``bert_cli.model_dir.read_model_dir``): one builder per task."""
    from bert_cli.model_dir import CONFIG_FILE, load_encoder
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
    task = model_dir.task
    if model is None:
        return EncoderServing(tokenizer, load_encoder(model_dir), **common)
    if model_dir.kind == "classify":
        return ClassifierServing(tokenizer, model, task.get("labels") or [], bool(task.get("pair")),
                                 bool(task.get("regression")), (task.get("text_column"), task.get("text_pair_column")),
                                 **common)
    if model_dir.kind == "tag":
        return TaggerServing(tokenizer, model, task["labels"], **common)
    return SquadServing(tokenizer, model, task, **common)
