"""``bert pretrain``: masked-LM + next-sentence pre-training on CPU, GPUs, hosts or a TPU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from bert_cli import console

_SCALE = "Scaling out"
_OPT = "Optimisation"
_RUN = "Checkpoints and logging"


def pretrain_command(
    inputs: Annotated[List[str], typer.Argument(help="Record files, globs or directories from bert make-data (or the original script).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model directory to write (checkpoints, weights, logs, curves).")],
    model: Annotated[str, typer.Option(help="Preset (tiny, mini, small, medium, base, large, L-4_H-256, ...) or a bert_config.json.")] = "base",
    vocab: Annotated[Optional[Path], typer.Option(help="vocab.txt; default: the one named in the records' manifest.")] = None,
    batch_size: Annotated[int, typer.Option(help="Global batch size (all replicas together).")] = 32,
    train_steps: Annotated[int, typer.Option(help="Optimizer updates in the whole run.", rich_help_panel=_OPT)] = 100_000,
    warmup_steps: Annotated[int, typer.Option(help="Updates of linear learning-rate warmup.", rich_help_panel=_OPT)] = 10_000,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.", rich_help_panel=_OPT)] = 5e-5,
    optimizer: Annotated[str, typer.Option(help="adamw or lamb (large batches).", rich_help_panel=_OPT)] = "adamw",
    weight_decay: Annotated[float, typer.Option(help="Decoupled weight decay (never on LayerNorm and biases).", rich_help_panel=_OPT)] = 0.01,
    accumulation_steps: Annotated[int, typer.Option(help="Micro-batches per update (gradient accumulation).", rich_help_panel=_OPT)] = 1,
    precision: Annotated[str, typer.Option(help="fp32, mixed_bfloat16 or mixed_float16 (with loss scaling).", rich_help_panel=_OPT)] = "fp32",
    jit: Annotated[bool, typer.Option("--jit/--no-jit", help="Compile the step with XLA.", rich_help_panel=_OPT)] = False,
    steps_per_execution: Annotated[int, typer.Option(help="Steps per tf.function call (TPUs like 100+).", rich_help_panel=_OPT)] = 1,
    dynamic_masking: Annotated[bool, typer.Option(help="Re-mask every time an example is read (RoBERTa).")] = False,
    whole_word_mask: Annotated[bool, typer.Option(help="With --dynamic-masking: mask whole words.")] = False,
    masked_lm_prob: Annotated[float, typer.Option(help="With --dynamic-masking: share of tokens to predict.")] = 0.15,
    no_nsp: Annotated[bool, typer.Option("--no-nsp", help="Masked LM only (no next-sentence head or loss).")] = False,
    tpu: Annotated[Optional[str], typer.Option(help="TPU name, or 'local' on a TPU VM.", rich_help_panel=_SCALE)] = None,
    strategy: Annotated[str, typer.Option(help="auto, default, mirrored, multiworker (TF_CONFIG) or tpu.", rich_help_panel=_SCALE)] = "auto",
    save_every: Annotated[int, typer.Option(help="Checkpoint every N steps.", rich_help_panel=_RUN)] = 1000,
    keep: Annotated[int, typer.Option(help="Checkpoints to keep.", rich_help_panel=_RUN)] = 3,
    log_every: Annotated[int, typer.Option(help="Print and log metrics every N steps.", rich_help_panel=_RUN)] = 100,
    eval_input: Annotated[Optional[List[str]], typer.Option(help="Held-out records to evaluate on.", rich_help_panel=_RUN)] = None,
    eval_every: Annotated[int, typer.Option(help="Evaluate every N steps (default: at the end).", rich_help_panel=_RUN)] = 0,
    eval_batches: Annotated[int, typer.Option(help="Batches of held-out records per evaluation.", rich_help_panel=_RUN)] = 100,
    init_checkpoint: Annotated[Optional[Path], typer.Option(help="Start from these weights with a fresh optimizer: a model directory, an original BERT checkpoint directory or a keras-hub preset.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (initialisation, shuffling, masking).")] = 12345,
    overwrite: Annotated[bool, typer.Option(help="Start over in an --output that holds another run.")] = False,
) -> None:
    """Pre-train with masked LM + next-sentence prediction; rerun the same command to resume."""
    console.load_tensorflow()
    from bert_cli.display import results_table
    from bert_cli.pretraining import PretrainOptions, run_pretraining

    result = run_pretraining(
        PretrainOptions(
            inputs=tuple(inputs), output=output, model=model, vocab=vocab, batch_size=batch_size,
            train_steps=train_steps, warmup_steps=warmup_steps, learning_rate=learning_rate, optimizer=optimizer,
            weight_decay=weight_decay, accumulation_steps=accumulation_steps, precision=precision, jit=jit,
            steps_per_execution=steps_per_execution, save_every=save_every, keep=keep, log_every=log_every,
            eval_input=tuple(eval_input or ()), eval_every=eval_every, eval_batches=eval_batches,
            dynamic_masking=dynamic_masking, whole_word_mask=whole_word_mask, masked_lm_prob=masked_lm_prob,
            no_nsp=no_nsp, strategy=strategy, tpu=tpu, init_checkpoint=init_checkpoint, seed=seed,
            overwrite=overwrite,
        )
    )
    metrics = result.final_metrics
    rows = [
        ("model", f"{model}: L={result.config.num_hidden_layers} H={result.config.hidden_size} "
                  f"A={result.config.num_attention_heads}, {result.parameters / 1e6:,.2f} M parameters"),
        ("strategy", result.distribution_description),
        ("steps", f"{result.start_step:,} → {result.final_step:,}"
                  + (f" (resumed from {result.resumed_from})" if result.resumed_from else "")),
    ]
    if metrics:
        rows.append(("final train", f"loss {metrics['loss']:.4f}, MLM acc {metrics['mlm_accuracy']:.2%}"
                     + (f", NSP acc {metrics['nsp_accuracy']:.2%}" if "nsp_accuracy" in metrics else "")))
        rows.append(("throughput", f"{metrics['examples_per_second']:,.1f} examples/s, "
                     f"{metrics['tokens_per_second']:,.0f} tokens/s"))
    if result.evaluation:
        e = result.evaluation
        rows.append(("held-out", f"loss {e['loss']:.4f}, MLM acc {e['mlm_accuracy']:.2%}"
                     + (f", NSP acc {e['nsp_accuracy']:.2%}" if "nsp_accuracy" in e else "")))
    rows.append(("time", f"{result.seconds:,.1f} s"))
    rows.append(("model directory", str(result.output)))
    if result.curves:
        rows.append(("curves", str(result.curves)))
    console.stdout.print(results_table("pre-training", rows))
