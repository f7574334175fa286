"""The ``tf.data`` input of pre-training: records in, batches of model features out.

Reads the original release's TFRecord schema (ours and the original script's
records alike), so either can feed ``bert pretrain``:

    input_ids, input_mask, segment_ids      int64 [T]
    masked_lm_positions, masked_lm_ids      int64 [P]
    masked_lm_weights                       float32 [P]
    next_sentence_labels                    int64 [1]

Files are read interleaved (``cycle_length`` at a time, in a shuffled file
order) through a shuffle buffer, as the original ``run_pretraining.py`` does;
batches keep a fixed shape (``drop_remainder``) for TPUs and XLA.

With dynamic masking (RoBERTa) every read of an example gets a fresh mask by
the same rules as ``bert make-data``: the original tokens are restored from
the stored predictions, then ``min(P, max(1, round(len * prob)))`` positions
other than [CLS]/[SEP]/padding are chosen (whole words when asked), each
replaced by [MASK] 80 %, kept 10 %, a random vocabulary id 10 % of the time
(ELECTRA: [MASK] 85 %, kept 15 %).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import tensorflow as tf

from data.errors import DataError
from data.records import compression_of, feature_spec

# Shape legend: B = batch, T = max sequence length, P = max predictions.


@dataclasses.dataclass(frozen=True)
class DynamicMasking:
    """What re-masking needs to know about the vocabulary and the recipe."""

    vocab_size: int
    cls_id: int
    sep_id: int
    mask_id: int
    masked_lm_prob: float = 0.15
    #: ids of "##" continuation pieces; with ``whole_word`` they are masked with their word.
    continuation_ids: tuple[int, ...] = ()
    whole_word: bool = False
    #: What a chosen position becomes: [MASK] this share of the time, a random vocabulary id
    #: ``random_share``, else it keeps its token. BERT: 0.8 / 0.1; ELECTRA: 0.85 / 0.0.
    mask_share: float = 0.8
    random_share: float = 0.1


def pretraining_dataset(
    files: Sequence[str],
    max_seq_length: int,
    max_predictions: int,
    batch_size: int,
    *,
    training: bool = True,
    next_sentence: bool = True,
    seed: int = 12345,
    shuffle_buffer: int = 10_000,
    cycle_length: int = 8,
    input_context: tf.distribute.InputContext | None = None,
    dynamic_masking: DynamicMasking | None = None,
    skip_records: int = 0,
    stored_masks: bool = True,
) -> tf.data.Dataset:
    """Batches of pre-training features from TFRecord files.

    Args:
        files: Record files (plain or gzip, detected per file).
        max_seq_length / max_predictions: T and P of the records.
        batch_size: Examples per batch for this input pipeline (per replica).
        training: Shuffle and repeat forever; else one ordered pass.
        next_sentence: Parse ``next_sentence_labels``.
        seed: Shuffle seed (and with dynamic masking, of the masks).
        input_context: Given by ``distribute_datasets_from_function``; each input
            pipeline then reads its own share of the files.
        dynamic_masking: Re-mask on every read (RoBERTa) instead of using the stored masks.
        skip_records: Training records this pipeline already handed out (a multiple of
            ``batch_size``): a resumed run continues the same stream exactly where it was,
            at the cost of reading the skipped records once.
        stored_masks: The records hold ``masked_lm_*`` features (False: ELECTRA-style records
            of ``input_ids``, ``input_mask``, ``segment_ids`` only; needs ``dynamic_masking``,
            which then picks up to ``max_predictions`` positions per row).
    """
    if not stored_masks and dynamic_masking is None:
        raise DataError("records without masked_lm_* features need masking in the input pipeline")
    if not files:
        raise DataError("no record files to read")
    compressions = {compression_of(f) for f in files}
    if len(compressions) > 1:
        raise DataError("record files mix gzip and plain TFRecords; give one kind at a time")
    compression = compressions.pop()
    spec = feature_spec(max_seq_length, max_predictions, next_sentence, masks=stored_masks)

    dataset = tf.data.Dataset.from_tensor_slices(list(files))
    if (input_context is not None and input_context.num_input_pipelines > 1
            and len(files) >= input_context.num_input_pipelines):
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if training:
        dataset = _training_records(dataset, len(files), compression, seed, shuffle_buffer, cycle_length, skip_records)
    else:
        dataset = tf.data.TFRecordDataset(dataset, compression_type=compression)

    dataset = dataset.batch(batch_size, drop_remainder=training)
    dataset = dataset.map(lambda records: tf.io.parse_example(records, spec), num_parallel_calls=tf.data.AUTOTUNE)
    if dynamic_masking is not None:
        masker = _Remasker(dynamic_masking, max_predictions)
        dataset = dataset.enumerate(start=skip_records // batch_size if training else 0).map(
            lambda index, batch: masker(batch, tf.stack([tf.cast(seed, tf.int64), index])),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def _training_records(files: tf.data.Dataset, count: int, compression: str, seed: int, shuffle_buffer: int,
                      cycle_length: int, skip_records: int) -> tf.data.Dataset:
    """Serialized records, forever: files in a fresh shuffled order each pass, read interleaved, through a
    shuffle buffer, the first ``skip_records`` passed over (nothing is parsed)."""
    dataset = files.shuffle(count, seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = dataset.interleave(
        lambda name: tf.data.TFRecordDataset(name, compression_type=compression),
        cycle_length=min(cycle_length, count),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    dataset = dataset.shuffle(shuffle_buffer, seed=seed)
    return dataset.skip(skip_records) if skip_records else dataset


class _Remasker:
    """Re-masks a parsed batch in the graph (see the module docstring for the rules)."""

    def __init__(self, options: DynamicMasking, max_predictions: int) -> None:
        self.options = options
        self.max_predictions = max_predictions
        size = options.vocab_size
        continuation = [0] * size
        for token_id in options.continuation_ids:
            continuation[token_id] = 1
        self.is_continuation = tf.constant(continuation, tf.int32)  # [V]

    def __call__(self, batch: dict, seed: tf.Tensor) -> dict:
        """The batch with a fresh mask drawn from ``seed`` (stateless: the same seed gives the same mask)."""
        options = self.options
        ids = batch["input_ids"]  # [B, T] int64, holding the old masks
        mask = batch["input_mask"]  # [B, T]
        B = tf.shape(ids)[0]
        T = tf.shape(ids)[1]
        P = self.max_predictions
        # Records with masks hold [MASK]s and random tokens: put the originals back first.
        originals = self._restore(batch, B, P) if "masked_lm_ids" in batch else ids  # [B, T]

        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
        candidate = (mask > 0) & (originals != options.cls_id) & (originals != options.sep_id)  # [B, T]
        count = self._count(mask)  # [B]
        positions, real = self._pick(originals, candidate, count, seeds[0], B, T)  # [B, P] each
        labels = tf.gather(originals, positions, batch_dims=1)  # [B, P]

        choice = tf.random.stateless_uniform([B, P], seed=seeds[1])
        random_ids = tf.random.stateless_uniform(
            [B, P], seed=seeds[2], minval=0, maxval=options.vocab_size, dtype=tf.int64
        )
        kept = 1.0 - options.mask_share - options.random_share
        replacement = tf.where(
            choice < options.mask_share, tf.cast(options.mask_id, tf.int64),
            tf.where(choice < options.mask_share + kept, labels, random_ids),
        )
        update_where = tf.stack([tf.repeat(tf.range(B, dtype=tf.int64)[:, None], P, axis=1), positions], -1)
        new_ids = tf.tensor_scatter_nd_update(
            originals, tf.boolean_mask(update_where, real), tf.boolean_mask(replacement, real)
        )
        result = dict(batch)
        result["input_ids"] = new_ids
        result["masked_lm_positions"] = positions
        result["masked_lm_ids"] = tf.where(real, labels, 0)
        result["masked_lm_weights"] = tf.cast(real, tf.float32)
        return result

    @staticmethod
    def _restore(batch: dict, B: tf.Tensor, P: int) -> tf.Tensor:
        """The batch's ``input_ids`` with the original tokens back at the stored predictions: ``[B, T]``."""
        weights = batch["masked_lm_weights"] > 0  # [B, P]
        rows = tf.repeat(tf.range(B, dtype=tf.int64)[:, None], P, axis=1)  # [B, P]
        where = tf.stack([rows, batch["masked_lm_positions"]], axis=-1)  # [B, P, 2]
        return tf.tensor_scatter_nd_update(
            batch["input_ids"], tf.boolean_mask(where, weights), tf.boolean_mask(batch["masked_lm_ids"], weights)
        )  # [B, T]

    def _count(self, mask: tf.Tensor) -> tf.Tensor:
        """Positions to predict in each row, ``min(P, max(1, round(len * prob)))``: ``[B]``."""
        lengths = tf.reduce_sum(mask, axis=1)  # [B], [CLS] and [SEP] counted like the original
        return tf.minimum(
            tf.cast(self.max_predictions, tf.int64),
            tf.maximum(
                tf.cast(1, tf.int64),
                tf.cast(tf.round(tf.cast(lengths, tf.float32) * self.options.masked_lm_prob), tf.int64),
            ),
        )  # [B]

    def _pick(self, originals: tf.Tensor, candidate: tf.Tensor, count: tf.Tensor, seed: tf.Tensor, B: tf.Tensor,
              T: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Positions to predict, at most ``count`` per row: whole words (single pieces without
        whole-word masking) among the ``candidate`` positions ``[B, T]``, in random order while they fit.

        Returns ``[B, P]`` positions (sorted, real ones first, 0 after them)
        and ``[B, P]`` whether each is real.
        """
        P = self.max_predictions
        # Each piece gets its word's random score, so a word's pieces sort together
        # (without whole-word masking every piece is a word of its own).
        if self.options.whole_word:
            continues = tf.gather(self.is_continuation, tf.cast(originals, tf.int32)) > 0
            starts = ~(continues & candidate)
        else:
            starts = tf.ones_like(candidate)
        word_index = tf.cumsum(tf.cast(starts, tf.int32), axis=1) - 1  # [B, T]
        segments = word_index + tf.range(B)[:, None] * T  # one id per (row, word)
        word_length = tf.math.unsorted_segment_sum(tf.cast(candidate, tf.int64), segments, B * T)
        # A word longer than the whole budget can never be taken; leave it out.
        fits = tf.gather(word_length, segments) <= count[:, None]
        candidate = candidate & fits
        scores = tf.gather(tf.random.stateless_uniform([B, T], seed=seed), word_index, batch_dims=1)
        scores = tf.where(candidate, scores, -1.0)
        order = tf.argsort(scores, axis=1, direction="DESCENDING", stable=True)  # [B, T]
        ranked_candidate = tf.gather(candidate, order, batch_dims=1)
        ranked_total = tf.cumsum(tf.cast(ranked_candidate, tf.int64), axis=1)  # pieces taken so far
        # Take whole words in random order while they fit. (The original also
        # looks past a word that does not fit for a shorter one; stopping there
        # instead only matters with whole-word masking, and only by a piece or two.)
        ranked_segments = tf.gather(segments, order, batch_dims=1)
        word_total = tf.math.unsorted_segment_max(ranked_total, ranked_segments, B * T)
        take = ranked_candidate & (tf.gather(word_total, ranked_segments) <= count[:, None])  # ranked order
        picked_positions = tf.where(take, tf.cast(order, tf.int64), tf.cast(T, tf.int64))  # T marks "not taken"
        picked_positions = tf.sort(picked_positions, axis=1)[:, :P]  # [B, P], sorted, real ones first
        real = picked_positions < tf.cast(T, tf.int64)  # [B, P]
        return tf.where(real, picked_positions, 0), real
