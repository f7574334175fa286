"""Two fine-tuning tasks made from the built-in corpus's sources, for ``bert demo``.

The demo pre-trains on the standard library's own documentation (see
:mod:`data.corpus`), so its fine-tuning tasks come from the same place: the
docstrings of the Python installation's standard library, read by parsing
the source files (never importing them) and cleaned by the same rules as the
corpus. Nothing is stored in this repository; the same installation and seed
give byte-identical files.

Classification (``classify/{train,dev}.tsv``)
---------------------------------------------
GLUE-style TSV with the header ``sentence<TAB>label``. The sentence is one
prose sentence of a docstring; the label names the part of the standard
library it comes from, one of the six :data:`FAMILIES` (well-separated,
well-populated groups of modules: concurrency, email, files, formats,
networking, testing).
Every module of a family contributes at most :data:`MAX_SENTENCES_PER_MODULE`
sentences (so ``_pyio`` does not become the whole "files" class), each
sentence appears once in the whole task, and the classes are balanced by
drawing the same number of sentences from each (the smallest class's count,
capped). The split is by **module**: a module's sentences are all in train or
all in dev, because sentences of one module repeat each other's wording and
would otherwise leak the answer.

Question answering (``squad/{train,dev}.json``)
-----------------------------------------------
SQuAD v1.1 JSON: one article per module (``title`` is the module name). A
context is a few consecutive documented functions, methods or classes of the
module, each written as ``Class.method: its first prose sentences.``; a
question asks what one of them returns ("What does Event.is_set return?", or
one of two other phrasings picked by a hash of the seed and the name).
The answer is the span after the leading ``Return``/``Returns`` of that entry's
return sentence, up to the end of the sentence or of its first clause (before
``;``), e.g. ``True if and only if the internal flag is true``. A context
usually holds several such sentences, so the model has to find the one that
belongs to the name in the question, not just the word "Return".
``answer_start`` is a character offset into ``context`` and is checked when
the file is made. Return sentences that occur more than once in the standard
library (shared boilerplate) are asked about only once. The split is by
module, as for classification.

Both splits give about :data:`DEV_SHARE` of the examples to dev: modules are
ordered by a hash of the seed and their name and go to dev until it holds
that share.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import random
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

# The corpus's own reading and cleaning rules, so the tasks read like the pre-training text.
from data.corpus import _definitions, _is_prose, _paragraphs, _stdlib_modules
from data.errors import DataError
from data.sentences import split_sentences
from data.textio import atomic_path

DEFAULT_SEED = 12345

# label -> module prefixes (a module belongs when its dotted name is a prefix or
# starts with "prefix."). Chosen for how little their vocabularies overlap and
# how much prose each holds; some modules that could go either way (selectors,
# ssl's socket wrappers) are put where their docstrings' wording points.
FAMILIES: dict[str, tuple[str, ...]] = {
    "concurrency": ("asyncio", "threading", "multiprocessing", "concurrent", "queue", "sched",
                    "subprocess", "_threading_local", "selectors"),
    "email": ("email", "smtplib", "smtpd", "imaplib", "poplib", "mailbox", "nntplib", "mimetypes",
              "quopri", "mailcap"),
    "files": ("os", "posixpath", "ntpath", "genericpath", "shutil", "pathlib", "glob", "fnmatch",
              "tempfile", "filecmp", "fileinput", "tarfile", "zipfile", "gzip", "bz2", "lzma", "stat",
              "_pyio", "shelve", "dbm"),
    "formats": ("json", "csv", "xml", "configparser", "pickle", "pickletools", "plistlib", "tomllib",
                "html", "netrc"),
    "networking": ("http", "urllib", "socket", "socketserver", "ssl", "ftplib", "xmlrpc", "wsgiref",
                   "cgi", "cgitb", "webbrowser", "telnetlib", "ipaddress"),
    "testing": ("unittest", "doctest", "pdb", "bdb", "traceback", "trace", "timeit", "profile",
                "cProfile", "pstats", "tracemalloc", "faulthandler"),
}
MAX_SENTENCES_PER_MODULE = 150
MAX_SENTENCES_PER_LABEL = 500  # train + dev, after balancing: a few thousand rows in all
DEV_SHARE = 0.2

# Entries of one SQuAD context: at most this many, and at most this many words in all,
# so that a context fits in two or three 128-token windows.
MAX_ENTRIES_PER_CONTEXT = 4
MAX_CONTEXT_WORDS = 90
SENTENCES_PER_ENTRY = 3  # an entry is its docstring's first prose sentences
MAX_ANSWER_WORDS = 20
_RETURN = re.compile(r"Returns? (?=\S)")
_QUESTIONS = ("What does {name} return?", "What is returned by {name}?", "What do you get back from {name}?")


@dataclass(frozen=True)
class _Entry:
    """One documented definition of a module: its qualified name, text, and answer (if any)."""

    name: str  # "Event.is_set"
    sentences: tuple[str, ...]
    answer_sentence: int | None  # index into sentences of the "Return ..." sentence
    answer: str | None  # the span after "Return(s) "


def _hashed(seed: int, name: str) -> bytes:
    """A seeded order that does not depend on PYTHONHASHSEED (unlike ``hash``)."""
    return hashlib.sha256(f"{seed}:{name}".encode("utf-8")).digest()


def _named_docstrings(tree: ast.Module) -> list[tuple[str, str]]:
    """(qualified name, docstring) of the module ("") and every class, function and method, in source order."""
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, name: str) -> None:
        docstring = ast.get_docstring(node, clean=True)
        if docstring:
            found.append((name, docstring))
        for definition in _definitions(node.body):
            visit(definition, f"{name}.{definition.name}" if name else definition.name)

    visit(tree, "")
    return found


def _prose_sentences(docstring: str) -> list[str]:
    """The sentences of a docstring that the corpus would keep (without its corpus-wide deduplication)."""
    return [s for paragraph in _paragraphs(docstring) for s in split_sentences(paragraph) if _is_prose(s)]


def _family(module: str) -> str | None:
    for label, prefixes in FAMILIES.items():
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return label
    return None


def _read_modules() -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """(module, [(qualified name, prose sentences)]) of the standard-library modules the corpus reads, by name."""
    stdlib = Path(sysconfig.get_path("stdlib"))
    modules = []
    for module, path in _stdlib_modules(stdlib):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue  # not Python 3 source: the corpus skips it too
        documented = [(name, _prose_sentences(docstring)) for name, docstring in _named_docstrings(tree)]
        modules.append((module, [(name, sentences) for name, sentences in documented if sentences]))
    return modules


def _split_modules(sizes: dict[str, int], seed: int) -> set[str]:
    """Modules for dev: in seeded hash order, added while dev stays within DEV_SHARE of the examples.

    A module too large to fit is passed over, so one big module cannot make dev
    most of a class; at least one module goes to dev when there are two or more.
    """
    total = sum(sizes.values())
    dev: set[str] = set()
    held = 0
    for module in sorted(sizes, key=lambda m: _hashed(seed, m)):
        if held + sizes[module] <= DEV_SHARE * total or (not dev and len(sizes) > 1):
            dev.add(module)
            held += sizes[module]
    return dev


# --- classification ------------------------------------------------------------


def _classification_rows(modules, seed: int) -> dict[str, list[tuple[str, str, str]]]:
    """{"train": [(sentence, label, module)], "dev": [...]}, balanced, shuffled."""
    rng = random.Random(seed)
    seen: set[str] = set()
    by_label: dict[str, dict[str, list[str]]] = {label: {} for label in FAMILIES}
    for module, documented in modules:
        label = _family(module)
        if label is None:
            continue
        kept = []
        for _, sentences in documented:
            for sentence in sentences:
                if sentence not in seen:
                    seen.add(sentence)
                    kept.append(sentence)
        if kept:
            if len(kept) > MAX_SENTENCES_PER_MODULE:
                kept = rng.sample(kept, MAX_SENTENCES_PER_MODULE)
            by_label[label][module] = kept
    if any(len(groups) < 2 for groups in by_label.values()):
        thin = [label for label, groups in by_label.items() if len(groups) < 2]
        raise DataError(f"the Python installation lacks the modules of the demo's classes {', '.join(thin)}")

    splits: dict[str, dict[str, list[tuple[str, str]]]] = {"train": {}, "dev": {}}
    for label, groups in by_label.items():
        dev_modules = _split_modules({module: len(sentences) for module, sentences in groups.items()}, seed)
        for split in splits:
            splits[split][label] = [(s, module) for module, sentences in groups.items()
                                    if (module in dev_modules) == (split == "dev") for s in sentences]
    rows: dict[str, list[tuple[str, str, str]]] = {}
    for split, by_class in splits.items():
        # Balanced: every class gets as many rows as the smallest has, within the cap.
        cap = round(MAX_SENTENCES_PER_LABEL * (DEV_SHARE if split == "dev" else 1 - DEV_SHARE))
        count = min(cap, *(len(sentences) for sentences in by_class.values()))
        rows[split] = [(sentence, label, module) for label, sentences in by_class.items()
                       for sentence, module in rng.sample(sentences, count)]
        rng.shuffle(rows[split])
    return rows


def _tsv_field(text: str) -> str:
    # A field opening with a quote is written quoted ("" inside), so the reader's
    # unquoting of such fields gives the sentence back unchanged.
    return '"' + text.replace('"', '""') + '"' if text.startswith('"') else text


def _write_tsv(path: Path, rows: list[tuple[str, str, str]]) -> None:
    lines = ["sentence\tlabel"] + [f"{_tsv_field(sentence)}\t{label}" for sentence, label, _ in rows]
    _write_text(path, "\n".join(lines) + "\n")


# --- question answering ----------------------------------------------------------


def _entry(name: str, sentences: list[str]) -> _Entry:
    sentences = tuple(sentences[:SENTENCES_PER_ENTRY])
    for index, sentence in enumerate(sentences):
        match = _RETURN.match(sentence)
        if match:
            answer = sentence[match.end():].split("; ")[0].rstrip(".")
            if 1 <= len(answer.split()) <= MAX_ANSWER_WORDS:
                return _Entry(name, sentences, index, answer)
            break
    return _Entry(name, sentences, None, None)


def _contexts(module: str, documented: list[tuple[str, list[str]]], asked: set[str], seed: int) -> list[dict]:
    """The SQuAD paragraphs of one module: runs of consecutive entries with their questions."""
    entries, names = [], set()
    for name, sentences in documented:
        # Special methods are skipped: "What does __init__ return?" names no one thing.
        if not name or name in names or any(part.startswith("__") for part in name.split(".")):
            continue
        names.add(name)
        entry = _entry(name, sentences)
        if sum(len(s.split()) for s in entry.sentences) < MAX_CONTEXT_WORDS:
            entries.append(entry)
    paragraphs = []
    start = 0
    while start < len(entries):
        end, words = start, 0
        while end < len(entries) and end - start < MAX_ENTRIES_PER_CONTEXT:
            size = len(entries[end].name.split()) + sum(len(s.split()) for s in entries[end].sentences)
            if end > start and words + size > MAX_CONTEXT_WORDS:
                break
            words += size
            end += 1
        paragraph = _paragraph(module, entries[start:end], asked, seed)
        if paragraph["qas"]:
            paragraphs.append(paragraph)
        start = end
    return paragraphs


def _paragraph(module: str, entries: list[_Entry], asked: set[str], seed: int) -> dict:
    context, qas = "", []
    for entry in entries:
        if context:
            context += " "
        context += f"{entry.name}: "
        for index, sentence in enumerate(entry.sentences):
            if index:
                context += " "
            if index == entry.answer_sentence and entry.answer not in asked:
                asked.add(entry.answer)
                answer_start = len(context) + _RETURN.match(sentence).end()
                question_id = f"{module}.{entry.name}"
                template = _QUESTIONS[_hashed(seed, question_id)[0] % len(_QUESTIONS)]
                qas.append({"id": question_id, "question": template.format(name=entry.name),
                            "answers": [{"text": entry.answer, "answer_start": answer_start}]})
            context += sentence
    for qa in qas:
        answer = qa["answers"][0]
        # The promise of the format: the answer is exactly this span of the context.
        assert context[answer["answer_start"]:answer["answer_start"] + len(answer["text"])] == answer["text"]
    return {"context": context, "qas": qas}


def _squad_articles(modules, seed: int) -> dict[str, list[dict]]:
    asked: set[str] = set()
    articles = []
    for module, documented in modules:  # sorted by name: which copy of a repeated answer is asked is stable
        paragraphs = _contexts(module, documented, asked, seed)
        if paragraphs:
            articles.append({"title": module, "paragraphs": paragraphs})
    sizes = {article["title"]: sum(len(p["qas"]) for p in article["paragraphs"]) for article in articles}
    dev_modules = _split_modules(sizes, seed)
    return {split: [article for article in articles if (article["title"] in dev_modules) == (split == "dev")]
            for split in ("train", "dev")}


# --- writing ---------------------------------------------------------------------


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="\n") as file:
            file.write(text)


def write_demo_tasks(workdir: str | os.PathLike, seed: int = DEFAULT_SEED) -> dict:
    """Writes the demo's classification and SQuAD tasks under ``workdir``; returns their counts.

    Files: ``classify/train.tsv``, ``classify/dev.tsv``, ``squad/train.json``
    and ``squad/dev.json``, each written atomically. Same installation and
    ``seed``, same bytes (no dependence on ``PYTHONHASHSEED`` or the file
    system's order).

    Returns:
        ``{"classify": {"labels": [...], "train": rows, "dev": rows,
        "train_modules": n, "dev_modules": n}, "squad": {"train": questions,
        "dev": questions, "train_contexts": n, "dev_contexts": n,
        "train_modules": n, "dev_modules": n}}``.

    Raises:
        DataError: the installation lacks the modules the tasks are made from.
    """
    return _write_tasks(Path(workdir), seed, _read_modules())


def _write_tasks(workdir: Path, seed: int, modules: list[tuple[str, list[tuple[str, list[str]]]]]) -> dict:
    """:func:`write_demo_tasks` from modules already read (the tests reuse them)."""
    rows = _classification_rows(modules, seed)
    for split, split_rows in rows.items():
        _write_tsv(workdir / "classify" / f"{split}.tsv", split_rows)

    articles = _squad_articles(modules, seed)
    if not articles["train"] or not articles["dev"]:
        raise DataError("the Python installation holds too few documented return values for the demo's SQuAD task")
    for split, split_articles in articles.items():
        document = {"version": "1.1", "data": split_articles}
        _write_text(workdir / "squad" / f"{split}.json", json.dumps(document, ensure_ascii=False, indent=1) + "\n")

    counts: dict = {"classify": {"labels": list(FAMILIES)}, "squad": {}}
    for split in ("train", "dev"):
        counts["classify"][split] = len(rows[split])
        counts["classify"][f"{split}_modules"] = len({module for _, _, module in rows[split]})
        counts["squad"][split] = sum(len(p["qas"]) for a in articles[split] for p in a["paragraphs"])
        counts["squad"][f"{split}_contexts"] = sum(len(a["paragraphs"]) for a in articles[split])
        counts["squad"][f"{split}_modules"] = len(articles[split])
    return counts
