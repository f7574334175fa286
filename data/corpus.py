"""The built-in default corpus: English prose from the Python installation itself.

``bert corpus`` and ``bert demo`` need text to learn a vocabulary and make
pre-training data from, on machines that cannot download anything. Every
Python installation ships real, edited English prose: the language reference
topics behind ``help('assert')`` (``pydoc_data.topics.topics``) and the
docstrings of the standard library. This module turns them into a corpus in
google-research/bert's input format -- one sentence per line, a blank line
between documents -- at run time, so no corpus text lives in this repository.

Sources and documents
---------------------
* A **pydoc topic** is one document (``"topic:assert"``).
* A **standard-library module** is one document (``"module:json.decoder"``):
  its module docstring, then the docstrings of its classes, functions and
  methods in source order. Sources are read with :mod:`ast` and never
  imported: importing arbitrary stdlib modules has side effects
  (``antigravity`` opens a web browser, ``this`` prints). Test packages,
  ``idlelib``, ``turtledemo``, ``tkinter``, ``lib2to3``, ``encodings``,
  ``ensurepip``, ``pydoc_data``, ``site-packages`` and ``__pycache__`` are
  skipped: they hold test descriptions, GUI strings, Python 2 code or data
  rather than prose.

Cleaning (why: the text is reStructuredText and code as much as prose)
----------------------------------------------------------------------
A text is cut into paragraphs at blank lines, at the start of a list item,
where an indented block follows a line ending in ``:`` (a code example, a
literal block or an argument list), and where indentation goes back out.
These lines are dropped and act as paragraph breaks: doctest examples (from a
``>>>`` line to the next blank line, ``...`` continuations included); lines
with no letter or digit (heading underlines, table borders); grid-table rows
(``|``, ``+-``); lines with a gap of three or more spaces (aligned table
columns); reStructuredText directives (``.. note::``) and field lists
(``:param x:``, ``:returns:``), each together with the more-indented lines
under it. Field lists are dropped rather than rewritten: "x -- the value" is
not a sentence, and made-up sentences would teach the model a template.
Inline markup is reduced to its text (``:func:`~os.path.join``` ->
``join``, ````x```` -> ``x``) and footnote references (``[3]``) are removed.
A line that ends in a letter and a hyphen is joined without a space to a next
line starting in lower case, because wrapped text breaks lines after hyphens
("re-" + "raises").

Each paragraph is split by :func:`data.sentences.split_sentences` (the same
rule ``bert make-data --input-format paragraphs`` uses). A sentence is kept
only if it reads as prose: it starts with a capital letter, digit, quote or
bracket; ends with ``.``, ``!`` or ``?`` (plus closing quotes or brackets);
has 3 to 100 words; at most 5 % of its characters are code symbols such as
``= < > { } [ ] |``; and it has not already appeared earlier in the corpus
(boilerplate that many classes share would otherwise repeat many times).
Documents left with fewer than two sentences are dropped, since
next-sentence prediction needs a real continuation inside each document.

Order and size
--------------
Each source's documents are ordered by the SHA-256 of their name: stable
(no dependence on ``PYTHONHASHSEED``, file-system order, locale or the
current directory) yet mixed, so a small corpus is not all ``a*`` modules.
The next document always comes from whichever source has contributed fewer
bytes so far, so topics and modules share the corpus evenly until the topics
run out. Documents are added while they fit in ``target_bytes``; the first one
that does not fit is cut after its last whole sentence that fits (if at least
two remain) and the corpus ends there. The result is never larger than
``target_bytes`` and, unless the installation runs out of text, short of it
by less than two sentences (a few hundred bytes). Same Python installation,
same bytes.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from data.errors import DataError
from data.sentences import split_sentences
from data.textio import atomic_path, output_directories, writable_parent

DEFAULT_TARGET_BYTES = 1_000_000
# Below this a corpus may not hold two documents, and the size promise
# (within a few hundred bytes of the target) would be meaningless.
MIN_TARGET_BYTES = 10_000

# Directory names skipped anywhere under the standard library (see module docstring).
_SKIPPED_DIRECTORIES = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "idlelib",
        "turtledemo",
        "tkinter",
        "lib2to3",
        "encodings",
        "ensurepip",
        "pydoc_data",
        "site-packages",
        "dist-packages",
        "__pycache__",
        "__phello__",
        "lib-dynload",
    }
)

_MIN_WORDS = 3
_MAX_WORDS = 100
_MAX_SYMBOL_SHARE = 0.05
_CODE_SYMBOL = re.compile(r"[=<>{}\[\]|\\@$#&%^~`;]")
_WORD_WITH_LETTER = re.compile(r"\S*[^\W\d_]\S*")
_SENTENCE_END = re.compile(r"[.!?][\"')\]»”’]*$")

_BULLET = re.compile(r"(?:[*+\-•]|\d+[.)]|\(\d+\)|#\.)\s+")
_FIELD = re.compile(r":[^:\s][^:]*:(?:\s|$)")
_TABLE_GAP = re.compile(r"\S {3,}\S")
_ROLE = re.compile(r":[\w.+-]+(?::[\w.+-]+)*:`([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`_{0,2}")
_INTERPRETED = re.compile(r"`([^`]+)`_{0,2}")
_STRONG = re.compile(r"\*\*([^\s*][^*]*?)\*\*")
# Footnote references of the rendered topics: "... operation [3] and", "types. [4] For".
_FOOTNOTE = re.compile(r"(?:^|\s+)\[\d+\](?=\s|$|[.,;:)])")


@dataclass(frozen=True)
class CorpusDocument:
    """One document of the corpus: where it came from and its sentences."""

    source: str  # "topic:<pydoc topic name>" or "module:<dotted module name>"
    sentences: tuple[str, ...]

    def text(self) -> str:
        """The document in the input format: one sentence per line, newline-terminated."""
        return "".join(sentence + "\n" for sentence in self.sentences)


@dataclass(frozen=True)
class CorpusStats:
    """What went into a corpus; ``bytes`` is the exact size of the file written."""

    documents: int
    sentences: int
    words: int  # whitespace-separated tokens
    bytes: int
    sources: tuple[str, ...]  # one per document, in corpus order


@dataclass(frozen=True)
class DefaultCorpus:
    """A built corpus: its documents in order and their statistics."""

    documents: tuple[CorpusDocument, ...]
    stats: CorpusStats

    def text(self) -> str:
        """The whole corpus as written to disk: documents separated by one blank line."""
        return "\n".join(document.text() for document in self.documents)


# --- reading the sources -----------------------------------------------------


def _stable_order(name: str) -> bytes:
    return hashlib.sha256(name.encode("utf-8")).digest()


def _stdlib_modules(stdlib: Path) -> list[tuple[str, Path]]:
    """(dotted module name, source path) of every standard-library module read, sorted by name."""
    modules = []
    for directory, subdirectories, files in os.walk(stdlib):
        subdirectories[:] = sorted(
            name for name in subdirectories if name not in _SKIPPED_DIRECTORIES and not name.startswith("config-")
        )
        relative = Path(directory).relative_to(stdlib)
        for file in sorted(files):
            if not file.endswith(".py") or file.startswith("test_") or file.startswith("_sysconfigdata"):
                continue
            parts = [*relative.parts, file[: -len(".py")]]
            if parts[-1] == "__init__":
                parts.pop()
            if parts:
                modules.append((".".join(parts), Path(directory) / file))
    return sorted(modules)


def _docstrings(path: Path) -> Iterator[str]:
    """Module, class, function and method docstrings of one source file, in source order."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return  # not readable as Python 3.11 source: nothing to learn from it
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        docstring = ast.get_docstring(node, clean=True)
        if docstring:
            yield docstring
        pending.extend(reversed(list(_definitions(node.body))))  # a stack: reversed so the first comes out first


