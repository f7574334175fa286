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
:mod:`data.beam_pipeline` makes the same chunks, through the same per-chunk
code with the same seeds, as an Apache Beam pipeline.

Tokenization runs in the main process (the TensorFlow tokenizer, on batches);
instance creation and masking (loops compiled with numba, in
:mod:`data.pretraining_kernels`) and serialization
(:func:`data.records.encode_examples`) run in ``workers`` processes that
never import TensorFlow, with a bounded number of chunks in flight. A worker
leaves a chunk's framed records in a file in a hidden directory of the
output, laid out shard by shard (one gzip member per shard when compressing,
so compression runs in parallel too), and the main process appends them to
the shards with ``copy_file_range`` (inside the kernel): moving them back through
the pool's pipe cost the main process, the bottleneck, more than the kernels
do. Memory therefore stays flat as the corpus grows.

Random numbers: each chunk has a Python ``random.Random`` for instance
creation, drawn in the original's order (the document shuffle, then per
document: target length, split points, the NSP coin, random documents and
starts; ``randint`` is reproduced draw for draw by the compiled loop, which
runs the same Mersenne Twister), except that the coins for truncation sides
are the bits of one ``getrandbits`` per instance instead of one ``random()``
per token; and a numpy generator for the final shuffle of the instances and,
through one 64-bit seed per batch of instances, for masking (positions,
replacement kinds, random tokens: SplitMix64 in the compiled loop). The
distributions are the original's; the exact streams, and so the bytes, are
not (masking draws are interleaved with creation there).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from data import records
from data.errors import DataError
from data.textio import atomic_path, expand_inputs, iter_lines, output_directories, total_bytes, writable_directory

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
        yield from documents_of_lines(iter_lines(path, on_bytes), input_format)


def documents_of_lines(lines: Iterable[str], input_format: str = "lines") -> Iterator[list[str]]:
    """The documents of one file's lines (see :func:`read_documents`).

    Both runners cut documents here, so the Beam pipeline, which reads each
    file whole in one worker, finds exactly the documents this command does.
    """
    if input_format == "paragraphs":
        from data.sentences import paragraphs_to_documents

        yield from paragraphs_to_documents(lines)
        return
    document: list[str] = []
    for line in lines:
        if line.strip():
            document.append(line)
        elif document:
            yield document
            document = []
    if document:
        yield document


def document_chars(document: Sequence[str]) -> int:
    """A document's size for chunking: its characters, one line end per sentence included."""
    return sum(len(sentence) + 1 for sentence in document)


def chunk_documents(
    documents: Iterable, chunk_chars: int, chars_of: Callable[[object], int] = document_chars
) -> Iterator[list]:
    """Groups documents into chunks of about ``chunk_chars`` characters (see the module docstring).

    A chunk closes after the document that brings it to ``chunk_chars``
    characters and at least :data:`MIN_CHUNK_DOCUMENTS` documents; the last
    chunk joins the one before when it has fewer documents than that. So
    every chunk has that many documents to draw random next segments from
    (unless the whole corpus has fewer). Boundaries depend only on the text.

    ``chars_of`` gives a document's size; the Beam pipeline plans its chunks
    from the sizes alone (``chunk_documents(sizes, chunk_chars, int)``), so
    both runners cut the corpus by this one rule.
    """
    ready: list | None = None  # held back until we know it is not the last
    current: list = []
    size = 0
    for document in documents:
        current.append(document)
        size += chars_of(document)
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


def tokenized_chunks(
    documents: Iterable[list[str]], chunk_chars: int, tokenize: Callable, threads: int = 1
) -> Iterator[TokenizedChunk]:
    """The chunks of ``documents`` (:func:`chunk_documents`), tokenized, in order.

    ``threads`` threads tokenize chunks at once while this one reads and cuts
    the text: the TensorFlow tokenizer releases the GIL while it runs, so
    they use that many cores (two threads tokenize about 1.9x as fast as one).
    At most ``threads + 1`` chunks are in the works.
    """
    executor = ThreadPoolExecutor(threads, thread_name_prefix="tokenize")
    pending: collections.deque = collections.deque()
    try:
        for index, text in enumerate(chunk_documents(documents, chunk_chars)):
            pending.append(executor.submit(tokenize_chunk, index, text, tokenize))
            del text
            if len(pending) > threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


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

