"""The fine-tuning runner every task shares (``bert finetune classify``, ``tag`` and ``squad``).

What differs between the tasks is a :class:`Recipe` (``bert_cli.tasks``); the
starting point, checks, training, evaluation and outputs are here, once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path
from typing import Callable, Protocol

from bert_cli.commands.options import SCALE, START, TRAIN, option
from bert_cli.errors import UserError
from bert_cli.runs import RUN_FILE, check_precision

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
    #: The arrays with a position axis ([N, T, ...]), cut with the padding of each training batch.
    token_keys: tuple[str, ...]

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
    """The options every fine-tuning command shares (names as the CLI options; each field declares its option)."""

    output: Path = option(help="Model directory to write (weights, task.json, predictions, curves).",
                          flags=("--output", "-o"))
    init: Path | None = option(None, help="Model to start from: a model directory (bert pretrain / bert convert), "
                               "an original BERT checkpoint or a Hugging Face directory.",
                               panel=START)
    model: str | None = option(None, help="Random-init baseline: a preset (tiny, mini, base, L-4_H-256, ...) or "
                               "bert_config.json; needs --vocab.", panel=START)
    vocab: Path | None = option(None, help="vocab.txt for --model (with --init the model's own is used).",
                                panel=START)
    lowercase: bool | None = option(None, help="Casing of the tokenizer; default: as the model/vocabulary was "
                                    "trained.", flags=("--lowercase/--cased",), panel=START, show_default=False)
    max_seq_length: int = option(128, help="Longest input in word pieces, [CLS]/[SEP] included.", panel=TRAIN)
    epochs: float = option(3.0, help="Passes over the training file (fractions allowed).", panel=TRAIN)
    learning_rate: float = option(5e-5, help="Peak learning rate (the paper searched 2e-5 to 5e-5).", panel=TRAIN)
    batch_size: int = option(32, help="Global batch size (all replicas together).", panel=TRAIN)
    warmup_proportion: float = option(0.1, help="Share of the steps with linear learning-rate warmup.", panel=TRAIN)
    weight_decay: float = option(0.01, help="Decoupled weight decay (never on LayerNorm and biases).", panel=TRAIN)
    accumulation_steps: int = option(1, help="Micro-batches per update (gradient accumulation).", panel=TRAIN)
    precision: str = option("fp32", help="fp32, mixed_bfloat16 or mixed_float16 (with loss scaling).", panel=SCALE)
    jit: bool = option(False, help="Compile the step with XLA.", flags=("--jit/--no-jit",), panel=SCALE)
    strategy: str = option("auto", help="auto, default, mirrored, multiworker (TF_CONFIG) or tpu.", panel=SCALE)
    tpu: str | None = option(None, help="TPU name, or 'local' on a TPU VM.", panel=SCALE)
    metric: str | None = option(None, help="Dev metric that picks the best epoch; default: the task's first.",
                                panel=TRAIN)
    early_stopping: int = option(0, help="Stop after N epochs without a better dev --metric (0: off).", panel=TRAIN)
    log_every: int = option(0, help="Print metrics every N steps (0: five times an epoch).")
    seed: int = option(12345, help="Random seed (initialisation, dropout, shuffling).", panel=TRAIN)
    group_by_length: bool = option(
        False, help="Batch examples of similar length (sorted within windows of 50 batches of the shuffled "
        "order): far less padding on short texts, batches less random.", flags=("--group-by-length",),
        panel=TRAIN)
    overwrite: bool = option(False, help="Start over in an --output that holds another run.")


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
    check_precision(options.precision)
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
    from data.textio import writable_directory

    writable_directory(output, "--output")  # a real write now, not after featurising


# ----------------------------------------------------------------------------
# Inputs and prediction under the strategy
# ----------------------------------------------------------------------------


#: Batches are cut to their longest example rounded up to this many positions (few shapes for XLA to compile).
TRIM_MULTIPLE = 16


def trim_batch(batch: dict, token_keys: tuple[str, ...], multiple: int = TRIM_MULTIPLE) -> dict:
    """The batch without the padding columns no example of it reaches (what the update is does not change).

    Arrays are padded to the longest example of the whole split; a batch of
    short examples then spends most of its time on padding (72 % of the
    positions of SST-2 at 48 pieces). Every array in ``token_keys`` ([B, T,
    ...]) is cut to the batch's last real position rounded up to ``multiple``
    (at most T); the padding mask keeps the encoder's outputs at real
    positions the same, and the cut positions weigh nothing in any loss.
    """
    import tensorflow as tf

    mask = batch["input_mask"]  # [B, T]
    full = tf.shape(mask, out_type=tf.int64)[1]
    used = tf.where(tf.reduce_any(tf.not_equal(mask, 0), axis=0))  # [U, 1]: the columns some example reaches
    last = tf.reduce_max(tf.concat([used[:, 0], [0]], 0)) + 1
    width = tf.minimum(full, -(-last // multiple) * multiple)
    return {key: value[:, :width] if key in token_keys else value for key, value in batch.items()}


#: --group-by-length sorts the shuffled order by length within windows of this many global batches.
GROUP_BATCHES = 50


def example_lengths(mask):
    """[N]: one past each example's last real position in ``input_mask`` [N, T] (0 for none)."""
    import numpy as np

    real = mask != 0
    return np.where(real.any(axis=1), mask.shape[1] - np.argmax(real[:, ::-1], axis=1), 0).astype(np.int64)


