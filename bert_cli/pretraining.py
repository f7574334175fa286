"""``bert pretrain``: pre-training objectives as :class:`bert_cli.training.Task` s, and the run around them.

Masked LM (+ next-sentence prediction) is :class:`PretrainTask`;
:func:`run_pretraining` checks the records and options, trains (or resumes)
and writes the model directory.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, List, Optional

from bert_cli.commands.options import SCALE, argument, as_tuple, option
from bert_cli.errors import UserError

# Additive quantities per batch, summed over micro-batches, replicas and steps.
PRETRAIN_SUMS = ("loss", "mlm_loss_sum", "mlm_correct", "mlm_weight", "nsp_loss_sum", "nsp_correct", "examples",
                 "tokens")
SUMMARY_FILE = "pretrain.json"
CURVES_FILE = "training_curves.png"


@dataclasses.dataclass
class PretrainTask:
    """MLM (+ NSP) pre-training of a :class:`models.pretraining.BertPretrainer`.

    Args:
        config: The model's :class:`models.config.BertConfig`.
        optimizer: ``"adamw"`` or ``"lamb"``.
        learning_rate / train_steps / warmup_steps / weight_decay: The schedule (see models.optimization).
        next_sentence: Train the NSP head too.
        precision: ``"fp32"``, ``"mixed_bfloat16"`` or ``"mixed_float16"`` (with dynamic loss scaling).
        train_input: ``(input_context, start_step) -> tf.data.Dataset`` of per-replica batches of the
            record features (``input_ids``, ``input_mask``, ``segment_ids``,
            ``masked_lm_positions``, ``masked_lm_ids``, ``masked_lm_weights``,
            ``next_sentence_labels``).
        evaluator: Held-out metrics of a model (a :class:`bert_cli.training.SumEvaluator` over
            held-out records), or None.
    """

    config: object
    optimizer: str
    learning_rate: float
    train_steps: int
    warmup_steps: int
    train_input: Callable
    evaluator: Callable | None = None
    weight_decay: float = 0.01
    next_sentence: bool = True
    precision: str = "fp32"
    bias_correction: bool = True
    sums: tuple[str, ...] = PRETRAIN_SUMS

    def build(self):
        from bert_cli.runs import model_dtype
        from models.pretraining import build_pretrainer

        model = build_pretrainer(self.config, next_sentence=self.next_sentence, dtype=model_dtype(self.precision))
        return model, task_optimizer(self)

    def train_dataset(self, input_context, start_step: int):
        return self.train_input(input_context, start_step)

    def evaluate(self, model) -> dict | None:
        return self.evaluator(model) if self.evaluator else None

    def compute(self, model, batch, training: bool) -> dict:
        import tensorflow as tf

        from models.pretraining import pretraining_losses

        outputs = model(record_inputs(batch), training=training)
        if not self.next_sentence:  # a model with an NSP head evaluated on records without labels
            outputs = {key: value for key, value in outputs.items() if key != "nsp_logits"}
        values = pretraining_losses(outputs, batch)
        zero = tf.constant(0.0)
        return {
            "loss": values["loss"],
            "mlm_loss_sum": values["mlm_loss_sum"],
            "mlm_correct": values["mlm_correct"],
            "mlm_weight": values["mlm_weight"],
            "nsp_loss_sum": values.get("nsp_loss_sum", zero),
            "nsp_correct": values.get("nsp_correct", zero),
            "examples": values["examples"],
            "tokens": tf.reduce_sum(tf.cast(batch["input_mask"], tf.float32)),
        }

    def summarize(self, totals: dict[str, float]) -> dict[str, float]:
        """Metrics pooled over every prediction and example summed (not means of per-batch means).

        The original's ``metric_fn`` pools the weighted MLM loss over all real
        predictions; a mean of batch means weighs a partial last batch like a
        full one (6.3840 vs 6.3719 measured on the same weights).
        """
        weight = max(totals.get("mlm_weight", 0.0), 1.0)
        examples = max(totals.get("examples", 0.0), 1.0)
        metrics = {"mlm_loss": totals.get("mlm_loss_sum", 0.0) / weight,
                   "mlm_accuracy": totals.get("mlm_correct", 0.0) / weight}
        if self.next_sentence:
            metrics["nsp_loss"] = totals.get("nsp_loss_sum", 0.0) / examples
            metrics["nsp_accuracy"] = totals.get("nsp_correct", 0.0) / examples
        metrics = {"loss": metrics["mlm_loss"] + metrics.get("nsp_loss", 0.0), **metrics}
        return metrics


def record_inputs(batch: dict, labels: bool = False) -> dict:
    """A batch of records as the pre-training models' int32 inputs; with ``labels`` also the
    masked-LM labels (``masked_lm_ids``, ``masked_lm_weights``) that ELECTRA's model takes."""
    import tensorflow as tf

    inputs = {
        "token_ids": tf.cast(batch["input_ids"], tf.int32),
        "segment_ids": tf.cast(batch["segment_ids"], tf.int32),
        "padding_mask": tf.cast(batch["input_mask"], tf.int32),
        "masked_lm_positions": tf.cast(batch["masked_lm_positions"], tf.int32),
    }
    if labels:
        inputs["masked_lm_ids"] = tf.cast(batch["masked_lm_ids"], tf.int32)
        inputs["masked_lm_weights"] = batch["masked_lm_weights"]
    return inputs


def task_optimizer(task):
    """The optimizer a pre-training task's schedule and precision call for (with loss scaling for fp16)."""
    from bert_cli.runs import with_loss_scaling
    from models.optimization import build_optimizer

    optimizer = build_optimizer(task.optimizer, task.learning_rate, task.train_steps, task.warmup_steps,
                                task.weight_decay, bias_correction=task.bias_correction)
    return with_loss_scaling(optimizer, task.precision)


# ----------------------------------------------------------------------------
# The `bert pretrain` run: inputs checked, model directory written.
# ----------------------------------------------------------------------------


_OPT, _RUN, _OBJ = "Optimisation", "Checkpoints and logging", "Objective"