# An instance is a row of five ints (a_lo, a_hi, b_lo, b_hi, label):
# tokens[a_lo:a_hi] is segment A, tokens[b_lo:b_hi] segment B (empty without
# NSP), and the label (1 = random next). Spans into the chunk's token array
# keep a chunk's instances small whatever dupe_factor.


def create_instances(chunk: TokenizedChunk, options: PretrainingDataOptions, rng: random.Random) -> np.ndarray:
    """All instances of one chunk, in the order made: shuffled documents, ``dupe_factor`` passes.

    The original's ``create_training_instances`` up to its final shuffle of
    the instances, which :func:`process_chunk` does (with numpy). Returns
    ``[M, 5]`` int64 instance rows. The loop is compiled
    (:func:`data.pretraining_kernels.make_instances`) and draws from ``rng``
    exactly what the Python loop of the original would.
    """
    from data import pretraining_kernels  # compiled (numba); imported here so the module loads without it

    return pretraining_kernels.make_instances(
        rng,
        chunk.sentence_offsets,
        chunk.document_offsets,
        options.max_num_tokens,
        options.short_seq_prob,
        options.dupe_factor,
        options.next_sentence_prediction,
    )


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
    ``[N, 1]``) and counts for the statistics. The row loop is compiled
    (:func:`data.pretraining_kernels.mask`); it draws from its own generator,
    seeded by one draw from ``rng``.
    """
    from data import pretraining_kernels  # compiled (numba); imported here so the module loads without it

    T, P = options.max_seq_length, options.max_predictions_per_seq
    instances = np.ascontiguousarray(instances, dtype=np.int64).reshape(-1, 5)
    a_length, b_length, label = instances[:, 1] - instances[:, 0], instances[:, 3] - instances[:, 2], instances[:, 4]
    length = a_length + 2 + np.where(b_length > 0, b_length + 1, 0)  # [N] real tokens
    # Python's round() halves to even, and so does rint.
    wanted = np.minimum(P, np.maximum(1, np.rint(length * options.masked_lm_prob))).astype(np.int64)  # [N]
    seed = rng.integers(0, np.iinfo(np.uint64).max, dtype=np.uint64, endpoint=True)
    ids, input_mask, segment_ids, positions, originals, weights, counts = pretraining_kernels.mask(
        tokens, instances, wanted, T, P, options.whole_word_mask, vocab, seed
    )
    features = {
        "input_ids": ids,
        "input_mask": input_mask,
        "segment_ids": segment_ids,
        "masked_lm_positions": positions,
        "masked_lm_ids": originals,
        "masked_lm_weights": weights,
    }
    if options.next_sentence_prediction:
        features[records.LABEL_FEATURE] = label[:, None]
    as_mask, kept, random_token = (int(c) for c in counts)
    stats = MaskingStats(
        instances=len(instances),
        random_next=int(label.sum()),
        real_tokens=int(length.sum()),
        masked=as_mask + kept + random_token,
        as_mask_token=as_mask,
        kept=kept,
        random_token=random_token,
    )
    return features, stats


# ---------------------------------------------------------------------------
# One chunk, start to finish (runs in a worker process)
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class ChunkResult:
    """A chunk's framed records, laid out group by group for ``groups`` shards (see
    :func:`data.records.grouped_order`): in ``blob``, or in the file ``path``."""

    index: int
    blob: bytes | None
    path: str | None
    group_bytes: np.ndarray  # [groups] bytes of each group
    group_counts: np.ndarray  # [groups] records of each group
    stats: MaskingStats


def chunk_generators(seed: int, chunk_index: int) -> tuple[random.Random, np.random.Generator]:
    """The two random generators of a chunk, from (seed, chunk index) only."""
    sequence = np.random.SeedSequence([seed, chunk_index])
    creation, masking = sequence.spawn(2)
    python_seed = int.from_bytes(creation.generate_state(4, np.uint32).tobytes(), "little")
    return random.Random(python_seed), np.random.Generator(np.random.PCG64(masking))


def chunk_batches(
    chunk: TokenizedChunk, options: PretrainingDataOptions, vocab: VocabularyIds
) -> Iterator[tuple[dict[str, np.ndarray], MaskingStats]]:
    """A chunk's examples as batches of record features, in record order, with their counts.

    Deterministic in the chunk's index: its instances are created, shuffled
    and masked with the generators of :func:`chunk_generators`. The local
    writer (:func:`process_chunk`) and the Beam pipeline both go through here,
    so for the same seed they make the same records.
    """
    creation_rng, masking_rng = chunk_generators(options.seed, chunk.index)
    instances = create_instances(chunk, options, creation_rng)
    instances = instances[masking_rng.permutation(len(instances))]  # the original's final shuffle
    batch = max(1, _MASK_BATCH_TOKENS // options.max_seq_length)
    for start in range(0, len(instances), batch):
        yield mask_instances(chunk.tokens, instances[start : start + batch], options, vocab, masking_rng)


def process_chunk(
    chunk: TokenizedChunk,
    options: PretrainingDataOptions,
    vocab: VocabularyIds,
    groups: int = 1,
    compression: str = "none",
    spill: str | None = None,
) -> ChunkResult:
    """Instances, masks and serialized examples of one chunk (deterministic in its index).

    Record ``i`` of the chunk goes to group ``i % groups`` (the writer turns
    groups into shards); with ``compression="gzip"`` each group is one gzip
    member (:func:`data.records.gzip_member`). With ``spill``, a directory,
    the records go to a file there rather than back through the result: a
    worker's result then costs the main process a copy inside the kernel
    instead of a trip through a pipe.
    """
    pieces: list[list[memoryview]] = [[] for _ in range(groups)]
    group_bytes = np.zeros(groups, dtype=np.int64)
    group_counts = np.zeros(groups, dtype=np.int64)
    stats = MaskingStats()
    start = 0  # records of the chunk before this batch
    for features, batch_stats in chunk_batches(chunk, options, vocab):
        rows = len(features["input_ids"])
        order = records.grouped_order(rows, groups, start)
        if groups > 1:
            features = {name: values[order] for name, values in features.items()}
        blob, sizes = records.encode_examples(features, framed=True)
        group = (start + order) % groups  # [rows] group of each record, in blob order
        size = np.bincount(group, weights=sizes, minlength=groups).astype(np.int64)
        count = np.bincount(group, minlength=groups)
        view, at = memoryview(blob), 0
        for g in range(groups):
            pieces[g].append(view[at : at + size[g]])
            at += size[g]
        group_bytes += size
        group_counts += count
        stats.add(batch_stats)
        start += rows
    if compression == "gzip":
        pieces = [[records.gzip_member(b"".join(group))] for group in pieces]
        group_bytes = np.array([len(group[0]) for group in pieces], dtype=np.int64)
    ordered = [piece for group in pieces for piece in group]
    if spill is None:
        return ChunkResult(chunk.index, b"".join(ordered), None, group_bytes, group_counts, stats)
    path = os.path.join(spill, f"chunk-{chunk.index:08d}")
    with open(path, "wb", buffering=0) as handle:
        for piece in ordered:
            records.write_fully(handle, piece)
    return ChunkResult(chunk.index, None, path, group_bytes, group_counts, stats)


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


def input_name(path: str | os.PathLike) -> str:
    """How a dataset names an input: the absolute path of a local file, a URL (``gs://...``) as given."""
    text = os.fspath(path)
    return text if "://" in text else str(Path(text).resolve())


def _dataset_identity(inputs, options, vocab, lowercase, num_shards, compression) -> dict:
    """What makes two runs the same dataset (an output dir holding another is refused)."""
    return {
        "inputs": [input_name(p) for p in inputs],
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
    read_manifest = manifest_path.read_bytes if manifest_path.exists() else None
    check_replaceable(output, identity, overwrite, read_manifest, [p.name for p in old_shards])
    return old_shards


def check_replaceable(
    output: str | os.PathLike,
    identity: dict,
    overwrite: bool,
    read_manifest: Callable[[], bytes] | None,
    old_shards: Sequence[str],
) -> None:
    """Refuses an output holding a different dataset, or records without a manifest, unless ``overwrite``.

    ``read_manifest`` reads the manifest there (None: there is none) and
    ``old_shards`` names the record files there, so the same rule holds for a
    local directory and for one on Cloud Storage (the Beam pipeline's).
    """
    if overwrite:
        return
    if read_manifest is not None:
        try:
            previous = json.loads(read_manifest().decode("utf-8")).get("dataset")
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
            f"--output {output}: holds record files ({old_shards[0]}, ...) but no {records.MANIFEST_NAME}; "
            "pass --overwrite to replace them or choose another directory"
        )


def _started() -> None:
    """A task that only makes the pool start a worker process."""


# What a run leaves in the output directory until it ends: shards under
# temporary names, the workers' record files and the Beam pipeline's staging
# directory, each named with its pid.
_LEFTOVER = re.compile(r"\.(?:(?:chunks|beam)-(\d+)|part-\d+-of-\d+\.tfrecord(?:\.gz)?\.tmp-(\d+))")


def _remove_leftovers(output: Path) -> None:
    """Deletes what a killed run (SIGKILL, power loss) left in ``output``, once its process is gone."""
    for entry in output.iterdir():
        match = _LEFTOVER.fullmatch(entry.name)
        if match is None or _running(int(match.group(1) or match.group(2))):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists (this one included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Workers:
    """The worker processes, started in the background, and the directory they leave records in.

    Starting them (a process server that loads numpy and the compiled
    kernels, about a second) would block the caller; a thread does it while
    the main process builds the tokenizer and tokenizes. Processes start
    clean (never a fork of a process holding TensorFlow).
    """

    def __init__(self, count: int, spill: Path) -> None:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if context.get_start_method() == "forkserver":
            # Workers fork from a server that has numpy and the kernels loaded already.
            context.set_forkserver_preload(["data.pretraining_data", "data.codec", "data.pretraining_kernels"])
        self._pool = ProcessPoolExecutor(max_workers=count, mp_context=context)
        self.spill = spill
        spill.mkdir(exist_ok=True)
        self._failure: BaseException | None = None
        self._starting = threading.Thread(target=self._start, args=(count,), name="start-workers", daemon=True)
        self._starting.start()

    def _start(self, count: int) -> None:
        try:
            for _ in range(count):
                self._pool.submit(_started)
        except BaseException as error:  # noqa: BLE001  re-raised by submit()
            self._failure = error

    def ready(self) -> bool:
        """Whether the processes are up (submitting no longer waits for them)."""
        return not self._starting.is_alive()

    def submit(self, chunk: TokenizedChunk, options, vocab: VocabularyIds, groups: int, compression: str):
        """:func:`process_chunk` in a worker (records left in a file in ``spill``); a future."""
        self._starting.join()
        if self._failure is not None:
            raise self._failure
        return self._pool.submit(process_chunk, chunk, options, vocab, groups, compression, str(self.spill))

    def close(self) -> None:
        """Stops the processes (queued chunks are dropped) and deletes the directory."""
        self._starting.join()
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.spill, ignore_errors=True)


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
        workers: Processes that create, mask and serialize instances (and as
            many threads of this process tokenize); 0 does everything in this
            process, with one tokenizer thread. The output does not depend on it.
        overwrite: Replace a different dataset already in ``output``.
        on_total / on_bytes / on_progress: Progress callbacks (input size in
            bytes, bytes read, running totals after each chunk).

    Raises:
        DataError: for anything wrong with the inputs, vocabulary, options or output directory.
    """
    started = time.perf_counter()
    _check_run_arguments(options, num_shards, workers, compression)
    files = expand_inputs(inputs)
    output = Path(output)
    vocab, lowercase = _load_vocabulary(vocab_path, lowercase)
    identity = _dataset_identity(files, options, vocab, lowercase, num_shards, compression)
    old_shards = _check_output(output, identity, overwrite)
    warnings = _masking_warnings(options)
    input_bytes = total_bytes(files)
    if on_total is not None:
        on_total(input_bytes)
    flow = _ChunkFlow(options, num_shards, compression, workers, started, on_progress)
    with output_directories(output):  # a failed run leaves no new, empty directory
        _make_output_directory(output)
        shards, shard_counts = _write_shards(flow, files, vocab, lowercase, output, old_shards, on_bytes)
    report = PretrainingDataReport(
        output=output, manifest=output / records.MANIFEST_NAME, shards=tuple(shards), shard_counts=shard_counts,
        files=len(files), input_bytes=input_bytes, chunks=flow.chunks, documents=flow.progress.documents,
        sentences=flow.progress.sentences, tokens=flow.progress.tokens, stats=flow.stats, options=options,
        lowercase=lowercase, seconds=time.perf_counter() - started, warnings=tuple(warnings),
    )
    _write_manifest(report, identity, vocab, files)
    return report


def _check_run_arguments(options: PretrainingDataOptions, num_shards: int, workers: int, compression: str) -> None:
    """Refuses a recipe, shard count, worker count or compression the run cannot honour, before any work."""
    options.validate()
    if num_shards < 1:
        raise DataError(f"--num-shards {num_shards}: must be at least 1")
    if workers < 0:
        raise DataError(f"--workers {workers}: must be 0 (no worker processes) or more")
    if compression not in records.COMPRESSIONS:
        raise DataError(f"--compression {compression}: use one of {', '.join(records.COMPRESSIONS)}")


def _load_vocabulary(vocab_path: str | os.PathLike, lowercase: bool | None):
    """The vocabulary and the casing to tokenize with (None: the vocabulary's, see ``resolve_lowercase``)."""
    from data.tokenization import Vocabulary, resolve_lowercase

    vocab = Vocabulary.load(vocab_path)
    return vocab, resolve_lowercase(vocab, lowercase)


def _masking_warnings(options: PretrainingDataOptions) -> list[str]:
    """A warning when ``max_predictions_per_seq`` caps the masking of a full sequence (likely a recipe mistake)."""
    warnings = []
    full = round(options.max_seq_length * options.masked_lm_prob)
    if full > options.max_predictions_per_seq:
        warnings.append(
            f"--max-predictions-per-seq {options.max_predictions_per_seq} caps masking: a full sequence of "
            f"{options.max_seq_length} tokens would get {full} predictions at --masked-lm-prob "
            f"{options.masked_lm_prob:g} (the original used 20 for 128 and 80 for 512)"
        )
    return warnings


def _make_output_directory(output: Path) -> None:
    """Creates the output directory (checked writable) and deletes what a killed run left there."""
    writable_directory(output, "--output")
    _remove_leftovers(output)


@dataclasses.dataclass
class _ChunkFlow:
    """Chunks on their way from the tokenizer to the shards, and the running totals.

    Without workers (``pool`` None) each chunk is processed here as it comes.
    With them, chunks tokenized while the workers start wait in ``waiting``;
    results are written in chunk order as they finish, and a few chunks per
    worker at most are held, which bounds memory.
    """

    options: PretrainingDataOptions
    num_shards: int
    compression: str
    workers: int
    started: float
    on_progress: Callable[[Progress], None] | None
    pool: _Workers | None = None
    vocab_ids: VocabularyIds | None = None
    writer: records.ShardWriter | None = None
    progress: Progress = dataclasses.field(default_factory=Progress)
    stats: MaskingStats = dataclasses.field(default_factory=MaskingStats)
    chunks: int = 0
    in_flight: collections.deque = dataclasses.field(default_factory=collections.deque)
    waiting: list[TokenizedChunk] = dataclasses.field(default_factory=list)

    def add(self, chunk: TokenizedChunk) -> None:
        """Adds a chunk to the totals, then processes it here or hands it to the workers (writing what is ready)."""
        self.chunks += 1
        self.progress.documents += chunk.num_documents
        self.progress.sentences += chunk.num_sentences
        self.progress.tokens += len(chunk.tokens)
        if self.pool is None:
            self.finish(process_chunk(chunk, self.options, self.vocab_ids, self.num_shards, self.compression))
            return
        self.waiting.append(chunk)
        if self.pool.ready() or len(self.waiting) > 4 * self.workers:
            self.hand_over()
        while self.in_flight and (self.in_flight[0].done() or len(self.in_flight) > 2 * self.workers + 2):
            self.finish(self.in_flight.popleft().result())

    def hand_over(self) -> None:
        """Submits the waiting chunks to the workers."""
        for chunk in self.waiting:
            future = self.pool.submit(chunk, self.options, self.vocab_ids, self.num_shards, self.compression)
            self.in_flight.append(future)
        self.waiting.clear()

    def drain(self) -> None:
        """Hands over the chunks still waiting and writes every result still to come, in chunk order."""
        self.hand_over()
        while self.in_flight:
            self.finish(self.in_flight.popleft().result())

    def finish(self, result: ChunkResult) -> None:
        """Appends a chunk's records to the shards (deleting the worker's file) and reports progress."""
        source = result.blob if result.path is None else result.path
        self.writer.write_groups(source, result.group_bytes, result.group_counts)
        if result.path is not None:
            os.unlink(result.path)
        self.stats.add(result.stats)
        self.progress.instances = self.stats.instances
        self.progress.seconds = time.perf_counter() - self.started
        if self.on_progress is not None:
            self.on_progress(self.progress)


def _write_shards(
    flow: _ChunkFlow,
    files: Sequence[Path],
    vocab,
    lowercase: bool,
    output: Path,
    old_shards: list[Path],
    on_bytes: Callable[[int], None] | None,
) -> tuple[list[Path], tuple[int, ...]]:
    """Reads, tokenizes, processes and writes every chunk through ``flow``; the shards and their counts.

    The workers start first (in the background) so that they are up by the
    time the tokenizer is built and the first chunks are tokenized; they are
    stopped whatever happens.
    """
    options = flow.options
    chunk_chars = max(1, round(options.chunk_size_mb * _MB))
    documents = read_documents(files, options.input_format, on_bytes)
    flow.pool = _Workers(flow.workers, output / f".chunks-{os.getpid()}") if flow.workers > 0 else None
    try:
        tokenize = _tokenizer_for(vocab, lowercase)
        flow.vocab_ids = VocabularyIds.from_vocabulary(vocab)
        with records.ShardWriter(output, flow.num_shards, flow.compression) as writer:
            flow.writer = writer
            for chunk in tokenized_chunks(documents, chunk_chars, tokenize, max(1, flow.workers)):
                # Only a corpus of fewer than MIN_CHUNK_DOCUMENTS documents makes such a chunk.
                if options.next_sentence_prediction and chunk.num_documents < 2:
                    raise too_few_documents(corpus_name(files), chunk.num_documents)
                flow.add(chunk)
            flow.drain()
            if flow.progress.documents == 0:
                raise too_few_documents(corpus_name(files), 0)
            return _publish(writer, output, old_shards)
    finally:
        if flow.pool is not None:
            flow.pool.close()


def _publish(writer: records.ShardWriter, output: Path, old_shards: list[Path]) -> tuple[list[Path], tuple[int, ...]]:
    """Closes the shards and gives them their names; old shards that none replaced are deleted."""
    writer.close()
    # The old dataset stops looking complete before its shards are replaced.
    (output / records.MANIFEST_NAME).unlink(missing_ok=True)
    shards = writer.publish()
    for stale in old_shards:
        if stale not in shards:
            stale.unlink(missing_ok=True)
    return shards, tuple(writer.counts)


def corpus_name(files: Sequence[str | os.PathLike]) -> str:
    """The corpus as errors name it: its one file, or how many files it has."""
    return str(files[0]) if len(files) == 1 else f"{len(files)} input files"


def too_few_documents(where: str, found: int) -> DataError:
    """The error for a corpus with no document (``found`` 0) or, for next-sentence prediction, only one."""
    if found == 0:
        return DataError(f"{where}: no text to make examples from (empty, or only blank lines)")
    return DataError(
        f"{where}: only one document; next-sentence prediction needs at least two. Separate documents "
        "with a blank line (--input-format lines) or pass --no-nsp"
    )


def _write_manifest(report: PretrainingDataReport, identity: dict, vocab, files: Sequence[Path]) -> None:
    """Written last: a directory with a manifest holds a complete dataset."""
    inputs = [(str(path), path.stat().st_size) for path in files]
    shards = [(path.name, count, path.stat().st_size) for path, count in zip(report.shards, report.shard_counts)]
    manifest = manifest_fields(report, identity, vocab, inputs, shards)
    with atomic_path(report.manifest) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def manifest_fields(
    report: PretrainingDataReport,
    identity: dict,
    vocab,
    inputs: Sequence[tuple[str, int]],
    shards: Sequence[tuple[str, int, int]],
) -> dict:
    """The ``manifest.json`` of a run, for both runners.

    ``inputs`` are (file, bytes) pairs, ``shards`` (name, records, bytes) triples.
    """
    options = report.options
    stats = report.stats
    return {
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
        "inputs": [{"file": name, "bytes": size} for name, size in inputs],
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
        "shards": [{"file": name, "instances": count, "bytes": size} for name, count, size in shards],
        "compression": identity["compression"],
        "dataset": identity,
        "seconds": round(report.seconds, 3),
    }
