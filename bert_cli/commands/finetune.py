"""``bert finetune squad``, ``classify`` and ``tag``: thin wrappers around bert_cli.finetuning.

The options every recipe shares are declared once here (``Init``, ``Epochs``...)
so the commands spell and document them identically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bert_cli import console

_START = "Starting point"
_TRAIN = "Training"
_SCALE = "Scaling out"
_DATA = "Data"

Output = Annotated[Path, typer.Option("--output", "-o", help="Model directory to write (weights, task.json, predictions, curves).")]
Dev = Annotated[Optional[Path], typer.Option(help="Labelled file to evaluate on after every epoch; the best epoch is kept.", rich_help_panel=_DATA)]
Test = Annotated[Optional[Path], typer.Option(help="File to predict with the final model (labels optional).", rich_help_panel=_DATA)]
Init = Annotated[Optional[Path], typer.Option(help="Model directory to start from (bert pretrain / bert convert).", rich_help_panel=_START)]
Model = Annotated[Optional[str], typer.Option(help="Random-init baseline: a preset (tiny, mini, base, L-4_H-256, ...) or bert_config.json; needs --vocab.", rich_help_panel=_START)]
Vocab = Annotated[Optional[Path], typer.Option(help="vocab.txt for --model (with --init the model's own is used).", rich_help_panel=_START)]
Lowercase = Annotated[Optional[bool], typer.Option("--lowercase/--cased", help="Casing of the tokenizer; default: as the model/vocabulary was trained.", rich_help_panel=_START, show_default=False)]
MaxSeqLength = Annotated[int, typer.Option(help="Longest input in word pieces, [CLS]/[SEP] included.", rich_help_panel=_TRAIN)]
Epochs = Annotated[float, typer.Option(help="Passes over the training file (fractions allowed).", rich_help_panel=_TRAIN)]
LearningRate = Annotated[float, typer.Option(help="Peak learning rate (the paper searched 2e-5 to 5e-5).", rich_help_panel=_TRAIN)]
BatchSize = Annotated[int, typer.Option(help="Global batch size (all replicas together).", rich_help_panel=_TRAIN)]
Warmup = Annotated[float, typer.Option(help="Share of the steps with linear learning-rate warmup.", rich_help_panel=_TRAIN)]
WeightDecay = Annotated[float, typer.Option(help="Decoupled weight decay (never on LayerNorm and biases).", rich_help_panel=_TRAIN)]
Accumulation = Annotated[int, typer.Option(help="Micro-batches per update (gradient accumulation).", rich_help_panel=_TRAIN)]
Metric = Annotated[Optional[str], typer.Option(help="Dev metric that picks the best epoch; default: the task's first.", rich_help_panel=_TRAIN)]
EarlyStopping = Annotated[int, typer.Option(help="Stop after N epochs without a better dev --metric (0: off).", rich_help_panel=_TRAIN)]
Seed = Annotated[int, typer.Option(help="Random seed (initialisation, dropout, shuffling).", rich_help_panel=_TRAIN)]
Precision = Annotated[str, typer.Option(help="fp32, mixed_bfloat16 or mixed_float16 (with loss scaling).", rich_help_panel=_SCALE)]
Jit = Annotated[bool, typer.Option("--jit/--no-jit", help="Compile the step with XLA.", rich_help_panel=_SCALE)]
Strategy = Annotated[str, typer.Option(help="auto, default, mirrored, multiworker (TF_CONFIG) or tpu.", rich_help_panel=_SCALE)]
Tpu = Annotated[Optional[str], typer.Option(help="TPU name, or 'local' on a TPU VM.", rich_help_panel=_SCALE)]
LogEvery = Annotated[int, typer.Option(help="Print metrics every N steps (0: five times an epoch).")]
Overwrite = Annotated[bool, typer.Option(help="Start over in an --output that holds another run.")]


def _common(**values):
    from bert_cli.finetuning import FinetuneOptions

    return FinetuneOptions(**values)


def squad_command(
    train: Annotated[Path, typer.Argument(help="Training file: SQuAD v1.1 or v2.0 JSON.")],
    output: Output,
    dev: Annotated[Optional[Path], typer.Option(help="SQuAD JSON to evaluate on after every epoch (EM/F1 as the official scripts); predictions.json, nbest_predictions.json (and null_odds.json) are written for it.", rich_help_panel=_DATA)] = None,
    doc_stride: Annotated[int, typer.Option(help="Pieces between the starts of two windows over a long context.", rich_help_panel=_DATA)] = 128,
    max_query_length: Annotated[int, typer.Option(help="Questions are cut to this many pieces.", rich_help_panel=_DATA)] = 64,
    n_best_size: Annotated[int, typer.Option(help="Candidate answers kept per question (nbest_predictions.json).", rich_help_panel=_DATA)] = 20,
    max_answer_length: Annotated[int, typer.Option(help="Longest answer in pieces.", rich_help_panel=_DATA)] = 30,
    null_score_diff_threshold: Annotated[float, typer.Option(help="v2: answer \"\" when the null score beats the best span by more than this.", rich_help_panel=_DATA)] = 0.0,
    version_2_with_negative: Annotated[Optional[bool], typer.Option("--version-2-with-negative/--version-1", help="SQuAD 2.0 (unanswerable questions) or v1.1; default: detected from the training file.", rich_help_panel=_DATA, show_default=False)] = None,
    init: Init = None,
    model: Model = None,
    vocab: Vocab = None,
    lowercase: Lowercase = None,
    max_seq_length: MaxSeqLength = 384,
    epochs: Epochs = 2.0,
    learning_rate: LearningRate = 5e-5,
    batch_size: BatchSize = 32,
    warmup_proportion: Warmup = 0.1,
    weight_decay: WeightDecay = 0.01,
    accumulation_steps: Accumulation = 1,
    metric: Metric = None,
    early_stopping: EarlyStopping = 0,
    seed: Seed = 12345,
    precision: Precision = "fp32",
    jit: Jit = False,
    strategy: Strategy = "auto",
    tpu: Tpu = None,
    log_every: LogEvery = 0,
    overwrite: Overwrite = False,
) -> None:
    """Fine-tune extractive question answering on SQuAD v1.1 / v2.0; rerun the same command to resume."""
    from bert_cli.finetuning import CACHE_DIR, run_finetuning
    from bert_cli.squad_recipe import SquadOptions, SquadRecipe

    recipe = SquadRecipe(SquadOptions(
        train=train, dev=dev, doc_stride=doc_stride, max_query_length=max_query_length, n_best_size=n_best_size,
        max_answer_length=max_answer_length, null_score_diff_threshold=null_score_diff_threshold,
        version_2_with_negative=version_2_with_negative, cache_dir=output / CACHE_DIR,
    ))
    result = run_finetuning(recipe, _common(
        output=output, init=init, model=model, vocab=vocab, lowercase=lowercase, max_seq_length=max_seq_length,
        epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, warmup_proportion=warmup_proportion,
        weight_decay=weight_decay, accumulation_steps=accumulation_steps, precision=precision, jit=jit,
        strategy=strategy, tpu=tpu, metric=metric, early_stopping=early_stopping, log_every=log_every, seed=seed,
        overwrite=overwrite,
    ))
    show(result, "", "")
    details = result.details or {}
    if "scores" in details:
        from bert_cli.commands.score import scores_table

        console.stdout.print(scores_table(details["scores"], f"dev scores ({Path(dev).name})"))
    threshold = details.get("threshold")
    if threshold:
        console.stdout.print(
            f"best dev F1 {threshold['best_f1']:.2f} with --null-score-diff-threshold "
            f"{threshold['best_f1_threshold']:.4g} (EM {threshold['best_exact']:.2f} with "
            f"{threshold['best_exact_threshold']:.4g}); this run used {threshold['current']:g}"
        )


def classify_command(
    train: Annotated[Path, typer.Argument(help="Training file: TSV (GLUE style, header optional), CSV or JSONL.")],
    output: Output,
    dev: Dev = None,
    test: Test = None,
    text_column: Annotated[Optional[str], typer.Option(help="Column (name or 0-based number) of the text; default sentence / text / sentence1.", rich_help_panel=_DATA)] = None,
    text_pair_column: Annotated[Optional[str], typer.Option(help="Column of the second text of a pair: [CLS] A [SEP] B [SEP].", rich_help_panel=_DATA)] = None,
    label_column: Annotated[Optional[str], typer.Option(help="Column of the label; default label (or the last column).", rich_help_panel=_DATA)] = None,
    labels: Annotated[Optional[str], typer.Option(help="Comma-separated labels in id order; default: the training file's, sorted.", rich_help_panel=_DATA)] = None,
    regression: Annotated[bool, typer.Option("--regression", help="Real-valued targets (STS-B style), mean squared error.", rich_help_panel=_DATA)] = False,
    file_format: Annotated[Optional[str], typer.Option("--format", help="tsv, csv or jsonl; default: from the file name.", rich_help_panel=_DATA)] = None,
    header: Annotated[Optional[bool], typer.Option("--header/--no-header", help="Whether TSV/CSV files start with a header row; default: detected.", rich_help_panel=_DATA, show_default=False)] = None,
    init: Init = None,
    model: Model = None,
    vocab: Vocab = None,
    lowercase: Lowercase = None,
    max_seq_length: MaxSeqLength = 128,
    epochs: Epochs = 3.0,
    learning_rate: LearningRate = 5e-5,
    batch_size: BatchSize = 32,
    warmup_proportion: Warmup = 0.1,
    weight_decay: WeightDecay = 0.01,
    accumulation_steps: Accumulation = 1,
    metric: Metric = None,
    early_stopping: EarlyStopping = 0,
    seed: Seed = 12345,
    precision: Precision = "fp32",
    jit: Jit = False,
    strategy: Strategy = "auto",
    tpu: Tpu = None,
    log_every: LogEvery = 0,
    overwrite: Overwrite = False,
) -> None:
    """Fine-tune a sentence or sentence-pair classifier (or regressor); rerun the same command to resume."""
    from bert_cli.classify_recipe import ClassifyOptions, ClassifyRecipe
    from bert_cli.finetuning import run_finetuning

    recipe = ClassifyRecipe(ClassifyOptions(
        train=train, dev=dev, test=test, text_column=text_column, text_pair_column=text_pair_column,
        label_column=label_column, labels=tuple(labels.split(",")) if labels is not None else None,
        regression=regression, file_format=file_format, header=header,
    ))
    result = run_finetuning(recipe, _common(
        output=output, init=init, model=model, vocab=vocab, lowercase=lowercase, max_seq_length=max_seq_length,
        epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, warmup_proportion=warmup_proportion,
        weight_decay=weight_decay, accumulation_steps=accumulation_steps, precision=precision, jit=jit,
        strategy=strategy, tpu=tpu, metric=metric, early_stopping=early_stopping, log_every=log_every, seed=seed,
        overwrite=overwrite,
    ))
    show(result, "per_label", "label")


def tag_command(
    train: Annotated[Path, typer.Argument(help="Training file in CoNLL format: token and tag per line, blank line between sentences.")],
    output: Output,
    dev: Dev = None,
    test: Test = None,
    token_column: Annotated[int, typer.Option(help="0-based column of the token (negative: from the end).", rich_help_panel=_DATA)] = 0,
    tag_column: Annotated[int, typer.Option(help="0-based column of the tag (negative: from the end).", rich_help_panel=_DATA)] = -1,
    init: Init = None,
    model: Model = None,
    vocab: Vocab = None,
    lowercase: Lowercase = None,
    max_seq_length: MaxSeqLength = 128,
    epochs: Epochs = 3.0,
    learning_rate: LearningRate = 5e-5,
    batch_size: BatchSize = 32,
    warmup_proportion: Warmup = 0.1,
    weight_decay: WeightDecay = 0.01,
    accumulation_steps: Accumulation = 1,
    metric: Metric = None,
    early_stopping: EarlyStopping = 0,
    seed: Seed = 12345,
    precision: Precision = "fp32",
    jit: Jit = False,
    strategy: Strategy = "auto",
    tpu: Tpu = None,
    log_every: LogEvery = 0,
    overwrite: Overwrite = False,
) -> None:
    """Fine-tune a token tagger (NER, chunking, POS); rerun the same command to resume."""
    from bert_cli.finetuning import run_finetuning
    from bert_cli.tag_recipe import TagOptions, TagRecipe

    recipe = TagRecipe(TagOptions(train=train, dev=dev, test=test, token_column=token_column, tag_column=tag_column))
    result = run_finetuning(recipe, _common(
        output=output, init=init, model=model, vocab=vocab, lowercase=lowercase, max_seq_length=max_seq_length,
        epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, warmup_proportion=warmup_proportion,
        weight_decay=weight_decay, accumulation_steps=accumulation_steps, precision=precision, jit=jit,
        strategy=strategy, tpu=tpu, metric=metric, early_stopping=early_stopping, log_every=log_every, seed=seed,
        overwrite=overwrite,
    ))
    show(result, "entities", "entity type")


def show(result, detail_key: str, detail_name: str) -> None:
    """Prints the results table, and a per-label / per-type table when there is one."""
    from bert_cli.display import format_metrics, results_table
    from rich.table import Table

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
    detail = (result.details or {}).get(detail_key)
    if detail:
        table = Table(title=f"dev by {detail_name}", title_justify="left")
        for column in (detail_name, "precision", "recall", "F1", "support"):
            table.add_column(column, justify="left" if column == detail_name else "right")
        for name, scores in detail.items():
            table.add_row(name, f"{scores['precision']:.2%}", f"{scores['recall']:.2%}", f"{scores['f1']:.2%}",
                          f"{scores['support']:,}", style="bold" if name == "overall" else None)
        console.stdout.print(table)