def train_input(arrays: dict, micro_batch: int, seed: int, token_keys: tuple[str, ...] | None = None,
                group_by_length: bool = False):
    """``(input_context, start_step) -> dataset``: the training arrays shuffled anew each epoch, in per-replica
    batches, starting where an uninterrupted run is at update ``start_step``; with ``token_keys`` each batch
    is cut to its longest example (:func:`trim_batch`; not on TPUs, which need one shape).

    The order is a pure function of the seed: epoch ``e`` is the permutation
    ``stateless_shuffle(range(N), seed=[seed, e])`` of the examples, the
    epochs follow each other, and input pipeline ``p`` of ``n`` takes every
    ``n``-th index from ``p`` on. So a resumed run starts the index stream at
    the examples already used and sees exactly the batches the interrupted run
    would have (no replay, no skip over data). ``group_by_length`` (as
    Hugging Face's ``group_by_length``) then sorts each window of
    :data:`GROUP_BATCHES` global batches of that permutation longest first,
    so a batch holds examples of similar length and little padding.
    """
    import tensorflow as tf

    size = len(next(iter(arrays.values())))
    lengths, width = None, 0  # [N] with --group-by-length, and T, which no length exceeds
    if group_by_length:
        lengths, width = tf.constant(example_lengths(arrays["input_mask"])), int(arrays["input_mask"].shape[1])

    from bert_cli.training import consumed_per_pipeline

    def make(context, start_step: int = 0):
        pipelines = context.num_input_pipelines if context is not None else 1
        pipeline = context.input_pipeline_id if context is not None else 0
        used = consumed_per_pipeline(context, start_step, micro_batch) * pipelines + pipeline  # global position
        first_epoch, offset = divmod(used, size)

        def epoch(e):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(size, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), e]))  # [N]
            if lengths is not None:
                window = tf.range(size, dtype=tf.int64) // (GROUP_BATCHES * micro_batch * pipelines)  # [N]
                key = window * (width + 1) + (width - tf.gather(lengths, order))  # longest first in each window
                order = tf.gather(order, tf.argsort(key, stable=True))
            return tf.data.Dataset.from_tensor_slices(order)

        indices = tf.data.Dataset.range(first_epoch, tf.int64.max).flat_map(epoch).skip(offset)
        indices = indices.shard(pipelines, 0) if pipelines > 1 else indices  # every n-th from this pipeline's start
        columns = {key: tf.constant(value) for key, value in arrays.items()}
        batches = indices.batch(micro_batch, drop_remainder=True)

        def gather(index):
            batch = {key: tf.gather(value, index) for key, value in columns.items()}
            return trim_batch(batch, token_keys) if token_keys else batch

        batches = batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return batches.prefetch(tf.data.AUTOTUNE)

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
    """A :class:`bert_cli.training.Task` made of a recipe and the shared schedule; evaluates itself on dev."""

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
        from bert_cli.runs import model_dtype, with_loss_scaling
        from models.optimization import build_optimizer

        model = self.recipe.build_model(self.config, model_dtype(self.precision))
        optimizer = build_optimizer("adamw", self.learning_rate, self.train_steps, self.warmup_steps,
                                    self.weight_decay)
        self.model = model
        return model, with_loss_scaling(optimizer, self.precision)

    def train_dataset(self, input_context, start_step: int):
        return self.train_input(input_context, start_step)

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
# Best weights, early stopping and progress.json
# ----------------------------------------------------------------------------


