"""The fine-tuning runner every recipe shares (``bert finetune classify``, ``tag`` and ``squad``).

What differs between the recipes (files, features, head, loss, metrics,
prediction files) is a :class:`Recipe`; everything else is here, once:

* the starting point: ``--init MODEL_DIR`` (a pre-trained or same-task model
  directory) or ``--model PRESET --vocab vocab.txt`` for a random-init baseline;
* options checks, the output directory (refusing to mix runs, ``--overwrite``),
  resume from ``OUTPUT/checkpoints`` by rerunning the same command;
* training with :func:`bert_cli.training.run_loop` (every strategy, precision,
  accumulation), the original schedule: AdamW, linear warmup over
  ``--warmup-proportion`` of the steps, linear decay to 0;
* evaluation on ``--dev`` after every epoch, the best model by ``--metric``
  kept (``checkpoints/best-STEP.weights.h5``), optional early stopping;
* the outputs: the model directory (``task.json`` written last, so it marks a
  complete one), prediction files, ``finetune.json``, curves, TensorBoard logs.

An epoch is ``ceil(train examples / (batch size x accumulation steps))``
updates; the training stream is reshuffled and repeated, as the original's
``run_classifier.py`` does, so an epoch sees each example about once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Callable, Protocol

from bert_cli.errors import UserError
from bert_cli.model_dir import RUN_FILE
from bert_cli.training import PRECISIONS

SUMMARY_FILE = "finetune.json"
PROGRESS_FILE = "progress.json"
CURVES_FILE = "training_curves.png"
# Metrics for which lower is better; every other --metric is maximised.
LOWER_IS_BETTER = frozenset({"loss"})


class Recipe(Protocol):
    """What one fine-tuning task adds to the shared runner.

    Splits are ``"train"``, ``"dev"`` and ``"test"``; arrays are dicts of numpy
    arrays with the examples (or windows) on the first axis.
    """

    #: ``task.json``'s "task" and the command's name: "classify", "tag", "squad".
    task: str
    #: Additive quantities ``compute`` returns; "loss" first.
    sums: tuple[str, ...]
    #: The input files by split (None where not given).
    files: dict[str, Path | None]
    #: What a training row is, for messages: "examples", "windows", "features".
    unit: str

    def read(self) -> None:
        """Reads and checks the files (no TensorFlow work: runs before the strategy exists)."""

    @property
    def metrics(self) -> tuple[str, ...]:
        """Held-out metrics ``--metric`` may name (after ``read``); the first is the default."""

    def featurize(self, tokenize: Callable, vocab, max_seq_length: int) -> None:
        """Tokenizes the files read (``tokenize``: texts -> token ids, the bound ``Tokenizer.encode``;
        a recipe that needs more of the tokenizer, as SQuAD needs its offsets, uses ``tokenize.__self__``)."""

    def arrays(self, split: str) -> dict | None:
        """The model inputs (and labels) of a split, None when there is no such file."""

    def build_model(self, config, dtype: str | None):
        """A freshly built keras model with a ``backbone`` attribute."""

    def compute(self, model, batch, training: bool) -> dict:
        """Additive quantities of one training batch (see :class:`bert_cli.training.Task`)."""

    def summarize(self, totals: dict) -> dict:
        """Training metrics from summed quantities."""

    def outputs(self, model, batch) -> dict:
        """What prediction keeps of one batch: tensors with the batch on the first axis."""

    def evaluate(self, outputs: dict) -> dict[str, float]:
        """Dev metrics (``loss`` included) from every dev example's outputs."""

    def details(self, outputs: dict) -> dict:
        """Per-class or per-type figures for the report and ``finetune.json``."""

    def write_predictions(self, split: str, outputs: dict, path: Path) -> None:
        """Writes a split's predictions to ``path``."""

    def prediction_file(self, split: str) -> str:
        """The file name of a split's predictions in the output directory."""

    def task_file(self) -> dict:
        """Task-specific keys of ``task.json`` (labels, columns, scheme...)."""

    def same_head(self, task: dict) -> bool:
        """Whether a model directory with this ``task.json`` has exactly this recipe's head."""

    def signature(self) -> dict:
        """What must match for a rerun to resume (labels, columns...)."""

    def describe(self) -> list[tuple[str, str]]:
        """Rows for the results table: the task and its data."""


