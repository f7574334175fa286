"""The whole pipeline on the built-in corpus, as a new user first meets it.

``make demo`` and ``bert demo`` run each step through the same command-line
app a user types into, in one work directory, so every step shows its own
progress and table; the figures of the final summary are read back from the
files the steps wrote.

Steps: corpus -> vocabulary -> pre-training records (and held-out ones) ->
pre-training -> the two fine-tuning tasks made from the same sources
(:mod:`data.demo_tasks`) -> ``bert finetune classify`` and ``bert finetune
squad`` -> ``bert export`` of both -> ``bert predict`` on a few dev inputs.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import time
from pathlib import Path
from typing import Callable

from bert_cli import console

# Measured on 2 CPU cores shared with other work (so on the slow side): what ``--minutes`` is turned into.
# The fixed part is the corpus, vocabulary, records, tasks, model builds, exports and predictions.
FIXED_SECONDS = 200.0
PRETRAIN_SECONDS_PER_STEP = 0.4  # tiny model, batch 32, 64 tokens
CLASSIFY_SECONDS_PER_EPOCH = 33.0  # 2,400 sentences, 64 tokens
SQUAD_SECONDS_PER_EPOCH = 60.0  # about 850 questions in 128-token windows
# Shares of the time left after the fixed part; pre-training gets most of it
# because everything after it starts from what it learned.
PRETRAIN_SHARE, CLASSIFY_SHARE, SQUAD_SHARE = 0.55, 0.15, 0.30
DEFAULT_MINUTES = 12.0

# The held-out split of the corpus: every 10th document.
HELD_OUT_EVERY = 10


@dataclasses.dataclass
class Step:
    """One finished step: what it made, where, its key figures and how long it took."""

    name: str
    output: Path | None
    figures: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class DemoPlan:
    """How long each scalable step runs, from the time budget."""

    train_steps: int
    classify_epochs: float
    squad_epochs: float


def plan_for(minutes: float) -> DemoPlan:
    """Pre-training steps and fine-tuning epochs that fill about ``minutes`` on 2 CPU cores.

    The floors keep the demo meaningful however small the budget: at least 100
    pre-training steps and one epoch of each task.
    """
    scalable = max(minutes * 60.0 - FIXED_SECONDS, 60.0)
    steps = scalable * PRETRAIN_SHARE / PRETRAIN_SECONDS_PER_STEP
    return DemoPlan(
        train_steps=max(100, int(round(steps / 50.0)) * 50),
        classify_epochs=min(10.0, max(1.0, round(scalable * CLASSIFY_SHARE / CLASSIFY_SECONDS_PER_EPOCH, 1))),
        squad_epochs=min(10.0, max(1.0, round(scalable * SQUAD_SHARE / SQUAD_SECONDS_PER_EPOCH, 1))),
    )


def _command_words(args: list[str]) -> list[str]:
    """The command part of ``bert ARGS``: ``["finetune", "squad"]``, ``["export"]``."""
    return args[:2] if args[0] in ("finetune", "inspect") else args[:1]


def _run(args: list[str]) -> None:
    from bert_cli.main import app

    console.stderr.rule(f"[bold]bert {' '.join(_command_words(args))}")
    console.info(f"[dim]$ bert {' '.join(_quoted(a) for a in args)}[/]")
    app(args=args, prog_name="bert", standalone_mode=False)


def _quoted(argument: str) -> str:
    return repr(argument) if not argument or any(c in argument for c in " \"'") else argument


def split_held_out(corpus: Path, train: Path, held_out: Path, every: int = HELD_OUT_EVERY) -> tuple[int, int]:
    """Every ``every``-th document of a corpus goes to ``held_out``, the rest to ``train``."""
    documents = [d for d in corpus.read_text(encoding="utf-8").split("\n\n") if d.strip()]
    kept = [d.strip("\n") for i, d in enumerate(documents) if i % every != every - 1]
    spared = [d.strip("\n") for i, d in enumerate(documents) if i % every == every - 1]
    train.write_text("\n\n".join(kept) + "\n", encoding="utf-8")
    held_out.write_text("\n\n".join(spared) + "\n", encoding="utf-8")
    return len(kept), len(spared)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _percent(value: float) -> str:
    """A score as a percentage, whether it was stored as a fraction or as a percentage (SQuAD's script)."""
    return f"{value:.1%}" if abs(value) <= 1.0 else f"{value:.1f}%"


def _directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def dev_inputs(
    tasks: Path, sentence_count: int = 3, question_count: int = 2
) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """A few dev inputs for ``bert predict``: (sentence, gold label) and (question, context, gold answer).

    The sentences are the first dev rows of different labels; the questions the
    first of different public dev modules, each with its own context.
    """
    sentences: list[tuple[str, str]] = []
    with open(tasks / "classify" / "dev.tsv", encoding="utf-8", newline="") as file:
        rows = csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)  # header
        labels_seen = set()
        for sentence, label in rows:
            if label not in labels_seen and not sentence.startswith('"'):
                labels_seen.add(label)
                sentences.append((sentence, label))
            if len(sentences) == sentence_count:
                break
    questions: list[tuple[str, str, str]] = []
    for article in _read_json(tasks / "squad" / "dev.json")["data"]:
        if article["title"].startswith("_"):
            continue  # a private module's names make a less telling example
        paragraph = article["paragraphs"][0]
        qa = paragraph["qas"][0]
        questions.append((qa["question"], paragraph["context"], qa["answers"][0]["text"]))
        if len(questions) == question_count:
            break
    return sentences, questions


