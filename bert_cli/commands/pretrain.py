"""``bert pretrain``: masked-LM + next-sentence pre-training on CPU, GPUs, hosts or a TPU.

The options are the fields of :class:`bert_cli.pretraining.PretrainOptions`
(declared once there); this module runs it and prints the results table.
"""

from __future__ import annotations

from bert_cli import console
from bert_cli.commands.options import command
from bert_cli.pretraining import PretrainOptions


def _pretrain(options: PretrainOptions) -> None:
    """Pre-train with masked LM + next-sentence prediction; rerun the same command to resume."""
    console.load_tensorflow()
    from bert_cli.pretraining import run_pretraining

    show(run_pretraining(options), options.model)


def _figures(metrics: dict) -> str:
    """The headline metrics of MLM (+ NSP) or ELECTRA pre-training."""
    text = f"loss {metrics['loss']:.4f}, MLM acc {metrics['mlm_accuracy']:.2%}"
    if "nsp_accuracy" in metrics:
        text += f", NSP acc {metrics['nsp_accuracy']:.2%}"
    if "disc_accuracy" in metrics:
        text += (f", disc acc {metrics['disc_accuracy']:.2%} (P {metrics['disc_precision']:.2%} "
                 f"R {metrics['disc_recall']:.2%}), gen sample acc {metrics['sampled_accuracy']:.2%}")
    return text


def show(result, model: str) -> None:
    """Prints the results table of a pre-training run."""
    from bert_cli.display import results_table

    metrics = result.final_metrics
    config = result.config
    rows = [
        ("model", f"{model}: L={config.num_hidden_layers} H={config.hidden_size} "
                  f"A={config.num_attention_heads}, {result.parameters / 1e6:,.2f} M parameters"),
        ("strategy", result.distribution_description),
        ("steps", f"{result.start_step:,} → {result.final_step:,}"
                  + (f" (resumed from {result.resumed_from})" if result.resumed_from else "")),
    ]
    if metrics:
        rows.append(("final train", _figures(metrics)))
        rows.append(("throughput", f"{metrics['examples_per_second']:,.1f} examples/s, "
                     f"{metrics['tokens_per_second']:,.0f} tokens/s"))
    if result.evaluation:
        e = result.evaluation
        rows.append(("held-out", _figures(e)
                     + (f" ({e['eval_batches']:,} batches, {e['eval_examples']:,} examples; pooled over every "
                        "prediction)" if "eval_batches" in e else "")))
    rows.append(("time", f"{result.seconds:,.1f} s"))
    rows.append(("model directory", str(result.output)))
    if result.curves:
        rows.append(("curves", str(result.curves)))
    console.stdout.print(results_table("pre-training", rows))


pretrain_command = command(_pretrain, PretrainOptions)
