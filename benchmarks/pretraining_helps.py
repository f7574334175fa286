"""Fine-tuning from a pre-trained model directory vs random init, same budget: SST-2, RTE, WNUT-17.

    .venv/bin/python benchmarks/glue_ner.py --pretrained MODEL_DIR [--tasks sst2 rte wnut17]
        [--epochs 3] [--batch-size 32] [--learning-rate 1e-4] [--max-seq-length 128] [--max-train 20000]

``MODEL_DIR`` is what ``bert pretrain`` wrote. Without ``--pretrained`` a small
one is made first, on the shared corpora (a few minutes on a CPU: the figures
then show the recipe works, not what pre-training can reach):

    .venv/bin/python benchmarks/glue_ner.py --make-pretrained --pretrain-steps 2000 --model mini

Both arms run ``bert finetune`` as a user would, with identical options; the
random-init arm uses the pre-trained directory's ``bert_config.json`` and
``vocab.txt`` (``--model CONFIG --vocab VOCAB``), so only the starting weights
differ. The data is read from ``../shared/data`` (GLUE SST-2 and RTE dev sets
as published; WNUT-17 dev). ``--max-train`` keeps the first N training rows
(SST-2 has 67k) so a CPU run stays short. Prints a Markdown table of the dev
metrics (accuracy for SST-2 and RTE, entity F1 for WNUT-17) and the time taken.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
BERT = [sys.executable, "-m", "bert_cli"]

# name -> (command, train, dev, metric, extra options)
TASKS = {
    "sst2": ("classify", "classification/sst2/train.tsv", "classification/sst2/dev.tsv", "accuracy", []),
    "rte": ("classify", "pairs/rte/train.tsv", "pairs/rte/dev.tsv", "accuracy", []),
    "wnut17": ("tag", "tagging/wnut17/wnut17train.conll", "tagging/wnut17/emerging.dev.conll", "f1", []),
}


def _run(args: list[str]) -> None:
    print("+ bert " + " ".join(args[len(BERT):]), flush=True)
    subprocess.run(args, check=True, cwd=REPO)


def _head(source: Path, target: Path, rows: int, tagging: bool) -> Path:
    """The first ``rows`` examples (sentences for CoNLL) of a training file."""
    text = source.read_text(encoding="utf-8")
    if tagging:
        sentences = [s for s in text.replace("\r\n", "\n").split("\n\n") if s.strip()]
        target.write_text("\n\n".join(sentences[:rows]) + "\n", encoding="utf-8")
    else:
        lines = text.splitlines()
        target.write_text("\n".join(lines[: rows + 1]) + "\n", encoding="utf-8")  # + the header
    return target


def make_pretrained(workdir: Path, model: str, steps: int, vocab_size: int, corpus: list[Path]) -> Path:
    vocab = workdir / "vocab" / "vocab.txt"
    records = workdir / "records"
    output = workdir / "pretrained"
    _run(BERT + ["vocab", *map(str, corpus), "-o", str(vocab), "--vocab-size", str(vocab_size), "--overwrite"])
    _run(BERT + ["make-data", *map(str, corpus), "--vocab", str(vocab), "-o", str(records), "--dupe-factor", "2",
                 "--overwrite"])
    _run(BERT + ["pretrain", str(records), "-o", str(output), "--model", model, "--vocab", str(vocab),
                 "--train-steps", str(steps), "--warmup-steps", str(steps // 10), "--learning-rate", "5e-4",
                 "--batch-size", "32", "--log-every", str(max(1, steps // 10)), "--save-every", str(steps)])
    return output


def finetune(task: str, start: list[str], output: Path, options: argparse.Namespace, scratch: Path) -> dict:
    command, train, dev, metric, extra = TASKS[task]
    train_path = DATA / train
    if options.max_train:
        train_path = _head(train_path, scratch / f"{task}-train{train_path.suffix}", options.max_train,
                           command == "tag")
    started = time.perf_counter()
    _run(BERT + ["finetune", command, str(train_path), "--dev", str(DATA / dev), "-o", str(output), *start,
                 "--epochs", str(options.epochs), "--batch-size", str(options.batch_size),
                 "--learning-rate", str(options.learning_rate), "--max-seq-length", str(options.max_seq_length),
                 "--seed", str(options.seed), "--overwrite", *extra])
    summary = json.loads((output / "finetune.json").read_text(encoding="utf-8"))
    return {"metric": metric, "value": summary["dev"][metric], "dev": summary["dev"],
            "steps": summary["final_step"], "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", type=Path, help="a bert pretrain model directory")
    parser.add_argument("--make-pretrained", action="store_true", help="make one first from the shared corpora")
    parser.add_argument("--model", default="mini", help="preset for --make-pretrained")
    parser.add_argument("--pretrain-steps", type=int, default=2000)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--corpus", type=Path, nargs="+", help="for --make-pretrained (default: the shared corpora)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--max-train", type=int, default=20000, help="first N training examples (0: all)")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--workdir", type=Path, help="keep outputs here (default: a temporary directory)")
    options = parser.parse_args()
    if not DATA.is_dir():
        parser.error(f"{DATA} is not present")
    if (options.pretrained is None) == (not options.make_pretrained):
        parser.error("give --pretrained MODEL_DIR or --make-pretrained")

    with tempfile.TemporaryDirectory() as temporary:
        workdir = options.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        corpus = options.corpus or sorted((DATA / "corpora").glob("*.txt"))
        pretrained = options.pretrained or make_pretrained(workdir, options.model, options.pretrain_steps,
                                                           options.vocab_size, corpus)
        arms = {
            "pre-trained": ["--init", str(pretrained)],
            "random init": ["--model", str(pretrained / "bert_config.json"), "--vocab", str(pretrained / "vocab.txt")],
        }
        results: dict[str, dict[str, dict]] = {}
        for task in options.tasks:
            for arm, start in arms.items():
                results.setdefault(task, {})[arm] = finetune(task, start, workdir / f"{task}-{arm.split()[0]}",
                                                             options, workdir)
        config = json.loads((pretrained / "bert_config.json").read_text())

    print(f"\nmodel L={config.get('num_hidden_layers')} H={config.get('hidden_size')}, {options.epochs:g} epochs, "
          f"batch {options.batch_size}, lr {options.learning_rate:g}, max_seq_length {options.max_seq_length}, "
          f"train rows <= {options.max_train or 'all'}\n")
    print("| task | dev metric | pre-trained | random init | steps | time (pre-trained / random) |")
    print("|---|---|---|---|---|---|")
    for task, arms_results in results.items():
        ours, baseline = arms_results["pre-trained"], arms_results["random init"]
        print(f"| {task} | {ours['metric']} | {ours['value']:.4f} | {baseline['value']:.4f} | {ours['steps']:,} | "
              f"{ours['seconds']:.0f} s / {baseline['seconds']:.0f} s |")


if __name__ == "__main__":
    main()
