"""WordPiece vocabularies and a TensorFlow tokenizer that matches the original BERT release.

The tokenizer gives exactly the token ids of google-research/bert's
``FullTokenizer`` (uncased and cased), but runs as TensorFlow ops on whole
batches, so it works in ``tf.data``, inside ``tf.function`` and in an exported
SavedModel, and is many times faster than the pure-Python original.

The original's algorithm, step by step, and how each step is done here:

1. Clean: delete NUL, U+FFFD and control/format characters (categories Cc and
   Cf, except tab, newline and carriage return); turn whitespace (space, tab,
   newline, CR and category Zs) into a space.  -> ``regex_replace``.
2. Put spaces around CJK ideographs (the original's exact code-point ranges).
   -> ``regex_replace``.
3. Split on whitespace (Python's ``str.split``, which also splits on U+2028 and
   U+2029).  -> those two become spaces in step 1; the split is in step 5.
4. Uncased only: Python ``str.lower()``, NFD, drop category Mn (accents).
   -> ``tf.strings.lower`` (ICU full case mapping, final sigma included),
   ``tensorflow_text.normalize_utf8(NFD)``, ``regex_replace(Mn)``.
5. Every punctuation character becomes a word of its own (ASCII 33-47, 58-64,
   91-96, 123-126, or any category P*).  -> ``regex_replace`` puts spaces
   around it, then ``tf.strings.split`` splits on spaces.
6. Words longer than 200 *characters* become [UNK]; the others go through
   greedy longest-match-first WordPiece with ``##`` continuations, a word with
   any unmatched part becoming a single [UNK].  -> ``FastWordpieceTokenizer``.

Speed (BERT-Base vocabulary, English prose): printable-ASCII lines skip the
Unicode steps 1-4 but for ASCII lower-casing; ``tokenize`` lets one
``FastWordpieceTokenizer`` do steps 5 and 6 in a single pass when it can
(see :class:`Tokenizer`); ``encode`` runs batches on several threads.

Parity notes (measured with tensorflow 2.21, tensorflow-text 2.21.1, Python 3.11):

* tensorflow-text's own lower-casing (``BertTokenizer(lower_case=True)``,
  ``FastBertTokenizer``) is NFKC case folding, not ``str.lower()``: it turns
  "…" into "...", "ﬁ" into "fi" and full-width letters into ASCII. The
  original does none of that, so we never use it.
* Character classes (control, whitespace, punctuation, Mn) are built from the
  running Python's ``unicodedata``, not from RE2's ``\\p{..}`` tables, so they
  agree with the original run on the same Python even where RE2's Unicode
  version differs.
* ``tf.strings.lower`` uses an ICU older than Unicode 14 (Python 3.11's
  version): it leaves about 40 letters added in Unicode 14 (Vithkuqi,
  U+2C2F, U+A7C0...) upper-case. We probe it once against ``str.lower()`` and
  rewrite those letters first, but only in batches that contain one.
* ``normalize_utf8`` uses an ICU with Unicode 16 and decomposes a few
  characters that Python 3.11 does not know at all (category Cn). Such a
  character is a starter with no decomposition for Python, so Python's NFD of
  a string is the NFD of the pieces between them; batches that contain an
  unassigned character are normalised that way.
* One known residue: a final-sigma decision next to one of those ~40 new
  letters can differ (ICU does not know they are cased letters).

Inputs must be valid UTF-8 (decode files strictly before feeding them).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import gc
import hashlib
import json
import os
import unicodedata
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import tensorflow as tf
import tensorflow_text as tf_text

from data.errors import DataError
from data.textio import atomic_path, iter_lines

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN = SPECIAL_TOKENS
# The original's WordpieceTokenizer.max_input_chars_per_word: counted in
# characters (code points) after normalisation, not in bytes.
MAX_CHARS_PER_WORD = 200
SUFFIX_INDICATOR = "##"
_ENCODE_BATCH = 1024


# ---------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Vocabulary:
    """An ordered WordPiece vocabulary: token ``i`` has id ``i``.

    Pure Python (no TensorFlow), immutable, validated on construction: no
    duplicate or empty tokens. Special-token ids are looked up by name, never
    assumed, because vocabularies differ in where they put them.

    Args:
        tokens: the tokens in id order.
        path: the file it was read from, if any (used in error messages and to
            find the ``vocab.json`` manifest next to it).

    Example:
        >>> vocab = Vocabulary.from_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello"])
        >>> vocab.id("hello"), vocab.cls_id
        (5, 2)
    """

    tokens: tuple[str, ...]
    path: Path | None = None
    token_to_id: dict[str, int] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tokens = tuple(self.tokens)
        object.__setattr__(self, "tokens", tokens)
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))
        if not tokens:
            raise DataError(f"{self._where()}: the vocabulary is empty; it needs one token per line")
        token_to_id: dict[str, int] = {}
        for index, token in enumerate(tokens):
            if not isinstance(token, str):
                raise TypeError(f"vocabulary tokens must be str, got {type(token).__name__} at id {index}")
            if token == "":
                raise DataError(f"{self._where(index)}: blank token; a vocabulary has exactly one token per line")
            first = token_to_id.setdefault(token, index)
            if first != index:
                raise DataError(
                    f"{self._where(index)}: duplicate token {token!r}, already at {self._position(first)}; "
                    "each token must appear once"
                )
        object.__setattr__(self, "token_to_id", token_to_id)

    def _position(self, index: int) -> str:
        return f"line {index + 1}" if self.path is not None else f"id {index}"

    def _where(self, index: int | None = None) -> str:
        if self.path is None:
            return "vocabulary" if index is None else f"vocabulary token {index}"
        return str(self.path) if index is None else f"{self.path}:{index + 1}"

    @classmethod
    def load(cls, path: str | os.PathLike, required: Sequence[str] = SPECIAL_TOKENS) -> "Vocabulary":
        """Reads a ``vocab.txt``: UTF-8, one token per line, id = line number - 1.

        Only the line ending is removed from each line (the original's
        ``strip()`` also dropped spaces around a token; released vocabularies
        have none, and a token with spaces can never match a word). A UTF-8 byte
        order mark at the start is ignored. Raises DataError naming the file
        (and line) for a missing, empty or non-UTF-8 file, a duplicate or blank
        token, or missing ``required`` special tokens.
        """
        path = Path(path)
        if path.is_dir():
            raise DataError(f"{path}: is a directory; pass the vocab.txt file inside it")
        if not path.exists():
            raise DataError(f"{path}: no such vocabulary file; pass a vocab.txt with one token per line")
        tokens = list(iter_lines(path))
        if tokens and tokens[0].startswith("\ufeff"):
            tokens[0] = tokens[0][1:]
        if not tokens:
            raise DataError(f"{path}: the vocabulary file is empty; it needs one token per line")
        vocab = cls(tuple(tokens), path)
        vocab._require(required)
        return vocab

    @classmethod
    def from_tokens(cls, tokens: Iterable[str], required: Sequence[str] = SPECIAL_TOKENS) -> "Vocabulary":
        """Builds a vocabulary from tokens in id order (same checks as :meth:`load`)."""
        vocab = cls(tuple(tokens))
        vocab._require(required)
        return vocab

    def _require(self, required: Sequence[str]) -> None:
        missing = [token for token in required if token not in self.token_to_id]
        if missing:
            raise DataError(
                f"{self._where()}: missing required special token{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)}; a BERT vocabulary must contain {' '.join(required)}"
            )

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self.token_to_id

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self.tokens)}, path={str(self.path) if self.path else None!r})"

    def id(self, token: str) -> int:
        """The id of ``token``; DataError when the vocabulary lacks it."""
        try:
            return self.token_to_id[token]
        except KeyError:
            raise DataError(f"{self._where()}: has no {token!r} token") from None

    @property
    def pad_id(self) -> int:
        return self.id(PAD_TOKEN)

    @property
    def unk_id(self) -> int:
        return self.id(UNK_TOKEN)

    @property
    def cls_id(self) -> int:
        return self.id(CLS_TOKEN)

    @property
    def sep_id(self) -> int:
        return self.id(SEP_TOKEN)

    @property
    def mask_id(self) -> int:
        return self.id(MASK_TOKEN)

    def _canonical_bytes(self) -> bytes:
        return ("\n".join(self.tokens) + "\n").encode("utf-8")

    @functools.cached_property
    def sha256(self) -> str:
        """Hex SHA-256 of the canonical file (tokens joined by "\\n", final "\\n"):
        identifies the vocabulary regardless of how the file's lines ended."""
        return hashlib.sha256(self._canonical_bytes()).hexdigest()

    def save(self, path: str | os.PathLike) -> None:
        """Writes the canonical ``vocab.txt`` atomically (temporary name, then rename)."""
        with atomic_path(path) as temporary:
            temporary.write_bytes(self._canonical_bytes())


