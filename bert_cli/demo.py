"""The whole pipeline on the built-in corpus, as a new user first meets it.

``make demo`` and ``bert demo`` run each step through the same command-line
app a user types into, in one work directory, so every step shows its own
progress and table; the figures of the final summary are read back from the
files the steps wrote.

Steps: corpus -> vocabulary -> pre-training records (and held-out ones) ->
pre-training -> the two fine-tuning tasks made from the same sources
(:mod:`data.demo_tasks`) -> ``bert finetune classify`` from the pre-trained
model and, with the same options, from random init (the two starts
side by side) -> ``bert finetune squad`` -> ``bert export`` of
both fine-tuned models -> ``bert predict`` on a few dev inputs. The summary
is also written to ``demo.json`` in the work directory.
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
from bert_cli.runs import read_json

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

SUMMARY_FILE = "demo.json"


@dataclasses.dataclass
class Step:
    """One finished step: what it made, where, its key figures, how long it took and the command it ran."""

    name: str
    output: Path | None
    figures: str
    seconds: float
    args: list[str] | None = None  # bert ARGS; None for a step run in-process


@dataclasses.dataclass(frozen=True)
class DemoPlan:
    """How long each scalable step runs, from the time budget."""

    train_steps: int
    classify_epochs: float
    squad_epochs: float


def plan_for(minutes: float) -> DemoPlan:
    """Pre-training steps and fine-tuning epochs that fill about ``minutes`` on 2 CPU cores.

    The floors keep the demo meaningful however small the budget: at least 100
    pre-training steps and one epoch of each task. The classification epochs
    run twice (from the pre-trained model and from random init), the second
    time on top of the budget: under a minute at the default.
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
    for article in read_json(tasks / "squad" / "dev.json")["data"]:
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
    console.info(f"[bold]bert demo[/] in {workdir}: about {minutes:g} minutes on 2 CPU cores; "
                 f"{plan.train_steps:,} pre-training steps, {plan.classify_epochs:g} epochs of classification "
                 f"(from the pre-trained model and from random init), "
                 f"{plan.squad_epochs:g} of SQuAD")
    demo = Demo(workdir, plan, seed)
    corpus = demo.corpus(corpus_mb)
    train_text, held_out_text = workdir / "train.txt", workdir / "heldout.txt"
    split_held_out(corpus, train_text, held_out_text)
    vocab = demo.vocab(train_text, vocab_size)
    records, held_out_records = demo.records(train_text, held_out_text, vocab)
    model = demo.pretrain(records, held_out_records)
    tasks = demo.tasks()
    classifier, squad_model = demo.finetune(model, tasks)
    demo.serve(classifier, squad_model, tasks)
    write_summary(workdir, demo.steps)
    return demo.steps