def _definitions(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """Classes and functions defined in a block, also those inside ``if``/``try``/``with`` blocks."""
    for statement in body:
        if isinstance(statement, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            yield statement
        elif isinstance(statement, (ast.If, ast.Try, ast.TryStar, ast.With)):
            for block in ("body", "orelse", "finalbody"):
                yield from _definitions(getattr(statement, block, []))
            for handler in getattr(statement, "handlers", []):
                yield from _definitions(handler.body)


# --- cleaning ------------------------------------------------------------------


def _strip_inline_markup(text: str) -> str:
    def role(match: re.Match) -> str:
        target = match.group(1)
        if "<" in target and target.endswith(">"):  # :ref:`text <label>`
            return target[: target.index("<")].strip()
        if target.startswith("~"):  # Sphinx shows only the last component
            return target[1:].rsplit(".", 1)[-1]
        return target.lstrip("!")

    text = _ROLE.sub(role, text)
    text = _LITERAL.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _INTERPRETED.sub(r"\1", text)
    text = _STRONG.sub(r"\1", text)
    text = _FOOTNOTE.sub("", text).lstrip()
    if text.endswith("::"):  # reStructuredText's "a literal block follows"
        text = text[:-1]
    return text


def _paragraphs(text: str) -> Iterator[str]:
    """Cuts a docstring or topic into paragraphs of candidate prose (rules in the module docstring)."""
    paragraph: list[str] = []
    previous_indent = 0
    previous_line = ""
    skip_deeper_than: int | None = None  # indent of a dropped directive or field
    in_doctest = False

    def flush() -> Iterator[str]:
        if paragraph:
            yield _strip_inline_markup(" ".join(paragraph))
            paragraph.clear()

    for raw_line in text.expandtabs(8).splitlines():
        line = raw_line.strip()
        indent = len(raw_line) - len(raw_line.lstrip())
        if not line:
            in_doctest = False
            yield from flush()
            continue
        if skip_deeper_than is not None:
            if indent > skip_deeper_than:
                continue
            skip_deeper_than = None
        if in_doctest or line.startswith(">>>"):
            in_doctest = True
            yield from flush()
            continue
        if line.startswith(".. ") or _FIELD.match(line):
            skip_deeper_than = indent
            yield from flush()
            continue
        if (
            line == "..."
            or line.startswith("... ")
            or not any(character.isalnum() for character in line)
            or line.startswith(("|", "+-", "+="))
            or _TABLE_GAP.search(line)
        ):
            yield from flush()
            continue
        bullet = _BULLET.match(line)
        if (
            bullet
            or (indent > previous_indent and previous_line.endswith(":"))
            or indent < previous_indent
        ):
            yield from flush()
        if bullet:
            line = line[bullet.end() :]
        if paragraph and paragraph[-1][-1:] == "-" and paragraph[-1][-2:-1].isalpha() and line[0].islower():
            # Wrapped text breaks lines after hyphens ("re-" / "raises"): rejoin the word.
            paragraph[-1] += line
        else:
            paragraph.append(line)
        previous_indent, previous_line = indent, line
    yield from flush()


def _is_prose(sentence: str) -> bool:
    """The sentence filter of the module docstring."""
    first = sentence[0]
    if not (first.isupper() or first.isdigit() or first in "\"'([«“‘"):
        return False
    if not _SENTENCE_END.search(sentence):
        return False
    if len(_WORD_WITH_LETTER.findall(sentence)) < _MIN_WORDS or sentence.count(" ") >= _MAX_WORDS:
        return False
    return len(_CODE_SYMBOL.findall(sentence)) <= _MAX_SYMBOL_SHARE * len(sentence)


def _sentences(texts: Iterator[str] | list[str], seen: set[str]) -> list[str]:
    """Prose sentences of some texts, skipping any already in ``seen`` (which is updated)."""
    kept = []
    for text in texts:
        for paragraph in _paragraphs(text):
            for sentence in split_sentences(paragraph):
                if sentence not in seen and _is_prose(sentence):
                    seen.add(sentence)
                    kept.append(sentence)
    return kept


# --- assembling ----------------------------------------------------------------


def _topic_documents(seen: set[str]) -> Iterator[CorpusDocument]:
    try:
        # A plain data module (one dict literal) with no side effects on import.
        from pydoc_data.topics import topics
    except ImportError:  # some Linux distributions package it separately
        return

    for name in sorted(topics, key=_stable_order):
        yield CorpusDocument(f"topic:{name}", tuple(_sentences([topics[name]], seen)))


def _module_documents(seen: set[str]) -> Iterator[CorpusDocument]:
    stdlib = Path(sysconfig.get_path("stdlib"))
    for name, path in sorted(_stdlib_modules(stdlib), key=lambda module: _stable_order(module[0])):
        yield CorpusDocument(f"module:{name}", tuple(_sentences(_docstrings(path), seen)))


def _encoded_size(sentences: tuple[str, ...] | list[str]) -> int:
    return sum(len(sentence.encode("utf-8")) + 1 for sentence in sentences)


def build_default_corpus(
    target_bytes: int = DEFAULT_TARGET_BYTES, on_bytes: Callable[[int], None] | None = None
) -> DefaultCorpus:
    """Builds the default corpus of about ``target_bytes`` bytes (never more).

    Args:
        target_bytes: Size of the corpus file to aim for, in bytes of UTF-8.
        on_bytes: Told how many bytes each added document contributes, for a
            progress bar whose total is ``target_bytes``.

    Returns:
        The documents and their statistics. If the installation holds less
        prose than asked for, the corpus is smaller; compare ``stats.bytes``.

    Raises:
        DataError: ``target_bytes`` is below :data:`MIN_TARGET_BYTES`.
    """
    if target_bytes < MIN_TARGET_BYTES:
        raise DataError(
            f"corpus size {target_bytes} bytes is too small; ask for at least {MIN_TARGET_BYTES} bytes (0.01 MB)"
        )
    documents, total = _gather_documents(target_bytes, on_bytes)
    if not documents:
        raise DataError("the Python installation holds no usable documentation text for the default corpus")
    stats = CorpusStats(
        documents=len(documents),
        sentences=sum(len(document.sentences) for document in documents),
        words=sum(len(sentence.split()) for document in documents for sentence in document.sentences),
        bytes=total,
        sources=tuple(document.source for document in documents),
    )
    return DefaultCorpus(tuple(documents), stats)


def _gather_documents(
    target_bytes: int, on_bytes: Callable[[int], None] | None
) -> tuple[list[CorpusDocument], int]:
    """Documents of two or more sentences, drawn in turn from the source that has contributed least so far.

    Stops at the first document that would overflow ``target_bytes``, after
    adding what of it fits (see :func:`_cut_to_fit`). Returns the documents
    and their size in bytes of the file, blank lines between them included.
    """
    seen: set[str] = set()
    # Both sources are lazy: a small corpus parses only the modules it uses.
    sources = [_topic_documents(seen), _module_documents(seen)]
    contributed = [0, 0]
    documents: list[CorpusDocument] = []
    total = 0
    while sources:
        index = min(range(len(sources)), key=lambda i: contributed[i])
        document = next(sources[index], None)
        if document is None:
            del sources[index], contributed[index]
            continue
        if len(document.sentences) < 2:
            continue
        separator = 1 if documents else 0  # the blank line before every document but the first
        size = separator + _encoded_size(document.sentences)
        if total + size > target_bytes:
            document = _cut_to_fit(document, target_bytes - total - separator)
            if document is not None:
                size = separator + _encoded_size(document.sentences)
                documents.append(document)
                total += size
                if on_bytes is not None:
                    on_bytes(size)
            break
        documents.append(document)
        contributed[index] += size
        total += size
        if on_bytes is not None:
            on_bytes(size)
    return documents, total


def _cut_to_fit(document: CorpusDocument, room: int) -> CorpusDocument | None:
    """The document cut after its last whole sentence that fits in ``room`` bytes; None when under two are left."""
    sentences = list(document.sentences)
    while sentences and _encoded_size(sentences) > room:
        sentences.pop()
    if len(sentences) >= 2:
        return CorpusDocument(document.source, tuple(sentences))
    return None


def write_default_corpus(
    path: str | os.PathLike,
    target_bytes: int = DEFAULT_TARGET_BYTES,
    on_bytes: Callable[[int], None] | None = None,
) -> CorpusStats:
    """Builds the default corpus and writes it to ``path`` atomically (UTF-8, ``\\n`` line ends).

    Same arguments as :func:`build_default_corpus`. The file appears under its
    final name only once it is complete.
    """
    with output_directories(Path(path).parent):  # a failed run leaves no new, empty directory
        writable_parent(path)  # before the build, which takes a while
        corpus = build_default_corpus(target_bytes, on_bytes=on_bytes)
        with atomic_path(path) as temporary:
            with open(temporary, "w", encoding="utf-8", newline="\n") as file:
                file.write(corpus.text())
    return corpus.stats