def read_vocab_manifest(vocab_path: str | os.PathLike) -> dict | None:
    """Reads the JSON manifest that ``bert vocab`` writes next to ``vocab.txt``.

    The manifest is ``Path(vocab_path).with_suffix(".json")``; returns None
    when there is none, DataError when it is not a JSON object.
    """
    manifest_path = Path(vocab_path).with_suffix(".json")
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{manifest_path}: not valid UTF-8; rewrite or delete this vocabulary manifest") from None
    except json.JSONDecodeError as error:
        raise DataError(
            f"{manifest_path}:{error.lineno}: not valid JSON ({error.msg}); rewrite or delete this vocabulary manifest"
        ) from None
    if not isinstance(manifest, dict):
        raise DataError(f"{manifest_path}: expected a JSON object; rewrite or delete this vocabulary manifest")
    return manifest


def resolve_lowercase(vocab: Vocabulary, lowercase: bool | None) -> bool:
    """Decides whether text is lower-cased for ``vocab``.

    An explicit ``lowercase`` wins; else the manifest's ``"lowercase"``; else
    the vocabulary decides: it is cased if some token other than the bracketed
    specials would change under ``str.lower()`` (the uncased BERT vocabulary
    holds "ℝ", an upper-case letter without a lower-case form, so "has an
    upper-case letter" alone would be wrong), otherwise uncased.
    """
    if lowercase is not None:
        return bool(lowercase)
    if vocab.path is not None:
        manifest = read_vocab_manifest(vocab.path)
        if manifest is not None and "lowercase" in manifest:
            value = manifest["lowercase"]
            if not isinstance(value, bool):
                raise DataError(
                    f"{vocab.path.with_suffix('.json')}: \"lowercase\" must be true or false, got {value!r}"
                )
            return value
    for token in vocab.tokens:
        if token.startswith("[") and token.endswith("]"):
            continue
        if token.lower() != token:
            return False
    return True


