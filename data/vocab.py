"""Learning a WordPiece vocabulary from raw text.

The merges are learned by Hugging Face ``tokenizers``' WordPiece trainer (Rust):
it is ~35x faster than keras-hub's ``compute_word_piece_vocabulary`` and, unlike
that learner, fills the requested size. Two things are ours:

* **Normalisation.** Text is normalised by :func:`data.tokenization.normalize`,
  the same in-graph code the tokenizer runs, so every learned piece is
  reachable by the tokenizer that will use it (HF's own normaliser folds case
  slightly differently from the original release).
* **Determinism.** HF's trainer numbers the ``##c`` continuation pieces in hash
  order, and merges with equal counts are broken by those numbers, so two runs
  on the same text give different vocabularies. We hand it every ``##c`` as a
  pre-registered token in code-point order, which fixes all numbering and so
  every tie-break: same input, byte-identical ``vocab.txt``.

Layout of the result follows the original releases: ``[PAD]``, the first 99
``[unusedK]`` slots, ``[UNK] [CLS] [SEP] [MASK]`` (so with the default
``unused=99`` those four get ids 100-103 exactly as in BERT-Base), the rest of
the unused slots, single characters, their ``##`` forms, then learned pieces in
the order they were learned. When a corpus is too small to support the
requested size, the remainder is filled with more ``[unusedK]`` slots (which
later fine-tuning can claim for domain words) so the size is always exact.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from data.errors import DataError
from data.textio import atomic_path, expand_inputs, iter_lines, output_directories, total_bytes, writable_parent

CORE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# The original vocabularies put 99 unused slots between [PAD] and [UNK].
_UNUSED_BEFORE_UNK = 99
# One line in this many goes to the held-out sample used for the statistics.
HOLDOUT_EVERY = 100
HOLDOUT_MAX_LINES = 5000
_NORMALIZE_BATCH = 4096


@dataclasses.dataclass(frozen=True)
class VocabularyReport:
    """What ``bert vocab`` learned and how well it covers held-out text."""

    output: Path
    manifest: Path
    vocab_size: int
    learned_pieces: int
    alphabet_size: int
    filled_unused: int
    lowercase: bool
    files: int
    corpus_bytes: int
    training_lines: int
    training_words: int
    distinct_words: int
    holdout_lines: int
    holdout_words: int
    unk_word_share: float
    pieces_per_word: float
    longest_pieces: tuple[str, ...]
    seconds: float
    sha256: str


def layout(learned: Sequence[str], unused: int, vocab_size: int) -> list[str]:
    """Places the special tokens and unused slots like the original vocabularies.

    ``learned`` holds the characters and pieces (no special tokens); the result
    has exactly ``vocab_size`` entries, topped up with extra unused slots.
    """
    reserved = len(CORE_SPECIALS) + unused
    room = vocab_size - reserved
    if room < 0:
        raise DataError(
            f"--vocab-size {vocab_size} is smaller than the {len(CORE_SPECIALS)} special tokens "
            f"plus --unused {unused}"
        )
    learned = list(learned[:room])
    total_unused = unused + (room - len(learned))
    before = min(total_unused, _UNUSED_BEFORE_UNK)
    tokens = ["[PAD]"]
    tokens += [f"[unused{k}]" for k in range(before)]
    tokens += ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [f"[unused{k}]" for k in range(before, total_unused)]
    tokens += learned
    assert len(tokens) == vocab_size
    return tokens


def _normalized_batches(
    files: Sequence[Path],
    lowercase: bool,
    holdout: list[str],
    on_bytes: Callable[[int], None] | None,
) -> Iterator[list[str]]:
    """Yields lists of normalised training lines; fills ``holdout`` with raw held-out lines."""
    import tensorflow as tf

    from data.tokenization import normalize

    batch: list[str] = []
    seen = 0

    def flush() -> list[str]:
        normalized = normalize(tf.constant(batch), lowercase=lowercase).numpy()
        return [line.decode("utf-8") for line in normalized]

    for path in files:
        for line in iter_lines(path, on_bytes):
            if not line.strip():
                continue
            seen += 1
            if seen % HOLDOUT_EVERY == 0 and len(holdout) < HOLDOUT_MAX_LINES:
                holdout.append(line)
                continue
            batch.append(line)
            if len(batch) == _NORMALIZE_BATCH:
                yield flush()
                batch = []
    if batch:
        yield flush()


def count_words(batches: Iterable[list[str]]) -> tuple[collections.Counter, int, int]:
    """Counts whitespace-separated tokens of normalised text (punctuation is split later by the trainer)."""
    counts: collections.Counter = collections.Counter()
    lines = 0
    for batch in batches:
        lines += len(batch)
        for line in batch:
            counts.update(line.split())
    return counts, lines, sum(counts.values())


def choose_alphabet(counts: collections.Counter, limit: int) -> list[str]:
    """The ``limit`` most frequent characters, ties by code point, returned in code-point order."""
    chars: collections.Counter = collections.Counter()
    for word, count in counts.items():
        for char in word:
            chars[char] += count
    ranked = sorted(chars.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return sorted(char for char, _ in ranked)


def train_pieces(
    counts: collections.Counter, budget: int, alphabet: list[str], min_frequency: int
) -> list[str]:
    """Runs HF's WordPiece trainer on word counts; returns up to ``budget`` characters and pieces."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    continuation = [f"##{char}" for char in alphabet]
    registered = list(CORE_SPECIALS) + continuation
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=budget + len(CORE_SPECIALS),
        min_frequency=min_frequency,
        special_tokens=registered,
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        continuing_subword_prefix="##",
        show_progress=False,
    )
    # Each distinct word once, repeated by its count: the trainer re-counts it
    # exactly, and we never hold the corpus itself in memory. Sorted so the
    # trainer's input does not depend on hash order.
    def feed() -> Iterator[str]:
        for word in sorted(counts):
            yield (word + " ") * counts[word]

    tokenizer.train_from_iterator(feed(), trainer=trainer, length=len(counts))
    by_id = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    learned = [token for token, _ in by_id if token not in CORE_SPECIALS]
    registered_set = set(continuation)
    singles = [token for token in learned if len(token) == 1]
    merged = [token for token in learned if len(token) > 1 and token not in registered_set]
    return (singles + continuation + merged)[:budget]