@dataclasses.dataclass(frozen=True)
class PretrainOptions:
    """Everything ``bert pretrain`` was asked to do (names as the CLI options; each field declares its option)."""

    inputs: tuple[str, ...] = argument(
        help="Record files, globs or directories from bert make-data (or the original script).",
        cli_type=List[str], parse=as_tuple)
    output: Path = option(help="Model directory to write (checkpoints, weights, logs, curves).",
                          flags=("--output", "-o"))
    model: str = option("base", help="Preset (tiny, mini, small, medium, base, large, L-4_H-256, ...), a "
                        "bert_config.json, or the directory of --init-checkpoint.")
    vocab: Path | None = option(None, help="vocab.txt; default: the one named in the records' manifest.")
    batch_size: int = option(32, help="Global batch size (all replicas together).")
    train_steps: int = option(100_000, help="Optimizer updates in the whole run.", panel=_OPT)
    recipe: str = option(
        "original", help="Defaults for --learning-rate, --warmup-steps and --dropout. original: the release's "
        "(5e-5, 10,000 updates, the model's dropout); budget: measured here for small models (hidden size 256 or "
        "less) on a budget of CPU hours: 1e-3 at batch 32, warmup 10 % of --train-steps, dropout 0 for masked LM; "
        "best with --no-nsp on records made with make-data --no-nsp (see the README).", panel=_OPT)
    warmup_steps: int | None = option(
        None, help="Updates of linear learning-rate warmup; default: the recipe's (original 10,000; budget 10 % "
        "of --train-steps).", panel=_OPT, show_default=False)
    learning_rate: float | None = option(
        None, help="Peak learning rate; default: the recipe's (original 5e-5; budget 1e-3).", panel=_OPT,
        show_default=False)
    optimizer: str = option("adamw", help="adamw or lamb (large batches).", panel=_OPT)
    weight_decay: float = option(0.01, help="Decoupled weight decay (never on LayerNorm and biases).", panel=_OPT)
    accumulation_steps: int = option(1, help="Micro-batches per update (gradient accumulation).", panel=_OPT)
    precision: str = option(
        "auto", help="auto, fp32, mixed_bfloat16 or mixed_float16 (with loss scaling); auto: mixed_bfloat16 on "
        "a CPU with bf16 matmul units (AMX or AVX-512-BF16) for models of hidden size 256 or more (measured "
        "1.1-1.7x faster), else fp32.",
        panel=_OPT)
    jit: bool | None = option(
        None, help="Compile the step with XLA; default: on for masked-LM runs of 100+ steps in fp32 (10-30 % "
        "faster measured on CPUs) and on GPUs, off on TPUs (compiled anyway) and on CPUs for mixed precision "
        "and ELECTRA (no faster there).",
        flags=("--jit/--no-jit",), panel=_OPT, show_default=False)
    dropout: float | None = option(
        None, help="Dropout while pre-training (hidden and attention); default: the recipe's (original: the "
        "model's, 0.1; budget: 0). 0 trains "
        "faster per step; the saved bert_config.json keeps the model's own for fine-tuning.", panel=_OPT)
    steps_per_execution: int = option(1, help="Steps per tf.function call (TPUs like 100+).", panel=_OPT)
    precision_auto: bool = False  # set by the run: --precision auto chose ``precision``
    adam_bias_correction: bool = option(
        True, help="Adam's bias correction (Keras, tf-models, keras-hub); --no-adam-bias-correction for the "
        "original release's AdamWeightDecayOptimizer (larger early steps).",
        flags=("--adam-bias-correction/--no-adam-bias-correction",), panel=_OPT)
    objective: str = option(
        "mlm", help="mlm: masked LM (+ next sentence), BERT; electra: a small generator fills masked tokens and "
        "the model learns to spot every replaced token (ELECTRA; always masks afresh, no NSP).", panel=_OBJ)
    dynamic_masking: bool = option(False, help="Re-mask every time an example is read (RoBERTa).", panel=_OBJ)
    whole_word_mask: bool = option(False, help="With --dynamic-masking or electra: mask whole words.", panel=_OBJ)
    masked_lm_prob: float = option(0.15, help="With --dynamic-masking or electra: share of tokens to predict.",
                                   panel=_OBJ)
    no_nsp: bool = option(False, help="Masked LM only (no next-sentence head or loss).", flags=("--no-nsp",),
                          panel=_OBJ)
    generator_hidden_fraction: float | None = option(
        None, help="electra: the generator's hidden size as a share of the model's (its depth: "
        "--generator-layers-fraction); default 0.25 (ELECTRA-Small and -Large), 1/3 with --model electra-base.",
        panel=_OBJ)
    generator_layers_fraction: float = option(
        1.0, help="electra: the generator's layers as a share of the model's (the original's generator_layers; "
        "at least 1 layer). A shallower generator makes samples easier to spot.", panel=_OBJ)
    tied_generator: bool = option(
        False, help="electra: the generator is the model's own encoder with a masked-LM head of its own "
        "(google-research/electra's untied_generator=False): the encoder learns masked LM too; an update costs "
        "about 1.2x one with the default quarter-width generator.", panel=_OBJ)
    discriminator_weight: float = option(50.0, help="electra: weight of the replaced-token loss (the generator's "
                                         "masked-LM loss has weight 1).", panel=_OBJ)
    tpu: str | None = option(None, help="TPU name, or 'local' on a TPU VM.", panel=SCALE)
    strategy: str = option("auto", help="auto, default, mirrored, multiworker (TF_CONFIG) or tpu.", panel=SCALE)
    save_every: int = option(1000, help="Checkpoint every N steps.", panel=_RUN)
    keep: int = option(3, help="Checkpoints to keep.", panel=_RUN)
    log_every: int = option(100, help="Print and log metrics every N steps.", panel=_RUN)
    eval_input: tuple[str, ...] = option((), help="Held-out records to evaluate on.", panel=_RUN,
                                         cli_type=Optional[List[str]], parse=as_tuple, cli_default=None)
    eval_every: int = option(0, help="Evaluate every N steps (default: at the end).", panel=_RUN)
    eval_batches: int = option(100, help="Batches of held-out records per evaluation.", panel=_RUN)
    init_checkpoint: Path | None = option(
        None, help="Start from these weights with a fresh optimizer: a model directory, an original BERT "
        "checkpoint directory, a Hugging Face directory or a keras-hub preset.")
    seed: int = option(12345, help="Random seed (initialisation, shuffling, masking).")
    overwrite: bool = option(False, help="Start over in an --output that holds another run.")


