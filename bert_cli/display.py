"""Live training display, result tables and training-curve plots."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bert_cli import console

# Metric name -> (label, format) for the live line and the tables.
_FORMATS = {
    "loss": ("loss", "{:.4f}"),
    "mlm_loss": ("MLM loss", "{:.4f}"),
    "mlm_accuracy": ("MLM acc", "{:.2%}"),
    "nsp_loss": ("NSP loss", "{:.4f}"),
    "nsp_accuracy": ("NSP acc", "{:.2%}"),
    "sampled_accuracy": ("gen sample acc", "{:.2%}"),
    "disc_loss": ("disc loss", "{:.4f}"),
    "disc_accuracy": ("disc acc", "{:.2%}"),
    "disc_precision": ("disc P", "{:.2%}"),
    "disc_recall": ("disc R", "{:.2%}"),
    "replaced_share": ("replaced", "{:.2%}"),
    "accuracy": ("acc", "{:.2%}"),
    "macro_f1": ("macro F1", "{:.2%}"),
    "f1": ("F1", "{:.2%}"),
    "exact_match": ("EM", "{:.2%}"),
    "precision": ("P", "{:.2%}"),
    "recall": ("R", "{:.2%}"),
    "mcc": ("MCC", "{:.4f}"),
    "pearson": ("Pearson", "{:.4f}"),
    "spearman": ("Spearman", "{:.4f}"),
    "agreement": ("agree", "{:.2%}"),
    "examples_per_second": ("ex/s", "{:,.1f}"),
    "tokens_per_second": ("tok/s", "{:,.0f}"),
    "learning_rate": ("lr", "{:.2e}"),
}


# Held-out scores (higher is better) that plot_curves draws beside the accuracies.
_SCORES = ("accuracy", "macro_f1", "f1", "exact_match", "precision", "recall", "mcc", "pearson", "spearman",
           "agreement")


def format_metrics(metrics: dict, keys: tuple[str, ...] | None = None) -> str:
    parts = []
    for key in keys or tuple(k for k in _FORMATS if k in metrics):
        if key in metrics and key in _FORMATS:
            label, fmt = _FORMATS[key]
            parts.append(f"{label} {fmt.format(metrics[key])}")
    return "  ".join(parts)


class TrainingDisplay:
    """A progress bar over optimizer steps with the latest metrics, plus one log line per window.

    The log lines stay on screen (and in redirected output) so the run's history
    can be read afterwards; the bar shows step, ETA and the latest figures.
    """

    def __init__(self, progress: Progress, task) -> None:
        self._progress = progress
        self._task = task

    def log(self, step: int, metrics: dict) -> None:
        line = format_metrics(metrics, ("loss", "mlm_accuracy", "nsp_accuracy", "disc_accuracy", "accuracy",
                                        "examples_per_second", "tokens_per_second"))
        self._progress.update(self._task, completed=step, metrics=line)
        self._progress.console.print(f"step {step:>7,}  {format_metrics(metrics)}", highlight=False)

    def evaluation(self, step: int, metrics: dict) -> None:
        self._progress.console.print(f"[bold cyan]eval[/] step {step:>7,}  {format_metrics(metrics)}")

    def note(self, message: str) -> None:
        self._progress.console.print(message)


@contextlib.contextmanager
def training_display(total_steps: int, start_step: int = 0, description: str = "training") -> Iterator[TrainingDisplay]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[cyan]{task.fields[metrics]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console.stderr,
    )
    with progress:
        task = progress.add_task(description, total=total_steps, completed=start_step, metrics="")
        try:
            yield TrainingDisplay(progress, task)
        except BaseException:
            progress.update(task, visible=False)
            raise


def results_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, value)
    return table


def plot_curves(history: list[dict], evaluations: list[dict], path: Path, title: str) -> Path | None:
    """Loss and accuracy against step as a PNG; None when there is nothing to plot."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    loss_keys = [k for k in ("loss", "mlm_loss", "nsp_loss", "disc_loss") if k in history[0]]
    accuracy_keys = [k for k in history[0] if k.endswith("accuracy")]
    # Held-out scores that training does not compute (F1, correlations) are plotted too.
    accuracy_keys += [k for k in (evaluations[0] if evaluations else {}) if k in _SCORES and k not in accuracy_keys]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key in loss_keys:
        left.plot(steps, [h[key] for h in history], label=f"train {_FORMATS.get(key, (key,))[0]}")
    for key in accuracy_keys:
        if key in history[0]:
            right.plot(steps, [h[key] for h in history], label=f"train {_FORMATS.get(key, (key,))[0]}")
    if evaluations:
        eval_steps = [e["step"] for e in evaluations]
        for key in loss_keys:
            if key in evaluations[0]:
                left.plot(eval_steps, [e[key] for e in evaluations], "o--",
                          label=f"eval {_FORMATS.get(key, (key,))[0]}")
        for key in accuracy_keys:
            if key in evaluations[0]:
                right.plot(eval_steps, [e[key] for e in evaluations], "o--",
                           label=f"eval {_FORMATS.get(key, (key,))[0]}")
    left.set_title("loss")
    right.set_title("accuracy" if all(k.endswith("accuracy") for k in accuracy_keys) else "scores")
    for axis in (left, right):
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    # Deterministic PNG bytes: no timestamp or software metadata.
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)
    return path


def print_detail_table(detail: dict | None, name: str) -> None:
    """Prints dev precision / recall / F1 / support by label or entity type (nothing when there are none)."""
    if not detail:
        return
    table = Table(title=f"dev by {name}", title_justify="left")
    for column in (name, "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == name else "right")
    for label, scores in detail.items():
        table.add_row(label, f"{scores['precision']:.2%}", f"{scores['recall']:.2%}", f"{scores['f1']:.2%}",
                      f"{scores['support']:,}", style="bold" if label == "overall" else None)
    console.stdout.print(table)
