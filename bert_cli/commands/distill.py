"""``bert distill``: train a small student on a fine-tuned teacher's outputs over unlabeled text.

A thin wrapper around :func:`bert_cli.distill.run_distill`: the options are the
fields of :class:`bert_cli.distill.DistillOptions` and the fine-tuning options
(:class:`bert_cli.finetuning.FinetuneOptions` without its starting point); it
prints the results table and the teacher-vs-student table.
"""

from __future__ import annotations

from bert_cli import console
from bert_cli.commands.options import command
from bert_cli.distill import DistillOptions, training_options

DistillTraining = training_options()
# A small student learns from scratch: a larger step than fine-tuning a pre-trained BERT's 5e-5.
DEFAULTS = {"learning_rate": 1e-4}


def _distill(options: DistillOptions, training) -> None:
    """Distil a fine-tuned teacher (classify, tag or squad) into a smaller, faster student; rerun to resume.

    The teacher's outputs on the unlabeled inputs are computed once and cached;
    the student, of any preset or pre-trained model directory and with its own
    vocabulary allowed, learns the teacher's soft targets (and --train's gold
    labels). The output is an ordinary fine-tuned model directory plus
    distill.json.
    """
    console.load_tensorflow()
    from bert_cli.commands.finetune import show
    from bert_cli.distill import run_distill

    result = run_distill(options, training)
    show(result.finetune)
    console.stdout.print(comparison_table(result))


def comparison_table(result):
    """Teacher vs student: the dev metric, agreement, size and serving speed."""
    from rich.table import Table

    metric = result.metric
    table = Table(title="teacher vs student", title_justify="left")
    table.add_column("")
    for name in ("teacher", "student"):
        table.add_column(name, justify="right")
    student_dev = result.finetune.dev or {}
    teacher_dev = result.teacher_dev or {}
    if teacher_dev or student_dev:
        table.add_row(f"dev {metric}", *(f"{d[metric]:.4f}" if metric in d else "-"
                                         for d in (teacher_dev, student_dev)))
    if "agreement" in student_dev:
        table.add_row("agreement with the teacher", "", f"{student_dev['agreement']:.4f}")
    table.add_row("parameters", f"{result.teacher_parameters / 1e6:,.2f} M",
                  f"{result.finetune.parameters / 1e6:,.2f} M")
    speed = result.speed
    if speed:
        for key, label, fmt in (("batch1_p50_ms", "batch 1 p50 (ms)", "{:.2f}"),
                                ("batch1_p99_ms", "batch 1 p99 (ms)", "{:.2f}"),
                                ("batch32_examples_per_second", "batch 32 (examples/s)", "{:,.0f}")):
            table.add_row(label, fmt.format(speed["teacher"][key]), fmt.format(speed["student"][key]))
        ratio = speed["student"]["batch32_examples_per_second"] / speed["teacher"]["batch32_examples_per_second"]
        table.add_row("speed-up (batch 32)", "1x", f"{ratio:.1f}x")
    table.add_row("summary", "", str(result.summary))
    return table


distill_command = command(_distill, DistillOptions, DistillTraining, defaults=DEFAULTS)
