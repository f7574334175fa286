"""``bert evaluate``: held-out masked-LM (and NSP) metrics of a pre-trained model on records, without training.

How well does a released checkpoint already know your domain? Evaluate it on
records of your text before deciding to continue pre-training. The options
are the fields of :class:`bert_cli.pretraining.EvaluateOptions`.
"""

from __future__ import annotations

from bert_cli import console
from bert_cli.commands.options import command
from bert_cli.pretraining import EvaluateOptions


def _evaluate(options: EvaluateOptions) -> None:
    """Held-out MLM (and NSP) loss and accuracy of a pre-trained model on records, pooled over every prediction."""
    console.load_tensorflow()
    from bert_cli.display import format_metrics, results_table
    from bert_cli.pretraining import run_evaluation

    result = run_evaluation(options)
    metrics = result.metrics
    records = result.records
    rows = [
        ("model", str(result.model)),
        ("records", f"{len(records.files)} file(s), T={records.max_seq_length} P={records.max_predictions}"),
        ("evaluated", f"{metrics['eval_batches']:,} batches, {metrics['eval_examples']:,} examples"
                      + ("" if result.next_sentence else " (MLM only: the records or the model have no NSP)")),
        ("held-out", format_metrics(metrics, ("loss", "mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy"))),
        ("time", f"{result.seconds:,.1f} s"),
    ]
    console.stdout.print(results_table("evaluation (pooled over every prediction, as the original's metric_fn)",
                                       rows))


evaluate_command = command(_evaluate, EvaluateOptions)
