"""Fine-tuning speed: batches padded to the file's longest, cut to their own longest, and grouped by length.

    .venv/bin/python benchmarks/finetune_speed.py [--size L-4_H-256] [--steps 40] [--repeats 3]

Both arms run the same fine-tuning task (the classifier of ``bert finetune
classify``, its loop and optimizer) on the same shuffled SST-2 training batches
(the shared ``classification/sst2/train.tsv``, the BERT-Base uncased vocabulary,
``--max-seq-length``): only ``train_input``'s ``token_keys`` (the default cut)
and ``group_by_length`` (``--group-by-length``) differ. Each measurement times
``--steps`` updates after the first (tracing excluded); the median of
``--repeats`` is printed with the ratios to the padded arm and the share of
positions that are padding in each arm.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"


def sst2_arrays(max_seq_length: int) -> tuple[dict, int]:
    """SST-2's training features as ``bert finetune classify`` makes them, and the vocabulary size."""
    from data.classification import featurize, read_dataset
    from data.tokenization import Tokenizer, Vocabulary

    vocab = Vocabulary.load(DATA / "vocab" / "bert-base-uncased-vocab.txt")
    dataset = read_dataset(DATA / "classification" / "sst2" / "train.tsv")
    features = featurize(dataset, Tokenizer(vocab, True).encode, max_seq_length, vocab.cls_id, vocab.sep_id,
                         vocab.pad_id, labels=sorted({example.label for example in dataset.examples}))
    return features.arrays, len(vocab)


def time_arm(arrays: dict, vocab_size: int, size: str, steps: int, batch: int, arm: str, jit: bool,
             precision: str = "fp32") -> tuple:
    """Examples/s over ``steps`` updates after the first, and the share of padding positions trained on."""
    import numpy as np

    from bert_cli import strategy as strategies
    from bert_cli.finetuning import FinetuneTask, train_input
    from bert_cli.tasks import classify
    from bert_cli.training import LoopOptions, run_loop
    from models.config import BertConfig

    recipe = classify.Recipe(classify.Options(train=Path("train.tsv")))
    recipe.labels = ["0", "1"]
    keys = classify.Recipe.token_keys if arm != "padded" else None
    make = train_input(arrays, batch, seed=0, token_keys=keys, group_by_length=arm == "grouped")
    config = BertConfig.from_preset(size, vocab_size=vocab_size)
    task = FinetuneTask(recipe, config, 3e-5, steps + 1, 0, make, precision=precision)
    positions = [b["input_mask"].shape[1] for b in make(None, 0).take(steps + 1)]
    real = sum(float(np.sum(b["input_mask"])) for b in make(None, 0).take(steps + 1))
    marks: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        run_loop(task, strategies.resolve("default"),
                 LoopOptions(train_steps=steps + 1, log_every=1, save_every=10**9, jit=jit), Path(tmp),
                 on_log=lambda step, metrics: marks.append(time.perf_counter()))
    return steps * batch / (marks[-1] - marks[0]), 1 - real / (batch * sum(positions))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="L-4_H-256")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--jit", action="store_true", help="compile the step with XLA (one program per width)")
    parser.add_argument("--precision", default="fp32", help="fp32 or mixed_bfloat16 (bert finetune's --precision)")
    args = parser.parse_args()
    arrays, vocab_size = sst2_arrays(args.max_seq_length)
    print(f"SST-2 train: {len(arrays['input_ids']):,} examples padded to {arrays['input_ids'].shape[1]}", flush=True)
    runs: dict[str, list] = {"padded": [], "cut": [], "grouped": []}
    padding: dict[str, float] = {}
    for _ in range(args.repeats):
        for arm in runs:
            rate, padding[arm] = time_arm(arrays, vocab_size, args.size, args.steps, args.batch_size,
                                          arm, args.jit, args.precision)
            runs[arm].append(rate)
        print("  " + ", ".join(f"{arm} {values[-1]:,.1f} ex/s" for arm, values in runs.items()), flush=True)
    medians = {arm: statistics.median(values) for arm, values in runs.items()}
    print(f"\n{args.size} fine-tuning, batch {args.batch_size}, --max-seq-length {args.max_seq_length}"
          f"{', --jit' if args.jit else ''}, {args.precision}, median of {args.repeats} x {args.steps} updates")
    for arm, rate in medians.items():
        print(f"  {arm:<8} {rate:>8,.1f} examples/s   padding {padding[arm]:.0%} of the positions")
    print(f"  cut / padded {medians['cut'] / medians['padded']:.2f}x, "
          f"grouped / padded {medians['grouped'] / medians['padded']:.2f}x")


if __name__ == "__main__":
    main()
