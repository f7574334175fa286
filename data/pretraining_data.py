"""Pre-training examples from raw text: documents -> instances -> masking -> TFRecords.

This is google-research/bert's ``create_pretraining_data.py``, the same
algorithm with the same defaults, made streaming, parallel and fast.

The algorithm (as in the original)
----------------------------------
* **Documents.** The input has one sentence per line and a blank line between
  documents (``input_format="lines"``), or free-text paragraphs that
  :mod:`data.sentences` splits into sentences (``"paragraphs"``, one paragraph
  = one document). Lines that tokenize to nothing are dropped, and so are
  documents left empty. Unlike the original, a new file always starts a new
  document (the original carries a document on across files that do not end
  with a blank line).
* **Instances** (``create_instances``). Documents are shuffled; then,
  ``dupe_factor`` times, each document in turn is cut into instances: whole
  sentences are gathered until they reach a target length (``max_seq_length -
  3``; with probability ``short_seq_prob`` a random length in ``[2, max]``
  instead, for the whole document), and the gathered sentences are split at a
  random sentence boundary into segment A and segment B. With probability
  0.5 -- always when only one sentence was gathered -- B is replaced by
  sentences from a random start in a random *other* document (label 1 =
  random next; up to 10 draws to avoid the same document), and the sentences
  that B would have used are put back for the next instance. The pair is then
  cut to ``max_seq_length - 3`` tokens one token at a time, always from the
  longer segment (B when equal), from its front or back at random, so both
  stay non-empty. Tokens are ``[CLS] A [SEP] B [SEP]`` with segment ids 0 then
  1. All instances are shuffled at the end. (Because a lone gathered sentence
  always gets a random B, and the 10 % of documents with a short target make
  many such instances, about 53 % of labels are 1 with the default
  ``short_seq_prob`` -- in the original too; 50 % with ``short_seq_prob=0``.)
* **Masking** (``mask_instances``). ``min(max_predictions_per_seq, max(1,
  round(len(tokens) * masked_lm_prob)))`` positions are predicted (``round``
  halves to even, as Python's does; the length counts [CLS] and [SEP]), chosen
  uniformly among all but [CLS]/[SEP]; of those, 80 % become [MASK], 10 %
  stay, 10 % become a random token drawn uniformly from the *whole* vocabulary
  -- [PAD], [unusedK] and the other specials included, as in the original.
  Positions are stored sorted. With ``whole_word_mask`` a word (a piece and the
  ``##`` pieces after it) is chosen or skipped as a whole; a word that would
  overflow the count is skipped and the next tried, as in the original. One
  small difference: a ``##`` piece right after [SEP] (possible only when
  truncation cut a word's front) starts its own word here, where the original
  glued it to the last word of segment A.
* ``next_sentence_prediction=False`` (RoBERTa-style, ``--no-nsp``): the same
  gathering and target lengths, but the gathered sentences form one segment
  ``[CLS] S [SEP]`` (cut to ``max_seq_length - 2`` from front or back at
  random), segment ids all 0, and the records carry **no**
  ``next_sentence_labels`` feature (a constant label would only teach the NSP
  head to say 0; the pre-training command knows such records by the missing
  feature).

Streaming, parallel, reproducible
---------------------------------
The original holds the whole corpus times ``dupe_factor`` in memory. Here the
corpus is read as a stream and cut into **chunks** of consecutive documents of
about ``chunk_size_mb`` MB of text (counted in characters; a chunk closes
after the document that reaches the size, and has at least
:data:`MIN_CHUNK_DOCUMENTS` documents, the last one included). Each chunk is
processed exactly like one run of the original script over one input shard:
its documents are shuffled, it gets ``dupe_factor`` passes, its instances are
shuffled, and **the random next segment comes from another document of the
same chunk** -- what users of the original do when they split a large
corpus into shards to fit it in memory. Each chunk has its own random
generators, seeded from ``(seed, chunk index)``; chunk boundaries depend only
on the text and the options. So the output is byte-identical whatever the
number of worker processes. Instances are dealt round-robin over the output
shards in chunk order, so every shard mixes every part of the corpus.

Tokenization runs in the main process (the TensorFlow tokenizer, on batches);
instance creation, masking (vectorised with numpy over a few hundred
instances at a time) and serialization (:func:`data.records.encode_examples`)
run in ``workers`` processes that never import TensorFlow, with a bounded
number of chunks in flight. Memory therefore stays flat as the corpus grows.

Random numbers: each chunk has a Python ``random.Random`` for instance
creation, drawn in the original's order (the document shuffle, then per
document: target length, split points, the NSP coin, random documents and
starts; ``randint`` is reproduced draw for draw), except that the coins for
truncation sides are the bits of one ``getrandbits`` per instance instead of
one ``random()`` per token; and a numpy generator for the final shuffle of
the instances and for masking (positions, replacement kinds, random tokens),
drawn per batch. The distributions are the original's; the exact streams,
and so the bytes, are not (masking draws are interleaved with creation
there).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import multiprocessing
import os
import random
import time
from bisect import bisect_left
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from data import records
from data.errors import DataError
from data.textio import atomic_path, expand_inputs, iter_lines, total_bytes

INPUT_FORMATS = ("lines", "paragraphs")
# A last chunk with fewer documents than this joins the chunk before it, so
# random next segments always have other documents to come from.
MIN_CHUNK_DOCUMENTS = 8
# Lines per tokenizer call: large enough to amortise TensorFlow's per-call cost.
_TOKENIZE_BATCH = 2048
# Instances masked and encoded together: numpy work on [batch, max_seq_length].
_MASK_BATCH_TOKENS = 1 << 18  # 2,048 instances of 128 tokens: larger batches gain nothing
# "MB" is decimal, as everywhere on the command line.
_MB = 1_000_000


# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PretrainingDataOptions:
    """The recipe. Field names are the original flags' (``random_seed`` is ``seed``)."""

    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    # 10 % of documents use a shorter random target length, to lessen the
    # mismatch with short fine-tuning inputs.
    short_seq_prob: float = 0.1
    # Passes over the data, each with new instance boundaries and new masks.
    dupe_factor: int = 10
    seed: int = 12345
    whole_word_mask: bool = False
    next_sentence_prediction: bool = True
    input_format: str = "lines"
    # The unit of shuffling and of random next documents (see the module docstring).
    chunk_size_mb: float = 1.0

    @property
    def max_num_tokens(self) -> int:
        """Room for text: max_seq_length less [CLS] and one or two [SEP]."""
        return self.max_seq_length - (3 if self.next_sentence_prediction else 2)

    def validate(self) -> None:
        """Raises DataError naming the first option that cannot work."""
        least = 5 if self.next_sentence_prediction else 3
        if self.max_seq_length < least:
            raise DataError(
                f"--max-seq-length {self.max_seq_length}: must be at least {least} "
                f"({'[CLS] A [SEP] B [SEP]' if self.next_sentence_prediction else '[CLS] text [SEP]'} "
                "with one token of text in each segment)"
            )
        if self.max_predictions_per_seq < 1:
            raise DataError(f"--max-predictions-per-seq {self.max_predictions_per_seq}: must be at least 1")
        if self.max_predictions_per_seq > self.max_num_tokens:
            raise DataError(
                f"--max-predictions-per-seq {self.max_predictions_per_seq}: larger than possible; a sequence of "
                f"--max-seq-length {self.max_seq_length} has at most {self.max_num_tokens} maskable tokens"
            )
        if not (0.0 < self.masked_lm_prob <= 1.0):
            raise DataError(f"--masked-lm-prob {self.masked_lm_prob:g}: must be in (0, 1]")
        if not (0.0 <= self.short_seq_prob <= 1.0):
            raise DataError(f"--short-seq-prob {self.short_seq_prob:g}: must be in [0, 1]")
        if self.dupe_factor < 1:
            raise DataError(f"--dupe-factor {self.dupe_factor}: must be at least 1")
        if self.seed < 0:
            raise DataError(f"--seed {self.seed}: must be zero or positive")
        if self.input_format not in INPUT_FORMATS:
            raise DataError(f"--input-format {self.input_format}: use one of {', '.join(INPUT_FORMATS)}")
        if not (math.isfinite(self.chunk_size_mb) and self.chunk_size_mb > 0):
            raise DataError(f"--chunk-size-mb {self.chunk_size_mb:g}: must be a positive number")


