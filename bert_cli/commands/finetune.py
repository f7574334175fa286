"""``bert finetune squad``, ``classify`` and ``tag``: thin wrappers around bert_cli.finetuning.

Each command's options are the fields of its task's ``Options`` and of
:class:`bert_cli.finetuning.FinetuneOptions` (declared once there, see
:mod:`bert_cli.commands.options`); the command builds the task's recipe, runs
it and prints the results table and the task's own tables.
"""

from __future__ import annotations

from types import ModuleType

from bert_cli import console
from bert_cli.commands.options import command
from bert_cli.finetuning import FinetuneOptions
from bert_cli.tasks import classify, squad, tag


def finetune_command(task: ModuleType):
    """The ``bert finetune TASK`` command of a task module (see :mod:`bert_cli.tasks`)."""

    def run(options, common: FinetuneOptions) -> None:
        from bert_cli.finetuning import run_finetuning

        result = run_finetuning(task.Recipe(options, common), common)
        show(result)
        task.report(result, options)

    return command(run, task.Options, FinetuneOptions, defaults=task.DEFAULTS, doc=task.HELP)


squad_command = finetune_command(squad)
classify_command = finetune_command(classify)
tag_command = finetune_command(tag)


def show(result) -> None:
    """Prints the results table of a fine-tuning run."""
    from bert_cli.display import format_metrics, results_table

    config = result.config
    rows = [
        ("model", f"L={config.num_hidden_layers} H={config.hidden_size} A={config.num_attention_heads}, "
                  f"{result.parameters / 1e6:,.2f} M parameters, from {result.init}"),
        *result.rows,
        ("strategy", result.distribution_description),
        ("steps", f"{result.start_step:,} → {result.final_step:,} of {result.train_steps:,} "
                  f"({result.steps_per_epoch:,} per epoch)"
                  + (f", resumed from {result.resumed_from}" if result.resumed_from else "")
                  + (f", stopped early at {result.stopped_early:,}" if result.stopped_early else "")),
    ]
    if result.final_train:
        rows.append(("final train", format_metrics(result.final_train, ("loss", "accuracy", "examples_per_second"))))
    if result.dev:
        best = result.best
        where = f" (best {result.metric} at step {best['step']:,}, epoch {best['epoch']:g})" if best else ""
        rows.append(("dev", format_metrics(result.dev) + where))
    rows.append(("time", f"{result.seconds:,.1f} s"))
    rows.append(("model directory", str(result.output)))
    for name, path in result.files.items():
        rows.append((name, str(path)))
    console.stdout.print(results_table(f"fine-tuning {result.rows[0][1].split(',')[0]}", rows))