def measure(tokens: Sequence[str], lowercase: bool, lines: Sequence[str]) -> tuple[int, float, float]:
    """Words, share of words that become [UNK], and pieces per word on ``lines``, by our tokenizer."""
    if not lines:
        return 0, 0.0, 0.0
    import tensorflow as tf

    from data.tokenization import Tokenizer, Vocabulary

    tokenizer = Tokenizer(Vocabulary.from_tokens(tokens), lowercase=lowercase)
    unk = tokenizer.vocab.unk_id
    words = pieces = unknown = 0
    for start in range(0, len(lines), 1024):
        ids = tokenizer.tokenize_words(tf.constant(list(lines[start : start + 1024])))  # [B, (words), (pieces)]
        flat_words = ids.merge_dims(0, 1)  # [words, (pieces)]
        words += int(flat_words.nrows())
        pieces += int(tf.size(flat_words.flat_values))
        # A word that WordPiece cannot split is the single piece [UNK].
        first_piece = tf.gather(flat_words.flat_values, flat_words.row_starts())  # [words]
        unknown += int(tf.reduce_sum(tf.cast(tf.equal(first_piece, unk), tf.int32)))
    if not words:
        return 0, 0.0, 0.0
    return words, unknown / words, pieces / words


def build_vocabulary(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    vocab_size: int = 30522,
    lowercase: bool = True,
    min_frequency: int = 1,
    unused: int = 99,
    alphabet_limit: int = 1000,
    on_total: Callable[[int], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> VocabularyReport:
    """Learns a vocabulary from text files and writes ``vocab.txt`` plus its manifest.

    Args:
        inputs: Files or glob patterns; plain text or ``.gz``, UTF-8, one sentence
            (or free text) per line. Blank lines are ignored.
        output: Path of the ``vocab.txt`` to write; the manifest goes next to it
            with the suffix ``.json``. Both are written atomically.
        vocab_size: Exact number of entries of the result.
        lowercase: Lower-case and strip accents first (uncased model).
        min_frequency: Least count of a pair for the trainer to merge it.
        unused: ``[unusedK]`` slots reserved for later use.
        alphabet_limit: At most this many distinct characters (the most frequent);
            words with other characters become ``[UNK]``.
        on_total / on_bytes / on_stage: progress hooks (total bytes, bytes read, stage name).
    """
    started = time.perf_counter()
    output = Path(output)
    budget = _check_options(output, vocab_size, min_frequency, unused)
    files = expand_inputs(inputs)
    with output_directories(output.parent):  # a failed run leaves no new, empty directory
        writable_parent(output)
        corpus_bytes = total_bytes(files)
        if on_total:
            on_total(corpus_bytes)
        counts, training_lines, training_words, holdout = _count_corpus(files, lowercase, on_bytes)

        if on_stage:
            on_stage("learning pieces")
        alphabet, learned, tokens = _learn(counts, budget, alphabet_limit, min_frequency, unused, vocab_size)
        if on_stage:
            on_stage("measuring on held-out text")
        holdout_words, unk_share, pieces_per_word = measure(tokens, lowercase, holdout)

        text = "\n".join(tokens) + "\n"
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        report = VocabularyReport(
            output=output, manifest=output.with_suffix(".json"), vocab_size=len(tokens), learned_pieces=len(learned),
            alphabet_size=len(alphabet), filled_unused=budget - len(learned), lowercase=lowercase, files=len(files),
            corpus_bytes=corpus_bytes, training_lines=training_lines, training_words=training_words,
            distinct_words=len(counts), holdout_lines=len(holdout), holdout_words=holdout_words,
            unk_word_share=unk_share, pieces_per_word=pieces_per_word, longest_pieces=_longest_pieces(learned),
            seconds=time.perf_counter() - started, sha256=digest,
        )
        _write_vocabulary(report, text, _manifest(report, files, min_frequency, unused, alphabet_limit))
        return report


def _learn(counts, budget: int, alphabet_limit: int, min_frequency: int, unused: int, vocab_size: int):
    """The alphabet, the learned pieces and the final token list of the vocabulary."""
    # A character costs two slots (c and ##c); keep room for merges too.
    alphabet = choose_alphabet(counts, min(alphabet_limit, budget // 2))
    learned = train_pieces(counts, budget, alphabet, min_frequency)
    return alphabet, learned, layout(learned, unused, vocab_size)


def _check_options(output: Path, vocab_size: int, min_frequency: int, unused: int) -> int:
    """Refuses options that cannot work, before any text is read; returns the slots left for learned pieces."""
    if output.is_dir():
        raise DataError(f"--output {output}: is a directory; give the path of the vocab.txt to write")
    if min_frequency < 0:
        raise DataError(f"--min-frequency must be at least 0, got {min_frequency}")
    if unused < 0:
        raise DataError(f"--unused must be at least 0, got {unused}")
    budget = vocab_size - len(CORE_SPECIALS) - unused
    if budget < 2:
        raise DataError(
            f"--vocab-size {vocab_size} leaves no room for pieces after the {len(CORE_SPECIALS)} special "
            f"tokens and --unused {unused}; raise --vocab-size or lower --unused"
        )
    return budget


def _count_corpus(
    files: Sequence[Path], lowercase: bool, on_bytes: Callable[[int], None] | None
) -> tuple[collections.Counter, int, int, list[str]]:
    """Word counts, training lines and words of the normalised corpus, and the raw held-out lines.

    Raises DataError when the files hold no text at all.
    """
    holdout: list[str] = []
    counts, training_lines, training_words = count_words(
        _normalized_batches(files, lowercase, holdout, on_bytes)
    )
    if not counts:
        names = ", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")
        raise DataError(f"{names}: no text found (the input is empty or only blank lines)")
    return counts, training_lines, training_words, holdout


def _longest_pieces(learned: Sequence[str]) -> tuple[str, ...]:
    """The 20 longest learned pieces (``##`` not counted), for the report; ties in code-point order."""
    return tuple(sorted(learned, key=lambda t: (-len(t.removeprefix("##")), t))[:20])


def _manifest(report: VocabularyReport, files: Sequence[Path], min_frequency: int, unused: int,
              alphabet_limit: int) -> dict:
    """What ``vocab.json`` says about the vocabulary: its digest, options, inputs and held-out statistics."""
    return {
        "vocab_file": report.output.name,
        "sha256": report.sha256,
        "vocab_size": report.vocab_size,
        "lowercase": report.lowercase,
        "options": {
            "min_frequency": min_frequency,
            "unused": unused,
            "alphabet_limit": alphabet_limit,
        },
        "inputs": [str(f) for f in files],
        "corpus_bytes": report.corpus_bytes,
        "learned_pieces": report.learned_pieces,
        "filled_unused": report.filled_unused,
        "holdout": {
            "every": HOLDOUT_EVERY,
            "lines": report.holdout_lines,
            "words": report.holdout_words,
            "unk_word_share": round(report.unk_word_share, 6),
            "pieces_per_word": round(report.pieces_per_word, 6),
        },
    }


def _write_vocabulary(report: VocabularyReport, text: str, manifest: dict) -> None:
    """Writes ``vocab.txt`` and then its manifest, each atomically.

    The vocabulary goes first: a manifest never describes a vocabulary that is not there.
    """
    with atomic_path(report.output) as temporary:
        temporary.write_text(text, encoding="utf-8")
    with atomic_path(report.manifest) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
