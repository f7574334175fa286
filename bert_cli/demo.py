"""The whole pipeline on the built-in corpus, as a new user first meets it.

``make demo`` and ``bert demo`` run each step the way a user would run the
commands, in one work directory, and end with one summary table. Steps are
added here as the commands they exercise are built.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

from bert_cli import console


@dataclasses.dataclass
class Step:
    """One finished step: what it made, where, its key figures and how long it took."""

    name: str
    output: Path
    figures: str
    seconds: float


def run_demo(workdir: Path, corpus_mb: float = 1.0, vocab_size: int = 8000) -> list[Step]:
    """Runs corpus -> vocabulary in ``workdir`` and returns the finished steps.

    Outputs already present from an earlier run are rebuilt, so the demo
    always shows the work being done.
    """
    from data.corpus import write_default_corpus
    from data.vocab import build_vocabulary

    workdir.mkdir(parents=True, exist_ok=True)
    steps: list[Step] = []

    def timed(name: str, output: Path, work: Callable[[], str]) -> None:
        console.stderr.rule(f"[bold]{name}")
        started = time.perf_counter()
        figures = work()
        steps.append(Step(name, output, figures, time.perf_counter() - started))

    corpus = workdir / "corpus.txt"

    def make_corpus() -> str:
        target = round(corpus_mb * 1_000_000)
        with console.byte_progress("building corpus", total=target) as bar:
            stats = write_default_corpus(corpus, target_bytes=target, on_bytes=bar.advance)
        return f"{stats.documents:,} documents, {stats.sentences:,} sentences, {stats.bytes / 1e6:.2f} MB"

    timed("bert corpus", corpus, make_corpus)

    vocab = workdir / "vocab.txt"

    def make_vocab() -> str:
        with console.byte_progress("reading") as bar:
            report = build_vocabulary(
                [corpus], vocab, vocab_size=vocab_size,
                on_total=bar.set_total, on_bytes=bar.advance, on_stage=bar.describe,
            )
        return (
            f"{report.vocab_size:,} entries, {report.unk_word_share:.2%} of held-out words [UNK], "
            f"{report.pieces_per_word:.2f} pieces/word"
        )

    timed("bert vocab", vocab, make_vocab)
    return steps
