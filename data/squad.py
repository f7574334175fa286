"""SQuAD v1.1 / v2.0: reading, featurisation, post-processing and official-style scoring.

The algorithm and defaults are those of google-research/bert's ``run_squad.py``
and of the official evaluation scripts (``evaluate-v1.1.py``,
``evaluate-v2.0.py``); what differs, and why, is said where it is done.

**Files.** ``{"version": ..., "data": [{"title": ..., "paragraphs": [{"context":
..., "qas": [{"id", "question", "answers": [{"text", "answer_start"}],
"is_impossible"}]}]}]}``. ``answer_start`` counts characters (code points) of
the context. v2.0 marks unanswerable questions with ``"is_impossible": true``
and an empty ``answers`` list; a file is v2 when any question is marked so.
A question whose first answer's text is not the context's text at
``answer_start`` is reported and left out of training (never trained on a
wrong span); an ``answer_start`` outside the context is an error.

**Features.** ``[CLS] question [SEP] context-window [SEP]``, segment 0 then 1:

* the question is cut to ``max_query_length`` pieces;
* the context is split into windows of ``max_seq_length - len(question) - 3``
  pieces that start ``doc_stride`` pieces apart (the last window ends at the
  context's end); see :func:`window_spans`;
* the training target of a window is the answer's first and last piece when
  the whole answer is inside the window, else [CLS] (position 0), as for
  unanswerable questions;
* each context piece is *scored* in one window only, the one where it has the
  most context (see :func:`max_context`).

Word pieces are mapped to characters of the context through
``Tokenizer.tokenize_with_offsets``: every piece knows the span of the basic
token (word after whitespace / punctuation / CJK splitting) it belongs to, so
an answer's pieces are those of the basic tokens it overlaps, and a predicted
answer is ``context[start of its first word : end of its last word]``: the
original characters, whitespace and case (the original needed
``get_final_text`` to undo lower-casing and re-align; nothing is lost here).

**Post-processing** (:func:`predict_answers`): the ``n_best_size`` best spans
over all windows of a question, the text of each, probabilities over the
n-best, and for v2 the null answer when ``score_null - best_span_score >
null_score_diff_threshold`` (``score_null`` is the smallest [CLS] score over
the windows, as in the original).

**Scoring** (:func:`score`): exactly the official scripts' normalisation
(lower-case, drop ``string.punctuation``, drop the articles a/an/the, squeeze
whitespace), token F1 and exact match, each the maximum over the gold answers;
v1.1 files are scored with the v1.1 script's rules and v2.0 files with the
v2.0 script's (gold answers that normalise to nothing are ignored; an empty
prediction scores 1 on an unanswerable question), including its HasAns/NoAns
splits, ``--na-prob-thresh`` and best thresholds from a null-odds file.

Everything here is numpy and the standard library but the tokenizer call.
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import hashlib
import json
import os
import re
import stat
import string
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from data.errors import DataError
from data.textio import atomic_path, check_json_text, existing_file

# Bump when the cached arrays change meaning, so old caches are not reused.
_CACHE_FORMAT = 1
_LENGTH_MULTIPLE = 8
_TOKENIZE_BATCH = 256


# ----------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Answer:
    text: str
    start: int  # characters into the context


@dataclasses.dataclass(frozen=True)
class Question:
    id: str
    text: str
    context: int  # index into SquadFile.contexts
    answers: tuple[Answer, ...]
    is_impossible: bool


@dataclasses.dataclass
class SquadFile:
    """A SQuAD file: its contexts, its questions, and the questions whose answer does not match the context.

    ``mismatched`` holds the ids of answerable questions whose first answer's
    text is not found at its ``answer_start``: they are scored (every gold
    answer's text counts) but never trained on.
    """

    path: Path
    version: str
    contexts: list[str]
    questions: list[Question]
    mismatched: list[str]

    @property
    def version_2(self) -> bool:
        """True when some question is unanswerable (SQuAD 2.0)."""
        return any(question.is_impossible for question in self.questions)

    @property
    def unanswerable(self) -> int:
        return sum(question.is_impossible for question in self.questions)


def _where(article: int, paragraph: int | None = None, qa: int | None = None, qid=None) -> str:
    place = f"data[{article}]"
    if paragraph is not None:
        place += f".paragraphs[{paragraph}]"
    if qa is not None:
        place += f".qas[{qa}]" + (f" (id {qid!r})" if isinstance(qid, str) else "")
    return place


def read_squad(path: str | os.PathLike, require_answers: bool = True) -> SquadFile:
    """Reads and checks a SQuAD JSON file (v1.1 or v2.0).

    Args:
        path: The file (UTF-8 JSON).
        require_answers: Whether every question that is not ``is_impossible``
            must have an answer (training and scored dev files).

    Raises DataError naming the file and, for malformed JSON, the line and
    column; for missing or mistyped keys, where they are
    (``data[3].paragraphs[0].qas[5] (id '...')``); for an ``answer_start``
    outside its context, duplicate ids, or a file without questions.
    """
    path = existing_file(path, "pass a SQuAD .json file")
    document = _load_json(path)
    if not isinstance(document, dict) or "data" not in document:
        raise _format_error(path, "the top level",
                            "has no \"data\" key (expected {\"version\": ..., \"data\": [articles]})")
    if not isinstance(document["data"], list):
        raise _format_error(path, "\"data\"", "is not a list of articles")
    squad = SquadFile(path, "", [], [], [])  # filled paragraph by paragraph; the version is set last
    seen: dict[str, str] = {}
    for a, article in enumerate(document["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise _format_error(path, _where(a), "has no \"paragraphs\" list")
        for p, paragraph in enumerate(article["paragraphs"]):
            _read_paragraph(squad, paragraph, (a, p), require_answers, seen)
    if not squad.questions:
        raise DataError(f"{path}: holds no questions; a SQuAD file lists articles -> paragraphs -> qas")
    version = document.get("version")
    squad.version = str(version) if version is not None else ""
    return squad


def without_answers(files: Sequence[SquadFile]) -> SquadFile:
    """The questions of ``files`` as one SquadFile with no answers (bert distill's unlabeled input).

    Contexts are laid end to end (each question's context index shifted to
    match); answers and ``is_impossible`` marks are dropped, so nothing of the
    files' labels reaches training. The path is the first file's.
    """
    merged = SquadFile(files[0].path, "", [], [], [])
    for squad in files:
        base = len(merged.contexts)
        merged.contexts.extend(squad.contexts)
        merged.questions.extend(Question(q.id, q.text, q.context + base, (), False) for q in squad.questions)
    return merged


def _load_json(path: Path):
    """The parsed JSON of a SQuAD file (plain or gzip); DataError with the byte, or line and column, of what is
    not UTF-8 JSON."""
    raw = path.read_bytes()
    if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"{path}: not a readable gzip file ({error})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not valid UTF-8 (byte {error.start}); SQuAD files are UTF-8 JSON") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg}); "
                        "a SQuAD file is one JSON object with a \"data\" list") from None
    check_json_text(value, str(path))
    return value


def _format_error(path: Path, where: str, what: str) -> DataError:
    """An error about the place ``where`` of a SQuAD file, pointing to the format in the README."""
    return DataError(f"{path}: {where} {what}; see the SQuAD format in the README")


def _read_paragraph(squad: SquadFile, paragraph, place: tuple[int, int], require_answers: bool,
                    seen: dict[str, str]) -> None:
    """Checks one paragraph (at ``place``, article and paragraph index) and adds its context and questions."""
    if not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str):
        raise _format_error(squad.path, _where(*place), "has no \"context\" string")
    if not isinstance(paragraph.get("qas"), list):
        raise _format_error(squad.path, _where(*place), "has no \"qas\" list")
    context = paragraph["context"]
    context_index = len(squad.contexts)
    squad.contexts.append(context)
    for q, qa in enumerate(paragraph["qas"]):
        if not isinstance(qa, dict):
            raise _format_error(squad.path, _where(*place, q), "is not an object")
        qid = qa.get("id")
        where = _where(*place, q, qid)
        for key in ("id", "question"):
            if not isinstance(qa.get(key), str):
                raise _format_error(squad.path, where, f"has no \"{key}\" string")
        if qid in seen:
            raise _format_error(squad.path, where, f"repeats the id of {seen[qid]}; question ids must be unique")
        seen[qid] = where
        impossible = qa.get("is_impossible", False)
        if not isinstance(impossible, bool):
            raise _format_error(squad.path, where, "has an \"is_impossible\" that is not true or false")
        answers = _read_answers(squad.path, where, qa, context, impossible, require_answers)
        if answers:
            first = answers[0]
            if context[first.start:first.start + len(first.text)] != first.text or not first.text.strip():
                squad.mismatched.append(qid)
        squad.questions.append(Question(qid, qa["question"], context_index, tuple(answers), impossible))


def _read_answers(path: Path, where: str, qa: dict, context: str, impossible: bool,
                  require_answers: bool) -> list[Answer]:
    """The checked answers of question ``qa`` (none when it is impossible); DataError naming the bad one."""
    answers_raw = qa.get("answers", [] if impossible or not require_answers else None)
    if not isinstance(answers_raw, list):
        raise _format_error(path, where, "has no \"answers\" list")
    answers = []
    for n, answer in enumerate(answers_raw):
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str) \
                or not isinstance(answer.get("answer_start"), int) \
                or isinstance(answer.get("answer_start"), bool):
            raise _format_error(path, where, f"answer {n} needs \"text\" (string) and \"answer_start\" (integer)")
        start, answer_text = answer["answer_start"], answer["text"]
        if start < 0 or start + len(answer_text) > len(context):
            raise _format_error(path, where, f"answer {n} ({answer_text[:30]!r} at {start}) lies outside its context "
                                             f"of {len(context)} characters; fix answer_start")
        answers.append(Answer(answer_text, start))
    if impossible:
        return []  # v2.0 training files keep "plausible_answers" apart; nothing to learn here
    if not answers and require_answers:
        raise _format_error(path, where, "has no answers and is not marked \"is_impossible\": true")
    return answers


# ----------------------------------------------------------------------------
# Windows and the max-context rule
# ----------------------------------------------------------------------------


def check_lengths(max_seq_length: int, doc_stride: int, max_query_length: int) -> None:
    """Refuses lengths that leave no room for the context or would skip part of it.

    The smallest context room of a window is ``max_seq_length -
    max_query_length - 3`` ([CLS] and two [SEP]); a ``doc_stride`` at least that
    long would leave pieces of a long context in no window (or in no window
    with any context on one side).
    """
    if max_query_length < 1:
        raise DataError(f"--max-query-length must be at least 1, got {max_query_length}")
    if doc_stride < 1:
        raise DataError(f"--doc-stride must be at least 1, got {doc_stride}")
    room = max_seq_length - max_query_length - 3
    if room < 2:
        raise DataError(f"--max-seq-length {max_seq_length} leaves no room for the context after a question of "
                        f"--max-query-length {max_query_length} pieces; raise it or lower --max-query-length")
    if doc_stride >= room:
        raise DataError(f"--doc-stride {doc_stride} must be less than a window's context room "
                        f"(--max-seq-length {max_seq_length} - --max-query-length {max_query_length} - 3 = {room}); "
                        "lower --doc-stride so that windows overlap")


def window_spans(num_pieces: int, room: int, doc_stride: int) -> list[tuple[int, int]]:
    """``(start, length)`` of each window over a context of ``num_pieces`` pieces (the original's doc spans).

    Windows hold at most ``room`` pieces and start ``doc_stride`` apart; the
    last one ends at the context's end. An empty context gives one empty window.
    """
    spans = []
    start = 0
    while True:
        length = min(num_pieces - start, room)
        spans.append((start, length))
        if start + length >= num_pieces:
            return spans
        start += min(length, doc_stride)


def max_context(spans: Sequence[tuple[int, int]], num_pieces: int) -> np.ndarray:
    """``[W, num_pieces]`` bool: True where window ``w`` is the one that scores context piece ``p``.

    The max-context rule of ``run_squad.py``: a piece that several windows
    hold is scored in the window where ``min(pieces to its left, pieces to its
    right) + 0.01 * window length`` is largest, the first such window on a
    tie. So every piece is predicted with as much context on both sides as the
    windows offer, and exactly once. The rule is applied to a span's *start*
    piece; a span whose start is scored in a window that does not also hold
    its end cannot be predicted, which with the default lengths (windows
    overlapping by about 200 pieces) needs an answer of some 100 pieces.
    """
    if len(spans) == 1:  # the usual case: one window holds the whole context
        return np.ones((1, num_pieces), dtype=bool)
    positions = np.arange(num_pieces)[np.newaxis, :]  # [1, n]
    starts = np.array([s for s, _ in spans])[:, np.newaxis]  # [W, 1]
    lengths = np.array([n for _, n in spans])[:, np.newaxis]  # [W, 1]
    inside = (positions >= starts) & (positions < starts + lengths)  # [W, n]
    scores = np.minimum(positions - starts, starts + lengths - 1 - positions) + 0.01 * lengths  # [W, n]
    scores = np.where(inside, scores, -np.inf)
    best = np.argmax(scores, axis=0)  # [n], first window on ties
    return np.arange(len(spans))[:, np.newaxis] == best[np.newaxis, :]


# ----------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class SquadFeatures:
    """The windows of a SQuAD file, and what post-processing needs to map them back.

    Shapes: N windows, T sequence length, Q questions, C contexts, P context pieces (all contexts).

    ``arrays``: model inputs ``input_ids``, ``input_mask``, ``segment_ids``
    (int32 [N, T]) and targets ``start_positions``, ``end_positions``
    (int32 [N]; 0 = [CLS] when the answer is not wholly in the window).
    Per window: ``question`` (index into the file's questions), ``doc_start``
    (first context piece in it), ``doc_offset`` (its position in the
    sequence), ``doc_length``, ``is_max_context`` (bool [N, T], True at the
    context positions this window scores). Per context piece:
    ``piece_starts``/``piece_ends`` (characters of the context, [P]) with
    ``piece_splits`` ([C + 1]: context c's pieces are ``piece_splits[c]:piece_splits[c+1]``).
    Per question: ``trainable`` (unanswerable, or answerable with an answer
    that matches its context), ``has_answer`` (trainable and answerable),
    ``query_truncated``.
    """

    arrays: dict[str, np.ndarray]
    question: np.ndarray
    doc_start: np.ndarray
    doc_offset: np.ndarray
    doc_length: np.ndarray
    is_max_context: np.ndarray
    piece_starts: np.ndarray
    piece_ends: np.ndarray
    piece_splits: np.ndarray
    trainable: np.ndarray
    has_answer: np.ndarray
    query_truncated: np.ndarray

    def __len__(self) -> int:
        return len(self.question)

    @property
    def out_of_window(self) -> int:
        """Windows of answerable questions whose answer is not wholly inside (trained to point at [CLS])."""
        answerable = self.has_answer[self.question] & (self.arrays["start_positions"] == 0)
        return int(answerable.sum())

    def training_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of the windows worth training on: those of trainable questions."""
        keep = self.trainable[self.question]
        return {key: value[keep] for key, value in self.arrays.items()}

    def windows_of(self, question: int) -> np.ndarray:
        return np.flatnonzero(self.question == question)

    _SAVED = ("question", "doc_start", "doc_offset", "doc_length", "is_max_context", "piece_starts", "piece_ends",
              "piece_splits", "trainable", "has_answer", "query_truncated")

    def save(self, path: Path) -> None:
        """Writes the features as one ``.npz`` (atomically: a temporary name, then a rename)."""
        values = {f"array_{key}": value for key, value in self.arrays.items()}
        values.update({key: getattr(self, key) for key in self._SAVED})
        values["format"] = np.array(_CACHE_FORMAT)
        with atomic_path(path) as temporary:
            with open(temporary, "wb") as handle:
                np.savez_compressed(handle, **values)

    @classmethod
    def load(cls, path: Path) -> "SquadFeatures | None":
        """Reads what :meth:`save` wrote; None when the file is unreadable or of another format."""
        try:
            with np.load(path) as stored:
                if int(stored["format"]) != _CACHE_FORMAT:
                    return None
                arrays = {key[len("array_"):]: stored[key] for key in stored.files if key.startswith("array_")}
                return cls(arrays=arrays, **{key: stored[key] for key in cls._SAVED})
        except (OSError, ValueError, KeyError, EOFError):
            return None


def _char_offsets(context: str, byte_starts: np.ndarray, byte_ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Byte offsets into ``context``'s UTF-8 -> character offsets (vectorised: no loop over characters)."""
    if context.isascii():
        return byte_starts, byte_ends
    encoded = np.frombuffer(context.encode("utf-8"), dtype=np.uint8)
    # A byte starts a character unless it is a continuation byte 10xxxxxx.
    char_of_byte = np.cumsum((encoded & 0xC0) != 0x80) - 1  # [bytes]
    char_of_byte = np.append(char_of_byte, len(context))
    return char_of_byte[byte_starts], char_of_byte[byte_ends - 1] + 1


def _tokenize(tokenizer, texts: list[str], offsets: bool):
    """Flat ids, byte starts and ends (None without ``offsets``) and row splits of ``texts``, in batches."""
    import tensorflow as tf

    ids, starts, ends, lengths = [], [], [], []
    for begin in range(0, len(texts), _TOKENIZE_BATCH):
        batch = tf.constant(texts[begin:begin + _TOKENIZE_BATCH], dtype=tf.string)
        if offsets:
            piece_ids, piece_starts, piece_ends = tokenizer.tokenize_with_offsets(batch)  # [B, (pieces)] x3
            starts.append(piece_starts.flat_values.numpy())
            ends.append(piece_ends.flat_values.numpy())
        else:
            piece_ids = tokenizer.tokenize(batch)  # [B, (pieces)]
        ids.append(piece_ids.flat_values.numpy())
        lengths.append(piece_ids.row_lengths().numpy())
    splits = np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64)
    return (np.concatenate(ids), np.concatenate(starts) if offsets else None,
            np.concatenate(ends) if offsets else None, splits)


def answer_pieces(piece_starts: np.ndarray, piece_ends: np.ndarray, start_char: int, end_char: int) -> tuple[int, int]:
    """First and last piece (indices into the context's pieces) of the words overlapping ``[start_char, end_char)``.

    Returns ``(-1, -1)`` when no piece overlaps (an answer of only whitespace
    or deleted characters). Piece spans are word spans, sorted.
    """
    first = int(np.searchsorted(piece_ends, start_char, side="right"))  # first piece ending after the start
    last = int(np.searchsorted(piece_starts, end_char, side="left")) - 1  # last piece starting before the end
    if first > last:
        return -1, -1
    return first, last


def featurize(
    squad: SquadFile,
    tokenizer,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
) -> SquadFeatures:
    """Turns every question of ``squad`` into windows (see the module docstring).

    Args:
        squad: What :func:`read_squad` returned.
        tokenizer: A ``data.tokenization.Tokenizer`` (its ``tokenize_with_offsets``
            and vocabulary's special tokens are used).
        max_seq_length / doc_stride / max_query_length: As ``run_squad.py``'s flags.

    Windows of all questions are kept (unanswerable ones and those whose
    answer does not match point at [CLS]); :meth:`SquadFeatures.training_arrays`
    picks the ones to train on.
    """
    check_lengths(max_seq_length, doc_stride, max_query_length)
    context_ids, piece_starts, piece_ends, piece_splits = _context_pieces(tokenizer, squad.contexts)
    question_ids, _, _, question_splits = _tokenize(tokenizer, [q.text for q in squad.questions], offsets=False)
    plan = _plan_windows(squad, question_splits, piece_starts, piece_ends, piece_splits, max_seq_length, doc_stride,
                         max_query_length)
    count = len(plan.rows)
    table = np.array(plan.rows, dtype=np.int64).reshape(count, 6)
    question_of, query_lengths, doc_starts, doc_lengths = table[:, 0], table[:, 1], table[:, 2], table[:, 3]
    sequence_lengths = query_lengths + doc_lengths + 3
    length = int(min(max_seq_length, -(-int(sequence_lengths.max()) // _LENGTH_MULTIPLE) * _LENGTH_MULTIPLE))
    input_ids, is_max_context = _pack_windows(squad, tokenizer.vocab, table, length, plan.max_context_rows,
                                              context_ids, piece_splits, question_ids, question_splits)
    positions = np.arange(length)[np.newaxis, :]  # [1, T]
    input_mask = (positions < sequence_lengths[:, np.newaxis]).astype(np.int32)  # [N, T]
    segment_ids = ((positions >= (query_lengths + 2)[:, np.newaxis]) & (input_mask == 1)).astype(np.int32)
    arrays = {
        "input_ids": input_ids,
        "input_mask": input_mask,
        "segment_ids": segment_ids,
        "start_positions": table[:, 4].astype(np.int32),
        "end_positions": table[:, 5].astype(np.int32),
    }
    return SquadFeatures(
        arrays=arrays, question=question_of.astype(np.int32), doc_start=doc_starts.astype(np.int32),
        doc_offset=(query_lengths + 2).astype(np.int32), doc_length=doc_lengths.astype(np.int32),
        is_max_context=is_max_context, piece_starts=piece_starts.astype(np.int64),
        piece_ends=piece_ends.astype(np.int64), piece_splits=piece_splits.astype(np.int64), trainable=plan.trainable,
        has_answer=plan.has_answer, query_truncated=plan.query_truncated,
    )


def _context_pieces(tokenizer, contexts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Piece ids of all contexts, their words' character spans (``[P]`` each) and the row splits (``[C + 1]``)."""
    context_ids, byte_starts, byte_ends, piece_splits = _tokenize(tokenizer, contexts, offsets=True)
    piece_starts = np.empty_like(byte_starts)
    piece_ends = np.empty_like(byte_ends)
    for c, context in enumerate(contexts):
        a, b = piece_splits[c], piece_splits[c + 1]
        piece_starts[a:b], piece_ends[a:b] = _char_offsets(context, byte_starts[a:b], byte_ends[a:b])
    return context_ids, piece_starts, piece_ends, piece_splits


@dataclasses.dataclass
class _WindowPlan:
    """The windows of every question, before packing, and what is known per question.

    ``rows``: per window ``(question, query length, doc start, doc length,
    start target, end target)``; ``max_context_rows``: per window the
    max-context flags of its context pieces. Per question (``[Q]`` bool):
    ``trainable``, ``has_answer``, ``query_truncated`` as in :class:`SquadFeatures`.
    """

    rows: list[tuple[int, int, int, int, int, int]]
    max_context_rows: list[np.ndarray]
    trainable: np.ndarray
    has_answer: np.ndarray
    query_truncated: np.ndarray


def _plan_windows(squad: SquadFile, question_splits: np.ndarray, piece_starts: np.ndarray, piece_ends: np.ndarray,
                  piece_splits: np.ndarray, max_seq_length: int, doc_stride: int,
                  max_query_length: int) -> _WindowPlan:
    """Windows and training targets of every question, in question order.

    Questions of one context with the same query length share its windows
    and max-context flags, which are computed once per ``(context, room)``.
    """
    mismatched = set(squad.mismatched)
    questions = len(squad.questions)
    plan = _WindowPlan([], [], np.zeros(questions, dtype=bool), np.zeros(questions, dtype=bool),
                       np.zeros(questions, dtype=bool))
    layouts: dict[tuple[int, int], tuple[list, np.ndarray]] = {}  # (context, room) -> windows, max-context
    for index, question in enumerate(squad.questions):
        query_length = int(question_splits[index + 1] - question_splits[index])
        if query_length > max_query_length:
            plan.query_truncated[index] = True
            query_length = max_query_length
        room = max_seq_length - query_length - 3
        c = question.context
        first_piece = int(piece_splits[c])
        num_pieces = int(piece_splits[c + 1]) - first_piece
        if (c, room) not in layouts:
            spans = window_spans(num_pieces, room, doc_stride)
            layouts[(c, room)] = (spans, max_context(spans, num_pieces))
        spans, scored = layouts[(c, room)]
        answer_first = answer_last = -1
        if question.is_impossible:
            plan.trainable[index] = True
        elif question.answers and question.id not in mismatched:
            answer = question.answers[0]
            answer_first, answer_last = answer_pieces(
                piece_starts[first_piece:first_piece + num_pieces], piece_ends[first_piece:first_piece + num_pieces],
                answer.start, answer.start + len(answer.text))
            plan.trainable[index] = answer_first >= 0
            plan.has_answer[index] = answer_first >= 0
        for w, (start, length) in enumerate(spans):
            doc_offset = query_length + 2
            if answer_first >= 0 and start <= answer_first and answer_last < start + length:
                target = (answer_first - start + doc_offset, answer_last - start + doc_offset)
            else:
                target = (0, 0)
            plan.rows.append((index, query_length, start, length, *target))
            plan.max_context_rows.append(scored[w, start:start + length])
    return plan


def _pack_windows(squad: SquadFile, vocab, table: np.ndarray, length: int, max_context_rows: list[np.ndarray],
                  context_ids: np.ndarray, piece_splits: np.ndarray, question_ids: np.ndarray,
                  question_splits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[CLS] question [SEP] context-window [SEP]`` ids of every window (padded to ``length``), and its
    max-context flags at the context positions: ``input_ids`` int32 and ``is_max_context`` bool, ``[N, T]``."""
    cls_id, sep_id, pad_id = vocab.cls_id, vocab.sep_id, vocab.pad_id
    count = len(table)
    input_ids = np.full((count, length), pad_id, dtype=np.int32)  # [N, T]
    is_max_context = np.zeros((count, length), dtype=bool)  # [N, T]
    for row in range(count):
        q, query_length, start, doc_length = (int(v) for v in table[row, :4])
        query = question_ids[question_splits[q]:question_splits[q] + query_length]
        first_piece = int(piece_splits[squad.questions[q].context]) + start
        input_ids[row, 0] = cls_id
        input_ids[row, 1:1 + query_length] = query
        input_ids[row, 1 + query_length] = sep_id
        offset = query_length + 2
        input_ids[row, offset:offset + doc_length] = context_ids[first_piece:first_piece + doc_length]
        input_ids[row, offset + doc_length] = sep_id
        is_max_context[row, offset:offset + doc_length] = max_context_rows[row]
    return input_ids, is_max_context


def cache_key(data_path: Path, vocab_sha256: str, lowercase: bool, max_seq_length: int, doc_stride: int,
              max_query_length: int) -> str:
    """Hex digest of everything the features depend on: the file's bytes, the vocabulary, casing, the lengths."""
    digest = hashlib.sha256()
    with open(data_path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    digest.update(json.dumps([_CACHE_FORMAT, vocab_sha256, bool(lowercase), max_seq_length, doc_stride,
                              max_query_length]).encode())
    return digest.hexdigest()


def _writable(folder: Path) -> bool:
    """Whether we may write in ``folder``: allowed, and not marked read-only (root may write anywhere,
    but a folder without write bits holds data that someone wants left alone)."""
    try:
        marked = folder.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    except OSError:
        return False
    return bool(marked) and os.access(folder, os.W_OK)


def cache_path(data_path: Path, key: str, fallback_dir: Path | None) -> Path | None:
    """``DATA.features-KEY.npz`` beside the data file, or in ``fallback_dir`` when that folder is not writable."""
    name = f"{Path(data_path).stem}.features-{key[:16]}.npz"
    folder = Path(data_path).resolve().parent
    if _writable(folder):
        return folder / name
    return Path(fallback_dir) / name if fallback_dir is not None else None


def cached_featurize(
    squad: SquadFile,
    tokenizer,
    max_seq_length: int,
    doc_stride: int,
    max_query_length: int,
    fallback_dir: Path | None = None,
) -> tuple[SquadFeatures, Path | None, bool]:
    """:func:`featurize` through a cache: returns ``(features, cache file, whether it was read from the cache)``.

    The cache file is keyed by :func:`cache_key`, so a changed file, vocabulary,
    casing or length option never reuses stale features. A cache that cannot
    be written (read-only folders, no fallback) is simply skipped.
    """
    check_lengths(max_seq_length, doc_stride, max_query_length)
    key = cache_key(squad.path, tokenizer.vocab.sha256, tokenizer.lowercase, max_seq_length, doc_stride,
                    max_query_length)
    path = cache_path(squad.path, key, fallback_dir)
    if path is not None and path.is_file():
        features = SquadFeatures.load(path)
        if features is not None and len(features.trainable) == len(squad.questions):
            return features, path, True
    features = featurize(squad, tokenizer, max_seq_length, doc_stride, max_query_length)
    if path is not None:
        try:
            features.save(path)
        except (OSError, DataError):
            path = None
    return features, path, False


# ----------------------------------------------------------------------------
# Post-processing: spans -> answers
# ----------------------------------------------------------------------------


def best_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    start_allowed: np.ndarray,
    end_allowed: np.ndarray,
    max_answer_length: int,
    count: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``count`` best spans of one window: ``(starts, ends, scores)``, best first.

    A span ``(s, e)`` is valid when ``start_allowed[s]`` (a context position
    the window scores, see :func:`max_context`), ``end_allowed[e]`` (a context
    position) and ``s <= e < s + max_answer_length``; its score is
    ``start_logits[s] + end_logits[e]``. All valid spans are ranked (the
    original ranks only pairs of its 20 best starts and 20 best ends, which
    can miss a better valid pair); ``count=1`` is the single best span, what
    a serving graph computes with the same band of ``max_answer_length``
    diagonals. Inputs are ``[T]`` arrays; returns empty arrays when nothing is valid.
    """
    length = len(start_logits)
    starts = np.arange(length)[:, np.newaxis]  # [T, 1]
    ends = starts + np.arange(max_answer_length)[np.newaxis, :]  # [T, A]: end = start + offset
    inside = ends < length
    ends_clipped = np.minimum(ends, length - 1)
    valid = inside & start_allowed[:, np.newaxis] & end_allowed[ends_clipped]  # [T, A]
    scores = start_logits[:, np.newaxis] + end_logits[ends_clipped]  # [T, A]
    flat = np.flatnonzero(valid)  # indices into the [T, A] band
    if flat.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float64)
    flat_scores = scores.ravel()[flat]
    if flat.size > count:
        top = np.argpartition(-flat_scores, count - 1)[:count]
        flat, flat_scores = flat[top], flat_scores[top]
    order = np.lexsort((flat, -flat_scores))  # best first; ties: earlier span first
    flat, flat_scores = flat[order], flat_scores[order]
    span_starts = flat // max_answer_length
    return span_starts, span_starts + flat % max_answer_length, flat_scores.astype(np.float64)


def answer_span(start_logits, end_logits, start_allowed, end_allowed, max_answer_length: int):
    """The best valid span of one window as ``(start, end, score)``, or None (see :func:`best_spans`)."""
    starts, ends, scores = best_spans(np.asarray(start_logits), np.asarray(end_logits), np.asarray(start_allowed),
                                      np.asarray(end_allowed), max_answer_length, 1)
    return (int(starts[0]), int(ends[0]), float(scores[0])) if len(starts) else None


@dataclasses.dataclass
class SquadPredictions:
    """What :func:`predict_answers` decides, keyed by question id.

    ``answers``: the prediction ("" = no answer, v2). ``nbest``: the n-best list
    (text, probability, start_logit, end_logit), as ``nbest_predictions.json``.
    ``null_odds``: v2 only, ``score_null - best span score`` (the
    ``null_odds.json`` the official v2 script reads as ``--na-prob-file``).
    ``best_span``: the best non-null text, whatever the threshold (for
    choosing a threshold).
    """

    answers: dict[str, str]
    nbest: dict[str, list[dict]]
    null_odds: dict[str, float]
    best_span: dict[str, str]


def _softmax(scores: np.ndarray) -> np.ndarray:
    if scores.size == 0:
        return scores
    shifted = np.exp(scores - scores.max())
    return shifted / shifted.sum()


def predict_answers(
    squad: SquadFile,
    features: SquadFeatures,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    version_2_with_negative: bool = False,
    null_score_diff_threshold: float = 0.0,
) -> SquadPredictions:
    """Answers every question of ``squad`` from the logits of its windows (``[N, T]`` each, in feature order).

    For each question: the ``n_best_size`` best valid spans over all its
    windows (:func:`best_spans`), each turned into the context's own
    characters from its first word's start to its last word's end; spans that
    give the same text count once. Probabilities are a softmax over the
    n-best scores. v2: the null score is the smallest ``start_logits[0] +
    end_logits[0]`` ([CLS]) over the windows; the null answer "" joins the
    n-best, and is the prediction when ``score_null - best span score >
    null_score_diff_threshold``.
    """
    if n_best_size < 1:
        raise DataError(f"--n-best-size must be at least 1, got {n_best_size}")
    if max_answer_length < 1:
        raise DataError(f"--max-answer-length must be at least 1, got {max_answer_length}")
    start_logits = np.asarray(start_logits, dtype=np.float64)
    end_logits = np.asarray(end_logits, dtype=np.float64)
    positions = np.arange(start_logits.shape[1])[np.newaxis, :]  # [1, T]
    in_context = (positions >= features.doc_offset[:, np.newaxis]) & \
                 (positions < (features.doc_offset + features.doc_length)[:, np.newaxis])  # [N, T]
    windows_by_question: dict[int, list[int]] = collections.defaultdict(list)
    for row, question in enumerate(features.question.tolist()):
        windows_by_question[question].append(row)

    predictions = SquadPredictions({}, {}, {}, {})
    for index, question in enumerate(squad.questions):
        candidates, null = _candidates(features, windows_by_question.get(index, ()), start_logits, end_logits,
                                       in_context, int(features.piece_splits[question.context]), max_answer_length,
                                       n_best_size)
        entries = _distinct_texts(candidates, squad.contexts[question.context], n_best_size)
        best = entries[0] if entries else None
        if version_2_with_negative and null is not None:
            entries = _with_null_answer(entries, null, n_best_size)
        probabilities = _softmax(np.array([e[0] for e in entries], dtype=np.float64))
        predictions.nbest[question.id] = [
            {"text": text, "probability": float(p), "start_logit": float(sl), "end_logit": float(el)}
            for (score, text, sl, el), p in zip(entries, probabilities)
        ]
        predictions.best_span[question.id] = best[1] if best else ""
        if version_2_with_negative:
            # With no valid span at all the question can only be unanswerable.
            difference = float(null[0] - best[0]) if best and null is not None else float(null[0] if null else 0.0)
            predictions.null_odds[question.id] = difference
            answer = "" if best is None or difference > null_score_diff_threshold else best[1]
        else:
            answer = best[1] if best else ""
        predictions.answers[question.id] = answer
    return predictions


def _candidates(features: SquadFeatures, rows, start_logits: np.ndarray, end_logits: np.ndarray,
                in_context: np.ndarray, piece_base: int, max_answer_length: int, n_best_size: int):
    """The valid spans of one question's windows ``rows``, best first, and its null answer.

    Returns ``(candidates, null)``: candidates are ``(score, start logit, end
    logit, text start, text end)``, the text span in characters of the
    context (ties keep window order); ``null`` is ``(score, start logit, end
    logit)`` of the window with the smallest [CLS] score, None without windows.
    """
    candidates = []
    null = None
    for row in rows:
        starts, ends, scores = best_spans(start_logits[row], end_logits[row],
                                          in_context[row] & features.is_max_context[row], in_context[row],
                                          max_answer_length, n_best_size * 4)
        for s, e, score in zip(starts.tolist(), ends.tolist(), scores.tolist()):
            offset = piece_base + int(features.doc_start[row]) - int(features.doc_offset[row])
            candidates.append((score, start_logits[row, s], end_logits[row, e],
                               int(features.piece_starts[offset + s]), int(features.piece_ends[offset + e])))
        cls_score = start_logits[row, 0] + end_logits[row, 0]
        if null is None or cls_score < null[0]:
            null = (cls_score, start_logits[row, 0], end_logits[row, 0])
    candidates.sort(key=lambda c: -c[0])  # stable: ties keep window order
    return candidates, null


def _distinct_texts(candidates: list[tuple], context: str, n_best_size: int) -> list[tuple]:
    """The n-best ``(score, text, start logit, end logit)``: the first ``n_best_size`` candidates of distinct text."""
    entries = []
    seen: set[str] = set()
    for score, start_logit, end_logit, begin, end in candidates:
        text = context[begin:end]
        if text in seen:
            continue
        seen.add(text)
        entries.append((score, text, start_logit, end_logit))
        if len(entries) >= n_best_size:
            break
    return entries


def _with_null_answer(entries: list[tuple], null: tuple, n_best_size: int) -> list[tuple]:
    """The n-best with the null answer "" (v2): it competes for a place and is always listed."""
    entries = sorted(entries + [(null[0], "", null[1], null[2])], key=lambda e: -e[0])
    kept = entries[:n_best_size]
    return kept if any(e[1] == "" for e in kept) else kept + [e for e in entries if e[1] == ""]


# ----------------------------------------------------------------------------
# Scoring: the official evaluation scripts' rules
# ----------------------------------------------------------------------------

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower-case, drop ASCII punctuation, drop the articles a/an/the, squeeze whitespace (the official order)."""
    text = text.lower()
    text = "".join(char for char in text if char not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str, version_2: bool = False) -> float:
    """Token-overlap F1 of the normalised answers.

    v1.1 rules: no common token scores 0 (an empty prediction scores 0).
    v2.0 rules: when either side is empty the score is 1 if both are, else 0.
    """
    predicted = normalize_answer(prediction).split()
    truth = normalize_answer(gold).split()
    if version_2 and (not predicted or not truth):
        return float(predicted == truth)
    common = collections.Counter(predicted) & collections.Counter(truth)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(predicted)
    recall = same / len(truth)
    return 2 * precision * recall / (precision + recall)


def _gold_texts(question: Question, version_2: bool) -> list[str]:
    texts = [answer.text for answer in question.answers]
    if version_2:
        texts = [text for text in texts if normalize_answer(text)] or [""]
    return texts


def _best_threshold(raw: dict[str, float], null_odds: dict[str, float], has_answer: dict[str, bool],
                    predictions: dict[str, str]) -> tuple[float, float]:
    """The v2 script's sweep: the score (0-100) and null-odds threshold that maximise the metric."""
    score = best = float(sum(not has_answer[q] for q in raw))
    threshold = 0.0
    for qid in sorted(raw, key=lambda q: null_odds[q]):
        if has_answer[qid]:
            score += raw[qid]
        elif predictions.get(qid):
            score -= 1
        if score > best:
            best, threshold = score, null_odds[qid]
    return 100.0 * best / max(len(raw), 1), threshold


def score(
    squad: SquadFile,
    predictions: dict[str, str],
    null_odds: dict[str, float] | None = None,
    na_prob_threshold: float = 1.0,
) -> dict:
    """EM and F1 (0-100) of ``predictions`` (question id -> text) on ``squad``, as the official scripts.

    Returns ``exact``, ``f1``, ``total`` and ``missing`` (questions without a
    prediction: they score 0, as the v1.1 script does; the v2.0 script would
    fail on them). For v2.0 files also ``HasAns_exact/f1/total``,
    ``NoAns_exact/f1/total``; with ``null_odds`` (the v2 script's
    ``--na-prob-file``) questions whose odds exceed ``na_prob_threshold`` count
    as answered "no answer", and ``best_exact``/``best_f1`` with their
    thresholds are added (the v2 script's sweep over the odds).
    """
    version_2 = squad.version_2
    raw_exact: dict[str, float] = {}
    raw_f1: dict[str, float] = {}
    has_answer = {q.id: bool(_gold_texts(q, True) != [""]) for q in squad.questions}
    missing = 0
    for question in squad.questions:
        if question.id not in predictions:
            missing += 1
            raw_exact[question.id] = raw_f1[question.id] = 0.0
            continue
        prediction = predictions[question.id]
        golds = _gold_texts(question, version_2)
        raw_exact[question.id] = max(exact_match_score(prediction, gold) for gold in golds)
        raw_f1[question.id] = max(f1_score(prediction, gold, version_2) for gold in golds)
    exact, f1 = dict(raw_exact), dict(raw_f1)
    if version_2 and null_odds is not None:
        for qid in exact:
            if qid in predictions and null_odds.get(qid, 0.0) > na_prob_threshold:
                exact[qid] = f1[qid] = float(not has_answer[qid])

    def summary(ids: list[str], prefix: str = "") -> dict:
        total = len(ids)
        return {f"{prefix}exact": 100.0 * sum(exact[q] for q in ids) / max(total, 1),
                f"{prefix}f1": 100.0 * sum(f1[q] for q in ids) / max(total, 1),
                f"{prefix}total": total}

    ids = [q.id for q in squad.questions]
    result = summary(ids)
    if version_2:
        answerable = [q for q in ids if has_answer[q]]
        unanswerable = [q for q in ids if not has_answer[q]]
        if answerable:
            result.update(summary(answerable, "HasAns_"))
        if unanswerable:
            result.update(summary(unanswerable, "NoAns_"))
        if null_odds is not None:
            odds = {q: null_odds.get(q, 0.0) for q in ids}
            result["best_exact"], result["best_exact_thresh"] = _best_threshold(raw_exact, odds, has_answer,
                                                                                predictions)
            result["best_f1"], result["best_f1_thresh"] = _best_threshold(raw_f1, odds, has_answer, predictions)
    result["missing"] = missing
    result["version_2"] = version_2
    return result


def read_predictions(path: str | os.PathLike, what: str = "predictions") -> dict:
    """Reads a ``predictions.json`` (id -> text) or ``null_odds.json`` (id -> number); DataError when malformed."""
    path = existing_file(path, f"pass the {what} .json file")
    try:
        value = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid UTF-8") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object mapping question ids to {what}")
    check_json_text(value, str(path))
    wanted = str if what == "predictions" else (int, float)
    for key, item in value.items():
        if not isinstance(item, wanted) or isinstance(item, bool):
            kind = "a string" if what == "predictions" else "a number"
            raise DataError(f"{path}: the value for {key!r} is not {kind}")
    return value