class BestKeeper:
    """The history of a run and its best dev evaluation, kept in ``checkpoints/progress.json``.

    The best weights are saved as ``checkpoints/best-STEP.weights.h5`` (one
    file, the older ones removed); ``progress.json`` records the history, the
    evaluations, the best and whether the run stopped early, so a resumed run
    picks up where the interrupted one was.
    """

    def __init__(self, checkpoints: Path, metric: str, is_chief: bool) -> None:
        from bert_cli.runs import read_json

        self.checkpoints, self.metric, self.is_chief = checkpoints, metric, is_chief
        self.path = checkpoints / PROGRESS_FILE
        self.saved = read_json(self.path, missing_ok=True) if (checkpoints / "checkpoint").is_file() else {}
        self.stopped_early = self.saved.get("stopped_early")
        self.history: list[dict] = []
        self.evaluations: list[dict] = []
        self.best: dict | None = None

    def resume(self, step: int) -> None:
        """Takes back what the interrupted run had recorded up to the checkpoint at ``step``."""
        self.history = [h for h in self.saved.get("history", []) if h["step"] <= step]
        self.evaluations = [e for e in self.saved.get("evaluations", []) if e["step"] <= step]
        best = self.saved.get("best")
        if best and best["step"] <= step and (self.checkpoints / best["file"]).is_file():
            self.best = best

    def save(self, stopped: int | None = None) -> None:
        from bert_cli.runs import write_json

        if self.is_chief:
            write_json(self.path, {"history": self.history, "evaluations": self.evaluations, "best": self.best,
                                   "stopped_early": stopped})

    def log(self, metrics: dict) -> None:
        self.history.append(metrics)
        self.save()

    def evaluation(self, step: int, metrics: dict, model) -> bool:
        """Records a dev evaluation; True when it is the best so far (its weights are then saved)."""
        self.evaluations.append(metrics)
        value = metrics[self.metric]
        if self.best is None or (value < self.best["value"] if self.metric in LOWER_IS_BETTER
                                 else value > self.best["value"]):
            self._save_best(step, metrics, model)
            return True
        return False

    def epochs_since_best(self) -> int:
        return sum(1 for e in self.evaluations if e["step"] > self.best["step"])

    def _save_best(self, step: int, metrics: dict, model) -> None:
        name = f"best-{step}.weights.h5"
        if self.is_chief:
            temporary = self.checkpoints / f".{name}.tmp.weights.h5"
            model.save_weights(str(temporary))
            temporary.replace(self.checkpoints / name)
        self.best = {"step": step, "epoch": metrics["epoch"], "metric": self.metric, "value": metrics[self.metric],
                     "file": name}
        self.save()
        if self.is_chief:
            for path in self.checkpoints.glob("best-*.weights.h5"):
                if path.name != name:
                    path.unlink(missing_ok=True)

    def load_best(self, model) -> None:
        if self.best is not None:
            model.load_weights(str(self.checkpoints / self.best["file"]))


# ----------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class Prepared:
    """What a run is made of once its inputs are checked and featurised (before any training)."""

    start: Start
    metric: str
    has_dev: bool
    lowercase: bool
    vocab_sha256: str
    examples: int
    steps_per_epoch: int
    train_steps: int


def run_finetuning(recipe: Recipe, options: FinetuneOptions) -> FinetuneResult:
    """Fine-tunes ``recipe``'s task: checks everything, trains (or resumes), writes the model directory.

    * the starting point: ``--init MODEL_DIR`` (a pre-trained or same-task model
      directory) or ``--model PRESET --vocab vocab.txt`` for a random-init baseline;
    * options checks, the output directory (refusing to mix runs, ``--overwrite``),
      resume from ``OUTPUT/checkpoints`` by rerunning the same command;
    * training with :func:`bert_cli.training.run_loop` (every strategy, precision,
      accumulation), the original schedule: AdamW, linear warmup over
      ``--warmup-proportion`` of the steps, linear decay to 0;
    * evaluation on ``--dev`` after every epoch, the best model by ``--metric``
      kept (``checkpoints/best-STEP.weights.h5``, :class:`BestKeeper`), optional early stopping;
    * the outputs: the model directory (``task.json`` written last, so it marks a
      complete one), prediction files, ``finetune.json``, curves, TensorBoard logs.

    An epoch is ``ceil(train examples / (batch size x accumulation steps))``
    updates; the training stream is reshuffled and repeated, as the original's
    ``run_classifier.py`` does, so an epoch sees each example about once.
    """
    from bert_cli.runs import removed_unless_resumable

    check_options(options)
    with removed_unless_resumable(Path(options.output)):
        return _run(recipe, options)