def run_demo(
    workdir: Path,
    minutes: float = DEFAULT_MINUTES,
    corpus_mb: float = 1.0,
    vocab_size: int = 5000,
    train_steps: int | None = None,
    seed: int = 12345,
) -> list[Step]:
    """Runs the whole pipeline in ``workdir``; returns the finished steps in order.

    Args:
        workdir: Directory for everything the demo makes; outputs of an earlier
            run are replaced, so the demo always shows the work.
        minutes: Rough time budget on 2 CPU cores; sets the pre-training steps
            and fine-tuning epochs (:func:`plan_for`).
        corpus_mb / vocab_size: Size of the built-in corpus and vocabulary.
        train_steps: Pre-training steps instead of those of the budget.
        seed: Seed of the demo tasks and of every training run.
    """
    plan = plan_for(minutes)
    if train_steps is not None:
        plan = dataclasses.replace(plan, train_steps=train_steps)
    workdir.mkdir(parents=True, exist_ok=True)
    steps: list[Step] = []
    console.info(f"[bold]bert demo[/] in {workdir}: about {minutes:g} minutes on 2 CPU cores; "
                 f"{plan.train_steps:,} pre-training steps, {plan.classify_epochs:g} epochs of classification, "
                 f"{plan.squad_epochs:g} of SQuAD")

    def timed(name: str, output: Path | None, args: list[str] | None, figures: Callable[[], str],
              action: Callable[[], None] | None = None, capture: list[dict] | None = None) -> None:
        """Runs ``bert ARGS`` (or ``action`` when ``args`` is None) and records the step.

        ``capture`` receives the JSON records the command printed (shown as well).
        """
        started = time.perf_counter()
        if args and capture is not None:
            capture.extend(_json_records(args))
        elif args:
            _run(args)
        if action is not None:
            action()
        steps.append(Step(name, output, figures(), time.perf_counter() - started))

    # --- pre-training -------------------------------------------------------------------

    corpus = workdir / "corpus.txt"
    timed("bert corpus", corpus, ["corpus", str(corpus), "--size-mb", str(corpus_mb), "--overwrite"],
          lambda: f"{corpus.stat().st_size / 1e6:.2f} MB of the standard library's documentation")

    train_text, held_out_text = workdir / "train.txt", workdir / "heldout.txt"
    split_held_out(corpus, train_text, held_out_text)

    vocab = workdir / "vocab.txt"

    def vocab_figures() -> str:
        manifest = _read_json(vocab.with_suffix(".json"))
        held = manifest["holdout"]
        return (f"{manifest['vocab_size']:,} entries; held-out words: {held['unk_word_share']:.2%} [UNK], "
                f"{held['pieces_per_word']:.2f} pieces/word")

    timed("bert vocab", vocab, ["vocab", str(train_text), "--vocab-size", str(vocab_size), "-o", str(vocab),
                                "--overwrite"], vocab_figures)

    records, held_out_records = workdir / "records", workdir / "heldout_records"

    def records_figures(directory: Path) -> Callable[[], str]:
        def figures() -> str:
            counts = _read_json(directory / "manifest.json")["counts"]
            return (f"{counts['instances']:,} examples from {counts['documents']:,} documents, "
                    f"{counts['masked_tokens'] / max(counts['real_tokens'], 1):.1%} of tokens masked")
        return figures

    record_options = ["--max-seq-length", "64", "--max-predictions-per-seq", "10", "--seed", str(seed), "--overwrite"]
    timed("bert make-data", records,
          ["make-data", str(train_text), "--vocab", str(vocab), "-o", str(records), "--dupe-factor", "3",
           "--num-shards", "2", *record_options], records_figures(records))
    timed("bert make-data (held out)", held_out_records,
          ["make-data", str(held_out_text), "--vocab", str(vocab), "-o", str(held_out_records),
           "--dupe-factor", "1", *record_options], records_figures(held_out_records))

    model = workdir / "model"

    def pretrain_figures() -> str:
        summary = _read_json(model / "pretrain.json")
        history, evaluation = summary["history"], summary.get("evaluation") or {}
        first, last = history[0], history[-1]
        text = (f"{summary['final_step']:,} steps; MLM accuracy {first['mlm_accuracy']:.1%} → "
                f"{last['mlm_accuracy']:.1%} (train), NSP {last.get('nsp_accuracy', 0):.1%}")
        if evaluation:
            text += f"; held-out MLM {evaluation['mlm_accuracy']:.1%}"
        return text

    train = plan.train_steps
    timed("bert pretrain", model,
          ["pretrain", str(records), "-o", str(model), "--model", "tiny", "--batch-size", "32",
           "--train-steps", str(train), "--warmup-steps", str(max(1, train // 10)),
           "--learning-rate", "1e-3", "--log-every", str(max(1, train // 8)), "--save-every",
           str(train), "--eval-input", str(held_out_records), "--eval-batches", "20", "--overwrite"],
          pretrain_figures)

    # --- the tasks made from the same sources ---------------------------------------------

    tasks = workdir / "tasks"
    counts: dict = {}

    def make_tasks() -> None:
        from data.demo_tasks import write_demo_tasks

        console.stderr.rule("[bold]demo tasks")
        console.info(f"[dim]data.demo_tasks.write_demo_tasks({str(tasks)!r}, seed={seed})[/]")
        counts.update(write_demo_tasks(tasks, seed=seed))
        classify, squad = counts["classify"], counts["squad"]
        console.info(f"classification: {classify['train']:,} train / {classify['dev']:,} dev sentences, "
                     f"labels {', '.join(classify['labels'])}")
        console.info(f"SQuAD: {squad['train']:,} train / {squad['dev']:,} dev questions over "
                     f"{squad['train_contexts'] + squad['dev_contexts']:,} contexts")

    def tasks_figures() -> str:
        classify, squad = counts["classify"], counts["squad"]
        return (f"classify: {classify['train']:,}/{classify['dev']:,} sentences (train/dev), "
                f"{len(classify['labels'])} labels from {classify['train_modules'] + classify['dev_modules']} modules; "
                f"squad: {squad['train']:,}/{squad['dev']:,} questions from "
                f"{squad['train_modules'] + squad['dev_modules']} modules")

    timed("demo tasks", tasks, None, tasks_figures, action=make_tasks)

    # --- fine-tuning ----------------------------------------------------------------------

    classifier, squad_model = workdir / "classifier", workdir / "squad"
    # A rate well above BERT-Base's 5e-5: the tiny model has seen only a few minutes of
    # pre-training, and at 2e-4 classification stayed near chance in three epochs (24 % vs 41 % at 1e-3).
    shared = ["--init", str(model), "--batch-size", "32", "--learning-rate", "1e-3", "--seed", str(seed),
              "--overwrite"]

    def finetune_figures(directory: Path, scores: tuple[str, ...]) -> Callable[[], str]:
        def figures() -> str:
            summary = _read_json(directory / "finetune.json")
            dev = summary.get("dev") or {}
            shown = [f"{name.replace('_', ' ')} {_percent(dev[name])}" for name in scores if name in dev]
            best = summary.get("best") or {}
            where = f" (best epoch {best['epoch']:g})" if best.get("epoch") is not None else ""
            return f"{summary['final_step']:,} steps; dev " + ", ".join(shown or ["not evaluated"]) + where
        return figures

    timed("bert finetune classify", classifier,
          ["finetune", "classify", str(tasks / "classify" / "train.tsv"), "--dev", str(tasks / "classify" / "dev.tsv"),
           "--output", str(classifier), "--max-seq-length", "64", "--epochs", f"{plan.classify_epochs:g}", *shared],
          finetune_figures(classifier, ("accuracy", "macro_f1")))
    timed("bert finetune squad", squad_model,
          ["finetune", "squad", str(tasks / "squad" / "train.json"), "--dev", str(tasks / "squad" / "dev.json"),
           "--output", str(squad_model), "--max-seq-length", "128", "--doc-stride", "64", "--max-query-length", "32",
           "--epochs", f"{plan.squad_epochs:g}", *shared],
          finetune_figures(squad_model, ("exact_match", "exact", "f1")))

    # --- export, then predict with the export -----------------------------------------------

    exports = workdir / "export"
    sentences, questions = dev_inputs(tasks)
    printed: list[dict] = []

    def export_figures(directory: Path) -> Callable[[], str]:
        return lambda: f"SavedModel, {_directory_size(directory) / 1e6:.1f} MB"

    def predict_figures(gold: list[str]) -> Callable[[], str]:
        def figures() -> str:
            shown = []
            for record, expected in zip(printed, gold):
                if "answer" in record:
                    shown.append(f"“{record['answer']}” (gold “{expected}”)")
                else:
                    probability = record.get("probabilities", {}).get(record["label"])
                    shown.append(f"{record['label']}" + (f" {probability:.2f}" if probability is not None else "")
                                 + f" (gold {expected})")
            return "; ".join(shown)
        return figures

    served = [
        ("classifier", classifier,
         [sentence for sentence, _ in sentences], [label for _, label in sentences]),
        ("squad", squad_model,
         [option for question, context, _ in questions for option in ("--question", question, "--context", context)],
         [answer for _, _, answer in questions]),
    ]
    for name, model_dir, inputs, gold in served:
        export = exports / name
        timed(f"bert export ({name})", export, ["export", str(model_dir), str(export), "--overwrite"],
              export_figures(export))
        printed.clear()
        timed(f"bert predict ({name})", None, ["predict", str(export), *inputs, "--jsonl"], predict_figures(gold),
              capture=printed)
    return steps


def _json_records(args: list[str]) -> list[dict]:
    """Runs a command that writes JSON lines to stdout (``bert predict --jsonl``); shows and returns them."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        _run(args)
    text = buffer.getvalue()
    console.stdout.out(text, end="", highlight=False)
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def curve_files(steps: list[Step]) -> list[Path]:
    """The training-curve PNGs that the finished steps wrote."""
    found = []
    for step in steps:
        if step.output is not None and (step.output / "training_curves.png").is_file():
            found.append(step.output / "training_curves.png")
    return found


