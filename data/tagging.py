"""Token tagging data (NER, chunking, POS): CoNLL files in, word-piece windows out.

File format: one token per line with its tag, a blank (or whitespace-only)
line between sentences; fields separated by tabs, or by spaces when a line
has no tab (CoNLL-2003 style ``EU NNP B-NP B-ORG``). ``-DOCSTART-`` lines are
document marks, not tokens, and are skipped. The token and tag columns are
0-based indices, negative from the end (default: first and last). Every row
of a file must have the same number of fields.

Tag schemes, detected from the tags:

* ``IOB2``: B- starts every entity, I- continues it.
* ``IOB1``: I- may start an entity (B- only between two adjacent entities of
  a type), as in the original CoNLL-2003 release.
* ``IOBES``: also E- (last token) and S- (single-token entity); BILOU's L-/U-
  are read as E-/S-.
* ``none``: tags without prefixes (POS tags, say): token accuracy only.

A file mixing prefixed and unprefixed tags (other than ``O``), or E-/S- with
L-/U-, is an error: it is nearly always two files concatenated by mistake.

Word pieces: each word is tokenized on its own; its first piece carries the
word's tag and the model's prediction for the word, the other pieces are
ignored in the loss and in the metrics (the BERT paper's recipe). A word the
tokenizer turns into nothing (only control characters, say) becomes [UNK], so
every word gets a prediction.

Sentences longer than ``max_seq_length - 2`` pieces are never cut: they are
split at word boundaries into overlapping windows. Each word is labelled and
predicted in exactly one window, the one where it has context on both sides
(a quarter of the window each side, where the sentence allows).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from data.errors import DataError
from data.metrics import ENTITY_PREFIXES, OUTSIDE, split_tag
from data.textio import existing_file, iter_lines

DOCSTART = "-DOCSTART-"
SCHEMES = ("IOB2", "IOB1", "IOBES", "none")
_PREFIX_ORDER = {prefix: index for index, prefix in enumerate(ENTITY_PREFIXES)}
_LENGTH_MULTIPLE = 8


@dataclasses.dataclass(frozen=True)
class Sentence:
    """The words of a sentence, their tags (None in a file without tags), and the line it starts on."""

    words: tuple[str, ...]
    tags: tuple[str, ...] | None
    line: int
    word_lines: tuple[int, ...] = ()


@dataclasses.dataclass
class TaggedFile:
    path: Path
    sentences: list[Sentence]
    #: Fields a row, and the token and tag fields read (tag None: a file without tags).
    width: int = 0
    columns: tuple[int, int | None] = (0, None)

    @property
    def has_tags(self) -> bool:
        return all(sentence.tags is not None for sentence in self.sentences)

    @property
    def words(self) -> int:
        return sum(len(sentence.words) for sentence in self.sentences)


def _fields(line: str) -> list[str]:
    return [field.strip() for field in line.split("\t")] if "\t" in line else line.split()


def read_conll(
    path: str | os.PathLike,
    token_column: int = 0,
    tag_column: int = -1,
    require_tags: bool = True,
) -> TaggedFile:
    """Reads a CoNLL-style file.

    Args:
        path: The file (plain or .gz, UTF-8).
        token_column / tag_column: 0-based field indices (negative from the end).
        require_tags: False for files to predict; a file of one column then has no tags.

    Raises DataError naming the file and line for rows with another number of
    fields than the first, a column out of range, an empty token or tag, and a
    file without sentences.
    """
    path = existing_file(path, "pass a CoNLL file")
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    width = first_line = None
    token_index = tag_index = None
    for number, line in enumerate(iter_lines(path), start=1):
        fields = _row_fields(line, number)
        if fields is None:
            _close_sentence(sentences, words, tags, lines, tag_index is not None)
            continue
        if width is None:
            width, first_line = len(fields), number
            token_index, tag_index = _resolve_columns(path, width, token_column, tag_column, require_tags)
        elif len(fields) != width:
            raise DataError(
                f"{path}:{number}: {len(fields)} fields, expected {width} like line {first_line}; "
                "a token with a space needs a tab-separated file"
            )
        token, tag = _token_and_tag(path, number, fields, token_index, tag_index)
        words.append(token)
        lines.append(number)
        if tag is not None:
            tags.append(tag)
    _close_sentence(sentences, words, tags, lines, tag_index is not None)
    if not sentences:
        raise DataError(
            f"{path}: no sentences; a CoNLL file has one token and its tag per line, a blank line between sentences"
        )
    return TaggedFile(path, sentences, width, (token_index, tag_index))


def read_tokens(path: str | os.PathLike, token_column: int = 0) -> TaggedFile:
    """Reads only the tokens of a CoNLL-style file: text to tag, whose tags (if any) are never looked at.

    A file of one field a row holds tokens alone; in a wider one the tokens
    are in ``token_column`` (the other fields, tags or not, are skipped, so an
    empty one is no error). The sentences have ``tags`` None. Raises DataError
    naming the file for JSON (SQuAD or JSONL, not CoNLL), rows of another
    width than the first, an empty token and a file without sentences.
    """
    path = existing_file(path, "pass a CoNLL file")
    sentences: list[Sentence] = []
    words: list[str] = []
    lines: list[int] = []
    width = first_line = token_index = None
    for number, line in enumerate(iter_lines(path), start=1):
        fields = _row_fields(line, number)
        if fields is None:
            _close_sentence(sentences, words, [], lines, False)
            continue
        if width is None:
            _refuse_json(path, line)
            width, first_line = len(fields), number
            token_index = 0 if width == 1 else _token_index(path, width, token_column)
        elif len(fields) != width:
            raise DataError(f"{path}:{number}: {len(fields)} fields, expected {width} like line {first_line}; "
                            "a token with a space needs a tab-separated file")
        if not fields[token_index]:
            raise DataError(f"{path}:{number}: empty token in column {token_index}")
        words.append(fields[token_index])
        lines.append(number)
    _close_sentence(sentences, words, [], lines, False)
    if not sentences:
        raise DataError(f"{path}: no sentences; a CoNLL file has one token per line (tags optional), a blank line "
                        "between sentences")
    return TaggedFile(path, sentences, width, (token_index, None))


def _refuse_json(path: Path, first_row: str) -> None:
    """DataError for a JSON file (a SQuAD file, JSONL) given where CoNLL tokens are read."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name.endswith((".json", ".jsonl")) or first_row.lstrip("\ufeff ").startswith(('{"', "[{")):
        raise DataError(f"{path}: is JSON, not CoNLL; give CoNLL files: one token per line (tags optional), "
                        "a blank line between sentences")


