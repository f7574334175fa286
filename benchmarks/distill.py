"""Does distillation pay? A small student trained on a teacher's outputs vs the same student on the labels alone.

On the shared SST-2 split (``../shared/data/classification/sst2``):

1. a vocabulary is learnt from the training sentences (``bert vocab``, ``--vocab-size``);
2. the teacher: ``--teacher-model`` (default L-4_H-256) fine-tuned on the labelled
   training set from random init (no pre-trained weights reach this machine; pass
   ``--teacher DIR`` to use a better one);
3. for each student size (``--students``, default L-2_H-128 and L-1_H-64):
   the student fine-tuned on the labels alone, and the same student distilled
   (``bert distill``) on the training sentences *without their labels*, plus,
   with ``--corpus-sentences N``, N sentences of the shared corpora as a second
   unlabeled source; identical options (epochs, batch, learning rate, seed);
4. prints one Markdown table: dev accuracy, agreement with the teacher,
   parameters, batch-32 throughput and speed-up, and the share of the
   label-only student's gap to the teacher that distillation closes.

Every step is the ``bert`` command a user would type; finished steps are
reused when the script is rerun with the same ``--workdir``. Budgets are
epochs and examples, so a busy machine changes the time, not the figures (the
speed columns do need a quiet machine).

    .venv/bin/python benchmarks/distill.py --workdir /tmp/distill
    .venv/bin/python benchmarks/distill.py --workdir /tmp/distill-8k --labels 8000 --all-sentences  # few labels,
                                                                                   # much unlabeled text
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SST2 = DATA / "classification" / "sst2"
BERT = [sys.executable, "-m", "bert_cli"]


def _run(args: list[str]) -> float:
    print("+ bert " + " ".join(args[len(BERT):]), flush=True)
    start = time.perf_counter()
    subprocess.run(args, check=True, cwd=REPO)
    return time.perf_counter() - start


def _prepare(workdir: Path, options) -> dict[str, Path]:
    """The labelled training file (maybe cut to ``--labels``), its sentences unlabeled, a vocabulary."""
    files = {"train": workdir / "train.tsv", "sentences": workdir / "sentences.txt", "vocab": workdir / "vocab.txt",
             "corpus": workdir / "corpus_sentences.txt"}
    if not files["train"].is_file():
        lines = (SST2 / "train.tsv").read_text(encoding="utf-8").splitlines()
        header, rows = lines[0], lines[1:]
        labelled = random.Random(options.seed).sample(rows, options.labels) if options.labels else rows
        files["train"].write_text("\n".join([header] + labelled) + "\n", encoding="utf-8")
        # The unlabeled sentences: those of the labelled rows, or with --all-sentences every training sentence.
        unlabeled = rows if options.all_sentences else labelled
        files["sentences"].write_text("\n".join(row.split("\t")[0] for row in unlabeled) + "\n", encoding="utf-8")
    if options.corpus_sentences and not files["corpus"].is_file():
        sentences = []
        for corpus in sorted((DATA / "corpora").glob("*.txt")):
            sentences += [line for line in corpus.read_text(encoding="utf-8").splitlines() if len(line.split()) > 3]
        chosen = random.Random(options.seed).sample(sentences, min(options.corpus_sentences, len(sentences)))
        files["corpus"].write_text("\n".join(chosen) + "\n", encoding="utf-8")
    if not files["vocab"].is_file():
        _run(BERT + ["vocab", str(files["sentences"]), "-o", str(files["vocab"]), "--vocab-size",
                     str(options.vocab_size)])
    return files


def _model(size: str, workdir: Path, options) -> str:
    """A preset name, or for a shape no preset has (``L-1_H-64``) a bert_config.json written for it."""
    sys.path.insert(0, str(REPO))
    from models.config import PRESETS

    if size in PRESETS:
        return size
    layers, hidden = (int(part[2:]) for part in size.split("_"))
    config = {"vocab_size": options.vocab_size, "hidden_size": hidden, "num_hidden_layers": layers,
              "num_attention_heads": max(1, hidden // 64), "intermediate_size": 4 * hidden, "hidden_act": "gelu",
              "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512,
              "type_vocab_size": 2, "initializer_range": 0.02}
    path = workdir / f"{size}.json"
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return str(path)


def _common(options) -> list[str]:
    return ["--max-seq-length", str(options.max_seq_length), "--batch-size", str(options.batch_size),
            "--seed", str(options.seed), "--no-jit" if not options.jit else "--jit"]


def _summary(directory: Path, name: str) -> dict:
    return json.loads((directory / name).read_text(encoding="utf-8"))


def teacher(workdir: Path, files: dict, options) -> Path:
    if options.teacher:
        return Path(options.teacher)
    output = workdir / "teacher"
    if not (output / "task.json").is_file():
        _run(BERT + ["finetune", "classify", str(files["train"]), "--dev", str(SST2 / "dev.tsv"), "-o", str(output),
                     "--model", options.teacher_model, "--vocab", str(files["vocab"]), "--epochs",
                     str(options.teacher_epochs), "--learning-rate", str(options.teacher_learning_rate),
                     *_common(options)])
    return output


def student_pair(workdir: Path, files: dict, teacher_dir: Path, size: str, options) -> dict:
    """The label-only student and the distilled one, same shape and options; their figures."""
    labels_only = workdir / f"labels-{size}"
    distilled = workdir / f"distilled-{size}"
    training = ["--epochs", str(options.epochs), "--learning-rate", str(options.learning_rate), *_common(options)]
    model = _model(size, workdir, options)
    if not (labels_only / "task.json").is_file():
        _run(BERT + ["finetune", "classify", str(files["train"]), "--dev", str(SST2 / "dev.tsv"), "-o",
                     str(labels_only), "--model", model, "--vocab", str(files["vocab"]), *training])
    if not (distilled / "distill.json").is_file():
        unlabeled = [str(files["sentences"])] + ([str(files["corpus"])] if options.corpus_sentences else [])
        _run(BERT + ["distill", str(teacher_dir), *unlabeled, "--student", model, "--dev", str(SST2 / "dev.tsv"),
                     "-o", str(distilled), "--temperature", str(options.temperature), "--cache",
                     str(workdir / "teacher-cache"), *training])
    summary = _summary(distilled, "distill.json")
    return {"size": size, "labels_only": _summary(labels_only, "finetune.json")["dev"]["accuracy"],
            "distilled": summary["student_dev"]["accuracy"], "agreement": summary["agreement"],
            "teacher": summary["teacher_dev"]["accuracy"], "parameters": summary["student_parameters"],
            "teacher_parameters": summary["teacher_parameters"], "speed": summary["speed"]}


def serving_speed(model_dir: Path, repeats: int) -> dict:
    """Medians over ``repeats`` timings of a classifier directory's forward pass on the SST-2 dev sentences
    (batch 1 p50/p99 latency, batch 32 throughput: bert_cli.distill.model_speed), in this quiet process."""
    import statistics

    sys.path.insert(0, str(REPO))
    from bert_cli.distill import model_speed
    from bert_cli.finetuning import model_inputs
    from bert_cli.model_dir import read_model_dir
    from bert_cli.tasks import task_module
    from data import classification
    from data.tokenization import Tokenizer, Vocabulary, resolve_lowercase

    directory = read_model_dir(model_dir)
    model = task_module(directory.kind).build_model(directory)
    model.load_weights(str(directory.model_weights))
    vocab = Vocabulary.load(directory.vocab_path)
    tokenizer = Tokenizer(vocab, resolve_lowercase(vocab, directory.lowercase))
    task = directory.task
    dev = classification.read_dataset(SST2 / "dev.tsv", task["text_column"], None, task["label_column"])
    features = classification.featurize(dev, tokenizer.encode, task["max_seq_length"], vocab.cls_id, vocab.sep_id,
                                        vocab.pad_id, labels=task["labels"])

    def outputs(model, batch):
        return {"scores": model(model_inputs(batch), training=False)}

    runs = [model_speed(outputs, model, features.arrays) for _ in range(repeats)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def table(rows: list[dict]) -> str:
    lines = ["| model | params | dev acc (labels only) | dev acc (distilled) | agreement | gap closed | "
             "batch-1 p50 ms | batch-32 ex/s | speed-up |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    first = rows[0]
    teacher_speed = first["speed"]["teacher"]["batch32_examples_per_second"]
    lines.append(f"| teacher | {first['teacher_parameters'] / 1e6:.2f} M | {first['teacher']:.2%} | | | | "
                 f"{first['speed']['teacher']['batch1_p50_ms']:.2f} | {teacher_speed:,.0f} | 1x |")
    for row in rows:
        speed = row["speed"]["student"]["batch32_examples_per_second"]
        gap = row["teacher"] - row["labels_only"]
        closed = f"{(row['distilled'] - row['labels_only']) / gap:.0%}" if gap > 0 else "n/a (no gap)"
        lines.append(f"| {row['size']} | {row['parameters'] / 1e6:.2f} M | {row['labels_only']:.2%} | "
                     f"{row['distilled']:.2%} | {row['agreement']:.2%} | {closed} | "
                     f"{row['speed']['student']['batch1_p50_ms']:.2f} | {speed:,.0f} | "
                     f"{speed / teacher_speed:.1f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bert-distill"))
    parser.add_argument("--teacher", help="A fine-tuned SST-2 model directory to use as the teacher.")
    parser.add_argument("--teacher-model", default="L-4_H-256")
    parser.add_argument("--teacher-epochs", type=float, default=1.0)
    parser.add_argument("--teacher-learning-rate", type=float, default=1e-4)
    parser.add_argument("--students", nargs="+", default=["L-2_H-128", "L-1_H-64"])
    parser.add_argument("--labels", type=int, default=0, help="Labelled examples kept (0: all 67,349).")
    parser.add_argument("--all-sentences", action="store_true",
                        help="With --labels: distil on every training sentence, not only the labelled ones.")
    parser.add_argument("--corpus-sentences", type=int, default=0, help="Shared-corpus sentences added unlabeled.")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-seq-length", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--jit", action="store_true")
    parser.add_argument("--speed-repeats", type=int, default=5,
                        help="Time every model this many times at the end and report medians (0: the runs' own).")
    parser.add_argument("--seed", type=int, default=12345)
    options = parser.parse_args()
    if not SST2.is_dir():
        sys.exit(f"{SST2}: the shared SST-2 split is needed")
    options.workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    files = _prepare(options.workdir, options)
    teacher_dir = teacher(options.workdir, files, options)
    rows = [student_pair(options.workdir, files, teacher_dir, size, options) for size in options.students]
    if options.speed_repeats:  # the speeds again, medians of several timings of every model in one quiet process
        teacher_speed = serving_speed(teacher_dir, options.speed_repeats)
        for row in rows:
            row["speed"] = {"teacher": teacher_speed,
                            "student": serving_speed(options.workdir / f"distilled-{row['size']}",
                                                     options.speed_repeats)}
    print(f"\nSST-2 dev, {options.labels or 67349:,} labels, {time.perf_counter() - start:,.0f} s in all "
          f"(cells reused from {options.workdir} are not timed)\n")
    print(table(rows))


if __name__ == "__main__":
    main()