def _run(recipe: Recipe, options: FinetuneOptions) -> FinetuneResult:
    from bert_cli import strategy as strategies

    start, metric, has_dev = _check_inputs(recipe, options)
    # The strategy before any other TensorFlow work (multi-worker and TPU set-up require it).
    distribution = strategies.resolve(options.strategy, options.tpu)
    per_replica = distribution.per_replica_batch(options.batch_size)
    run = _featurize(recipe, options, start, metric, has_dev)
    if distribution.is_chief:
        from bert_cli.runs import prepare_run_output

        prediction_files = tuple(recipe.prediction_file(split) for split in ("dev", "test"))
        prepare_run_output(Path(options.output), _signature(recipe, options, run), options.overwrite,
                           _OUTPUT_NAMES + prediction_files)
    keeper = BestKeeper(Path(options.output) / "checkpoints", metric, distribution.is_chief)
    predictor = Predictor(distribution, recipe.outputs, per_replica * distribution.replicas)
    result = _train(recipe, options, run, distribution, keeper, predictor)
    return _finish(recipe, options, run, distribution, keeper, predictor, result)


def _check_inputs(recipe: Recipe, options: FinetuneOptions) -> tuple[Start, str, bool]:
    """Everything that needs no TensorFlow: the starting point, the files, ``--metric``, the output."""
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
    check_output(Path(options.output), options.overwrite)
    return start, metric, has_dev


def _featurize(recipe: Recipe, options: FinetuneOptions, start: Start, metric: str, has_dev: bool) -> Prepared:
    """The vocabulary and casing checked against the model, the files featurised, the schedule counted."""
    from bert_cli import console
    from data.tokenization import Tokenizer, Vocabulary, resolve_lowercase

    vocab = Vocabulary.load(start.vocab_path)
    if len(vocab) != start.config.vocab_size:
        raise UserError(f"{start.vocab_path}: {len(vocab)} tokens but the model's vocab_size is "
                        f"{start.config.vocab_size}; use the vocabulary the model was trained with")
    lowercase = resolve_lowercase(vocab, options.lowercase if options.lowercase is not None else start.lowercase)
    if start.lowercase is not None and options.lowercase is not None and options.lowercase != start.lowercase:
        console.warning(f"--init {options.init} was trained {'uncased' if start.lowercase else 'cased'}; "
                        f"fine-tuning {'uncased' if lowercase else 'cased'} as asked")
    recipe.featurize(Tokenizer(vocab, lowercase).encode, vocab, options.max_seq_length)
    examples = len(next(iter(recipe.arrays("train").values())))
    steps_per_epoch = max(1, math.ceil(examples / (options.batch_size * options.accumulation_steps)))
    train_steps = max(1, round(options.epochs * steps_per_epoch))
    return Prepared(start, metric, has_dev, lowercase, vocab.sha256, examples, steps_per_epoch, train_steps)


def _signature(recipe: Recipe, options: FinetuneOptions, run: Prepared) -> dict:
    """What must match for a rerun to resume rather than clash (``--epochs`` may grow)."""
    return {
        "task": recipe.task,
        "config": run.start.config.to_dict(),
        "vocab_sha256": run.vocab_sha256,
        "lowercase": run.lowercase,
        "init": str(Path(options.init).resolve()) if options.init else f"random:{options.model}",
        "recipe": recipe.signature(),
        "batch_size": options.batch_size,
        "accumulation_steps": options.accumulation_steps,
        "max_seq_length": options.max_seq_length,
        "seed": options.seed,
        **({"group_by_length": True} if options.group_by_length else {}),  # runs from before the option resume
    }


def _initializer(start: Start, init_option) -> Callable | None:
    """Loads the starting weights into a fresh model: the whole model of the same task, else the encoder."""
    if start.source is None:
        return None

    def init(model) -> None:
        try:
            if start.whole_model:
                model.load_weights(str(start.source.model_weights))
            else:
                model.backbone.load_weights(str(start.source.encoder_weights))
        except (ValueError, OSError) as error:
            raise UserError(f"--init {init_option}: its weights do not fit its bert_config.json ({error})") from None

    return init