# ---------------------------------------------------------------------------
# Character classes, from the running Python's unicodedata
# ---------------------------------------------------------------------------

# The original's _is_chinese_char ranges, verbatim (CJK Unified Ideographs,
# extensions A-E, compatibility ideographs and their supplement). Hangul, kana
# and later extensions are not in it and stay inside words.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
# The original counts every non-alphanumeric printable ASCII character as
# punctuation, so "$", "+", "<", "^", "`", "|" split although Unicode calls
# them symbols (category S). Non-ASCII symbols ("×", "€", "©") do not split.
_ASCII_PUNCTUATION_RANGES = ((33, 47), (58, 64), (91, 96), (123, 126))


def _char_class(ranges: Iterable[tuple[int, int]]) -> str:
    """An RE2 character class ``[\\x{a}-\\x{b}...]`` for inclusive code-point ranges."""
    parts = []
    for start, end in ranges:
        parts.append(f"\\x{{{start:X}}}" if start == end else f"\\x{{{start:X}}}-\\x{{{end:X}}}")
    return "[" + "".join(parts) + "]"


def _ranges(code_points: Iterable[int]) -> list[tuple[int, int]]:
    """Collapses sorted code points into inclusive ranges."""
    ranges: list[tuple[int, int]] = []
    for cp in code_points:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return ranges