def _token_index(path: Path, width: int, token_column: int) -> int:
    if not -width <= token_column < width:
        raise DataError(f"{path}: rows have {width} fields but the tokens are read from column {token_column}; "
                        "give a file of tokens alone or with the training file's columns")
    return token_column % width


def _row_fields(line: str, number: int) -> list[str] | None:
    """The fields of line ``number``; None for a line that ends a sentence (blank, or a ``-DOCSTART-`` mark)."""
    if number == 1 and line.startswith("\ufeff"):
        line = line[1:]
    if not line.strip():
        return None
    fields = _fields(line)
    return None if fields[0] == DOCSTART else fields


def _close_sentence(sentences: list[Sentence], words: list[str], tags: list[str], lines: list[int],
                    tagged: bool) -> None:
    """Adds the words gathered so far (if any) to ``sentences`` as one sentence, and empties the lists."""
    if words:
        sentences.append(Sentence(tuple(words), tuple(tags) if tagged else None, lines[0], tuple(lines)))
        words.clear(), tags.clear(), lines.clear()


def _token_and_tag(path: Path, number: int, fields: list[str], token_index: int,
                   tag_index: int | None) -> tuple[str, str | None]:
    """The token and tag (None in a file without tags) of a row; DataError when either is empty."""
    token = fields[token_index]
    if not token:
        raise DataError(f"{path}:{number}: empty token in column {token_index}")
    if tag_index is None:
        return token, None
    tag = fields[tag_index]
    if not tag:
        raise DataError(f"{path}:{number}: no tag in column {tag_index}; every token needs one")
    return token, tag