def model_inputs(batch) -> dict:
    """The encoder inputs of a featurised batch, under the names the keras-hub backbone takes."""
    return {"token_ids": batch["input_ids"], "segment_ids": batch["segment_ids"], "padding_mask": batch["input_mask"]}


@dataclasses.dataclass(frozen=True)
class FinetuneOptions:
    """The options every fine-tuning command shares (names as the CLI options)."""

    output: Path
    init: Path | None = None
    model: str | None = None
    vocab: Path | None = None
    lowercase: bool | None = None
    max_seq_length: int = 128
    epochs: float = 3.0
    learning_rate: float = 5e-5
    batch_size: int = 32
    warmup_proportion: float = 0.1
    weight_decay: float = 0.01
    accumulation_steps: int = 1
    precision: str = "fp32"
    jit: bool = False
    strategy: str = "auto"
    tpu: str | None = None
    metric: str | None = None
    early_stopping: int = 0
    log_every: int = 0
    seed: int = 12345
    overwrite: bool = False


@dataclasses.dataclass
class FinetuneResult:
    output: Path
    config: object
    parameters: int
    init: str
    distribution_description: str
    start_step: int
    final_step: int
    train_steps: int
    steps_per_epoch: int
    resumed_from: str | None
    stopped_early: int | None
    metric: str
    best: dict | None
    dev: dict | None
    details: dict | None
    final_train: dict
    files: dict[str, Path]
    rows: list[tuple[str, str]]
    seconds: float


# ----------------------------------------------------------------------------
# Checks that need no TensorFlow
# ----------------------------------------------------------------------------


def check_options(options: FinetuneOptions) -> None:
    for name in ("batch_size", "accumulation_steps"):
        if getattr(options, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(options, name)}")
    if not options.epochs > 0:
        raise UserError(f"--epochs must be positive, got {options.epochs}")
    if not options.learning_rate > 0:
        raise UserError(f"--learning-rate must be positive, got {options.learning_rate}")
    if not 0.0 <= options.warmup_proportion < 1.0:
        raise UserError(f"--warmup-proportion must be in [0, 1), got {options.warmup_proportion}")
    if options.early_stopping < 0:
        raise UserError(f"--early-stopping must be 0 (off) or a number of epochs, got {options.early_stopping}")
    if options.log_every < 0:
        raise UserError(f"--log-every must be 0 (automatic) or positive, got {options.log_every}")
    if options.precision not in PRECISIONS:
        raise UserError(f"--precision {options.precision!r}: use {', '.join(PRECISIONS)}")
    if options.max_seq_length < 4:
        raise UserError(f"--max-seq-length must be at least 4, got {options.max_seq_length}")


@dataclasses.dataclass
class Start:
    """Where fine-tuning starts: a config, a vocabulary, casing, and maybe a model directory's weights."""

    config: object
    vocab_path: Path
    lowercase: bool | None
    source: object | None  # bert_cli.model_dir.ModelDir
    whole_model: bool
    description: str


def resolve_start(options: FinetuneOptions, recipe: Recipe) -> Start:
    """``--init MODEL_DIR`` or ``--model PRESET --vocab vocab.txt``; refuses other tasks' fine-tuned models."""
    from bert_cli.model_dir import read_model_dir

    if options.init is not None and options.model is not None:
        raise UserError("give --init MODEL_DIR (start from a trained model) or --model PRESET (random init), not both")
    if options.init is None:
        if options.model is None:
            raise UserError(
                "give --init MODEL_DIR (a model directory from bert pretrain or bert convert) or, for a "
                "randomly initialised baseline, --model PRESET with --vocab vocab.txt"
            )
        if options.vocab is None:
            raise UserError(f"--model {options.model} needs --vocab vocab.txt (a random-init model has no vocabulary)")
        from bert_cli.pretraining import resolve_config
        from data.tokenization import Vocabulary

        vocab = Vocabulary.load(options.vocab)
        config = resolve_config(options.model, len(vocab))
        return Start(config, Path(options.vocab), None, None, False, f"random init ({options.model})")
    if options.vocab is not None:
        raise UserError(f"--vocab: --init {options.init} brings its own vocab.txt; leave --vocab out")
    source = read_model_dir(options.init, "--init")
    if source.kind not in ("pretraining", recipe.task):
        raise UserError(
            f"--init {options.init}: is a fine-tuned {source.kind!r} model; bert finetune {recipe.task} starts from "
            f"a pre-trained model directory (bert pretrain, bert convert) or a {recipe.task} model"
        )
    if Path(options.output).resolve() == source.path.resolve():
        raise UserError(f"--output {options.output}: is the --init directory; write the fine-tuned model elsewhere")
    whole = source.kind == recipe.task and recipe.same_head(source.task) and source.model_weights.is_file()
    what = f"{options.init} ({source.kind}{', whole model' if whole else ''})"
    return Start(source.config, source.vocab_path, source.lowercase, source, whole, what)


