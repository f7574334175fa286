"""ELECTRA against masked LM at an equal wall-clock budget, then fine-tuned on four tasks.

1. One vocabulary and one set of records from the shared corpora
   (``../shared/data/corpora``; every 20th document held out), as
   ``benchmarks/pretraining_helps.py`` makes them.
2. The speed of one update of each objective for the same encoder
   (``--model``): a short calibration run each, examples/s of the last
   logged window (after compilation). Printed with their ratio: what the
   generator costs.
3. Each objective pre-trains for ``--minutes`` of wall clock: its update
   count is the budget times its own measured speed, so the slower
   objective gets fewer updates.
4. Fine-tuning from random init, from the MLM model and from the ELECTRA
   model with identical options on SST-2, RTE, WNUT-17 and SQuAD v1.1 (the
   shared splits, first ``--max-train`` rows), as ``pretraining_helps.py``
   does it.
5. One Markdown table: per task the dev metric of each arm, and the mean.

    .venv/bin/python benchmarks/electra_vs_mlm.py --workdir /tmp/electra --minutes 15
    .venv/bin/python benchmarks/electra_vs_mlm.py --workdir /tmp/electra --minutes 5 --tasks sst2 rte

Every step is the ``bert`` command a user would type; finished steps are reused
when the script is rerun with the same ``--workdir``. Run it on a quiet machine:
the budget is wall clock.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pretraining_helps as helps  # noqa: E402  (the shared benchmark steps)

OBJECTIVES = ("mlm", "electra")


def pretrain(objective: str, steps: int, output: Path, vocab: Path, records: Path, held_out: Path | None,
             options) -> dict:
    """``bert pretrain --objective OBJECTIVE`` for ``steps`` updates; its pretrain.json."""
    summary = output / "pretrain.json"
    if not summary.exists() or json.loads(summary.read_text())["final_step"] < steps:
        evaluation = ["--eval-input", str(held_out), "--eval-batches", "50"] if held_out else []
        helps._run(helps.BERT + [
            "pretrain", str(records), "-o", str(output), "--model", options.model, "--vocab", str(vocab),
            "--objective", objective, "--train-steps", str(steps), "--warmup-steps", str(max(1, steps // 10)),
            "--learning-rate", str(getattr(options, f"{objective}_learning_rate")),
            "--batch-size", str(options.batch_size),
            "--log-every", str(max(1, steps // 10)), "--save-every", str(max(1, steps // 5)), *evaluation])
    return json.loads(summary.read_text())


def speeds(workdir: Path, vocab: Path, records: Path, options) -> dict[str, float]:
    """Examples per second of each objective's update, from a short run's last logged window."""
    measured = {}
    for objective in OBJECTIVES:
        summary = pretrain(objective, options.calibration_steps, workdir / f"calibrate-{objective}", vocab, records,
                           None, options)
        measured[objective] = summary["history"][-1]["examples_per_second"]
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=15.0, help="pre-training wall clock per objective")
    parser.add_argument("--model", default="L-4_H-256")
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mlm-learning-rate", type=float, default=helps.LEARNING_RATES["mlm"],
                        help="masked LM's pre-training peak learning rate")
    parser.add_argument("--electra-learning-rate", type=float, default=helps.LEARNING_RATES["electra"],
                        help="ELECTRA's pre-training peak learning rate (1e-3 leaves its discriminator at "
                             "'all original')")
    parser.add_argument("--calibration-steps", type=int, default=40)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--dupe-factor", type=int, default=2)
    parser.add_argument("--task-text", action=argparse.BooleanOptionalAction, default=False,
                        help="add the tasks' training text, without labels, to the pre-training corpus")
    parser.add_argument("--tasks", nargs="+", default=list(helps.TASKS), choices=list(helps.TASKS))
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--finetune-learning-rate", type=float, default=5e-4)
    parser.add_argument("--max-train", type=int, default=2000)
    parser.add_argument("--squad-max-train", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=12345)
    options = parser.parse_args()
    if not helps.DATA.is_dir():
        parser.error(f"{helps.DATA} is not present")
    workdir = options.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    vocab, records, held_out = helps.prepare(workdir, options)
    rate = speeds(workdir, vocab, records, options)
    print(f"\nexamples/s of one update, {options.model} at seq {options.seq_length}, batch {options.batch_size}: "
          f"MLM {rate['mlm']:,.1f}, ELECTRA {rate['electra']:,.1f} (ELECTRA/MLM {rate['electra'] / rate['mlm']:.2f})")
    budget = options.minutes * 60
    models, rows = {}, {}
    for objective in OBJECTIVES:
        steps = max(10, int(budget * rate[objective] / options.batch_size))
        started = time.perf_counter()
        summary = pretrain(objective, steps, workdir / objective, vocab, records, held_out, options)
        models[objective] = workdir / objective
        rows[objective] = {"steps": steps, "minutes": (time.perf_counter() - started) / 60,
                           "evaluation": summary.get("evaluation") or {}}
    report(options, workdir, models, rows)


def report(options, workdir: Path, models: dict, rows: dict) -> None:
    """Fine-tunes every arm on every task and prints the table."""
    options.workdir = workdir  # where helps.finetune keeps its training-set splits
    options.min_updates, options.squad_dev_max = 0, 0
    options.learning_rate = options.finetune_learning_rate
    arms = {"random": ["--model", str(models["mlm"] / "bert_config.json"), "--vocab", str(models["mlm"] / "vocab.txt")],
            "mlm": ["--init", str(models["mlm"])], "electra": ["--init", str(models["electra"])]}
    scores: dict[str, dict[str, float]] = {arm: {} for arm in arms}
    for task in options.tasks:
        labels = options.squad_max_train if task == "squad" else options.max_train
        for arm, start in arms.items():
            scores[arm][task] = helps.finetune(task, start, labels, options.seed, workdir / f"{task}-{arm}",
                                               options) / 100
    for objective, row in rows.items():
        e = row["evaluation"]
        extra = (f", held-out disc acc {e['disc_accuracy']:.1%}" if "disc_accuracy" in e else "")
        print(f"{objective}: {row['steps']:,} updates in {row['minutes']:.1f} min, held-out MLM acc "
              f"{e.get('mlm_accuracy', float('nan')):.1%}{extra}")
    print("\n| task | dev metric | random init | MLM | ELECTRA |")
    print("|---|---|---|---|---|")
    for task in options.tasks:
        print(f"| {task} | {helps.TASKS[task][4]} | " + " | ".join(f"{scores[arm][task] * 100:.1f}" for arm in arms)
              + " |")
    means = {arm: sum(values.values()) / len(values) for arm, values in scores.items()}
    print("| mean | | " + " | ".join(f"{means[arm] * 100:.1f}" for arm in arms) + " |")


if __name__ == "__main__":
    main()