@dataclasses.dataclass
class RecordsInfo:
    files: list[str]
    max_seq_length: int
    max_predictions: int  # 0 for records without masks until the run chooses it
    next_sentence: bool
    manifest: dict | None
    #: The records hold masked_lm_* features (False: ELECTRA-style input_ids/input_mask/segment_ids only).
    masked: bool = True


def inspect_records(patterns, option: str = "INPUT") -> RecordsInfo:
    """Finds the record files and reads their shapes from their first records.

    Every file's first record is read, so a file that is not a TFRecord file is
    named now rather than failing hours into a run.
    """
    import tensorflow as tf

    from data.records import compression_of, find_record_files, tensorflow_reason

    if not any("://" in str(p) for p in patterns):
        local, manifest = find_record_files(patterns)
        files = [str(f) for f in local]
    else:
        files, manifest = _remote_record_files(patterns, option)

    shapes = set()
    has_nsp = set()
    masked = set()
    for name in files:
        try:
            record = next(iter(tf.data.TFRecordDataset(name, compression_type=compression_of(name)).take(1)), None)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
            raise UserError(f"{name}: not a readable TFRecord file ({tensorflow_reason(error.message)})") from None
        if record is None:
            continue
        try:
            example = tf.train.Example.FromString(record.numpy())
        except Exception:  # noqa: BLE001  a protobuf DecodeError
            raise UserError(f"{name}: holds records that are not tf.train.Example protos") from None
        features = example.features.feature
        mask_features = {"masked_lm_positions", "masked_lm_ids", "masked_lm_weights"}
        # Records without any masks (ELECTRA's) are fine; half of them is not.
        needed = {"input_ids", "input_mask", "segment_ids"}
        needed |= mask_features if mask_features & set(features) else set()
        missing = needed - set(features)
        if missing:
            raise UserError(
                f"{name}: not pre-training records (missing {', '.join(sorted(missing))}); "
                "make them with bert make-data"
            )
        has_masks = "masked_lm_ids" in features
        shapes.add((len(features["input_ids"].int64_list.value),
                    len(features["masked_lm_ids"].int64_list.value) if has_masks else 0))
        has_nsp.add("next_sentence_labels" in features)
        masked.add(has_masks)
    if not shapes:
        raise UserError(f"{option}: the record files hold no records")
    if len(shapes) > 1:
        raise UserError(f"{option}: record files disagree on (max_seq_length, max_predictions): {sorted(shapes)}")
    (seq_length, predictions), = shapes
    return RecordsInfo(files, seq_length, predictions, all(has_nsp), manifest, masked=all(masked))


def _remote_record_files(patterns, option: str) -> tuple[list[str], dict | None]:
    """Record files on Cloud Storage and other tf.io.gfile file systems (gs://...)."""
    import tensorflow as tf

    gfile = tf.io.gfile
    files: list[str] = []
    for pattern in map(str, patterns):
        if gfile.isdir(pattern):
            matches = sorted(m for m in gfile.glob(pattern.rstrip("/") + "/*.tfrecord*") if "/." not in m)
        elif any(c in pattern for c in "*?["):
            matches = sorted(m for m in gfile.glob(pattern) if not gfile.isdir(m))
        elif gfile.exists(pattern):
            matches = [pattern]
        else:
            raise UserError(f"{option} {pattern}: no such file or directory")
        if not matches:
            raise UserError(f"{option} {pattern}: matches no record files")
        files.extend(m for m in matches if m not in files)
    manifest = None
    candidate = files[0].rsplit("/", 1)[0] + "/manifest.json"
    if gfile.exists(candidate):
        with gfile.GFile(candidate, "r") as handle:
            manifest = json.loads(handle.read())
    return files, manifest


def resolve_config(model: str, vocab_size: int):
    """A preset name, a ``bert_config.json`` (or a directory holding one) or a Hugging Face directory's config."""
    from models.config import PRESETS, BertConfig

    path = Path(model)
    if model in PRESETS:
        return BertConfig.from_preset(model, vocab_size=vocab_size)
    if path.is_dir() and (path / "bert_config.json").is_file():
        path = path / "bert_config.json"
    if path.is_file() or (path / "config.json").is_file():
        config = BertConfig.from_json_file(path) if path.is_file() else _huggingface_config(path / "config.json")
        if config.vocab_size != vocab_size:
            raise UserError(
                f"--model {model}: vocab_size {config.vocab_size} differs from the vocabulary's {vocab_size} entries"
            )
        return config
    raise UserError(f"--model {model}: neither a preset (tiny, mini, small, medium, base, large, L-4_H-256, ...) "
                    "nor a bert_config.json")


def _huggingface_config(path: Path):
    from bert_cli.conversion import read_json_object
    from models.huggingface import config_from_hf
    from models.huggingface_electra import electra_config_from_hf

    values = read_json_object(path)
    read = electra_config_from_hf if values.get("model_type") == "electra" else config_from_hf
    return read(values, f"--model {path}")[0]


def _run_signature(options: PretrainOptions, config, vocab_sha: str) -> dict:
    """What must match for a rerun to resume rather than clash (train_steps may grow)."""
    return {
        "config": config.to_dict(),
        "vocab_sha256": vocab_sha,
        "next_sentence": not options.no_nsp,
        "batch_size": options.batch_size,
        "accumulation_steps": options.accumulation_steps,
        "optimizer": options.optimizer,
        # Only when asked for, so runs made before the option resume as they were.
        **({"adam_bias_correction": False} if not options.adam_bias_correction else {}),
        # Only when it differs from the model's own, so runs made before --recipe budget set it resume
        # with --dropout naming the model's value.
        **({"dropout": options.dropout} if options.dropout not in (None, config.hidden_dropout_prob) else {}),
        **({"objective": "electra", "generator_hidden_fraction": generator_fraction(options),
            "discriminator_weight": options.discriminator_weight} if options.objective == "electra" else {}),
        # Only when asked for, so ELECTRA runs made before the option resume as they were.
        **({"generator_layers_fraction": options.generator_layers_fraction}
           if options.objective == "electra" and options.generator_layers_fraction != 1.0 else {}),
        **({"tied_generator": True} if options.objective == "electra" and options.tied_generator else {}),
    }