@dataclasses.dataclass(frozen=True)
class _Patterns:
    deleted: str  # NUL, U+FFFD, Cc/Cf except \t \n \r
    whitespace: str  # what the original turns into or splits on as whitespace, except " " itself
    cjk: str
    punctuation: str
    nonspacing_marks: str  # category Mn
    rare: str  # letters tf.strings.lower gets wrong + code points unknown to Python
    unassigned: str  # category Cn
    lower_fixes: tuple[tuple[str, str], ...]  # (char, str.lower(char)) where ICU disagrees


@functools.cache
def _patterns() -> _Patterns:
    """Builds the regex character classes once per process (about 0.3 s)."""
    deleted, whitespace, punctuation, marks, unassigned, cased = [], [], [], [], [], []
    ascii_punctuation = {cp for start, end in _ASCII_PUNCTUATION_RANGES for cp in range(start, end + 1)}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:  # surrogates cannot occur in UTF-8 text
            continue
        char = chr(cp)
        category = unicodedata.category(char)
        if char == " ":
            pass  # replacing every space by a space would cost 10x the whole pass
        elif char in "\t\n\r":
            whitespace.append(cp)
        elif cp == 0 or cp == 0xFFFD or category in ("Cc", "Cf"):
            deleted.append(cp)
        elif category == "Zs" or char.isspace():
            # Zs is the original's _is_whitespace; isspace() adds U+2028/U+2029,
            # on which whitespace_tokenize's str.split() also splits. Turning
            # them into spaces early is equivalent: they are neither cased nor
            # case-ignorable, so they cannot change a final-sigma decision.
            whitespace.append(cp)
        if cp in ascii_punctuation or category.startswith("P"):
            punctuation.append(cp)
        if category == "Mn":
            marks.append(cp)
        elif category == "Cn":
            unassigned.append(cp)
        if char.lower() != char:
            cased.append(char)
    return _Patterns(
        deleted=_char_class(_ranges(deleted)),
        whitespace=_char_class(_ranges(whitespace)),
        cjk=_char_class(_CJK_RANGES),
        punctuation=_char_class(_ranges(punctuation)),
        nonspacing_marks=_char_class(_ranges(marks)),
        rare=_char_class(_ranges(sorted(unassigned + [ord(c) for c, _ in _probe_lower(tuple(cased))]))),
        unassigned=_char_class(_ranges(unassigned)),
        lower_fixes=_probe_lower(tuple(cased)),
    )