def _resolve_columns(path, width, token_column, tag_column, require_tags) -> tuple[int, int | None]:
    if width == 1 and require_tags:
        raise DataError(f"{path}: rows have one field; a CoNLL row needs a token and its tag, "
                        "separated by a tab or spaces")
    for option, column in (("--token-column", token_column), ("--tag-column", tag_column)):
        if not -width <= column < width:
            if option == "--tag-column" and not require_tags and width == 1:
                continue
            raise DataError(f"{path}: {option} {column} is out of range; rows have {width} field(s)")
    token_index = token_column % width
    if not require_tags and width == 1:
        return token_index, None
    tag_index = tag_column % width
    if tag_index == token_index:
        raise DataError(f"{path}: --token-column and --tag-column are the same column ({token_index}); "
                        "a CoNLL row needs a token and a tag")
    return token_index, tag_index


# ----------------------------------------------------------------------------
# Tag sets and schemes
# ----------------------------------------------------------------------------


def detect_scheme(tagged: TaggedFile) -> str:
    """``IOB2``, ``IOB1``, ``IOBES`` or ``none`` (see the module docstring); DataError when mixed."""
    prefixed = plain = None
    prefixes: dict[str, tuple[str, int]] = {}
    for sentence in tagged.sentences:
        for tag, line in zip(sentence.tags or (), sentence.word_lines):
            prefix, _ = split_tag(tag)
            if prefix == OUTSIDE:
                continue
            if prefix:
                prefixed = prefixed or (tag, line)
                prefixes.setdefault(prefix, (tag, line))
            else:
                plain = plain or (tag, line)
    if prefixed and plain:
        raise DataError(
            f"{tagged.path}: mixes tagging schemes: {prefixed[0]!r} (line {prefixed[1]}) has a B-/I- prefix but "
            f"{plain[0]!r} (line {plain[1]}) has none; use one scheme (BIO, IOB2 or IOBES) throughout"
        )
    if not prefixed:
        return "none"
    if set(prefixes) & {"E", "S"} and set(prefixes) & {"L", "U"}:
        one = prefixes.get("E") or prefixes["S"]
        other = prefixes.get("L") or prefixes["U"]
        raise DataError(
            f"{tagged.path}: mixes tagging schemes: IOBES {one[0]!r} (line {one[1]}) and BILOU {other[0]!r} "
            f"(line {other[1]}); use one throughout"
        )
    if set(prefixes) & {"E", "S", "L", "U"}:
        return "IOBES"
    for sentence in tagged.sentences:
        previous = OUTSIDE
        for tag in sentence.tags:
            prefix, kind = split_tag(tag)
            if prefix == "I" and split_tag(previous)[1] != kind:
                return "IOB1"
            previous = tag
    return "IOB2"


def check_scheme(tagged: TaggedFile, scheme: str, training_scheme: str, training: Path) -> None:
    """A dev or test file must use the training file's scheme (IOB1 and IOB2 are both BIO)."""
    bio = {"IOB1", "IOB2"}
    if scheme == training_scheme or (scheme in bio and training_scheme in bio):
        return
    raise DataError(
        f"{tagged.path}: uses {scheme} tags but the training file {training} uses {training_scheme}; "
        "convert one so both use the same scheme"
    )


def tag_set(tagged: TaggedFile) -> list[str]:
    """The training file's tags in id order: ``O`` first, then by type and prefix (B, I, E, S...)."""
    found = {tag for sentence in tagged.sentences for tag in sentence.tags}
    if len(found) < 2:
        raise DataError(
            f"{tagged.path}: every token has the tag {next(iter(found))!r}; a tagger needs two or more tags "
            "(wrong --tag-column?)"
        )

    def key(tag: str):
        prefix, kind = split_tag(tag)
        return (tag != OUTSIDE, kind, _PREFIX_ORDER.get(prefix, -1))

    return sorted(found, key=key)


