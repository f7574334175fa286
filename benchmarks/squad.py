"""SQuAD v1.1: featurisation speed, then fine-tuning from a pre-trained model directory and from random weights.

    .venv/bin/python benchmarks/squad.py --featurize-only                     # speed only
    .venv/bin/python benchmarks/squad.py --init MODEL_DIR --workdir /tmp/sq   # both arms, same budget
    .venv/bin/python benchmarks/squad.py --model mini --workdir /tmp/sq       # random init only

1. **Featurisation**: reads ``../shared/data/squad/v1.1-{train,dev}.json`` and
   turns every question into windows exactly as ``bert finetune squad`` does
   (``data.squad.featurize``, no cache), with the BERT-Base uncased vocabulary
   (or the model directory's). The tokenizer is built and traced first (a
   one-off cost, printed apart); prints questions/s and windows/s.
2. **Fine-tuning** (unless ``--featurize-only``): ``bert finetune squad`` on the
   first ``--train-questions`` training questions, ``--epochs`` passes, dev
   scored with the official v1.1 rules, twice with identical options: (a)
   ``--init MODEL_DIR`` (a directory from ``bert pretrain`` on the shared
   corpora) and (b) random weights of the same shape and vocabulary
   (``--model MODEL_DIR/bert_config.json --vocab MODEL_DIR/vocab.txt``), so only
   the starting point differs. Without ``--init``, only (b) runs, with
   ``--model PRESET`` and ``--vocab``. Prints a Markdown table of dev EM/F1.

Budgets are questions and epochs, not seconds: a busy machine changes the time,
not the figures. Finished arms are reused when the script is rerun with the
same ``--workdir`` (a rerun resumes). Skips (exit 0) when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
BERT = [sys.executable, "-m", "bert_cli"]


def featurization_speed(train: Path, dev: Path, vocab_path: Path, lowercase: bool, lengths: dict) -> None:
    from data import squad
    from data.tokenization import Tokenizer, Vocabulary

    started = time.perf_counter()
    tokenizer = Tokenizer(Vocabulary.load(vocab_path), lowercase)
    warm = squad.read_squad(dev)
    warm.questions, warm.mismatched = warm.questions[:64], []
    squad.featurize(warm, tokenizer, **lengths)  # builds the character classes, traces the tokenizer
    setup = time.perf_counter() - started
    print(f"tokenizer built and traced in {setup:.1f} s ({vocab_path.name}, {'uncased' if lowercase else 'cased'}); "
          f"lengths {lengths}")
    print("| file | questions | windows | read s | featurise s | questions/s | windows/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for path in (train, dev):
        started = time.perf_counter()
        data = squad.read_squad(path)
        read = time.perf_counter() - started
        started = time.perf_counter()
        features = squad.featurize(data, tokenizer, **lengths)
        seconds = time.perf_counter() - started
        count = len(data.questions)
        print(f"| {path.name} | {count:,} | {len(features):,} | {read:.2f} | {seconds:.2f} | "
              f"{count / seconds:,.0f} | {len(features) / seconds:,.0f} |", flush=True)


def subset(source: Path, target: Path, questions: int) -> Path:
    """The first ``questions`` questions of ``source`` (whole paragraphs kept together)."""
    document = json.loads(source.read_text(encoding="utf-8"))
    kept, count = [], 0
    for article in document["data"]:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            if count >= questions:
                break
            paragraphs.append(paragraph)
            count += len(paragraph["qas"])
        if paragraphs:
            kept.append({**article, "paragraphs": paragraphs})
        if count >= questions:
            break
    target.write_text(json.dumps({**document, "data": kept}), encoding="utf-8")
    return target


def finetune(arm: str, start: list[str], train: Path, dev: Path, output: Path, options: list[str]) -> dict:
    args = BERT + ["finetune", "squad", str(train), "--dev", str(dev), "-o", str(output), *start, *options]
    print(f"+ [{arm}] bert " + " ".join(args[len(BERT):]), flush=True)
    started = time.perf_counter()
    subprocess.run(args, check=True, cwd=REPO)
    summary = json.loads((output / "finetune.json").read_text(encoding="utf-8"))
    return {"arm": arm, "exact": 100 * summary["dev"]["exact_match"], "f1": 100 * summary["dev"]["f1"],
            "steps": summary["final_step"], "minutes": (time.perf_counter() - started) / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, default=SHARED / "squad" / "v1.1-train.json")
    parser.add_argument("--dev", type=Path, default=SHARED / "squad" / "v1.1-dev.json")
    parser.add_argument("--init", type=Path, help="model directory pre-trained by `bert pretrain` (arm a)")
    parser.add_argument("--model", default="mini", help="preset for the random arm when --init is not given")
    parser.add_argument("--vocab", type=Path, default=SHARED / "vocab" / "bert-base-uncased-vocab.txt",
                        help="vocabulary for --model (with --init the model's own is used)")
    parser.add_argument("--cased", action="store_true")
    parser.add_argument("--max-seq-length", type=int, default=192)
    parser.add_argument("--doc-stride", type=int, default=64)
    parser.add_argument("--max-query-length", type=int, default=32)
    parser.add_argument("--train-questions", type=int, default=7276, help="budget: training questions used")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bert-squad-benchmark"))
    parser.add_argument("--featurize-only", action="store_true")
    args = parser.parse_args()
    if not args.train.is_file() or not args.dev.is_file():
        print(f"skipped: {args.train} or {args.dev} not found (the shared data lives in ../shared/data)")
        return
    vocab = args.init / "vocab.txt" if args.init else args.vocab
    if not vocab.is_file():
        sys.exit(f"{vocab}: no such vocabulary")
    lengths = {"max_seq_length": args.max_seq_length, "doc_stride": args.doc_stride,
               "max_query_length": args.max_query_length}
    featurization_speed(args.train, args.dev, vocab, not args.cased, lengths)
    if args.featurize_only:
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    train = subset(args.train, args.workdir / f"train-{args.train_questions}.json", args.train_questions)
    options = ["--max-seq-length", str(args.max_seq_length), "--doc-stride", str(args.doc_stride),
               "--max-query-length", str(args.max_query_length), "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--learning-rate", str(args.learning_rate)]
    arms = []
    if args.init:
        arms.append(("pre-trained", ["--init", str(args.init)]))
        arms.append(("random init", ["--model", str(args.init / "bert_config.json"), "--vocab", str(vocab)]))
    else:
        arms.append(("random init", ["--model", args.model, "--vocab", str(vocab)]
                     + (["--cased"] if args.cased else ["--lowercase"])))
    results = [finetune(arm, start, train, args.dev, args.workdir / arm.replace(" ", "-"), options)
               for arm, start in arms]
    print(f"\nSQuAD v1.1 dev ({args.dev.name}), {args.train_questions:,} training questions, {args.epochs:g} epochs, "
          f"batch {args.batch_size}, lr {args.learning_rate:g}, windows {args.max_seq_length}/{args.doc_stride}/"
          f"{args.max_query_length}")
    print("| start | EM | F1 | steps | minutes |")
    print("|---|---:|---:|---:|---:|")
    for result in results:
        print(f"| {result['arm']} | {result['exact']:.2f} | {result['f1']:.2f} | {result['steps']:,} | "
              f"{result['minutes']:.1f} |")


if __name__ == "__main__":
    main()