@dataclasses.dataclass
class PretrainResult:
    output: Path
    config: object
    records: RecordsInfo
    distribution_description: str
    start_step: int
    final_step: int
    resumed_from: str | None
    final_metrics: dict
    evaluation: dict | None
    curves: Path | None
    seconds: float
    parameters: int


#: ``--recipe``: (peak learning rate, warmup updates, or None and warmup = --train-steps // the divisor,
#: pre-training dropout or None for the model's own).
#: budget: measured with benchmarks/pretraining_helps.py (L-2_H-128, batch 32): held-out MLM accuracy
#: after 2,000 updates 11.2 % at 1e-3, 7.9 % at 3e-4; L-4_H-256 learns at 1e-3 (600 updates, 9.9 %).
#: Dropout 0 (as Cramming): at 2,000 updates 10.81 % against 10.21 % with 0.1 (NSP records), 11.46 against
#: 11.40 % (without NSP), and 1.15-1.3x faster steps (Benchmarks); with it and without NSP 21,900 updates gave held-out
#: 34.9 % and +5.7 points downstream (README, "Does pre-training help?").
RECIPES = {"original": (5e-5, 10_000, None, None), "budget": (1e-3, None, 10, 0.0)}
#: The widest model --recipe budget's learning rate was measured on.
BUDGET_MAX_HIDDEN = 256