def check_tags(tagged: TaggedFile, tags: Sequence[str], source: str = "the training file") -> None:
    known = set(tags)
    for sentence in tagged.sentences:
        for tag, line in zip(sentence.tags or (), sentence.word_lines):
            if tag not in known:
                shown = ", ".join(tags[:20]) + (", ..." if len(tags) > 20 else "")
                raise DataError(f"{tagged.path}:{line}: tag {tag!r} does not occur in {source} (tags: {shown})")


# ----------------------------------------------------------------------------
# Windows and features
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Window:
    """Words ``[start, end)`` of sentence ``sentence`` are in the window; ``[core_start, core_end)`` are
    labelled and predicted in it, the others are context."""

    sentence: int
    start: int
    core_start: int
    core_end: int
    end: int


def plan_windows(piece_counts: Sequence[int], capacity: int, context: int) -> list[tuple[int, int, int, int]]:
    """Splits a sentence of words with ``piece_counts`` pieces into windows of at most ``capacity`` pieces.

    Returns ``(start, core_start, core_end, end)`` per window. The cores tile the
    sentence (every word is predicted exactly once); each core has up to
    ``context`` pieces of context on either side, and a sentence that fits is
    one window. ``piece_counts`` must be at most ``capacity`` each.
    """
    count = len(piece_counts)
    if sum(piece_counts) <= capacity:
        return [(0, 0, count, count)]
    windows = []
    core_start = 0
    while core_start < count:
        start, used = core_start, 0
        while start > 0 and used + piece_counts[start - 1] <= context:
            start -= 1
            used += piece_counts[start]
        while used + piece_counts[core_start] > capacity:  # the first core word must fit
            used -= piece_counts[start]
            start += 1
        end, total = core_start, used
        while end < count and total + piece_counts[end] <= capacity:
            total += piece_counts[end]
            end += 1
        core_end, right = end, 0
        if end < count:
            # Leave the last `context` pieces as right context for the words before them.
            while core_end - 1 > core_start and right + piece_counts[core_end - 1] <= context:
                core_end -= 1
                right += piece_counts[core_end]
        windows.append((start, core_start, core_end, end))
        core_start = core_end
    return windows


@dataclasses.dataclass
class TaggingFeatures:
    """Model inputs of a file's windows.

    ``arrays``: ``input_ids``, ``input_mask``, ``segment_ids``, ``label`` (tag id at each
    word's first piece, 0 elsewhere) int32 [N, T] and ``label_weights`` float32 [N, T]
    (1.0 at the first piece of each word the window predicts). ``windows[i]``
    says which words window i holds; ``first_pieces[i]`` the position of each
    predicted word's first piece, in word order.
    """

    arrays: dict[str, np.ndarray]
    windows: list[Window]
    first_pieces: list[list[int]]
    sentences: int
    split_sentences: int
    long_words: int
    labelled: bool

    def __len__(self) -> int:
        return len(self.windows)


def featurize(
    tagged: TaggedFile,
    tokenize: Callable[[list[str]], list[list[int]]],
    max_seq_length: int,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    unk_id: int,
    tags: Sequence[str] | None = None,
) -> TaggingFeatures:
    """Tokenizes each word, plans windows and packs ``[CLS] pieces [SEP]`` per window.

    Args:
        tagged: What :func:`read_conll` returned.
        tokenize: Words to token ids (``data.tokenization.Tokenizer.encode``).
        max_seq_length: Longest window, [CLS] and [SEP] included.
        cls_id / sep_id / pad_id / unk_id: Special-token ids looked up in the vocabulary.
        tags: Tag names in id order (None for a file without tags).
    """
    capacity = max_seq_length - 2
    if capacity < 1:
        raise DataError(f"--max-seq-length {max_seq_length} leaves no room for words")
    context = capacity // 4
    flat_words = [word for sentence in tagged.sentences for word in sentence.words]
    flat_pieces = tokenize(flat_words)
    labelled = tagged.has_tags and tags is not None
    if labelled:
        check_tags(tagged, tags)
    tag_id = {tag: index for index, tag in enumerate(tags or ())}
    windows: list[Window] = []
    rows: list[tuple[list[int], list[int], list[int]]] = []  # ids, first-piece positions, tag ids
    split_sentences = long_words = 0
    offset = 0
    for number, sentence in enumerate(tagged.sentences):
        pieces, cut = _sentence_pieces(flat_pieces[offset : offset + len(sentence.words)], capacity, unk_id)
        long_words += cut
        offset += len(sentence.words)
        plan = plan_windows([len(p) for p in pieces], capacity, context)
        split_sentences += len(plan) > 1
        for start, core_start, core_end, end in plan:
            ids = [cls_id]
            firsts = []
            for word in range(start, end):
                if core_start <= word < core_end:
                    firsts.append(len(ids))
                ids.extend(pieces[word])
            ids.append(sep_id)
            labels = [tag_id[sentence.tags[w]] for w in range(core_start, core_end)] if labelled else []
            windows.append(Window(number, start, core_start, core_end, end))
            rows.append((ids, firsts, labels))
    return TaggingFeatures(
        arrays=_pack_rows(rows, max_seq_length, pad_id, labelled), windows=windows,
        first_pieces=[firsts for _, firsts, _ in rows], sentences=len(tagged.sentences),
        split_sentences=split_sentences, long_words=long_words, labelled=labelled,
    )