@dataclasses.dataclass(frozen=True)
class VocabularyIds:
    """What the workers need to know about the vocabulary (no tokens, no TensorFlow)."""

    size: int
    pad_id: int
    cls_id: int
    sep_id: int
    mask_id: int
    #: ``[size]`` bool: token ``i`` is a ``##`` continuation piece (for whole-word masking).
    continuation: np.ndarray

    @classmethod
    def from_vocabulary(cls, vocab) -> "VocabularyIds":
        continuation = np.fromiter((t.startswith("##") for t in vocab.tokens), dtype=bool, count=len(vocab))
        return cls(len(vocab), vocab.pad_id, vocab.cls_id, vocab.sep_id, vocab.mask_id, continuation)


# ---------------------------------------------------------------------------
# Reading documents and cutting chunks
# ---------------------------------------------------------------------------


def read_documents(
    files: Sequence[Path], input_format: str = "lines", on_bytes: Callable[[int], None] | None = None
) -> Iterator[list[str]]:
    """Yields documents as lists of sentences (non-blank lines), file by file.

    ``"lines"``: one sentence per line, blank (or whitespace-only) lines end a
    document. ``"paragraphs"``: see :func:`data.sentences.paragraphs_to_documents`.
    A document never spans two files.
    """
    for path in files:
        lines = iter_lines(path, on_bytes)
        if input_format == "paragraphs":
            from data.sentences import paragraphs_to_documents

            yield from paragraphs_to_documents(lines)
            continue
        document: list[str] = []
        for line in lines:
            if line.strip():
                document.append(line)
            elif document:
                yield document
                document = []
        if document:
            yield document


def chunk_documents(documents: Iterable[list[str]], chunk_chars: int) -> Iterator[list[list[str]]]:
    """Groups documents into chunks of about ``chunk_chars`` characters (see the module docstring).

    A chunk closes after the document that brings it to ``chunk_chars``
    characters and at least :data:`MIN_CHUNK_DOCUMENTS` documents; the last
    chunk joins the one before when it has fewer documents than that. So
    every chunk has that many documents to draw random next segments from
    (unless the whole corpus has fewer). Boundaries depend only on the text.
    """
    ready: list[list[str]] | None = None  # held back until we know it is not the last
    current: list[list[str]] = []
    size = 0
    for document in documents:
        current.append(document)
        size += sum(len(sentence) + 1 for sentence in document)
        if size >= chunk_chars and len(current) >= MIN_CHUNK_DOCUMENTS:
            if ready is not None:
                yield ready
            ready, current, size = current, [], 0
    if ready is not None and current and len(current) < MIN_CHUNK_DOCUMENTS:
        ready, current = ready + current, []
    if ready is not None:
        yield ready
    if current:
        yield current