def _task(recipe: Recipe, options: FinetuneOptions, run: Prepared, per_replica: int,
          predictor: Predictor, trim: bool = True) -> FinetuneTask:
    """The recipe on the shared schedule, its shuffled training input, and its dev evaluation (with ``--dev``)."""
    dev_arrays = recipe.arrays("dev")
    return FinetuneTask(
        recipe=recipe, config=run.start.config, learning_rate=options.learning_rate, train_steps=run.train_steps,
        warmup_steps=int(run.train_steps * options.warmup_proportion), weight_decay=options.weight_decay,
        precision=options.precision,
        train_input=train_input(recipe.arrays("train"), per_replica * options.accumulation_steps, options.seed,
                                recipe.token_keys if trim else None, options.group_by_length),
        on_evaluate=(lambda model: recipe.evaluate(predictor(model, dev_arrays))) if run.has_dev else None,
    )


def _train(recipe: Recipe, options: FinetuneOptions, run: Prepared, distribution, keeper: BestKeeper,
           predictor: Predictor):
    """Trains (or resumes) to the end of the schedule or an early stop; returns the loop's result."""
    import keras
    import tensorflow as tf

    from bert_cli import console
    from bert_cli.display import training_display
    from bert_cli.runs import SummaryWriters
    from bert_cli.training import LoopOptions, run_loop

    per_replica = distribution.per_replica_batch(options.batch_size)
    task = _task(recipe, options, run, per_replica, predictor, trim=distribution.kind != "tpu")
    loop_steps = min(run.train_steps, keeper.stopped_early) if keeper.stopped_early else run.train_steps
    loop = LoopOptions(
        train_steps=loop_steps, accumulation_steps=options.accumulation_steps, jit=options.jit,
        save_every=run.steps_per_epoch, keep=2, log_every=options.log_every or max(1, run.steps_per_epoch // 5),
        eval_every=run.steps_per_epoch if run.has_dev else 0,
    )
    keras.utils.set_random_seed(options.seed)
    writers = SummaryWriters(Path(options.output) / "logs", distribution.is_chief)

    def on_resume(path: str, step: int) -> None:
        keeper.resume(step)
        console.info(f"resuming from {path} at step {step:,} of {run.train_steps:,}")

    _say_plan(recipe, options, run, distribution, per_replica)
    with training_display(loop_steps, 0, f"fine-tuning {recipe.task}") as display:
        def on_log(step: int, metrics: dict) -> None:
            display.log(step, metrics)
            writers.write("train", step, metrics)
            keeper.log(metrics)

        def on_eval(step: int, metrics: dict) -> bool:
            metrics["epoch"] = round(step / run.steps_per_epoch, 2)
            display.evaluation(step, metrics)
            writers.write("eval", step, {k: v for k, v in metrics.items() if k != "epoch"})
            if keeper.evaluation(step, metrics, task.model):
                return False
            since_best = keeper.epochs_since_best()
            stop = bool(options.early_stopping) and since_best >= options.early_stopping and step < run.train_steps
            if stop:
                display.note(f"no better dev {run.metric} for {since_best} epoch(s): stopping early at step {step:,}")
            keeper.save(step if stop else None)
            return stop

        try:
            result = run_loop(task, distribution, loop, keeper.checkpoints, on_log=on_log, on_eval=on_eval,
                              on_resume=on_resume, init=_initializer(run.start, options.init))
        except (tf.errors.ResourceExhaustedError, tf.errors.UnknownError) as error:
            problem = _resource_problem(error, out_of_memory=isinstance(error, tf.errors.ResourceExhaustedError))
            if problem is None:
                raise
            raise UserError(problem) from None
    _say_already_trained(result, loop_steps, keeper.stopped_early)
    return result


def _resource_problem(error, out_of_memory: bool) -> str | None:
    """The one line for a run stopped by the disk (full, read-only) or by memory; None for anything else."""
    from bert_cli.runs import storage_problem

    problem = storage_problem(error, resumable=True)
    if problem is not None or not out_of_memory:
        return problem
    return (f"out of memory ({error.message.splitlines()[0][:120]}); lower --batch-size or --max-seq-length, "
            "or use --accumulation-steps")


def _say_plan(recipe: Recipe, options: FinetuneOptions, run: Prepared, distribution, per_replica: int) -> None:
    from bert_cli import console

    console.info(
        f"[bold]{distribution.description}[/]; {run.examples:,} training {recipe.unit}, batch "
        f"{options.batch_size * options.accumulation_steps} ({per_replica} per replica x {distribution.replicas} "
        f"x {options.accumulation_steps} accumulation), {run.steps_per_epoch:,} steps per epoch, "
        f"{run.train_steps:,} steps"
    )


def _say_already_trained(result, loop_steps: int, stopped_early: int | None) -> None:
    if result.start_step >= loop_steps and result.start_step > 0:
        from bert_cli import console

        console.info(
            f"already trained to step {result.start_step:,}"
            + (f" (stopped early at {stopped_early:,})" if stopped_early else "")
            + "; pass --overwrite to train again" + ("" if stopped_early else " or raise --epochs")
        )


def _finish(recipe: Recipe, options: FinetuneOptions, run: Prepared, distribution, keeper: BestKeeper,
            predictor: Predictor, result) -> FinetuneResult:
    """The best weights back, dev/test predicted and scored, every output file written (the task file last)."""
    from bert_cli.runs import count_parameters

    stopped_early = result.final_step if result.stopped_early else keeper.stopped_early
    keeper.save(stopped_early)
    model = result.model
    keeper.load_best(model)
    outputs = {}
    for split in ("dev", "test"):
        arrays = recipe.arrays(split)
        if arrays is not None:
            outputs[split] = predictor(model, arrays)
    dev_metrics = recipe.evaluate(outputs["dev"]) if "dev" in outputs else None
    details = recipe.details(outputs["dev"]) if "dev" in outputs else None
    files: dict[str, Path] = {}
    if distribution.is_chief:
        files = _write_outputs(recipe, options, run, keeper, model, outputs, dev_metrics, details,
                               result.final_step, stopped_early)
    best, history = keeper.best, keeper.history
    return FinetuneResult(
        output=Path(options.output), config=run.start.config, parameters=count_parameters(model),
        init=run.start.description, distribution_description=distribution.description,
        start_step=result.start_step, final_step=result.final_step, train_steps=run.train_steps,
        steps_per_epoch=run.steps_per_epoch, resumed_from=result.resumed_from, stopped_early=stopped_early,
        metric=run.metric, best=best, dev=dev_metrics, details=details,
        final_train=history[-1] if history else {}, files=files, rows=recipe.describe(), seconds=result.seconds,
    )


def _write_outputs(recipe: Recipe, options: FinetuneOptions, run: Prepared, keeper: BestKeeper, model,
                   outputs: dict, dev_metrics: dict | None, details: dict | None, final_step: int,
                   stopped_early: int | None) -> dict[str, Path]:
    """Prediction files, curves, ``finetune.json`` and the model directory (``task.json`` last)."""
    from bert_cli.display import plot_curves
    from bert_cli.model_dir import write_model_dir
    from bert_cli.runs import options_json, write_json
    from data.textio import atomic_path

    output, best = Path(options.output), keeper.best
    files: dict[str, Path] = {}
    for split, values in outputs.items():
        path = output / recipe.prediction_file(split)
        with atomic_path(path) as temporary:
            recipe.write_predictions(split, values, temporary)
        files[f"{split} predictions"] = path
    curves = plot_curves(keeper.history, keeper.evaluations, output / CURVES_FILE, f"fine-tuning {recipe.task}")
    if curves:
        files["curves"] = curves
    task_file = {
        "task": recipe.task,
        **recipe.task_file(),
        "max_seq_length": options.max_seq_length,
        "lowercase": run.lowercase,
        "metric": {"name": run.metric, **({"value": dev_metrics[run.metric], "step": best["step"]}
                                          if dev_metrics and best else {})},
    }
    write_json(output / SUMMARY_FILE, {
        "task": recipe.task, "options": options_json(options), "init": run.start.description,
        "steps_per_epoch": run.steps_per_epoch, "train_steps": run.train_steps, "final_step": final_step,
        "stopped_early": stopped_early, "best": best, "dev": dev_metrics, "details": details,
        "history": keeper.history, "evaluations": keeper.evaluations,
    })
    # The task file last: its presence marks a complete model directory.
    write_model_dir(output, run.start.config, run.start.vocab_path, model.backbone, model, task_file)
    return files


def file_sha256(path: Path) -> str:
    """For recipes' signatures: the training file's content, so a changed file is not resumed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