def _sentence_pieces(word_pieces: Sequence[Sequence[int]], capacity: int, unk_id: int) -> tuple[list[list[int]], int]:
    """The pieces of a sentence's words, each non-empty ([UNK] for none) and at most ``capacity`` long.

    Returns them with the number of words that had to be cut, so that every
    word fits in a window.
    """
    pieces = []
    long_words = 0
    for word in word_pieces:
        word = list(word) or [unk_id]
        if len(word) > capacity:
            long_words += 1
            word = word[:capacity]  # only its first piece is ever labelled
        pieces.append(word)
    return pieces, long_words


def _pack_rows(rows: list[tuple[list[int], list[int], list[int]]], max_seq_length: int, pad_id: int,
               labelled: bool) -> dict[str, np.ndarray]:
    """The model arrays of the windows' ``(ids, first-piece positions, tag ids)``, padded to a multiple of 8."""
    longest = max(len(ids) for ids, _, _ in rows)
    length = min(max_seq_length, -(-longest // _LENGTH_MULTIPLE) * _LENGTH_MULTIPLE)
    count = len(rows)
    input_ids = np.full((count, length), pad_id, dtype=np.int32)  # [N, T]
    input_mask = np.zeros((count, length), dtype=np.int32)
    label = np.zeros((count, length), dtype=np.int32)
    weights = np.zeros((count, length), dtype=np.float32)
    for row, (ids, firsts, labels) in enumerate(rows):
        input_ids[row, : len(ids)] = ids
        input_mask[row, : len(ids)] = 1
        weights[row, firsts] = 1.0
        if labelled:
            label[row, firsts] = labels
    return {
        "input_ids": input_ids,
        "input_mask": input_mask,
        "segment_ids": np.zeros_like(input_ids),
        "label": label,
        "label_weights": weights,
    }


def word_positions(features: TaggingFeatures) -> tuple[np.ndarray, np.ndarray]:
    """Where each word of the file is predicted: its window [W] and its first piece's position there [W].

    In word order over all sentences (W words in all): the cores tile each
    sentence and the windows follow the sentences, so the windows' core words
    in order are all the words in order, each once.
    """
    window = np.repeat(np.arange(len(features.windows)), [len(firsts) for firsts in features.first_pieces])
    position = np.fromiter((p for firsts in features.first_pieces for p in firsts), np.int64, len(window))
    return window.astype(np.int64), position


def assemble(features: TaggingFeatures, predicted: np.ndarray, tagged: TaggedFile) -> list[list[int]]:
    """Puts window predictions back into sentences: one predicted tag id per input word.

    Args:
        features: The windows of ``tagged``.
        predicted: [N, T] tag ids predicted at every position of every window.
        tagged: The file the windows came from.
    """
    result = [[0] * len(sentence.words) for sentence in tagged.sentences]
    for index, (window, firsts) in enumerate(zip(features.windows, features.first_pieces)):
        result[window.sentence][window.core_start : window.core_end] = predicted[index, firsts].tolist()
    return result