@dataclasses.dataclass
class TokenizedChunk:
    """The token ids of one chunk, flat. S = sentences, D = documents."""

    index: int
    tokens: np.ndarray  # [total tokens] int32
    sentence_offsets: np.ndarray  # [S + 1] int64: sentence s is tokens[offsets[s]:offsets[s + 1]]
    document_offsets: np.ndarray  # [D + 1] int64: document d is sentences [offsets[d], offsets[d + 1])

    @property
    def num_documents(self) -> int:
        return len(self.document_offsets) - 1

    @property
    def num_sentences(self) -> int:
        return int(self.document_offsets[-1])


def tokenize_chunk(index: int, documents: Sequence[Sequence[str]], tokenize: Callable) -> TokenizedChunk:
    """Tokenizes one chunk in batches; drops sentences without tokens and documents left empty.

    ``tokenize`` maps a list of strings to ``(ids [n] int, lengths [len(batch)] int)``
    (:func:`tensorflow_tokenize` wraps the TensorFlow tokenizer so).
    """
    sentences = [sentence for document in documents for sentence in document]
    pieces, lengths = [], []
    for start in range(0, len(sentences), _TOKENIZE_BATCH):
        ids, counts = tokenize(sentences[start : start + _TOKENIZE_BATCH])
        pieces.append(np.asarray(ids, dtype=np.int32))
        lengths.append(np.asarray(counts, dtype=np.int64))
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
    length = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    keep = length > 0
    owner = np.repeat(np.arange(len(documents)), [len(d) for d in documents])  # [S] document of each sentence
    per_document = np.bincount(owner[keep], minlength=len(documents))
    per_document = per_document[per_document > 0]
    return TokenizedChunk(
        index=index,
        tokens=tokens,
        sentence_offsets=np.concatenate([[0], np.cumsum(length[keep])]).astype(np.int64),
        document_offsets=np.concatenate([[0], np.cumsum(per_document)]).astype(np.int64),
    )


def tensorflow_tokenize(tokenizer) -> Callable:
    """Adapts :class:`data.tokenization.Tokenizer` to :func:`tokenize_chunk`'s ``tokenize``."""
    import tensorflow as tf

    def tokenize(lines: list[str]):
        ragged = tokenizer.tokenize(tf.constant(lines, dtype=tf.string))
        return ragged.flat_values.numpy(), np.diff(ragged.row_splits.numpy())

    return tokenize


# Building and tracing a tokenizer takes about a second; a process that makes
# several datasets with one vocabulary (tests, notebooks) builds it once.
_TOKENIZERS: dict[tuple[str, bool], Callable] = {}


def _tokenizer_for(vocab, lowercase: bool) -> Callable:
    from data.tokenization import Tokenizer

    key = (vocab.sha256, lowercase)
    if key not in _TOKENIZERS:
        if len(_TOKENIZERS) >= 2:
            _TOKENIZERS.pop(next(iter(_TOKENIZERS)))
        _TOKENIZERS[key] = tensorflow_tokenize(Tokenizer(vocab, lowercase=lowercase))
    return _TOKENIZERS[key]


# ---------------------------------------------------------------------------
# Instances
# ---------------------------------------------------------------------------

# An instance is five ints: tokens[a_lo:a_hi] is segment A, tokens[b_lo:b_hi]
# segment B (empty without NSP), and the label (1 = random next). Spans into
# the chunk's token array keep a chunk's instances small whatever dupe_factor.
Instance = tuple[int, int, int, int, int]


def create_instances(chunk: TokenizedChunk, options: PretrainingDataOptions, rng: random.Random) -> list[Instance]:
    """All instances of one chunk, in the order made: shuffled documents, ``dupe_factor`` passes.

    The original's ``create_training_instances`` up to its final shuffle of
    the instances, which :func:`process_chunk` does (with numpy).
    """
    offsets = chunk.sentence_offsets.tolist()
    documents = chunk.document_offsets.tolist()
    order = list(range(chunk.num_documents))
    rng.shuffle(order)
    instances: list[Instance] = []
    make = _pair_instances if options.next_sentence_prediction else _single_instances
    for _ in range(options.dupe_factor):
        make(order, offsets, documents, options.max_num_tokens, options.short_seq_prob, rng, instances)
    return instances


def _below(getrandbits) -> Callable[[int], int]:
    """``randint(0, n - 1)`` of the Random whose ``getrandbits`` this is, drawing the same bits.

    CPython's randint(a, b) is ``a + _randbelow(b - a + 1)``, which is this
    rejection loop; calling it directly skips two layers of argument checks,
    a third of the cost of making an instance. A test checks it against randint.
    """

    def below(n: int) -> int:
        k = n.bit_length()
        r = getrandbits(k)
        while r >= n:
            r = getrandbits(k)
        return r

    return below