# Everything a fine-tuning run may leave in its output directory.
_OUTPUT_NAMES = ("checkpoints", "logs", "bert_config.json", "vocab.txt", "vocab.json", "encoder.weights.h5",
                 "model.weights.h5", "task.json", SUMMARY_FILE, CURVES_FILE, RUN_FILE)


# A folder a recipe may fill before the run starts (SQuAD's features cache, when
# the data's own folder is read-only): it does not make an output "another run's".
CACHE_DIR = "cache"


def check_output(output: Path, overwrite: bool) -> None:
    """Refuses an output that is a file, or a non-empty directory that no fine-tuning run wrote."""
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output}: exists and is not a directory")
    if output.is_dir() and not overwrite and not (output / RUN_FILE).is_file() \
            and any(path.name != CACHE_DIR for path in output.iterdir()):
        raise UserError(
            f"--output {output}: is not empty and holds no fine-tuning run; choose a new directory "
            "(or pass --overwrite to replace the files a run writes there)"
        )


def _write_json(path: Path, value) -> None:
    from data.textio import atomic_path

    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


# ----------------------------------------------------------------------------
# Inputs and prediction under the strategy
# ----------------------------------------------------------------------------


def train_input(arrays: dict, micro_batch: int, seed: Callable[[], int]):
    """``input_context -> dataset``: the training arrays shuffled, repeated, in per-replica batches."""
    import tensorflow as tf

    def make(context):
        dataset = tf.data.Dataset.from_tensor_slices(arrays)
        if context is not None and context.num_input_pipelines > 1:
            dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
        size = len(next(iter(arrays.values())))
        dataset = dataset.shuffle(size, seed=seed(), reshuffle_each_iteration=True).repeat()
        return dataset.batch(micro_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    return make


class Predictor:
    """Runs ``outputs(model, batch)`` over a split under the strategy; returns every example's outputs in order.

    The split is padded to whole global batches (TPUs need static shapes) with
    copies of its first example, each example carries its index through the
    replicas, and the outputs of all replicas are gathered and put back in
    order, so the result does not depend on how the strategy shards batches.
    """

    def __init__(self, distribution, outputs: Callable, global_batch: int) -> None:
        self._distribution = distribution
        self._outputs = outputs
        self._global_batch = global_batch
        self._functions: dict[int, Callable] = {}

    def _function(self, model):
        import tensorflow as tf

        strategy = self._distribution.strategy
        if id(model) not in self._functions:
            def replica(batch):
                values = dict(self._outputs(model, batch))
                values["index"] = batch["index"]
                return values

            @tf.function
            def step(batch):
                values = strategy.run(replica, args=(batch,))
                return {key: strategy.gather(value, axis=0) for key, value in values.items()}

            self._functions[id(model)] = step
        return self._functions[id(model)]

    def __call__(self, model, arrays: dict) -> dict:
        import numpy as np
        import tensorflow as tf

        count = len(next(iter(arrays.values())))
        padded_count = -(-count // self._global_batch) * self._global_batch
        padded = {key: np.concatenate([value, np.repeat(value[:1], padded_count - count, axis=0)])
                  for key, value in arrays.items()}
        padded["index"] = np.concatenate([np.arange(count), np.full(padded_count - count, -1)]).astype(np.int32)
        dataset = tf.data.Dataset.from_tensor_slices(padded).batch(self._global_batch, drop_remainder=True)
        strategy = self._distribution.strategy
        step = self._function(model)
        collected: dict[str, list] = {}
        for batch in strategy.experimental_distribute_dataset(dataset):
            for key, value in step(batch).items():
                collected.setdefault(key, []).append(value.numpy())
        merged = {key: np.concatenate(values) for key, values in collected.items()}
        index = merged.pop("index")
        real = np.flatnonzero(index >= 0)
        _, first = np.unique(index[real], return_index=True)  # in index order, each example once
        keep = real[first]
        return {key: value[keep] for key, value in merged.items()}


@dataclasses.dataclass
class FinetuneTask:
    """A :class:`bert_cli.training.Task` made of a recipe and the shared schedule; evaluates itself."""

    recipe: object
    config: object
    learning_rate: float
    train_steps: int
    warmup_steps: int
    train_input: Callable
    weight_decay: float = 0.01
    precision: str = "fp32"
    on_evaluate: Callable | None = None
    model: object = None

    @property
    def sums(self) -> tuple[str, ...]:
        # Real (unpadded) tokens too, for the loop's tokens/second.
        return tuple(self.recipe.sums) + ("tokens",)

    def build(self):
        import keras

        from models.optimization import build_optimizer

        dtype = None if self.precision == "fp32" else self.precision
        model = self.recipe.build_model(self.config, dtype)
        optimizer = build_optimizer("adamw", self.learning_rate, self.train_steps, self.warmup_steps,
                                    self.weight_decay)
        if self.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        self.model = model
        return model, optimizer

    def train_dataset(self, input_context):
        return self.train_input(input_context)

    def eval_dataset(self, input_context):
        return None

    def compute(self, model, batch, training: bool) -> dict:
        from keras import ops

        values = dict(self.recipe.compute(model, batch, training))
        values["tokens"] = ops.sum(ops.cast(batch["input_mask"], "float32"))
        return values

    def summarize(self, totals: dict) -> dict:
        return self.recipe.summarize(totals)

    def evaluate(self, model) -> dict | None:
        return self.on_evaluate(model) if self.on_evaluate else None


# ----------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------


def _better(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if metric in LOWER_IS_BETTER else value > best


def run_finetuning(recipe: Recipe, options: FinetuneOptions) -> FinetuneResult:
    """Fine-tunes ``recipe``'s task: checks everything, trains (or resumes), writes the model directory."""
    from bert_cli import console, strategy as strategies
    from bert_cli.display import plot_curves, training_display
    from bert_cli.model_dir import prepare_run_output, write_model_dir
    from bert_cli.training import LoopOptions, run_loop

    check_options(options)
    output = Path(options.output)
    start = resolve_start(options, recipe)
    if options.max_seq_length > start.config.max_position_embeddings:
        raise UserError(f"--max-seq-length {options.max_seq_length} is more than the model's "
                        f"max_position_embeddings {start.config.max_position_embeddings}")
    recipe.read()
    metric = options.metric or recipe.metrics[0]
    choices = tuple(recipe.metrics) + ("loss",)
    if metric not in choices:
        raise UserError(f"--metric {metric!r} is not a metric of this task; use one of {', '.join(choices)}")
    has_dev = recipe.files.get("dev") is not None
    if options.early_stopping and not has_dev:
        raise UserError("--early-stopping needs --dev: it stops when the dev metric stops improving")
    prediction_files = tuple(recipe.prediction_file(split) for split in ("dev", "test"))
    check_output(output, options.overwrite)

    # The strategy before any other TensorFlow work (multi-worker and TPU set-up require it).
    distribution = strategies.resolve(options.strategy, options.tpu)
    per_replica = distribution.per_replica_batch(options.batch_size)

    import keras
    import tensorflow as tf

    from data.tokenization import Tokenizer, Vocabulary, resolve_lowercase

    vocab = Vocabulary.load(start.vocab_path)
    if len(vocab) != start.config.vocab_size:
        raise UserError(f"{start.vocab_path}: {len(vocab)} tokens but the model's vocab_size is "
                        f"{start.config.vocab_size}; use the vocabulary the model was trained with")
    lowercase = resolve_lowercase(vocab, options.lowercase if options.lowercase is not None else start.lowercase)
    if start.lowercase is not None and options.lowercase is not None and options.lowercase != start.lowercase:
        console.warning(f"--init {options.init} was trained {'uncased' if start.lowercase else 'cased'}; "
                        f"fine-tuning {'uncased' if lowercase else 'cased'} as asked")
    tokenizer = Tokenizer(vocab, lowercase)
    recipe.featurize(tokenizer.encode, vocab, options.max_seq_length)
    train_arrays = recipe.arrays("train")
    examples = len(next(iter(train_arrays.values())))
    update_batch = options.batch_size * options.accumulation_steps
    steps_per_epoch = max(1, math.ceil(examples / update_batch))
    train_steps = max(1, round(options.epochs * steps_per_epoch))
    warmup_steps = int(train_steps * options.warmup_proportion)

    signature = {
        "task": recipe.task,
        "config": start.config.to_dict(),
        "vocab_sha256": vocab.sha256,
        "lowercase": lowercase,
        "init": str(Path(options.init).resolve()) if options.init else f"random:{options.model}",
        "recipe": recipe.signature(),
        "batch_size": options.batch_size,
        "accumulation_steps": options.accumulation_steps,
        "max_seq_length": options.max_seq_length,
        "seed": options.seed,
    }
    if distribution.is_chief:
        prepare_run_output(output, signature, options.overwrite, _OUTPUT_NAMES + prediction_files)
    checkpoints = output / "checkpoints"
    progress_path = checkpoints / PROGRESS_FILE
    progress = _read_json(progress_path) if (checkpoints / "checkpoint").is_file() else {}
    stopped_early = progress.get("stopped_early")
    loop_steps = min(train_steps, stopped_early) if stopped_early else train_steps

    predictor = Predictor(distribution, recipe.outputs, per_replica * distribution.replicas)
    dev_arrays = recipe.arrays("dev")
    task = FinetuneTask(
        recipe=recipe, config=start.config, learning_rate=options.learning_rate, train_steps=train_steps,
        warmup_steps=warmup_steps, weight_decay=options.weight_decay, precision=options.precision,
        train_input=train_input(train_arrays, per_replica * options.accumulation_steps,
                                lambda: shuffle_seed["value"]),
        on_evaluate=(lambda model: recipe.evaluate(predictor(model, dev_arrays))) if has_dev else None,
    )
    log_every = options.log_every or max(1, steps_per_epoch // 5)
    loop = LoopOptions(
        train_steps=loop_steps, accumulation_steps=options.accumulation_steps, jit=options.jit,
        save_every=steps_per_epoch, keep=2, log_every=log_every, eval_every=steps_per_epoch if has_dev else 0,
    )

    def init(model) -> None:
        if start.source is None:
            return
        try:
            if start.whole_model:
                model.load_weights(str(start.source.model_weights))
            else:
                model.backbone.load_weights(str(start.source.encoder_weights))
        except (ValueError, OSError) as error:
            raise UserError(f"--init {options.init}: its weights do not fit its bert_config.json ({error})") from None

    keras.utils.set_random_seed(options.seed)
    shuffle_seed = {"value": options.seed}
    writers = {kind: tf.summary.create_file_writer(str(output / "logs" / kind)) for kind in ("train", "eval")} \
        if distribution.is_chief else {}

    def summaries(kind: str, step: int, metrics: dict) -> None:
        if kind in writers:
            with writers[kind].as_default(step=step):
                for key, value in metrics.items():
                    if key != "step":
                        tf.summary.scalar(key, value)

    state = {
        "history": [],
        "evaluations": [],
        "best": None,
    }

    def on_resume(path: str, step: int) -> None:
        shuffle_seed["value"] = options.seed + step
        state["history"] = [h for h in progress.get("history", []) if h["step"] <= step]
        state["evaluations"] = [e for e in progress.get("evaluations", []) if e["step"] <= step]
        best = progress.get("best")
        if best and best["step"] <= step and (checkpoints / best["file"]).is_file():
            state["best"] = best
        console.info(f"resuming from {path} at step {step:,} of {train_steps:,}")

    def save_progress(stopped: int | None = None) -> None:
        if distribution.is_chief:
            _write_json(progress_path, {"history": state["history"], "evaluations": state["evaluations"],
                                        "best": state["best"], "stopped_early": stopped})

    console.info(
        f"[bold]{distribution.description}[/]; {examples:,} training {recipe.unit}, batch {update_batch} "
        f"({per_replica} per replica x {distribution.replicas} x {options.accumulation_steps} accumulation), "
        f"{steps_per_epoch:,} steps per epoch, {train_steps:,} steps"
    )
    with training_display(loop_steps, 0, f"fine-tuning {recipe.task}") as display:
        def on_log(step: int, metrics: dict) -> None:
            display.log(step, metrics)
            summaries("train", step, metrics)
            state["history"].append(metrics)
            save_progress()

        def on_eval(step: int, metrics: dict) -> bool:
            metrics["epoch"] = round(step / steps_per_epoch, 2)
            display.evaluation(step, metrics)
            summaries("eval", step, {k: v for k, v in metrics.items() if k != "epoch"})
            state["evaluations"].append(metrics)
            best = state["best"]
            if _better(metric, metrics[metric], best["value"] if best else None):
                if distribution.is_chief:
                    name = f"best-{step}.weights.h5"
                    temporary = checkpoints / f".{name}.tmp.weights.h5"
                    task.model.save_weights(str(temporary))
                    temporary.replace(checkpoints / name)
                state["best"] = {"step": step, "epoch": metrics["epoch"], "metric": metric,
                                 "value": metrics[metric], "file": f"best-{step}.weights.h5"}
                save_progress()
                _remove_old_best(checkpoints, state["best"]["file"], distribution.is_chief)
                return False
            patience = options.early_stopping
            since_best = sum(1 for e in state["evaluations"] if e["step"] > state["best"]["step"])
            stop = bool(patience) and since_best >= patience and step < train_steps
            if stop:
                display.note(f"no better dev {metric} for {since_best} epoch(s): stopping early at step {step:,}")
            save_progress(step if stop else None)
            return stop

        try:
            result = run_loop(task, distribution, loop, checkpoints, on_log=on_log, on_eval=on_eval,
                              on_resume=on_resume, init=init)
        except tf.errors.ResourceExhaustedError as error:
            raise UserError(f"out of memory ({error.message.splitlines()[0][:120]}); lower --batch-size or "
                            "--max-seq-length, or use --accumulation-steps") from None
    model = result.model
    if result.start_step >= loop_steps and result.start_step > 0:
        console.info(
            f"already trained to step {result.start_step:,}"
            + (f" (stopped early at {stopped_early:,})" if stopped_early else "")
            + "; pass --overwrite to train again" + ("" if stopped_early else " or raise --epochs")
        )
    if result.stopped_early:
        stopped_early = result.final_step
    save_progress(stopped_early)

    best = state["best"]
    if best is not None:
        model.load_weights(str(checkpoints / best["file"]))
    files: dict[str, Path] = {}
    dev_metrics = details = None
    outputs = {}
    for split in ("dev", "test"):
        arrays = recipe.arrays(split)
        if arrays is not None:
            outputs[split] = predictor(model, arrays)
    if "dev" in outputs:
        dev_metrics = recipe.evaluate(outputs["dev"])
        details = recipe.details(outputs["dev"])
    history, evaluations = state["history"], state["evaluations"]
    if distribution.is_chief:
        from data.textio import atomic_path

        for split, values in outputs.items():
            path = output / recipe.prediction_file(split)
            with atomic_path(path) as temporary:
                recipe.write_predictions(split, values, temporary)
            files[f"{split} predictions"] = path
        curves = plot_curves(history, evaluations, output / CURVES_FILE, f"fine-tuning {recipe.task}")
        if curves:
            files["curves"] = curves
        task_file = {
            "task": recipe.task,
            **recipe.task_file(),
            "max_seq_length": options.max_seq_length,
            "lowercase": lowercase,
            "metric": {"name": metric, **({"value": dev_metrics[metric], "step": best["step"]}
                                          if dev_metrics and best else {})},
        }
        _write_json(output / SUMMARY_FILE, {
            "task": recipe.task,
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(options).items()},
            "init": start.description,
            "steps_per_epoch": steps_per_epoch,
            "train_steps": train_steps,
            "final_step": result.final_step,
            "stopped_early": stopped_early,
            "best": best,
            "dev": dev_metrics,
            "details": details,
            "history": history,
            "evaluations": evaluations,
        })
        # The task file last: its presence marks a complete model directory.
        write_model_dir(output, start.config, start.vocab_path, model.backbone, model, task_file)
    parameters = int(sum(int(tf.size(v)) for v in model.weights))
    return FinetuneResult(
        output=output, config=start.config, parameters=parameters, init=start.description,
        distribution_description=distribution.description, start_step=result.start_step,
        final_step=result.final_step, train_steps=train_steps, steps_per_epoch=steps_per_epoch,
        resumed_from=result.resumed_from, stopped_early=stopped_early, metric=metric, best=best,
        dev=dev_metrics, details=details, final_train=history[-1] if history else {}, files=files,
        rows=recipe.describe(), seconds=result.seconds,
    )


def _remove_old_best(checkpoints: Path, keep: str, is_chief: bool) -> None:
    if not is_chief:
        return
    for path in checkpoints.glob("best-*.weights.h5"):
        if path.name != keep:
            path.unlink(missing_ok=True)



def file_sha256(path: Path) -> str:
    """For recipes' signatures: the training file's content, so a changed file is not resumed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
