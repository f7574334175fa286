"""Turning free text into BERT's input format: one sentence per line, documents apart.

google-research/bert's ``create_pretraining_data.py`` reads one sentence per
line with a blank line between documents. Most text does not come that way, so
this module holds the one rule the project uses to get there; ``bert corpus``
and ``bert make-data --input-format paragraphs`` both go through it, so the two
never disagree about where a sentence ends.

Sentence rule (:func:`split_sentences`)
---------------------------------------
Runs of whitespace (any Unicode whitespace, line breaks included) first become
one space and the ends are trimmed. A sentence then ends after a run of ``.``,
``!`` or ``?`` -- together with any closing quotes or brackets right after it
(``" ' ) ] » ” ’``) -- when all of these hold:

1. whitespace follows, so ``3.14``, ``os.path.join`` and ``example.com`` never
   split (there is no space inside them);
2. the next character starts a sentence: an uppercase letter, a digit, or an
   opening quote or bracket (``" ' ( [ « “ ‘``); ``e.g. the`` or ``Why? she
   asked`` therefore stay whole;
3. if the terminator is a single ``.`` directly followed by the space, the word
   it ends is not an abbreviation: one of :data:`ABBREVIATIONS` (``e.g.``,
   ``i.e.``, ``etc.``, ``Mr.``, ``Dr.``, ``vs.``, ``No.``, ``Fig.``, ...,
   compared without case and without leading quotes or brackets), a single
   capital letter (the initial in ``J. Smith``), or two or more dotted letters
   such as ``U.S.``.

Text after the last boundary is a sentence even without a final period. The
rule errs towards *not* splitting: "... and so on, etc. Next" stays one
sentence, which costs far less in next-sentence prediction than cutting
"Dr. Smith" in two.

What a document is (:func:`paragraphs_to_documents`)
----------------------------------------------------
In free text a blank line (empty or only whitespace) separates paragraphs;
the lines of one paragraph are joined, so hard-wrapped text is fine. **Each
paragraph is one document**, and a paragraph with fewer than two sentences
(a heading, a one-line quote, a list item) is dropped.

Why a paragraph and not a file: next-sentence prediction needs two things from
documents -- a real continuation inside one (so a document needs at least two
sentences; a one-sentence document can only ever give "random next" examples,
which skews the labels), and many documents to draw the random second segment
from. Free-text corpora are often one large file (a book, a dump), which as a
single document would leave no "other document" to sample from; paragraphs
are the largest unit that free text marks on its own and whose sentences
follow one another on one topic. Call the function once per file (or put a
blank line between files): a paragraph never spans two files.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator

# Compared lower-cased, with the trailing period. Kept short on purpose: every
# entry is a word that is far more often an abbreviation before a capital
# letter than the last word of a sentence.
ABBREVIATIONS = frozenset(
    """
    e.g. i.e. etc. cf. vs. viz. al. approx. ca. resp. esp. incl. excl. ibid.
    mr. mrs. ms. dr. prof. sr. jr. st. mt. rev. hon. gen. col. lt. sgt. capt. gov. sen. rep.
    no. nos. fig. figs. eq. eqs. ch. sec. vol. vols. pp. p. art. ed. eds. op.
    inc. ltd. co. corp. dept. univ. assn. bros.
    jan. feb. mar. apr. jun. jul. aug. sep. sept. oct. nov. dec.
    """.split()
)

_CLOSERS = "\"')]»”’"
_OPENERS = "\"'([«“‘"

# A candidate boundary: terminators, optional closers, then the single space
# left after whitespace has been collapsed. The checks on the next character
# and on abbreviations are done in code, where they can be read.
_CANDIDATE = re.compile(r"([.!?]+)([" + re.escape(_CLOSERS) + r"]*) ")
# "U.S.", "e.g." -- two or more letters each followed by a period.
_DOTTED_INITIALS = re.compile(r"(?:[^\W\d_]\.){2,}")


def normalize_whitespace(text: str) -> str:
    """Collapses every run of whitespace into one space and trims both ends."""
    return " ".join(text.split())


def _is_abbreviation(text_before: str) -> bool:
    """True when the word ending at a period (``text_before`` ends with it) is an abbreviation."""
    word = text_before.rsplit(" ", 1)[-1].lstrip(_OPENERS)
    if word.lower() in ABBREVIATIONS or _DOTTED_INITIALS.fullmatch(word):
        return True
    # A single capital letter is an initial ("J. Smith"); a single lower-case
    # one is more often a variable ending a sentence ("... returns x. Then").
    return len(word) == 2 and word[0].isupper()


def _starts_sentence(character: str) -> bool:
    return character.isupper() or character.isdigit() or character in _OPENERS


def split_sentences(paragraph: str) -> list[str]:
    """Splits one paragraph of free text into sentences by the rule in the module docstring.

    Args:
        paragraph: Any text; line breaks are treated as spaces.

    Returns:
        The sentences in order, each with whitespace collapsed and no leading or
        trailing space; an empty list for text that is empty or only whitespace.

    Example:
        >>> split_sentences("Dr. Smith uses os.path.join, e.g. for paths. It works!")
        ['Dr. Smith uses os.path.join, e.g. for paths.', 'It works!']
    """
    text = normalize_whitespace(paragraph)
    sentences: list[str] = []
    start = 0
    for match in _CANDIDATE.finditer(text):
        end = match.end()  # index just past the space
        if end >= len(text) or not _starts_sentence(text[end]):
            continue
        terminators, closers = match.group(1), match.group(2)
        if terminators == "." and not closers and _is_abbreviation(text[start : match.start() + 1]):
            continue
        sentences.append(text[start : end - 1])
        start = end
    if start < len(text):
        sentences.append(text[start:])
    return sentences


def paragraphs_to_documents(lines: Iterable[str], min_sentences: int = 2) -> Iterator[list[str]]:
    """Groups lines of free text into paragraphs and yields each as a document of sentences.

    A blank or whitespace-only line ends a paragraph; the lines of a paragraph
    are joined with spaces and split by :func:`split_sentences`. Paragraphs with
    fewer than ``min_sentences`` sentences are skipped (see the module docstring
    for why a document needs two).

    Args:
        lines: Lines of one file, with or without their line endings.
        min_sentences: The fewest sentences a paragraph needs to become a document.

    Yields:
        One list of sentences per kept paragraph, in input order.
    """
    paragraph: list[str] = []

    def finish() -> list[str]:
        sentences = split_sentences(" ".join(paragraph))
        paragraph.clear()
        return sentences

    for line in lines:
        if line.strip():
            paragraph.append(line)
        elif paragraph:
            sentences = finish()
            if len(sentences) >= min_sentences:
                yield sentences
    if paragraph:
        sentences = finish()
        if len(sentences) >= min_sentences:
            yield sentences