# Masks of alternate bits (...0101 and ...1010), for dealing truncation coins.
_EVEN_BITS = int("01" * 1024, 2)
_ODD_BITS = _EVEN_BITS << 1


def _truncation(a_length: int, b_length: int, max_num_tokens: int, getrandbits) -> tuple[int, int, int, int]:
    """Tokens cut from (A front, A back, B front, B back) to fit ``max_num_tokens``.

    The original removes one token at a time from the longer segment (B when
    they are equal), from its front or back by a fair coin. Which segment
    loses each token does not depend on the coins, so the order is known in
    advance: the longer one alone until they are level, then alternately.
    Here the coins are the bits of one ``getrandbits`` (bit k for the k-th
    token removed; 1 = front) rather than one ``random() < 0.5`` each.
    """
    excess = a_length + b_length - max_num_tokens
    coins = getrandbits(excess)
    if a_length > b_length:
        lead, first = min(excess, a_length - b_length), "a"  # A alone, then B, A, B, ...
    else:
        lead, first = min(excess, b_length - a_length + 1), "b"  # B alone, then A, B, A, ...
    alternating = excess - lead
    lead_bits = coins & ((1 << lead) - 1)
    rest = coins >> lead  # bit 0 goes to the other segment, bit 1 to the leader, ...
    other_bits = rest & _EVEN_BITS & ((1 << alternating) - 1)
    leader_bits = rest & _ODD_BITS & ((1 << alternating) - 1)
    leader_cuts, other_cuts = lead + alternating // 2, (alternating + 1) // 2
    leader_front = lead_bits.bit_count() + leader_bits.bit_count()
    other_front = other_bits.bit_count()
    if first == "a":
        return leader_front, leader_cuts - leader_front, other_front, other_cuts - other_front
    return other_front, other_cuts - other_front, leader_front, leader_cuts - leader_front


def _pair_instances(order, offsets, documents, max_num_tokens, short_seq_prob, rng, out) -> None:
    """One pass of the original's create_instances_from_document over the documents in ``order``.

    Sentences are gathered with a binary search over the token offsets
    rather than one at a time; the result is the same. (One function for the
    whole pass, with everything in local variables: this loop is the
    slowest part of making data.)
    """
    uniform, getrandbits = rng.random, rng.getrandbits
    below = _below(getrandbits)
    count = len(order)
    append = out.append
    for position in range(count):
        document = order[position]
        first, last = documents[document], documents[document + 1]  # its sentences
        # Usually fill the sequence (padding is wasted compute); sometimes aim
        # shorter, as fine-tuning inputs often are. A target, not a hard limit.
        target = max_num_tokens
        if uniform() < short_seq_prob:
            target = 2 + below(max_num_tokens - 1)  # randint(2, max_num_tokens)
        start = first
        while start < last:
            # Gather sentences start..end-1: up to the first that reaches the target, or the document's end.
            end = bisect_left(offsets, offsets[start] + target, start + 1, last)
            gathered = end - start
            a_end = start + 1 + below(gathered - 1) if gathered >= 2 else start + 1  # randint(1, gathered - 1)
            a_lo, a_hi = offsets[start], offsets[a_end]
            if gathered == 1 or uniform() < 0.5:
                label = 1
                # Avoid the same document (rarely needs a second draw).
                for _ in range(10):
                    other = below(count)  # randint(0, count - 1)
                    if other != position:
                        break
                other = order[other]
                other_first, other_last = documents[other], documents[other + 1]
                j = other_first + below(other_last - other_first)  # randint(0, sentences - 1)
                b_lo = offsets[j]
                # Sentences j.. until B reaches its target (what A left) or the document ends.
                b_hi = offsets[bisect_left(offsets, b_lo + target - (a_hi - a_lo), j + 1, other_last)]
                # B did not use the rest of the gathered sentences: put them back.
                end = a_end
            else:
                label = 0
                b_lo, b_hi = a_hi, offsets[end]
            # Truncate the longer segment, front or back at random, so neither
            # end of a segment is systematically the one that survives.
            if a_hi - a_lo + b_hi - b_lo > max_num_tokens:
                a_front, a_back, b_front, b_back = _truncation(a_hi - a_lo, b_hi - b_lo, max_num_tokens, getrandbits)
                append((a_lo + a_front, a_hi - a_back, b_lo + b_front, b_hi - b_back, label))
            else:
                append((a_lo, a_hi, b_lo, b_hi, label))
            start = end


def _single_instances(order, offsets, documents, max_num_tokens, short_seq_prob, rng, out) -> None:
    """Without NSP: the same gathering, one segment, cut from front or back at random."""
    uniform, getrandbits = rng.random, rng.getrandbits
    below = _below(getrandbits)
    for document in order:
        first, last = documents[document], documents[document + 1]
        target = max_num_tokens
        if uniform() < short_seq_prob:
            target = 2 + below(max_num_tokens - 1)
        start = first
        while start < last:
            end = bisect_left(offsets, offsets[start] + target, start + 1, last)
            lo, hi = offsets[start], offsets[end]
            excess = hi - lo - max_num_tokens
            if excess > 0:
                front = getrandbits(excess).bit_count()
                lo, hi = lo + front, hi - (excess - front)
            out.append((lo, hi, hi, hi, 0))
            start = end


# ---------------------------------------------------------------------------
# Masking
# ---------------------------------------------------------------------------