@functools.cache
def _probe_lower(chars: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The characters that ``tf.strings.lower`` lower-cases differently from ``str.lower``."""
    with tf.init_scope():  # eager even when first called while tracing a tf.function
        lowered = tf.strings.lower(tf.constant(list(chars)), encoding="utf-8").numpy()
    return tuple((c, c.lower()) for c, got in zip(chars, lowered) if got.decode("utf-8") != c.lower())


# ---------------------------------------------------------------------------
# Normalisation and word splitting (module functions: usable on their own)
# ---------------------------------------------------------------------------


def normalize(texts, lowercase: bool) -> tf.Tensor:
    """The original BasicTokenizer's text transformation, as TensorFlow ops.

    Deletes control characters, maps whitespace to spaces, puts spaces around
    CJK ideographs, and when ``lowercase`` lower-cases like ``str.lower()``,
    decomposes (NFD) and drops accents (category Mn). Works on a string tensor
    of any shape (same shape out), eagerly, in ``tf.data`` and in
    ``tf.function``/SavedModels.
    """
    text = tf.convert_to_tensor(texts, dtype=tf.string)
    flat = tf.reshape(text, [-1])  # [N]
    # Most lines of real text are printable ASCII, for which the whole
    # transformation is at most ASCII lower-casing (no controls, no other
    # whitespace, no CJK, no accents). Only the other lines take the Unicode
    # path: 5x less normalisation time on English prose (89% ASCII lines).
    plain = tf.strings.regex_full_match(flat, "[ -~]*")  # [N]
    unicode_rows = tf.where(tf.logical_not(plain))  # [K, 1]
    done = tf.strings.lower(flat) if lowercase else flat  # ASCII-only lower-casing
    others = _normalize_unicode(tf.gather_nd(flat, unicode_rows), lowercase)  # [K]
    flat = tf.tensor_scatter_nd_update(done, unicode_rows, others)  # [N]
    return tf.reshape(flat, tf.shape(text))


def _normalize_unicode(text: tf.Tensor, lowercase: bool) -> tf.Tensor:
    """:func:`normalize` for ``[K]`` lines that contain non-ASCII or control characters."""
    patterns = _patterns()
    # Deleting (not splitting on) control/format characters matters: the
    # original joins "a\u200bb" into one word "ab".
    text = tf.strings.regex_replace(text, patterns.deleted, "")
    text = tf.strings.regex_replace(text, patterns.whitespace, " ")
    text = tf.strings.regex_replace(text, patterns.cjk, r" \0 ")
    if not lowercase:
        return text
    # Lower-casing the whole line equals the original's per-word lower():
    # words are separated by spaces, which stop the final-sigma context.
    has_rare = tf.reduce_any(tf.strings.regex_full_match(text, f"(?s).*{patterns.rare}.*"))
    text = tf.cond(
        has_rare,
        lambda: _nfd(tf.strings.lower(_fix_lower(text, patterns), encoding="utf-8"), patterns),
        lambda: tf_text.normalize_utf8(tf.strings.lower(text, encoding="utf-8"), "NFD"),
    )
    return tf.strings.regex_replace(text, patterns.nonspacing_marks, "")


def _fix_lower(text: tf.Tensor, patterns: _Patterns) -> tf.Tensor:
    """Lower-cases, Python's way, the few letters that tf.strings.lower's ICU does not know."""
    for char, lower in patterns.lower_fixes:
        text = tf.strings.regex_replace(text, f"\\x{{{ord(char):X}}}", lower.replace("\\", "\\\\"))
    return text


def _nfd(text: tf.Tensor, patterns: _Patterns) -> tf.Tensor:
    """NFD as Python's unicodedata does it, for text holding code points Python does not know.

    ICU (Unicode 16) decomposes some characters that Python 3.11 (Unicode 14)
    has as unassigned. For Python those are starters without decomposition,
    so NFD(a X b) = NFD(a) X NFD(b): normalise the pieces between them.
    """
    flat = tf.reshape(text, [-1])  # [N]
    pieces = tf_text.regex_split(flat, patterns.unassigned, patterns.unassigned)  # [N, (pieces)]
    values = pieces.flat_values
    keep = tf.strings.regex_full_match(values, patterns.unassigned)
    values = tf.where(keep, values, tf_text.normalize_utf8(values, "NFD"))
    joined = tf.strings.reduce_join(pieces.with_flat_values(values), axis=1)  # [N]
    return tf.reshape(joined, tf.shape(text))


def split_words(normalized) -> tf.RaggedTensor:
    """Splits normalised text into words: ``[B]`` strings -> ``[B, (words)]`` strings.

    Splits on spaces, makes every punctuation character a word of its own
    (the original's _run_split_on_punc) and replaces words over 200
    characters by "[UNK]" (the original's WordPiece rule, applied here so the
    word list is what WordPiece sees); empty words are dropped. Expects the
    output of :func:`normalize`, in which the only whitespace left is " ".
    """
    text = tf.convert_to_tensor(normalized, dtype=tf.string)
    # Spacing out punctuation and then splitting on ASCII whitespace is 3x
    # faster than one tensorflow_text.regex_split with a kept-delimiter class.
    # tf.strings.split(sep=None) splits on ASCII whitespace only and merges runs.
    spaced = tf.strings.regex_replace(text, _patterns().punctuation, r" \0 ")
    # The original makes a word over 200 characters [UNK] without looking at
    # it. RE2 counts characters (code points), not bytes. The literal "[UNK]"
    # is itself a vocabulary entry, so WordPiece maps it to the unknown id.
    # Lines with such a word are rare: check before paying for the rewrite.
    too_long = f"[^ ]{{{MAX_CHARS_PER_WORD + 1},}}"
    spaced = tf.cond(
        tf.reduce_any(tf.strings.regex_full_match(spaced, f"(?s).*{too_long}.*")),
        lambda: tf.strings.regex_replace(spaced, too_long, UNK_TOKEN),
        lambda: spaced,
    )
    return tf.strings.split(spaced)  # [B, (words)]


# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------

_TEXTS = tf.TensorSpec([None], tf.string)


class Tokenizer(tf.Module):
    """The original BERT FullTokenizer in the TensorFlow graph, on batches.

    Shapes: B = batch of texts, W = words in the batch, (..) = ragged.

    Two WordPiece models are kept: one for single words that we split
    ourselves (exact in every case; ``tokenize_words`` always uses it), and
    one that splits words itself, in one pass, 1.7x faster. Its splitting is
    the original's rule evaluated with ICU's Unicode 16 tables, which agree
    with Python 3.11's on every code point Python knows; ``tokenize`` and
    ``pieces`` use it unless a batch holds a code point Python does not know
    or a run of over 200 non-spaces (the 200-character rule), checked with
    one regex.

    Inputs are ``[B]`` strings (for one text, pass ``[text]``).

    The tokenizer is a ``tf.Module``: its WordPiece models are tracked, so it can
    be called inside ``tf.data.Dataset.map`` or a ``tf.function`` and saved
    with ``tf.saved_model.save`` (the ``tokenize``, ``tokenize_words`` and
    ``pieces`` functions are exported).

    Args:
        vocab: the WordPiece vocabulary (must contain [UNK]).
        lowercase: True for uncased models (lower-case and strip accents).

    Example:
        >>> tokenizer = Tokenizer(Vocabulary.load("vocab.txt"), lowercase=True)
        >>> tokenizer.encode(["Hello, world!"])
        [[7592, 1010, 2088, 999]]
    """

    def __init__(self, vocab: Vocabulary, lowercase: bool, name: str | None = "bert_tokenizer") -> None:
        super().__init__(name=name)
        vocab.id(UNK_TOKEN)  # fail early, with a clear message
        self.vocab = vocab
        self.lowercase = bool(lowercase)
        patterns = _patterns()  # build the character classes now rather than while tracing
        options = dict(
            vocab=list(vocab.tokens),
            suffix_indicator=SUFFIX_INDICATOR,
            # Words reaching WordPiece have at most 200 characters, so this
            # bound (in bytes) must admit 200 four-byte characters.
            max_bytes_per_word=4 * MAX_CHARS_PER_WORD,
            token_out_type=tf.int64,
            unknown_token=UNK_TOKEN,
            support_detokenization=False,
        )
        # WordPiece of single words, split by split_words (our exact rules).
        self._wordpiece = tf_text.FastWordpieceTokenizer(no_pretokenization=True, **options)
        # WordPiece that also splits words itself, in one pass. It splits on
        # ICU whitespace, ASCII 33-47/58-64/91-96/123-126, u_ispunct and the
        # same CJK ranges: the original's rule, but with Unicode 16, where
        # ~40 characters unassigned for Python 3.11 are punctuation. It also
        # cannot apply the 200-character rule. Batches with either take the
        # exact word-by-word path.
        self._end_to_end = tf_text.FastWordpieceTokenizer(no_pretokenization=False, **options)
        self._needs_word_path = f"(?s).*(?:{patterns.unassigned}|[^ ]{{{MAX_CHARS_PER_WORD + 1}}}).*"
        self._token_strings = tf.constant(vocab.tokens, dtype=tf.string)

    def _word_pieces(self, texts: tf.Tensor) -> tf.RaggedTensor:
        words = split_words(normalize(texts, self.lowercase))  # [B, (words)]
        ids = self._wordpiece.tokenize(words.flat_values)  # [W, (pieces)]
        return words.with_flat_values(ids)  # [B, (words), (pieces)]

    def _ids(self, texts: tf.Tensor) -> tf.RaggedTensor:
        normalized = normalize(texts, self.lowercase)  # [B]
        # A run of 201 non-spaces may or may not be one over-long word once
        # punctuation is split off; the word path decides exactly.
        word_path = tf.reduce_any(tf.strings.regex_full_match(normalized, self._needs_word_path))
        return tf.cond(
            word_path,
            lambda: self._wordpiece.tokenize(split_words(normalized)).merge_dims(1, 2),
            lambda: self._end_to_end.tokenize(normalized),
        )  # [B, (pieces)]

    @tf.function(input_signature=[_TEXTS], autograph=False)
    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """``[B]`` strings -> ``[B, (pieces)]`` int64 token ids."""
        return self._ids(texts)

    @tf.function(input_signature=[_TEXTS], autograph=False)
    def tokenize_words(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """``[B]`` strings -> ``[B, (words), (pieces)]`` int64 ids, grouped by word
        (for whole-word masking and per-word labels)."""
        return self._word_pieces(texts)

    @tf.function(input_signature=[_TEXTS], autograph=False)
    def tokenize_with_offsets(self, texts: tf.Tensor) -> tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor]:
        """``[B]`` strings -> ``(ids, starts, ends)``, each ``[B, (pieces)]`` int64.

        ``ids`` equal :meth:`tokenize`'s. ``starts``/``ends`` are byte offsets
        into the *original* (un-normalised) text of the basic token each piece
        belongs to: the word after whitespace, punctuation and CJK splitting
        ("Broncos" in "Broncos,"). All pieces of one word share its span, so
        ``text[starts[i]:ends[j]]`` (bytes) for pieces ``i <= j`` is exactly
        the original text those pieces came from, with its case, accents and
        inner whitespace (SQuAD answers are cut out of the context this way).
        Text that normalises to nothing (control characters) gives no pieces.
        """
        return self._pieces_with_offsets(texts)

    def _pieces_with_offsets(self, texts: tf.Tensor):
        # How it works. Normalisation is not length-preserving (deleted control
        # characters, spaces around CJK, "İ" -> "i̇" -> "i", accents dropped),
        # so words are found in the normalised text exactly as `tokenize` finds
        # them (same ids by construction) and their byte spans are mapped back
        # through a per-character table: normalising each original character
        # on its own gives the bytes it contributes to the normalised text.
        # (Lower-casing and NFD are context-free but for the final sigma,
        # which keeps its byte length, and the reordering of combining marks,
        # which are dropped when they are reordered in uncased text.)
        # Shapes: B texts, C characters, W words, P pieces (all of the batch).
        normalized = normalize(texts, self.lowercase)  # [B]
        code_points, char_starts = tf.strings.unicode_decode_with_offsets(texts, "UTF-8")  # [B, (C)] x2
        points = code_points.flat_values  # [C]
        char_bytes = 1 + tf.cast(points >= 0x80, tf.int64) + tf.cast(points >= 0x800, tf.int64) \
            + tf.cast(points >= 0x10000, tf.int64)  # [C], UTF-8 length of each character
        # Each character's share of the normalised text: a printable ASCII character
        # is one byte (lower-cased or not); the others are normalised one by one.
        # In every row the shares add up to the normalised row, so one running sum
        # over the batch gives each character's end in the normalised rows laid end to end.
        others = tf.where(tf.logical_not((points >= 0x20) & (points <= 0x7E)))  # [K, 1]
        other_points = tf.gather_nd(points, others)  # [K]
        other_chars = tf.strings.unicode_encode(
            tf.RaggedTensor.from_row_lengths(other_points, tf.ones_like(other_points, tf.int64)), "UTF-8")  # [K]
        other_shares = tf.cast(tf.strings.length(normalize(other_chars, self.lowercase)), tf.int64)  # [K]
        shares = tf.tensor_scatter_nd_update(tf.ones_like(points, tf.int64), others, other_shares)  # [C]
        share_ends = tf.cumsum(shares)  # [C]
        share_begins = share_ends - shares
        # Where each row's normalised text begins in that concatenation.
        row_base = tf.gather(tf.concat([share_begins, [tf.reduce_sum(shares)]], 0),
                             code_points.row_splits[:-1])  # [B]

        punctuation = _patterns().punctuation
        words, word_begins, word_ends = tf_text.regex_split_with_offsets(
            normalized, f" |{punctuation}", punctuation)  # [B, (W)] x3, offsets into `normalized`
        # The original's 200-character rule (see split_words).
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > MAX_CHARS_PER_WORD
        word_strings = tf.where(too_long, tf.constant(UNK_TOKEN), words.flat_values)  # [W]
        base = tf.gather(row_base, words.value_rowids())  # [W]
        # The character holding a word's first byte and the one holding its last:
        # the first whose normalised share ends after that byte.
        first_char = tf.searchsorted(share_ends[tf.newaxis], (base + word_begins.flat_values)[tf.newaxis],
                                     side="right")[0]  # [W]
        last_char = tf.searchsorted(share_ends[tf.newaxis], (base + word_ends.flat_values - 1)[tf.newaxis],
                                    side="right")[0]  # [W]
        starts = tf.gather(char_starts.flat_values, first_char)  # [W]
        ends = tf.gather(char_starts.flat_values, last_char) + tf.gather(char_bytes, last_char)

        ids = self._wordpiece.tokenize(word_strings)  # [W, (P)]
        per_word = ids.row_lengths()  # [W]
        ids = words.with_flat_values(ids).merge_dims(1, 2)  # [B, (P)]
        return (ids,
                ids.with_flat_values(tf.repeat(starts, per_word)),
                ids.with_flat_values(tf.repeat(ends, per_word)))

    @tf.function(input_signature=[_TEXTS], autograph=False)
    def pieces(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """``[B]`` strings -> ``[B, (pieces)]`` word pieces as strings ("un", "##aff")."""
        ids = self._ids(texts)  # [B, (pieces)]
        return ids.with_flat_values(tf.gather(self._token_strings, ids.flat_values))

    def encode(self, lines: Sequence[str], batch_size: int = _ENCODE_BATCH) -> list[list[int]]:
        """Python convenience: the token ids of each line.

        Lines are tokenized ``batch_size`` at a time, several batches at once
        on a few threads (TensorFlow releases the GIL while its ops run, so
        this uses the machine's cores).
        """
        lines = list(lines)
        batches = [lines[start : start + batch_size] for start in range(0, len(lines), batch_size)]
        result: list[list[int]] = []
        # Building one list per line triggers the cyclic garbage collector
        # every 700 lists, and its full passes walk all of TensorFlow's Python
        # objects: measured, that doubled the time of this method. The lists
        # hold only ints, so there are no cycles to find; pause it meanwhile.
        with _gc_paused():
            if len(batches) <= 1:
                for batch in batches:
                    result.extend(self._encode_batch(batch))
                return result
            with concurrent.futures.ThreadPoolExecutor(max_workers=_worker_threads()) as pool:
                for ids in pool.map(self._encode_batch, batches):
                    result.extend(ids)
        return result

    def _encode_batch(self, lines: list[str]) -> list[list[int]]:
        ids = self.tokenize(tf.constant(lines, dtype=tf.string))  # [B, (pieces)]
        values = ids.flat_values.numpy().tolist()
        splits = ids.row_splits.numpy().tolist()
        return [values[start:end] for start, end in zip(splits[:-1], splits[1:])]


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _worker_threads() -> int:
    """Threads for tokenizing batches concurrently: the cores, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))