def apply_recipe(options: PretrainOptions, hidden_size: int | None = None) -> PretrainOptions:
    """``options`` with --learning-rate, --warmup-steps and --dropout the user left out (None) taken from
    --recipe.

    ``hidden_size`` is the model's, when known: --recipe budget's rate was
    measured on models up to :data:`BUDGET_MAX_HIDDEN` wide, so a wider model
    must name its own rate.
    """
    if options.recipe not in RECIPES:
        raise UserError(f"--recipe {options.recipe!r} is not known; use {' or '.join(RECIPES)}")
    rate, updates, divisor, dropout = RECIPES[options.recipe]
    if (options.recipe == "budget" and options.learning_rate is None and hidden_size
            and hidden_size > BUDGET_MAX_HIDDEN):
        raise UserError(f"--recipe budget: its learning rate was measured on models of hidden size "
                        f"{BUDGET_MAX_HIDDEN} or less, this one has {hidden_size}; give --learning-rate")
    warmup = updates if divisor is None else max(1, options.train_steps // divisor)
    return dataclasses.replace(
        options, learning_rate=rate if options.learning_rate is None else options.learning_rate,
        warmup_steps=warmup if options.warmup_steps is None else options.warmup_steps,
        # The budget's dropout was measured for masked LM only: ELECTRA keeps the model's unless given.
        dropout=dropout if options.dropout is None and options.objective == "mlm" else options.dropout)


def run_pretraining(options: PretrainOptions) -> PretrainResult:
    """Runs ``bert pretrain``: checks inputs, trains (or resumes), writes the model directory."""
    from bert_cli.runs import removed_unless_resumable

    _check_options(apply_recipe(options))
    with removed_unless_resumable(Path(options.output)):
        return _run(options)


def _run(options: PretrainOptions) -> PretrainResult:
    from bert_cli import strategy as strategies
    from bert_cli.runs import check_precision, prepare_run_output

    # The strategy first: multi-worker and TPU set-up must precede other TensorFlow work.
    distribution = strategies.resolve(options.strategy, options.tpu)
    distribution.per_replica_batch(options.batch_size)
    if options.precision != "auto":
        check_precision(options.precision)
    inputs = _check_inputs(options)
    options = apply_recipe(options, inputs.config.hidden_size)
    options = dataclasses.replace(options, precision=resolve_precision(options, inputs.config, distribution),
                                  precision_auto=options.precision == "auto")
    if distribution.is_chief:
        prepare_run_output(options.output, _run_signature(options, inputs.config, inputs.vocab.sha256),
                           options.overwrite, ("checkpoints", "logs", "model.weights.h5", "encoder.weights.h5",
                                               "task.json", SUMMARY_FILE, CURVES_FILE))
    result = _train(options, inputs, distribution)
    curves = _write_outputs(options, inputs, result) if distribution.is_chief else None
    from bert_cli.runs import count_parameters

    return PretrainResult(
        output=options.output, config=inputs.config, records=inputs.records,
        distribution_description=distribution.description, start_step=result.start_step,
        final_step=result.final_step, resumed_from=result.resumed_from,
        final_metrics=result.history[-1] if result.history else {},
        evaluation=result.evaluations[-1] if result.evaluations else None, curves=curves, seconds=result.seconds,
        parameters=count_parameters(result.model),
    )


def _check_options(options: PretrainOptions) -> None:
    for name in ("batch_size", "train_steps", "accumulation_steps", "steps_per_execution", "log_every",
                 "save_every", "keep", "eval_batches"):
        if getattr(options, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(options, name)}")
    if not 0.0 < options.masked_lm_prob < 1.0:
        raise UserError(f"--masked-lm-prob must be between 0 and 1, got {options.masked_lm_prob}")
    if not 0 <= options.warmup_steps <= options.train_steps:
        raise UserError(f"--warmup-steps must be between 0 and --train-steps ({options.train_steps}), "
                        f"got {options.warmup_steps}")
    if not options.learning_rate > 0:
        raise UserError(f"--learning-rate must be positive, got {options.learning_rate}")
    if options.optimizer not in ("adamw", "lamb"):
        raise UserError(f"--optimizer {options.optimizer!r} is not known; use adamw or lamb")
    if options.objective not in ("mlm", "electra"):
        raise UserError(f"--objective {options.objective!r} is not known; use mlm or electra")
    if options.objective == "electra":
        if not 0.0 < generator_fraction(options) <= 1.0:
            raise UserError(f"--generator-hidden-fraction must be in (0, 1], got {options.generator_hidden_fraction}")
        if not 0.0 < options.generator_layers_fraction <= 1.0:
            raise UserError(f"--generator-layers-fraction must be in (0, 1], got {options.generator_layers_fraction}")
        if options.tied_generator and (options.generator_hidden_fraction is not None
                                       or options.generator_layers_fraction != 1.0):
            raise UserError("--tied-generator: the generator is the model's own encoder, so it takes no "
                            "--generator-hidden-fraction or --generator-layers-fraction; drop those")
        if not options.discriminator_weight > 0:
            raise UserError(f"--discriminator-weight must be positive, got {options.discriminator_weight}")
    elif options.tied_generator:
        raise UserError("--tied-generator is for --objective electra")
    if options.dropout is not None and not 0.0 <= options.dropout < 1.0:
        raise UserError(f"--dropout must be at least 0 and below 1, got {options.dropout}")
    if options.optimizer == "lamb" and not options.adam_bias_correction:
        raise UserError("--no-adam-bias-correction is for --optimizer adamw (LAMB keeps its own correction)")


def generator_fraction(options: PretrainOptions) -> float:
    """``--generator-hidden-fraction``, else ELECTRA's: 1/3 for its Base size, 0.25 otherwise (1 when tied)."""
    if options.tied_generator:
        return 1.0
    if options.generator_hidden_fraction is not None:
        return options.generator_hidden_fraction
    return 1 / 3 if options.model == "electra-base" else 0.25


@dataclasses.dataclass
class PretrainInputs:
    """The checked inputs of a run: records, vocabulary, config."""

    records: RecordsInfo
    eval_records: RecordsInfo | None
    vocab_path: Path
    vocab: object  # data.tokenization.Vocabulary
    config: object  # models.config.BertConfig
    next_sentence: bool

    @property
    def lowercase(self) -> bool | None:
        return (self.records.manifest or {}).get("lowercase")


def _check_inputs(options: PretrainOptions) -> PretrainInputs:
    """The records (and held-out records), their vocabulary and the model's config, checked against each other."""
    from data.tokenization import Vocabulary

    records = inspect_records(options.inputs)
    vocab_path = _vocab_path(options, records)
    vocab = Vocabulary.load(vocab_path)
    recorded_sha = (records.manifest or {}).get("vocab_sha256")
    if recorded_sha and recorded_sha != vocab.sha256:
        raise UserError(
            f"--vocab {vocab_path}: differs from the vocabulary the records were made with "
            f"(sha256 {recorded_sha[:12]}… vs {vocab.sha256[:12]}…); use the same vocab.txt as bert make-data"
        )
    config = resolve_config(options.model, len(vocab))
    if records.max_seq_length > config.max_position_embeddings:
        raise UserError(
            f"records have max_seq_length {records.max_seq_length}, more than the model's "
            f"max_position_embeddings {config.max_position_embeddings}"
        )
    next_sentence = not options.no_nsp and options.objective == "mlm"  # ELECTRA has no NSP
    if next_sentence and not records.next_sentence:
        raise UserError("the records have no next_sentence_labels (made with --no-nsp); pass --no-nsp")
    _predictions_for_unmasked(records, options, "INPUT")
    eval_records = inspect_records(options.eval_input, "--eval-input") if options.eval_input else None
    if eval_records:
        _predictions_for_unmasked(eval_records, options, "--eval-input", records.max_predictions)
    if eval_records and (eval_records.max_seq_length, eval_records.max_predictions) != (
        records.max_seq_length, records.max_predictions
    ):
        raise UserError("--eval-input records have a different max_seq_length or max_predictions than the "
                        "training records")
    return PretrainInputs(records, eval_records, Path(vocab_path), vocab, config, next_sentence)


def _predictions_for_unmasked(records: RecordsInfo, options: PretrainOptions, option: str,
                              predictions: int | None = None) -> None:
    """Records without masks are masked per batch: refused where nothing masks them, else given ELECTRA's
    ``int((prob + 0.005) * T)`` predictions per row (or the training records' count)."""
    if records.masked:
        return
    remasked = options.objective == "electra" or (options.dynamic_masking and option == "INPUT")
    if not remasked:
        raise UserError(f"{option}: the records hold no masked_lm_* features (ELECTRA-style records); "
                        "pre-train on them with --objective electra" + (" or --dynamic-masking" if option == "INPUT"
                                                                        else ""))
    records.max_predictions = predictions or max(1, int((options.masked_lm_prob + 0.005) * records.max_seq_length))


def _vocab_path(options: PretrainOptions, records: RecordsInfo) -> Path:
    """``--vocab``, else the vocabulary the records' manifest names (or one beside the records)."""
    if options.vocab is not None:
        return options.vocab
    recorded = (records.manifest or {}).get("vocab_file")
    candidates = [Path(recorded)] if recorded else []
    candidates += [Path(records.files[0]).parent / "vocab.txt"]
    vocab_path = next((c for c in candidates if c.is_file()), None)
    if vocab_path is None:
        raise UserError("--vocab is needed: the records' manifest names no vocabulary file that exists here")
    return vocab_path


def _task(options: PretrainOptions, inputs: PretrainInputs, distribution):
    """The objective's task (MLM (+ NSP) or ELECTRA) with its training input and, with ``--eval-input``,
    its held-out evaluator."""
    from bert_cli.training import SumEvaluator, consumed_per_pipeline
    from data.pretraining_input import pretraining_dataset

    records = inputs.records
    per_replica = distribution.per_replica_batch(options.batch_size)
    masking = _masking(options, inputs.vocab)

    def train_input(context, start_step: int):
        micro_batch = per_replica * options.accumulation_steps
        return pretraining_dataset(
            records.files, records.max_seq_length, records.max_predictions, micro_batch,
            next_sentence=inputs.next_sentence, seed=options.seed, input_context=context, dynamic_masking=masking,
            skip_records=consumed_per_pipeline(context, start_step, micro_batch), stored_masks=records.masked,
        )

    def eval_input(context):
        # ELECTRA masks held-out records afresh too (with a fixed seed: the same masks at every evaluation).
        return pretraining_dataset(
            inputs.eval_records.files, records.max_seq_length, records.max_predictions, per_replica,
            training=False, next_sentence=inputs.next_sentence, input_context=context,
            dynamic_masking=masking if options.objective == "electra" else None, seed=options.seed,
            stored_masks=inputs.eval_records.masked,
        ).take(options.eval_batches)

    common = dict(config=training_config(inputs.config, options.dropout), optimizer=options.optimizer,
                  learning_rate=options.learning_rate,
                  train_steps=options.train_steps, warmup_steps=options.warmup_steps, train_input=train_input,
                  weight_decay=options.weight_decay, precision=options.precision,
                  bias_correction=options.adam_bias_correction)
    if options.objective == "electra":
        from bert_cli.electra import ElectraTask

        task = ElectraTask(**common, generator_fraction=generator_fraction(options),
                           generator_layers_fraction=options.generator_layers_fraction,
                           tied_generator=options.tied_generator,
                           discriminator_weight=options.discriminator_weight, seed=options.seed)
    else:
        task = PretrainTask(**common, next_sentence=inputs.next_sentence)
    if inputs.eval_records:
        task.evaluator = SumEvaluator(distribution, task.compute, task.summarize, task.sums, eval_input)
    return task


def _masking(options: PretrainOptions, vocab):
    """The input pipeline's re-masking: ELECTRA's always, BERT's with ``--dynamic-masking``, else None."""
    from data.pretraining_input import DynamicMasking

    if options.objective == "electra":
        from bert_cli.electra import masking

        return masking(vocab, options.masked_lm_prob, options.whole_word_mask)
    if not options.dynamic_masking:
        return None
    return DynamicMasking(
        vocab_size=len(vocab), cls_id=vocab.cls_id, sep_id=vocab.sep_id, mask_id=vocab.mask_id,
        masked_lm_prob=options.masked_lm_prob,
        continuation_ids=tuple(i for i, t in enumerate(vocab.tokens) if t.startswith("##")),
        whole_word=options.whole_word_mask,
    )


def _train(options: PretrainOptions, inputs: PretrainInputs, distribution):
    """Trains (or resumes) to ``--train-steps``, showing progress and writing TensorBoard logs."""
    import keras
    import tensorflow as tf

    from bert_cli import console
    from bert_cli.display import training_display
    from bert_cli.electra import stalled_note
    from bert_cli.runs import SummaryWriters, storage_problem
    from bert_cli.training import LoopOptions, run_loop

    task = _task(options, inputs, distribution)
    jit = use_xla(options, distribution)
    loop = LoopOptions(
        train_steps=options.train_steps, steps_per_execution=options.steps_per_execution,
        accumulation_steps=options.accumulation_steps, jit=jit, save_every=options.save_every,
        keep=options.keep, log_every=options.log_every,
        eval_every=(options.eval_every or options.train_steps) if inputs.eval_records else 0,
    )
    init = _initializer(options.init_checkpoint, inputs.config, inputs.lowercase) \
        if options.init_checkpoint is not None else None
    keras.utils.set_random_seed(options.seed)
    writers = SummaryWriters(options.output / "logs", distribution.is_chief)
    records = inputs.records
    console.info(f"[bold]{distribution.description}[/]; global batch {options.batch_size} "
                 f"({distribution.per_replica_batch(options.batch_size)} per replica x "
                 f"{options.accumulation_steps} accumulation), "
                 f"records T={records.max_seq_length} P={records.max_predictions}, {len(records.files)} file(s); "
                 f"XLA {'on' if jit else 'off'}{'' if options.jit is not None else ' (auto)'}, "
                 f"{_precision_note(options)}"
                 + (f", dropout {options.dropout:g}" if options.dropout is not None else "")
                 + f"; lr {options.learning_rate:g}, warmup {options.warmup_steps:,} (recipe {options.recipe})")

    def on_resume(path: str, step: int) -> None:
        console.info(f"resuming from {path} at step {step:,} of {options.train_steps:,}")

    order = chunk_order_note(records.manifest, options.train_steps * options.batch_size)
    if order:
        console.warning(order)

    noted = {"short": False, "stalled": False}
    with training_display(options.train_steps, 0, "pre-training") as display:
        def on_log(step, metrics):
            display.log(step, metrics)
            writers.write("train", step, metrics)
            hint = None if noted["stalled"] or options.objective != "electra" else \
                stalled_note(step, metrics, options.warmup_steps, options.learning_rate)
            if hint:
                noted["stalled"] = True
                display.note(hint)

        def on_eval(step, metrics):
            display.evaluation(step, metrics)
            writers.write("eval", step, metrics)
            if metrics.get("eval_batches", options.eval_batches) < options.eval_batches and not noted["short"]:
                noted["short"] = True
                display.note(f"--eval-batches {options.eval_batches}: the held-out records hold only "
                             f"{metrics['eval_batches']:,} batches ({metrics['eval_examples']:,} examples); "
                             "all of them are evaluated")

        try:
            result = run_loop(task, distribution, loop, options.output / "checkpoints",
                              on_log=on_log, on_eval=on_eval, on_resume=on_resume, init=init)
        except tf.errors.DataLossError as error:
            raise UserError(_corrupt_records(inputs, error)) from None
        except (tf.errors.ResourceExhaustedError, tf.errors.UnknownError) as error:
            problem = storage_problem(error, resumable=True)
            if problem is None:
                raise
            raise UserError(problem) from None
    if result.start_step >= options.train_steps:
        console.info(f"already trained to step {result.start_step:,} (--train-steps {options.train_steps:,}); "
                     "raise --train-steps to train further")
    return result


def chunk_order_note(manifest: dict | None, examples: int) -> str | None:
    """A warning when a run reads less than one pass over records ``bert make-data`` wrote in several
    chunks, else None.

    make-data shuffles the instances of each chunk (``--chunk-size-mb`` of text) and writes the chunks
    one after another, so the records follow the corpus chunk by chunk, each chunk's ``--dupe-factor``
    passes together; the input's shuffle buffer mixes only neighbours. A run shorter than one pass then
    learns from the first part of the corpus alone (``benchmarks/pretraining_helps.py`` met it: 4,950
    updates of 32 read 31 % of 503,423 records made from 17.7 MB in 18 chunks, so about the first 6).
    """
    if not manifest or manifest.get("created_by") != "bert make-data":
        return None
    counts = manifest.get("counts", {})
    chunks, instances = counts.get("chunks", 1), counts.get("instances", 0)
    if chunks <= 1 or examples >= instances:
        return None
    share = examples / instances
    size = (manifest.get("options") or {}).get("chunk_size_mb", 1.0)
    return (f"the records were made in {chunks:,} chunks of about {size:g} MB and follow the corpus chunk by "
            f"chunk; this run reads {examples:,} of their {instances:,} examples ({share:.0%}), so only about "
            f"the first {max(1, round(share * chunks)):,} chunks. For a run shorter than one pass, make the records "
            "with --chunk-size-mb above the corpus size (one chunk, shuffled whole)")


#: Below this many steps XLA's compile time (seconds) outweighs what it saves.
XLA_MIN_STEPS = 100


def use_xla(options: PretrainOptions, distribution) -> bool:
    """``--jit``, or the measured-fastest choice when it is not given.

    Measured on 2-core CPUs (``benchmarks/pretrain.py``): XLA makes an fp32
    step 10-30 % faster (fused element-wise work, one program per step), an
    ELECTRA step too once its Gumbel noise is drawn with ``threefry``
    (:mod:`bert_cli.xla_random`; ``--arms "ours electra --jit" "ours
    electra"``, vocabulary 8,000, L-2_H-128: 93.6 ex/s with XLA, 69.0
    without), but a mixed-precision step on a CPU slower, since XLA's CPU
    backend does not reach oneDNN's bf16 kernels. TPUs compile every step
    anyway.
    """
    if options.jit is not None:
        return options.jit
    if distribution.kind == "tpu" or options.train_steps < XLA_MIN_STEPS:
        return False
    return _on_gpu() or options.precision == "fp32"


def _on_gpu() -> bool:
    """Whether TensorFlow sees a GPU (the speed choices above were measured on CPUs)."""
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


#: Below this hidden size a mixed_bfloat16 step on a CPU is slower than fp32 with XLA.
BF16_MIN_HIDDEN = 256


def resolve_precision(options: PretrainOptions, config, distribution) -> str:
    """``--precision``, or for ``auto`` the measured-fastest choice on this machine.

    Measured on a 2-core Xeon with AMX (``benchmarks/pretrain.py --arms "ours
    --jit" "ours mixed_bfloat16"``, seq 128, batch 32): oneDNN's bf16 matmuls
    run 2-4x fp32's, so a mixed_bfloat16 step without XLA beats fp32 with XLA
    1.12x / 1.23x at hidden 256 (vocabulary 30,522 / 8,000) and 1.61x / 1.72x
    at hidden 512, but is 0.75x / 0.84x at hidden 128, where the element-wise
    work (which XLA fuses) dominates. XLA's CPU backend does not reach the bf16
    kernels. On a 2-core AMD EPYC with AVX-512-BF16 (no AMX), vocabulary 8,000:
    1.33x at hidden 256, 1.50x at 512. On an AVX2 CPU a bf16 matmul ran at 0.7x
    fp32. GPUs and TPUs keep fp32 unless asked.
    """
    if options.precision != "auto":
        return options.precision
    if distribution.kind == "tpu" or config.hidden_size < BF16_MIN_HIDDEN or not cpu_bf16_units() or _on_gpu():
        return "fp32"
    return "mixed_bfloat16"


def _precision_note(options: PretrainOptions) -> str:
    """The run's first line's word on precision: ``mixed_bfloat16 (auto: AMX bf16 units)``."""
    if not options.precision_auto:
        return options.precision
    return f"{options.precision} (auto{': ' + cpu_bf16_units() if options.precision != 'fp32' else ''})"


def cpu_bf16_units(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """This (Linux) CPU's bf16 matmul units, as the run's first line names them, or None: AMX tiles
    (Intel Sapphire Rapids and later) or AVX-512-BF16 (e.g. AMD Zen 4), both measured faster than fp32."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    if "amx_bf16" in flags:
        return "AMX bf16 units"
    return "AVX-512-BF16 units" if "avx512_bf16" in flags else None


def training_config(config, dropout: float | None):
    """The config the pre-training model is built with: ``--dropout`` in place of the model's own."""
    if dropout is None:
        return config
    return dataclasses.replace(config, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)


def _corrupt_records(inputs: PretrainInputs, error) -> str:
    """The one-line message of a read failure mid-run: which file, where, what to do."""
    from data.records import find_corrupt_record_file, tensorflow_reason

    files = inputs.records.files + (inputs.eval_records.files if inputs.eval_records else [])
    found = find_corrupt_record_file(files)
    if found is None:
        return (f"a record file could not be read ({tensorflow_reason(error.message)}); "
                "check the files with bert inspect records")
    name, reason = found
    return f"{name}: corrupt record file ({reason}); make the data again or copy the file again"


def _write_outputs(options: PretrainOptions, inputs: PretrainInputs, result) -> Path | None:
    """The model directory, ``pretrain.json`` (the history of every session of the run) and the curves."""
    from bert_cli.display import plot_curves
    from bert_cli.model_dir import write_model_dir
    from bert_cli.runs import options_json, read_json, write_json

    records = inputs.records
    task = {"task": "pretraining", "next_sentence": inputs.next_sentence, "lowercase": inputs.lowercase,
            "max_seq_length": records.max_seq_length}
    if options.objective == "electra":
        # model.weights.h5 is the generator + discriminator; encoder.weights.h5 the discriminator.
        task.update(objective="electra", masked_lm=False, generator=result.model.generator_shape.to_dict(),
                    generator_hidden_fraction=generator_fraction(options),
                    discriminator_weight=options.discriminator_weight)
    write_model_dir(options.output, inputs.config, inputs.vocab_path, result.model.backbone, result.model, task)
    previous = read_json(options.output / SUMMARY_FILE, missing_ok=True) if result.resumed_from else {}
    history = previous.get("history", []) + result.history
    evaluations = previous.get("evaluations", []) + result.evaluations
    write_json(options.output / SUMMARY_FILE, {
        "task": "pretraining",
        "options": options_json(options),
        "records": {"files": records.files, "max_seq_length": records.max_seq_length,
                    "max_predictions": records.max_predictions},
        "lowercase": inputs.lowercase,
        "final_step": result.final_step,
        "final_metrics": result.history[-1] if result.history else {},
        "evaluation": result.evaluations[-1] if result.evaluations else None,
        "history": history,
        "evaluations": evaluations,
    })
    title = f"{'ELECTRA ' if options.objective == 'electra' else ''}pre-training {options.model}"
    return plot_curves(history, evaluations, options.output / CURVES_FILE, title)


# ----------------------------------------------------------------------------
# `bert evaluate`: held-out pre-training metrics of any model, no training
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
    """Everything ``bert evaluate`` was asked to do (each field declares its option)."""

    model: Path = argument(help="A pre-trained model directory (bert pretrain, bert convert) or an original BERT "
                           "checkpoint directory with its cls/ heads.")
    inputs: tuple[str, ...] = argument(help="Record files, globs or directories (bert make-data or the original "
                                       "script).", cli_type=List[str], parse=as_tuple)
    batch_size: int = option(32, help="Examples per batch.")
    eval_batches: int = option(0, help="Batches to evaluate (0: all the records).")


@dataclasses.dataclass
class EvaluateResult:
    model: Path
    records: RecordsInfo
    metrics: dict
    next_sentence: bool
    seconds: float


def run_evaluation(options: EvaluateOptions) -> EvaluateResult:
    """Held-out MLM (and NSP) metrics of a model on records, pooled over every prediction, without training."""
    import time

    from bert_cli import console
    from bert_cli import strategy as strategies
    from bert_cli.model_dir import read_model_dir
    from bert_cli.training import SumEvaluator
    from data.pretraining_input import pretraining_dataset

    started = time.perf_counter()
    if options.batch_size < 1 or options.eval_batches < 0:
        raise UserError("--batch-size must be at least 1 and --eval-batches 0 (all) or more")
    source = read_model_dir(options.model, "MODEL")
    _check_has_heads(source, options.model)
    records = inspect_records(options.inputs)
    if not records.masked:
        raise UserError("INPUTS: the records hold no masked_lm_* features (ELECTRA-style records); bert evaluate "
                        "scores the stored masks: make records with bert make-data")
    _check_same_vocabulary(source, records)
    next_sentence = records.next_sentence and bool(source.task.get("next_sentence", True))
    distribution = strategies.resolve("default")
    task = PretrainTask(config=source.config, optimizer="adamw", learning_rate=1.0, train_steps=1, warmup_steps=0,
                        train_input=None, next_sentence=next_sentence)

    def dataset(context):
        data = pretraining_dataset(records.files, records.max_seq_length, records.max_predictions,
                                   options.batch_size, training=False, next_sentence=next_sentence,
                                   input_context=context)
        return data.take(options.eval_batches) if options.eval_batches else data

    model = _evaluation_model(source, distribution)
    evaluator = SumEvaluator(distribution, task.compute, task.summarize, task.sums, dataset)
    with console.count_progress("evaluating", None, "examples") as advance:
        metrics = evaluator(model, on_batch=advance)
    if metrics is None:
        raise UserError(f"INPUTS: the record files hold no examples ({', '.join(records.files[:3])})")
    return EvaluateResult(Path(options.model), records, metrics, next_sentence, time.perf_counter() - started)


def _check_has_heads(source, path) -> None:
    """Only a pre-trained model has the MLM head that held-out masked-LM metrics need."""
    if source.kind == "pretraining" and source.objective == "electra":
        raise UserError(f"MODEL {path}: is an ELECTRA model (a discriminator, no masked-LM head of its own); "
                        "evaluate it during pre-training with bert pretrain --objective electra --eval-input")
    if not source.has_masked_lm_heads:
        raise UserError(f"MODEL {path}: has no masked-LM head (task {source.kind!r}); bert evaluate needs a "
                        "pre-trained model directory or an original checkpoint with its cls/ heads")


def _check_same_vocabulary(source, records: RecordsInfo) -> None:
    from data.tokenization import Vocabulary

    recorded = (records.manifest or {}).get("vocab_sha256")
    if recorded and recorded != Vocabulary.load(source.vocab_path).sha256:
        raise UserError(f"INPUTS: the records were made with another vocabulary than {source.vocab_path}; "
                        "make them with the model's vocab.txt (bert make-data --vocab MODEL/vocab.txt)")


def _evaluation_model(source, distribution):
    """The model directory's pre-training model (encoder and heads) with its weights."""
    from models.pretraining import build_pretrainer

    with distribution.strategy.scope():
        model = build_pretrainer(source.config, next_sentence=bool(source.task.get("next_sentence", True)))
    try:
        model.load_weights(str(source.model_weights))
    except (ValueError, OSError) as error:
        raise UserError(f"MODEL {source.path}: its weights do not fit its bert_config.json ({error})") from None
    return model


def _same_heads(source, model) -> bool:
    """Whether ``source``'s ``model.weights.h5`` is a model of ``model``'s exact kind (heads included)."""
    if source.kind != "pretraining" or not source.model_weights.is_file():
        return False
    shape = getattr(model, "generator_shape", None)
    if shape is not None:
        return source.objective == "electra" and source.task.get("generator") == shape.to_dict()
    return source.has_masked_lm_heads and source.task.get("next_sentence", True) == model.next_sentence


def _initializer(path: Path, config, lowercase: bool | None = None):
    """Loads another pre-trained model's encoder weights (domain adaptation, phase two at length 512).

    From a pre-training directory (or an original checkpoint with its ``cls/``
    heads) the MLM and NSP heads come along too, so pre-training continues where
    that run stopped, with a fresh optimizer. ``lowercase`` is the records'
    casing; a model trained with the other casing is refused.
    """
    from bert_cli.model_dir import read_model_dir

    source = read_model_dir(path, "--init-checkpoint")
    if source.config != config:
        raise UserError(f"--init-checkpoint {path}: its config differs from --model's; pass --model {path} to "
                        "continue with its shape")
    if lowercase is not None and source.lowercase is not None and lowercase != source.lowercase:
        cases = {True: "uncased (lower-cased)", False: "cased"}
        raise UserError(f"--init-checkpoint {path}: was trained {cases[source.lowercase]} but the records were made "
                        f"{cases[lowercase]}; make the records with the model's casing")
    def init(model) -> None:
        # Heads come along only when they are the same heads: BERT's with NSP on both sides or on
        # neither, or an ELECTRA generator of the same shape; else the encoder alone.
        if _same_heads(source, model):
            model.load_weights(str(source.model_weights))
        else:
            model.backbone.load_weights(str(source.encoder_weights))

    return init