# Shape legend: N = instances in a batch, T = max_seq_length, P = max_predictions_per_seq.


@dataclasses.dataclass
class MaskingStats:
    instances: int = 0
    random_next: int = 0
    real_tokens: int = 0  # input_mask ones: [CLS], [SEP] and text
    masked: int = 0
    as_mask_token: int = 0
    kept: int = 0
    random_token: int = 0

    def add(self, other: "MaskingStats") -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


def mask_instances(
    tokens: np.ndarray,
    instances: np.ndarray,
    options: PretrainingDataOptions,
    vocab: VocabularyIds,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], MaskingStats]:
    """Builds and masks a batch of instances: ``[N, 5]`` spans -> the record features.

    Returns the feature arrays of :mod:`data.records` (``[N, T]``, ``[N, P]``,
    ``[N, 1]``) and counts for the statistics.
    """
    T, P = options.max_seq_length, options.max_predictions_per_seq
    rows = len(instances)
    a_lo, a_hi, b_lo, b_hi, label = instances.T  # each [N]
    a_length, b_length = a_hi - a_lo, b_hi - b_lo
    pair = b_length > 0
    b_start = a_length + 2  # position of B's first token
    length = b_start + np.where(pair, b_length + 1, 0)  # [N] real tokens
    position = np.arange(T, dtype=np.int32)[None, :]  # [1, T]

    from data import codec  # compiled (numba); imported here so the module loads without it

    ids = codec.place_segments(  # [N, T] [CLS] A [SEP] B [SEP], padded
        tokens, np.ascontiguousarray(instances, dtype=np.int64), vocab.pad_id, vocab.cls_id, vocab.sep_id, T
    )

    input_mask = position < length[:, None]  # [N, T]
    segment_ids = (position >= b_start[:, None]) & input_mask  # all 0 for single segments
    in_a = (position >= 1) & (position <= a_length[:, None])
    text = in_a | (segment_ids & (position < (length - 1)[:, None]))  # [N, T] maskable: not [CLS]/[SEP]/padding

    # Python's round() halves to even, and so does rint.
    wanted = np.minimum(P, np.maximum(1, np.rint(length * options.masked_lm_prob))).astype(np.int64)  # [N]
    if options.whole_word_mask:
        selected = _choose_whole_words(ids, text, wanted, vocab.continuation, rng)
    else:
        selected = _choose_positions(text, wanted, rng)

    flat = np.flatnonzero(selected)  # row-major: sorted by row, then position
    row, column = np.divmod(flat, T)
    count = len(flat)
    per_row = np.bincount(row, minlength=rows)
    slot = np.arange(count) - np.repeat(np.cumsum(per_row) - per_row, per_row)  # [count] index among the row's predictions
    original = ids.reshape(-1)[flat]
    kind = rng.random(count)
    as_mask = kind < 0.8
    as_random = kind >= 0.9
    replacement = original.copy()
    replacement[as_mask] = vocab.mask_id
    replacement[as_random] = rng.integers(0, vocab.size, int(as_random.sum()))
    ids.reshape(-1)[flat] = replacement

    masked_lm_positions = np.zeros((rows, P), dtype=np.int32)
    masked_lm_ids = np.zeros((rows, P), dtype=np.int32)
    masked_lm_weights = np.zeros((rows, P), dtype=np.float32)
    masked_lm_positions[row, slot] = column
    masked_lm_ids[row, slot] = original
    masked_lm_weights[row, slot] = 1.0

    features = {
        "input_ids": ids,
        "input_mask": input_mask,
        "segment_ids": segment_ids,
        "masked_lm_positions": masked_lm_positions,
        "masked_lm_ids": masked_lm_ids,
        "masked_lm_weights": masked_lm_weights,
    }
    if options.next_sentence_prediction:
        features[records.LABEL_FEATURE] = label[:, None]
    random_tokens = int(as_random.sum())
    stats = MaskingStats(
        instances=rows,
        random_next=int(label.sum()),
        real_tokens=int(length.sum()),
        masked=count,
        as_mask_token=int(as_mask.sum()),
        kept=count - int(as_mask.sum()) - random_tokens,
        random_token=random_tokens,
    )
    return features, stats


