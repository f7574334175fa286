"""A plain-Python reference for the original BERT tokenizer, used to check ours.

Written from the description of google-research/bert's ``FullTokenizer``
(BasicTokenizer then WordpieceTokenizer), character by character with the
standard library's ``unicodedata`` and no TensorFlow, so that it shares no
code and no Unicode tables with ``data.tokenization``:

* drop U+0000, U+FFFD and Cc/Cf characters other than tab, LF, CR; space,
  tab, LF, CR and Zs become a space;
* surround CJK ideographs (the original's code-point ranges) with spaces;
* split with ``str.split()``; when uncased, each word gets ``str.lower()``,
  NFD and loses its Mn characters;
* each punctuation character (ASCII 33-47, 58-64, 91-96, 123-126, or P*) is
  a word of its own;
* words longer than 200 characters are [UNK]; others are cut greedily into
  the longest vocabulary entries, continuations prefixed "##"; a word with a
  part that matches nothing is a single [UNK].
"""

from __future__ import annotations

import unicodedata
from typing import Mapping, Sequence

UNKNOWN = "[UNK]"
LONGEST_WORD = 200

_IDEOGRAPH_BLOCKS = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def is_ideograph(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _IDEOGRAPH_BLOCKS)


def is_punctuation(char: str) -> bool:
    code = ord(char)
    if 33 <= code <= 126 and not char.isalnum():
        return True  # every printable non-alphanumeric ASCII character
    return unicodedata.category(char)[0] == "P"


def clean(text: str) -> str:
    kept = []
    for char in text:
        if char in "\t\n\r ":
            kept.append(" ")
            continue
        if char in "\x00\ufffd":
            continue
        category = unicodedata.category(char)
        if category in ("Cc", "Cf"):
            continue
        kept.append(" " if category == "Zs" else char)
    return "".join(kept)


def space_ideographs(text: str) -> str:
    return "".join(f" {char} " if is_ideograph(char) else char for char in text)


def strip_accents(word: str) -> str:
    decomposed = unicodedata.normalize("NFD", word)
    return "".join(char for char in decomposed if unicodedata.category(char) != "Mn")


def split_punctuation(word: str) -> list[str]:
    parts: list[str] = []
    current = ""
    for char in word:
        if is_punctuation(char):
            if current:
                parts.append(current)
                current = ""
            parts.append(char)
        else:
            current += char
    if current:
        parts.append(current)
    return parts


def basic_words(text: str, lowercase: bool) -> list[str]:
    """The original BasicTokenizer: text -> words."""
    words: list[str] = []
    for word in space_ideographs(clean(text)).split():
        if lowercase:
            word = strip_accents(word.lower())
        words.extend(split_punctuation(word))
    # The original re-splits the joined result on whitespace, dropping empties.
    return " ".join(words).split()


def wordpiece(word: str, vocab: Mapping[str, int] | set[str]) -> list[str]:
    """Greedy longest-match-first WordPiece of one word."""
    if len(word) > LONGEST_WORD:
        return [UNKNOWN]
    pieces: list[str] = []
    start = 0
    while start < len(word):
        for end in range(len(word), start, -1):
            candidate = word[start:end] if start == 0 else "##" + word[start:end]
            if candidate in vocab:
                pieces.append(candidate)
                start = end
                break
        else:
            return [UNKNOWN]
    return pieces


class ReferenceTokenizer:
    """The original FullTokenizer, for comparison: ``tokenize`` gives pieces, ``encode`` ids."""

    def __init__(self, tokens: Sequence[str], lowercase: bool) -> None:
        self.ids = {token: index for index, token in enumerate(tokens)}
        self.lowercase = lowercase

    def words(self, text: str) -> list[str]:
        return basic_words(text, self.lowercase)

    def tokenize(self, text: str) -> list[str]:
        return [piece for word in self.words(text) for piece in wordpiece(word, self.ids)]

    def encode(self, text: str) -> list[int]:
        return [self.ids[piece] for piece in self.tokenize(text)]
