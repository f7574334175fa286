"""Does pre-training help? Fine-tune from a pre-trained model and from random init, same budget.

The central claim of BERT, at small scale: pre-training on unlabelled text
makes small labelled sets go much further. This script

1. pre-trains ``--model`` (default ``L-4_H-256``) on the shared corpora
   (``../shared/data/corpora/*.txt``) for ``--pretrain-steps`` updates, holding
   out every 20th document to report masked-LM accuracy on text the model never
   saw (skipped when ``--pretrained MODEL_DIR`` is given);
2. fine-tunes on SST-2, RTE, WNUT-17 and SQuAD v1.1 (the shared splits) twice
   with identical options: from the pre-trained weights (``--init``) and from
   random weights of the same shape and vocabulary (``--model CONFIG --vocab
   VOCAB``), so only the starting point differs;
3. prints one Markdown table: task, dev metric, random init, pre-trained,
   difference.

Every step runs the ``bert`` command a user would type. Budgets are in steps
and examples, not seconds, so a busy machine changes the time, not the figures.
Outputs of finished steps are reused when the script is run again with the same
``--workdir`` (fine-tuning reruns resume), so a long run can be interrupted.

    .venv/bin/python benchmarks/pretraining_helps.py --workdir /tmp/helps            # everything
    .venv/bin/python benchmarks/pretraining_helps.py --pretrained MODEL_DIR --tasks sst2 rte

The budget of the defaults (600 updates of batch 32: about 20 minutes of
pre-training on 2 quiet CPU cores, then a few minutes per fine-tuning arm) shows the effect, not what BERT-Base
reaches: see the README's benchmark section for the measured table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
BERT = [sys.executable, "-m", "bert_cli"]


# name -> command, train file, dev file, dev metric (as finetune.json names it), shown name, options
TASKS = {
    "sst2": ("classify", "classification/sst2/train.tsv", "classification/sst2/dev.tsv", "accuracy", "accuracy",
             ["--max-seq-length", "64"]),
    "rte": ("classify", "pairs/rte/train.tsv", "pairs/rte/dev.tsv", "accuracy", "accuracy",
            ["--max-seq-length", "128"]),
    "wnut17": ("tag", "tagging/wnut17/wnut17train.conll", "tagging/wnut17/emerging.dev.conll", "f1", "entity F1",
               ["--max-seq-length", "64"]),
    "squad": ("squad", "squad/v1.1-train.json", "squad/v1.1-dev.json", "f1", "F1",
              ["--max-seq-length", "192", "--doc-stride", "64", "--max-query-length", "32"]),
}


def _run(args: list[str]) -> None:
    print("+ bert " + " ".join(args[len(BERT):]), flush=True)
    subprocess.run(args, check=True, cwd=REPO)


def _head(source: Path, target: Path, rows: int, kind: str) -> Path:
    """The first ``rows`` examples of a training file (sentences for CoNLL, questions for SQuAD)."""
    text = source.read_text(encoding="utf-8")
    if kind == "tag":
        sentences = [s for s in text.replace("\r\n", "\n").split("\n\n") if s.strip()]
        target.write_text("\n\n".join(sentences[:rows]) + "\n", encoding="utf-8")
    elif kind == "squad":
        data = json.loads(text)
        kept, left = [], rows
        for article in data["data"]:
            paragraphs = []
            for paragraph in article["paragraphs"]:
                if left <= 0:
                    break
                qas = paragraph["qas"][:left]
                left -= len(qas)
                paragraphs.append({**paragraph, "qas": qas})
            if paragraphs:
                kept.append({**article, "paragraphs": paragraphs})
        target.write_text(json.dumps({**data, "data": kept}), encoding="utf-8")
    else:
        lines = text.splitlines()
        target.write_text("\n".join(lines[: rows + 1]) + "\n", encoding="utf-8")  # + the header
    return target


def _split_held_out(corpora: list[Path], train: Path, held_out: Path, every: int = 20) -> None:
    """Every ``every``-th document of each corpus goes to ``held_out``, the rest to ``train``."""
    kept, spared = [], []
    for corpus in corpora:
        documents = [d.strip("\n") for d in corpus.read_text(encoding="utf-8").split("\n\n") if d.strip()]
        for index, document in enumerate(documents):
            (spared if index % every == every - 1 else kept).append(document)
    train.write_text("\n\n".join(kept) + "\n", encoding="utf-8")
    held_out.write_text("\n\n".join(spared) + "\n", encoding="utf-8")


def make_pretrained(workdir: Path, options: argparse.Namespace) -> Path:
    """Vocabulary, records and pre-training on the shared corpora; reuses finished steps."""
    corpora = sorted((DATA / "corpora").glob("*.txt"))
    text = workdir / "text"
    text.mkdir(parents=True, exist_ok=True)
    train_text, held_out_text = text / "train.txt", text / "held_out.txt"
    if not held_out_text.exists():
        _split_held_out(corpora, train_text, held_out_text)
    vocab = workdir / "vocab" / "vocab.txt"
    if not vocab.exists():
        _run(BERT + ["vocab", str(train_text), "-o", str(vocab), "--vocab-size", str(options.vocab_size)])
    records, held_out = workdir / "records", workdir / "records-held-out"
    seq = ["--max-seq-length", str(options.pretrain_seq_length),
           "--max-predictions-per-seq", str(round(options.pretrain_seq_length * 0.15 + 0.5))]
    if not (records / "manifest.json").exists():
        _run(BERT + ["make-data", str(train_text), "--vocab", str(vocab), "-o", str(records),
                     "--dupe-factor", str(options.dupe_factor), "--num-shards", "4", *seq, "--overwrite"])
    if not (held_out / "manifest.json").exists():
        _run(BERT + ["make-data", str(held_out_text), "--vocab", str(vocab), "-o", str(held_out),
                     "--dupe-factor", "1", "--seed", "54321", *seq, "--overwrite"])
    output = workdir / "pretrained"
    steps = options.pretrain_steps
    if not (output / "task.json").exists() or json.loads((output / "pretrain.json").read_text())["final_step"] < steps:
        _run(BERT + ["pretrain", str(records), "-o", str(output), "--model", options.model, "--vocab", str(vocab),
                     "--train-steps", str(steps), "--warmup-steps", str(steps // 10),
                     "--learning-rate", str(options.pretrain_learning_rate), "--batch-size", "32", "--jit",
                     "--log-every", str(max(1, steps // 20)), "--save-every", str(max(1, steps // 10)),
                     "--eval-input", str(held_out), "--eval-every", str(max(1, steps // 4)),
                     "--eval-batches", "50"])
    return output


def finetune(task: str, start: list[str], output: Path, options: argparse.Namespace, scratch: Path) -> dict:
    command, train, dev, metric, _, extra = TASKS[task]
    train_path = DATA / train
    limit = options.squad_max_train if command == "squad" else options.max_train
    if limit:
        train_path = _head(train_path, scratch / f"{task}-train{train_path.suffix}", limit, command)
    epochs = options.squad_epochs if command == "squad" else options.epochs
    started = time.perf_counter()
    if not (output / "task.json").exists():
        _run(BERT + ["finetune", command, str(train_path), "--dev", str(DATA / dev), "-o", str(output), *start,
                     "--epochs", str(epochs), "--batch-size", str(options.batch_size),
                     "--learning-rate", str(options.learning_rate), "--seed", str(options.seed), *extra])
    summary = json.loads((output / "finetune.json").read_text(encoding="utf-8"))
    return {"metric": metric, "value": summary["dev"][metric], "steps": summary["final_step"],
            "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="where everything is written (reused on rerun)")
    parser.add_argument("--pretrained", type=Path, help="skip pre-training: use this bert pretrain model directory")
    parser.add_argument("--model", default="L-4_H-256", help="preset to pre-train")
    parser.add_argument("--pretrain-steps", type=int, default=600)
    parser.add_argument("--pretrain-seq-length", type=int, default=128)
    parser.add_argument("--pretrain-learning-rate", type=float, default=1e-3)
    parser.add_argument("--dupe-factor", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--squad-epochs", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--max-train", type=int, default=2000, help="first N training rows/sentences (0: all)")
    parser.add_argument("--squad-max-train", type=int, default=1500, help="first N SQuAD training questions")
    parser.add_argument("--arms", nargs="+", default=["random", "pretrained"], choices=["random", "pretrained"],
                        help="which starting points to fine-tune (the random arm needs no pre-training, so it "
                             "can run in another process meanwhile)")
    parser.add_argument("--seed", type=int, default=12345)
    options = parser.parse_args()
    if not DATA.is_dir():
        parser.error(f"{DATA} is not present")

    workdir = options.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if options.arms == ["random"]:
        # Same shape and vocabulary as the model pre-training makes (or made).
        if options.pretrained:
            vocab, model = options.pretrained / "vocab.txt", options.pretrained / "bert_config.json"
        else:
            vocab, model = workdir / "vocab" / "vocab.txt", options.model
        for task in options.tasks:
            finetune(task, ["--model", str(model), "--vocab", str(vocab)], workdir / f"{task}-random", options,
                     workdir)
        return
    pretrained = options.pretrained or make_pretrained(workdir, options)
    summary = json.loads((pretrained / "pretrain.json").read_text(encoding="utf-8"))
    pretrain_seconds = time.perf_counter() - started
    arms = {
        "random": ["--model", str(pretrained / "bert_config.json"), "--vocab", str(pretrained / "vocab.txt")],
        "pretrained": ["--init", str(pretrained)],
    }
    results: dict[str, dict[str, dict]] = {}
    for task in options.tasks:
        for arm in options.arms:
            results.setdefault(task, {})[arm] = finetune(task, arms[arm], workdir / f"{task}-{arm}", options,
                                                         workdir)

    config = json.loads((pretrained / "bert_config.json").read_text())
    evaluation = summary.get("evaluation") or {}
    first_eval = (summary.get("evaluations") or [{}])[0]
    print(f"\npre-trained: L={config.get('num_hidden_layers')} H={config.get('hidden_size')}, "
          f"{summary['final_step']:,} steps of batch 32 at seq {options.pretrain_seq_length}, "
          f"held-out MLM accuracy {evaluation.get('mlm_accuracy', float('nan')):.1%} "
          f"(first evaluation {first_eval.get('mlm_accuracy', float('nan')):.1%}), "
          f"NSP accuracy {evaluation.get('nsp_accuracy', float('nan')):.1%}")
    print(f"fine-tuning: {options.epochs:g} epochs ({options.squad_epochs:g} for SQuAD), batch {options.batch_size}, "
          f"lr {options.learning_rate:g}, first {options.max_train} training rows "
          f"({options.squad_max_train} SQuAD questions); wall time {time.perf_counter() - started:,.0f} s "
          f"(pre-training part {pretrain_seconds:,.0f} s)\n")
    print("| task | dev metric | random init | pre-trained | difference | fine-tune steps |")
    print("|---|---|---|---|---|---|")
    for task, arm in results.items():
        if len(arm) < 2:
            continue
        random, ours = arm["random"], arm["pretrained"]
        scale = 100.0
        print(f"| {task} | {TASKS[task][4]} | {random['value'] * scale:.1f} | {ours['value'] * scale:.1f} | "
              f"{(ours['value'] - random['value']) * scale:+.1f} | {ours['steps']:,} |")


if __name__ == "__main__":
    main()