def _random_order_keys(rows: int, T: int, valid: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Random sort keys ``[N, T]`` uint32 for a random order of the ``valid`` columns.

    A key is ``[invalid flag | random bits | column]``: keys never tie, valid
    columns sort first in a uniformly random order (ties of the random bits,
    about 1 in 10^5 rows, break by column), and the column of a sorted key is
    ``key & (2**bits - 1)``. Returns the keys and ``bits``.
    """
    bits = max(1, (T - 1).bit_length())
    keys = rng.integers(0, 1 << 32, (rows, T), dtype=np.uint32) >> np.uint32(bits + 1) << np.uint32(bits)
    keys |= np.arange(T, dtype=np.uint32)
    keys[~valid] |= np.uint32(1 << 31)
    return keys, bits


def _choose_positions(text: np.ndarray, wanted: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``wanted[i]`` positions of row ``i`` uniformly at random among its ``text`` ones.

    The original shuffles the candidates and takes the first ones; here every
    candidate gets a random key and the ``wanted`` smallest keys win. Keys
    never tie (see :func:`_random_order_keys`), so exactly ``wanted`` win (all
    candidates when there are fewer).
    """
    keys, _ = _random_order_keys(*text.shape, text, rng)
    threshold = np.take_along_axis(np.sort(keys, axis=1), (wanted - 1)[:, None], axis=1)  # [N, 1]
    return text & (keys <= threshold)


def _choose_whole_words(
    ids: np.ndarray, text: np.ndarray, wanted: np.ndarray, continuation: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Whole-word selection: ``[N, T]`` -> bool ``[N, T]`` of chosen positions.

    Words (a piece and the ``##`` pieces after it, never across [SEP]) are
    visited in a random order; a word is taken when it fits in what is still
    wanted and skipped otherwise, until ``wanted`` pieces are chosen -- the
    original's loop. Done for a batch: the words before the first that does
    not fit are all taken (a cumulative sum); then each round takes, in every
    row with room left, the next word small enough, until no row has room
    or words.
    """
    rows, T = ids.shape
    follows_text = np.zeros_like(text)
    follows_text[:, 1:] = text[:, :-1]
    starts = text & ~(continuation[ids] & follows_text)  # [N, T] first piece of each word
    word = np.cumsum(starts, axis=1) - 1  # [N, T] word index of each text position
    words = starts.sum(axis=1)  # [N]
    size = np.zeros((rows, T), dtype=np.int64)  # [N, W] pieces per word (W <= T)
    owner = (np.arange(rows)[:, None] * T + word)[text]
    size.reshape(-1)[:] = np.bincount(owner, minlength=rows * T)
    column = np.arange(T)[None, :]
    exists = column < words[:, None]  # [N, W]
    keys, bits = _random_order_keys(rows, T, exists, rng)
    order = (np.sort(keys, axis=1) & np.uint32((1 << bits) - 1)).astype(np.int64)  # [N, W] words in visiting order
    visiting = np.where(exists, np.take_along_axis(size, order, axis=1), 0)  # [N, W] sizes in visiting order

    taken = exists & (np.cumsum(visiting, axis=1) <= wanted[:, None])  # the prefix that fits
    room = wanted - (visiting * taken).sum(axis=1)  # [N]
    last = taken.sum(axis=1) - 1  # [N] the word that did not fit is last + 1: skipped
    while True:
        active = (room > 0) & (last + 1 < words)
        if not active.any():
            break
        fits = exists & (column > (last + 1)[:, None]) & (visiting <= room[:, None]) & active[:, None]
        found = fits.any(axis=1)
        k = np.argmax(fits, axis=1)
        hit = np.flatnonzero(found)
        taken[hit, k[hit]] = True
        room[hit] -= visiting[hit, k[hit]]
        # Next round looks after the word just taken (the skipped one is behind it).
        last[hit] = k[hit] - 1
        room[~found] = 0
    word_taken = np.zeros((rows, T), dtype=bool)
    np.put_along_axis(word_taken, order, taken, axis=1)
    return text & np.take_along_axis(word_taken, np.maximum(word, 0), axis=1)


# ---------------------------------------------------------------------------
# One chunk, start to finish (runs in a worker process)
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class ChunkResult:
    index: int
    blob: bytes  # the framed TFRecord records back to back
    lengths: np.ndarray  # [instances] bytes of each
    stats: MaskingStats


def chunk_generators(seed: int, chunk_index: int) -> tuple[random.Random, np.random.Generator]:
    """The two random generators of a chunk, from (seed, chunk index) only."""
    sequence = np.random.SeedSequence([seed, chunk_index])
    creation, masking = sequence.spawn(2)
    python_seed = int.from_bytes(creation.generate_state(4, np.uint32).tobytes(), "little")
    return random.Random(python_seed), np.random.Generator(np.random.PCG64(masking))


def process_chunk(chunk: TokenizedChunk, options: PretrainingDataOptions, vocab: VocabularyIds) -> ChunkResult:
    """Instances, masks and serialized examples of one chunk (deterministic in its index)."""
    creation_rng, masking_rng = chunk_generators(options.seed, chunk.index)
    instances = np.asarray(create_instances(chunk, options, creation_rng), dtype=np.int64).reshape(-1, 5)
    instances = instances[masking_rng.permutation(len(instances))]  # the original's final shuffle
    batch = max(1, _MASK_BATCH_TOKENS // options.max_seq_length)
    blobs, lengths, stats = [], [], MaskingStats()
    for start in range(0, len(instances), batch):
        features, batch_stats = mask_instances(chunk.tokens, instances[start : start + batch], options, vocab, masking_rng)
        blob, sizes = records.encode_examples(features, framed=True)
        blobs.append(blob)
        lengths.append(sizes)
        stats.add(batch_stats)
    return ChunkResult(
        chunk.index,
        b"".join(blobs),
        np.concatenate(lengths) if lengths else np.zeros(0, np.int64),
        stats,
    )


# ---------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Progress:
    """Running totals, passed to ``on_progress`` after each chunk is written."""

    documents: int = 0
    sentences: int = 0
    tokens: int = 0  # corpus tokens (word pieces)
    instances: int = 0
    seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class PretrainingDataReport:
    """What ``bert make-data`` wrote, with the statistics of its examples."""

    output: Path
    manifest: Path
    shards: tuple[Path, ...]
    shard_counts: tuple[int, ...]
    files: int
    input_bytes: int
    chunks: int
    documents: int
    sentences: int
    tokens: int
    stats: MaskingStats
    options: PretrainingDataOptions
    lowercase: bool
    seconds: float
    warnings: tuple[str, ...]

    @property
    def instances(self) -> int:
        return self.stats.instances

    @property
    def padding_share(self) -> float:
        slots = self.stats.instances * self.options.max_seq_length
        return 1.0 - self.stats.real_tokens / slots if slots else 0.0


def _dataset_identity(inputs, options, vocab, lowercase, num_shards, compression) -> dict:
    """What makes two runs the same dataset (an output dir holding another is refused)."""
    return {
        "inputs": [str(Path(p).resolve()) for p in inputs],
        "options": dataclasses.asdict(options),
        "vocab_sha256": vocab.sha256,
        "lowercase": lowercase,
        "num_shards": num_shards,
        "compression": compression,
    }


def _check_output(output: Path, identity: dict, overwrite: bool) -> list[Path]:
    """Refuses a directory holding a different dataset; returns the old shards to replace."""
    if output.exists() and not output.is_dir():
        raise DataError(f"--output {output}: exists and is not a directory; choose a directory")
    if not output.exists():
        return []
    old_shards = sorted(p for p in output.iterdir() if records.is_shard_name(p.name))
    manifest_path = output / records.MANIFEST_NAME
    if overwrite:
        return old_shards
    if manifest_path.exists():
        try:
            previous = json.loads(manifest_path.read_text(encoding="utf-8")).get("dataset")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            previous = None
        if previous != identity:
            changed = sorted(k for k in identity if not isinstance(previous, dict) or previous.get(k) != identity[k])
            raise DataError(
                f"--output {output}: already holds a different dataset (other {', '.join(changed) or 'manifest'}); "
                "pass --overwrite to replace it or choose another directory"
            )
    elif old_shards:
        raise DataError(
            f"--output {output}: holds record files ({old_shards[0].name}, ...) but no {records.MANIFEST_NAME}; "
            "pass --overwrite to replace them or choose another directory"
        )
    return old_shards


@dataclasses.dataclass(frozen=True)
class _Finished:
    """A chunk made in the main process, queued with the workers' futures."""

    value: ChunkResult

    def done(self) -> bool:
        return True

    def result(self) -> ChunkResult:
        return self.value


def _started() -> None:
    """A task that only makes the pool start a worker process."""


def _pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes that start clean (never a fork of a process holding TensorFlow)."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if context.get_start_method() == "forkserver":
        # Workers fork from a server that has numpy and this module loaded already.
        context.set_forkserver_preload(["data.pretraining_data", "data.codec"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def create_pretraining_data(
    inputs: Sequence[str | os.PathLike],
    vocab_path: str | os.PathLike,
    output: str | os.PathLike,
    options: PretrainingDataOptions = PretrainingDataOptions(),
    *,
    lowercase: bool | None = None,
    num_shards: int = 1,
    compression: str = "none",
    workers: int = 1,
    overwrite: bool = False,
    on_total: Callable[[int], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> PretrainingDataReport:
    """Turns text files into masked-LM / next-sentence TFRecord shards plus ``manifest.json``.

    Args:
        inputs: Text files or globs (plain or .gz, UTF-8).
        vocab_path: The ``vocab.txt`` (its manifest, if any, gives the casing).
        output: Directory for ``part-0000i-of-0000N.tfrecord[.gz]`` and ``manifest.json``.
        options: The recipe.
        lowercase: Casing; None takes it from the vocabulary (see ``resolve_lowercase``).
        num_shards: Output files; instances are dealt over them round-robin.
        compression: ``"none"`` or ``"gzip"``.
        workers: Processes that create, mask and serialize instances; 0 does
            everything in this process. The output does not depend on it.
        overwrite: Replace a different dataset already in ``output``.
        on_total / on_bytes / on_progress: Progress callbacks (input size in
            bytes, bytes read, running totals after each chunk).

    Raises:
        DataError: for anything wrong with the inputs, vocabulary, options or output directory.
    """
    started = time.perf_counter()
    options.validate()
    if num_shards < 1:
        raise DataError(f"--num-shards {num_shards}: must be at least 1")
    if workers < 0:
        raise DataError(f"--workers {workers}: must be 0 (no worker processes) or more")
    if compression not in records.COMPRESSIONS:
        raise DataError(f"--compression {compression}: use one of {', '.join(records.COMPRESSIONS)}")
    files = expand_inputs(inputs)
    output = Path(output)

    from data.tokenization import Vocabulary, resolve_lowercase

    vocab = Vocabulary.load(vocab_path)
    lowercase = resolve_lowercase(vocab, lowercase)
    identity = _dataset_identity(files, options, vocab, lowercase, num_shards, compression)
    old_shards = _check_output(output, identity, overwrite)
    warnings = []
    full = round(options.max_seq_length * options.masked_lm_prob)
    if full > options.max_predictions_per_seq:
        warnings.append(
            f"--max-predictions-per-seq {options.max_predictions_per_seq} caps masking: a full sequence of "
            f"{options.max_seq_length} tokens would get {full} predictions at --masked-lm-prob "
            f"{options.masked_lm_prob:g} (the original used 20 for 128 and 80 for 512)"
        )

    input_bytes = total_bytes(files)
    if on_total is not None:
        on_total(input_bytes)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"--output {output}: cannot create the directory ({error.strerror})") from None

    progress = Progress()
    stats = MaskingStats()
    chunk_chars = max(1, round(options.chunk_size_mb * _MB))
    documents = read_documents(files, options.input_format, on_bytes)
    in_flight: collections.deque = collections.deque()
    chunks = 0
    pool = _pool(workers) if workers > 0 else None
    try:
        if pool is not None:
            for _ in range(workers):  # start the workers while the tokenizer is built
                pool.submit(_started)
        tokenize = _tokenizer_for(vocab, lowercase)
        vocab_ids = VocabularyIds.from_vocabulary(vocab)
        with records.ShardWriter(output, num_shards, compression) as writer:

            def finish(result: ChunkResult) -> None:
                writer.write_blob(result.blob, result.lengths)
                stats.add(result.stats)
                progress.instances = stats.instances
                progress.seconds = time.perf_counter() - started
                if on_progress is not None:
                    on_progress(progress)

            for index, chunk_text in enumerate(chunk_documents(documents, chunk_chars)):
                chunk = tokenize_chunk(index, chunk_text, tokenize)
                del chunk_text
                chunks += 1
                # Only a corpus of fewer than MIN_CHUNK_DOCUMENTS documents makes such a chunk.
                if options.next_sentence_prediction and chunk.num_documents < 2:
                    _too_few_documents(files, chunk.num_documents)
                progress.documents += chunk.num_documents
                progress.sentences += chunk.num_sentences
                progress.tokens += len(chunk.tokens)
                if pool is None:
                    finish(process_chunk(chunk, options, vocab_ids))
                    continue
                if progress.instances and sum(not item.done() for item in in_flight) >= 2 * workers:
                    # Every worker is busy with another chunk queued: this
                    # process makes the chunk itself rather than wait (the
                    # result is the same whoever makes it). Not before the
                    # workers' first result: loading the compiled kernels
                    # here (about a second) only pays on long runs.
                    in_flight.append(_Finished(process_chunk(chunk, options, vocab_ids)))
                else:
                    in_flight.append(pool.submit(process_chunk, chunk, options, vocab_ids))
                # Results are written in chunk order as they finish; a few
                # chunks per worker at most are held, which bounds memory.
                while in_flight and (in_flight[0].done() or len(in_flight) > 2 * workers + 2):
                    finish(in_flight.popleft().result())
            while in_flight:
                finish(in_flight.popleft().result())
            if progress.documents == 0:
                _too_few_documents(files, 0)
            writer.close()
            # The old dataset stops looking complete before its shards are replaced.
            (output / records.MANIFEST_NAME).unlink(missing_ok=True)
            shards = writer.publish()
            for stale in old_shards:
                if stale not in shards:
                    stale.unlink(missing_ok=True)
            shard_counts = tuple(writer.counts)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    seconds = time.perf_counter() - started
    report = PretrainingDataReport(
        output=output,
        manifest=output / records.MANIFEST_NAME,
        shards=tuple(shards),
        shard_counts=shard_counts,
        files=len(files),
        input_bytes=input_bytes,
        chunks=chunks,
        documents=progress.documents,
        sentences=progress.sentences,
        tokens=progress.tokens,
        stats=stats,
        options=options,
        lowercase=lowercase,
        seconds=seconds,
        warnings=tuple(warnings),
    )
    _write_manifest(report, identity, vocab, files)
    return report


def _too_few_documents(files: Sequence[Path], found: int) -> None:
    where = str(files[0]) if len(files) == 1 else f"{len(files)} input files"
    if found == 0:
        raise DataError(f"{where}: no text to make examples from (empty, or only blank lines)")
    raise DataError(
        f"{where}: only one document; next-sentence prediction needs at least two. Separate documents "
        "with a blank line (--input-format lines) or pass --no-nsp"
    )


def _write_manifest(report: PretrainingDataReport, identity: dict, vocab, files: Sequence[Path]) -> None:
    """Written last: a directory with a manifest holds a complete dataset."""
    options = report.options
    stats = report.stats
    manifest = {
        "format_version": records.FORMAT_VERSION,
        "created_by": "bert make-data",
        "max_seq_length": options.max_seq_length,
        "max_predictions_per_seq": options.max_predictions_per_seq,
        "next_sentence_prediction": options.next_sentence_prediction,
        "vocab_file": str(Path(vocab.path).resolve()),
        "vocab_sha256": vocab.sha256,
        "vocab_size": len(vocab),
        "lowercase": report.lowercase,
        "options": dataclasses.asdict(options),
        "inputs": [{"file": str(path), "bytes": path.stat().st_size} for path in files],
        "counts": {
            "chunks": report.chunks,
            "documents": report.documents,
            "sentences": report.sentences,
            "tokens": report.tokens,
            "instances": stats.instances,
            "random_next": stats.random_next,
            "real_tokens": stats.real_tokens,
            "masked_tokens": stats.masked,
            "masked_as_mask_token": stats.as_mask_token,
            "masked_kept": stats.kept,
            "masked_as_random_token": stats.random_token,
        },
        "shards": [
            {"file": path.name, "instances": count} for path, count in zip(report.shards, report.shard_counts)
        ],
        "compression": identity["compression"],
        "dataset": identity,
        "seconds": round(report.seconds, 3),
    }
    with atomic_path(report.manifest) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
