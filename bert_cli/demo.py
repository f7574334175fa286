"""The whole pipeline on the built-in corpus, as a new user first meets it.

``make demo`` and ``bert demo`` run each step through the same command-line
app a user types into, in one work directory, so every step shows its own
progress and table; the figures of the final summary are read back from the
files the steps wrote. Steps are added here as the commands are built.
"""

from __future__ import annotations

import dataclasses
import json
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


def _run(args: list[str]) -> None:
    from bert_cli.main import app

    console.stderr.rule(f"[bold]bert {' '.join(args[:1])}")
    console.info(f"[dim]$ bert {' '.join(args)}[/]")
    app(args=args, prog_name="bert", standalone_mode=False)


def split_held_out(corpus: Path, train: Path, held_out: Path, every: int = 10) -> tuple[int, int]:
    """Every ``every``-th document of a corpus goes to ``held_out``, the rest to ``train``."""
    documents = [d for d in corpus.read_text(encoding="utf-8").split("\n\n") if d.strip()]
    kept = [d.strip("\n") for i, d in enumerate(documents) if i % every != every - 1]
    spared = [d.strip("\n") for i, d in enumerate(documents) if i % every == every - 1]
    train.write_text("\n\n".join(kept) + "\n", encoding="utf-8")
    held_out.write_text("\n\n".join(spared) + "\n", encoding="utf-8")
    return len(kept), len(spared)


def run_demo(workdir: Path, corpus_mb: float = 1.0, vocab_size: int = 5000, train_steps: int = 400) -> list[Step]:
    """Runs corpus -> vocabulary -> records -> pre-training in ``workdir``; returns the finished steps.

    Sequences of 64 tokens keep the tiny model's pre-training to a few minutes on two cores.

    Outputs of an earlier run are replaced, so the demo always shows the work.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    steps: list[Step] = []

    def timed(name: str, output: Path, args: list[str] | None, figures: Callable[[], str]) -> None:
        started = time.perf_counter()
        if args:
            _run(args)
        steps.append(Step(name, output, figures(), time.perf_counter() - started))

    corpus = workdir / "corpus.txt"
    timed("bert corpus", corpus, ["corpus", str(corpus), "--size-mb", str(corpus_mb), "--overwrite"],
          lambda: f"{corpus.stat().st_size / 1e6:.2f} MB of the standard library's documentation")

    train_text, held_out_text = workdir / "train.txt", workdir / "heldout.txt"
    kept, spared = split_held_out(corpus, train_text, held_out_text)

    vocab = workdir / "vocab.txt"

    def vocab_figures() -> str:
        manifest = json.loads(vocab.with_suffix(".json").read_text(encoding="utf-8"))
        held = manifest["holdout"]
        return (f"{manifest['vocab_size']:,} entries; held-out words: {held['unk_word_share']:.2%} [UNK], "
                f"{held['pieces_per_word']:.2f} pieces/word")

    timed("bert vocab", vocab, ["vocab", str(train_text), "--vocab-size", str(vocab_size), "-o", str(vocab),
                                "--overwrite"], vocab_figures)

    records, held_out_records = workdir / "records", workdir / "heldout_records"

    def records_figures(directory: Path) -> Callable[[], str]:
        def figures() -> str:
            manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
            counts = manifest["counts"]
            return (f"{counts['instances']:,} examples from {counts['documents']:,} documents, "
                    f"{counts['masked_tokens'] / max(counts['real_tokens'], 1):.1%} of tokens masked")
        return figures

    timed("bert make-data", records,
          ["make-data", str(train_text), "--vocab", str(vocab), "-o", str(records), "--dupe-factor", "3",
           "--max-seq-length", "64", "--max-predictions-per-seq", "10", "--num-shards", "2", "--overwrite"], records_figures(records))
    timed("bert make-data (held out)", held_out_records,
          ["make-data", str(held_out_text), "--vocab", str(vocab), "-o", str(held_out_records), "--dupe-factor", "1",
           "--max-seq-length", "64", "--max-predictions-per-seq", "10", "--overwrite"], records_figures(held_out_records))

    model = workdir / "model"

    def pretrain_figures() -> str:
        summary = json.loads((model / "pretrain.json").read_text(encoding="utf-8"))
        history, evaluation = summary["history"], summary.get("evaluation") or {}
        first, last = history[0], history[-1]
        text = (f"MLM accuracy {first['mlm_accuracy']:.1%} → {last['mlm_accuracy']:.1%} (train), "
                f"NSP {last.get('nsp_accuracy', 0):.1%}")
        if evaluation:
            text += f"; held-out MLM {evaluation['mlm_accuracy']:.1%}"
        return text + f"; curves {model / 'training_curves.png'}"

    timed("bert pretrain", model,
          ["pretrain", str(records), "-o", str(model), "--model", "tiny", "--batch-size", "32",
           "--train-steps", str(train_steps), "--warmup-steps", str(max(1, train_steps // 10)),
           "--learning-rate", "1e-3", "--log-every", str(max(1, train_steps // 8)), "--save-every",
           str(train_steps), "--eval-input", str(held_out_records), "--eval-batches", "20", "--overwrite"],
          pretrain_figures)
    return steps