@dataclasses.dataclass
class Demo:
    """One demo run: where it works, how long its steps run, and the steps finished so far.

    Each stage method runs one or two steps through :meth:`timed`; each
    ``*_figures`` method reads a step's key figures back from the files it wrote.
    """

    workdir: Path
    plan: DemoPlan
    seed: int
    steps: list[Step] = dataclasses.field(default_factory=list)

    def timed(self, name: str, output: Path | None, args: list[str] | None, figures: Callable[[], str],
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
        self.steps.append(Step(name, output, figures(), time.perf_counter() - started, args))

    # --- pre-training -------------------------------------------------------------------

    def corpus(self, corpus_mb: float) -> Path:
        """``bert corpus``: the built-in corpus of ``corpus_mb`` MB."""
        corpus = self.workdir / "corpus.txt"
        self.timed("bert corpus", corpus, ["corpus", str(corpus), "--size-mb", str(corpus_mb), "--overwrite"],
                   lambda: self.corpus_figures(corpus))
        return corpus

    @staticmethod
    def corpus_figures(corpus: Path) -> str:
        """The corpus's size."""
        return f"{corpus.stat().st_size / 1e6:.2f} MB of the standard library's documentation"

    def vocab(self, train_text: Path, vocab_size: int) -> Path:
        """``bert vocab``: a vocabulary learnt from the training part of the corpus only."""
        vocab = self.workdir / "vocab.txt"
        self.timed("bert vocab", vocab, ["vocab", str(train_text), "--vocab-size", str(vocab_size), "-o", str(vocab),
                                         "--overwrite"], lambda: self.vocab_figures(vocab))
        return vocab

    @staticmethod
    def vocab_figures(vocab: Path) -> str:
        """The vocabulary's size and how well it covers the held-out words, from its manifest."""
        manifest = read_json(vocab.with_suffix(".json"))
        held = manifest["holdout"]
        return (f"{manifest['vocab_size']:,} entries; held-out words: {held['unk_word_share']:.2%} [UNK], "
                f"{held['pieces_per_word']:.2f} pieces/word")

    def records(self, train_text: Path, held_out_text: Path, vocab: Path) -> tuple[Path, Path]:
        """``bert make-data`` twice: the pre-training records, then the held-out ones for evaluation."""
        records, held_out_records = self.workdir / "records", self.workdir / "heldout_records"
        record_options = ["--max-seq-length", "64", "--max-predictions-per-seq", "10", "--seed", str(self.seed),
                          "--overwrite"]
        self.timed("bert make-data", records,
                   ["make-data", str(train_text), "--vocab", str(vocab), "-o", str(records), "--dupe-factor", "3",
                    "--num-shards", "2", *record_options], lambda: self.records_figures(records))
        self.timed("bert make-data (held out)", held_out_records,
                   ["make-data", str(held_out_text), "--vocab", str(vocab), "-o", str(held_out_records),
                    "--dupe-factor", "1", *record_options], lambda: self.records_figures(held_out_records))
        return records, held_out_records

    @staticmethod
    def records_figures(directory: Path) -> str:
        """How many examples the records hold and what share of their tokens is masked, from their manifest."""
        counts = read_json(directory / "manifest.json")["counts"]
        return (f"{counts['instances']:,} examples from {counts['documents']:,} documents, "
                f"{counts['masked_tokens'] / max(counts['real_tokens'], 1):.1%} of tokens masked")

    def pretrain(self, records: Path, held_out_records: Path) -> Path:
        """``bert pretrain``: the tiny model for the planned steps, evaluated on the held-out records."""
        model = self.workdir / "model"
        train = self.plan.train_steps
        self.timed("bert pretrain", model,
                   ["pretrain", str(records), "-o", str(model), "--model", "tiny", "--batch-size", "32",
                    "--train-steps", str(train), "--recipe", "budget", "--log-every", str(max(1, train // 8)),
                    "--save-every", str(train), "--eval-input", str(held_out_records), "--eval-batches", "20",
                    "--overwrite"],
                   lambda: self.pretrain_figures(model))
        return model

    @staticmethod
    def pretrain_figures(model: Path) -> str:
        """Steps run and masked-LM accuracy at the start and the end (and held out), from the run's summary."""
        summary = read_json(model / "pretrain.json")
        history, evaluation = summary["history"], summary.get("evaluation") or {}
        first, last = history[0], history[-1]
        text = (f"{summary['final_step']:,} steps; MLM accuracy {first['mlm_accuracy']:.1%} → "
                f"{last['mlm_accuracy']:.1%} (train), NSP {last.get('nsp_accuracy', 0):.1%}")
        if evaluation:
            text += f"; held-out MLM {evaluation['mlm_accuracy']:.1%}"
        return text

    # --- the tasks made from the same sources ---------------------------------------------

    def tasks(self) -> Path:
        """The two fine-tuning tasks (:mod:`data.demo_tasks`), made in-process rather than by a command."""
        tasks = self.workdir / "tasks"
        counts: dict = {}
        self.timed("demo tasks", tasks, None, lambda: self.tasks_figures(counts),
                   action=lambda: counts.update(self.make_tasks(tasks)))
        return tasks

    def make_tasks(self, tasks: Path) -> dict:
        """Writes the tasks under ``tasks``, shows their sizes and returns their counts."""
        from data.demo_tasks import write_demo_tasks

        console.stderr.rule("[bold]demo tasks")
        console.info(f"[dim]data.demo_tasks.write_demo_tasks({str(tasks)!r}, seed={self.seed})[/]")
        counts = write_demo_tasks(tasks, seed=self.seed)
        classify, squad = counts["classify"], counts["squad"]
        console.info(f"classification: {classify['train']:,} train / {classify['dev']:,} dev sentences, "
                     f"labels {', '.join(classify['labels'])}")
        console.info(f"SQuAD: {squad['train']:,} train / {squad['dev']:,} dev questions over "
                     f"{squad['train_contexts'] + squad['dev_contexts']:,} contexts")
        return counts

    @staticmethod
    def tasks_figures(counts: dict) -> str:
        """The sizes of both tasks and how many modules they come from."""
        classify, squad = counts["classify"], counts["squad"]
        return (f"classify: {classify['train']:,}/{classify['dev']:,} sentences (train/dev), "
                f"{len(classify['labels'])} labels from {classify['train_modules'] + classify['dev_modules']} modules; "
                f"squad: {squad['train']:,}/{squad['dev']:,} questions from "
                f"{squad['train_modules'] + squad['dev_modules']} modules")

    # --- fine-tuning ----------------------------------------------------------------------

    def finetune(self, model: Path, tasks: Path) -> tuple[Path, Path]:
        """``bert finetune classify`` (from the pre-trained ``model`` and from random init), then ``squad``."""
        classifier = self.classify(model, tasks)
        squad_model = self.workdir / "squad"
        self.timed("bert finetune squad", squad_model,
                   ["finetune", "squad", str(tasks / "squad" / "train.json"),
                    "--dev", str(tasks / "squad" / "dev.json"), "--output", str(squad_model),
                    "--max-seq-length", "128", "--doc-stride", "64", "--max-query-length", "32",
                    "--epochs", f"{self.plan.squad_epochs:g}", "--init", str(model), *self.training_options()],
                   lambda: self.finetune_figures(squad_model, ("exact_match", "exact", "f1")))
        return classifier, squad_model

    def training_options(self) -> list[str]:
        """The training options every fine-tuning run of the demo shares."""
        # A rate well above BERT-Base's 5e-5: the tiny model has seen only a few minutes of
        # pre-training, and at 2e-4 classification stayed near chance in three epochs (24 % vs 41 % at 1e-3).
        return ["--batch-size", "32", "--learning-rate", "1e-3", "--seed", str(self.seed), "--overwrite"]

    def classify(self, model: Path, tasks: Path) -> Path:
        """``bert finetune classify`` twice, same options: from the pre-trained ``model``, then from random init.

        The second run starts from random weights of the same shape (the
        model's own ``bert_config.json`` and vocabulary) and differs from the
        first only in its start and output directory, so the gap between their
        dev accuracies is what pre-training bought. Only the first is exported.
        """
        classifier, baseline = self.workdir / "classifier", self.workdir / "classifier_random"
        data = tasks / "classify"
        options = ["--dev", str(data / "dev.tsv"), "--max-seq-length", "64",
                   "--epochs", f"{self.plan.classify_epochs:g}", *self.training_options()]
        scores = ("accuracy", "macro_f1")
        self.timed("bert finetune classify", classifier,
                   ["finetune", "classify", str(data / "train.tsv"), "--output", str(classifier),
                    "--init", str(model), *options],
                   lambda: self.finetune_figures(classifier, scores))
        pretrained = self.steps[-1]
        self.timed("bert finetune classify (random init)", baseline,
                   ["finetune", "classify", str(data / "train.tsv"), "--output", str(baseline),
                    "--model", str(model / "bert_config.json"), "--vocab", str(model / "vocab.txt"), *options],
                   lambda: self.finetune_figures(baseline, scores))
        gap = comparison(classifier, baseline)["difference_points"]
        if gap is not None:
            pretrained.figures += f"; {gap:+.1f} points of accuracy over random init"
        return classifier

    @staticmethod
    def finetune_figures(directory: Path, scores: tuple[str, ...]) -> str:
        """Steps run and the dev ``scores`` (those present), with the best epoch, from the run's summary."""
        summary = read_json(directory / "finetune.json")
        dev = summary.get("dev") or {}
        shown = [f"{name.replace('_', ' ')} {_percent(dev[name])}" for name in scores if name in dev]
        best = summary.get("best") or {}
        where = f" (best epoch {best['epoch']:g})" if best.get("epoch") is not None else ""
        return f"{summary['final_step']:,} steps; dev " + ", ".join(shown or ["not evaluated"]) + where

    # --- export, then predict with the export -----------------------------------------------

    def serve(self, classifier: Path, squad_model: Path, tasks: Path) -> None:
        """Exports each fine-tuned model, then predicts with the export on a few dev inputs (:func:`dev_inputs`)."""
        exports = self.workdir / "export"
        sentences, questions = dev_inputs(tasks)
        served = [
            ("classifier", classifier,
             [sentence for sentence, _ in sentences], [label for _, label in sentences]),
            ("squad", squad_model,
             [option for question, context, _ in questions
              for option in ("--question", question, "--context", context)],
             [answer for _, _, answer in questions]),
        ]
        for name, model_dir, inputs, gold in served:
            export = self.export(name, model_dir, exports / name)
            self.predict(name, export, inputs, gold)

    def export(self, name: str, model_dir: Path, export: Path) -> Path:
        """``bert export`` of the fine-tuned ``model_dir`` to ``export``."""
        self.timed(f"bert export ({name})", export, ["export", str(model_dir), str(export), "--overwrite"],
                   lambda: self.export_figures(export))
        return export

    @staticmethod
    def export_figures(directory: Path) -> str:
        """The export's size on disk."""
        return f"SavedModel, {_directory_size(directory) / 1e6:.1f} MB"

    def predict(self, name: str, export: Path, inputs: list[str], gold: list[str]) -> None:
        """``bert predict --jsonl`` with the export on ``inputs``; the figures set each prediction beside its gold."""
        printed: list[dict] = []
        self.timed(f"bert predict ({name})", None, ["predict", str(export), *inputs, "--jsonl"],
                   lambda: self.predict_figures(printed, gold), capture=printed)

    @staticmethod
    def predict_figures(printed: list[dict], gold: list[str]) -> str:
        """Each printed prediction (label and probability, or answer) beside its gold one."""
        shown = []
        for record, expected in zip(printed, gold):
            if "answer" in record:
                shown.append(f"“{record['answer']}” (gold “{expected}”)")
            else:
                probability = record.get("probabilities", {}).get(record["label"])
                shown.append(f"{record['label']}" + (f" {probability:.2f}" if probability is not None else "")
                             + f" (gold {expected})")
        return "; ".join(shown)


def comparison(classifier: Path, baseline: Path) -> dict:
    """The dev scores of the classifier fine-tuned from the pre-trained model and from random init, and their gap.

    ``difference_points`` is the pre-trained accuracy minus the random-init one,
    in percentage points (None when either run has no dev accuracy).
    """
    pretrained = read_json(classifier / "finetune.json").get("dev") or {}
    random_init = read_json(baseline / "finetune.json").get("dev") or {}
    both = "accuracy" in pretrained and "accuracy" in random_init
    return {
        "pretrained": {"model": str(classifier), **pretrained},
        "random_init": {"model": str(baseline), **random_init},
        "difference_points": round(100 * (pretrained["accuracy"] - random_init["accuracy"]), 2) if both else None,
    }


def write_summary(workdir: Path, steps: list[Step]) -> Path:
    """Writes ``demo.json``: every step (command, output, figures, seconds) and the classifier's two starts.

    The same figures as the summary table, for scripts and for comparing runs.
    """
    from bert_cli.runs import write_json

    path = workdir / SUMMARY_FILE
    finished = {step.name: step for step in steps}
    summary: dict = {
        "steps": [{"name": step.name, "command": ["bert", *step.args] if step.args else None,
                   "output": str(step.output) if step.output else None, "figures": step.figures,
                   "seconds": round(step.seconds, 1)} for step in steps],
        "seconds": round(sum(step.seconds for step in steps), 1),
    }
    arms = finished.get("bert finetune classify"), finished.get("bert finetune classify (random init)")
    if all(arms):
        summary["classify"] = comparison(arms[0].output, arms[1].output)
    write_json(path, summary)
    return path


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


