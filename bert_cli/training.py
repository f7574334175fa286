"""The training loop every command shares: pre-training and all fine-tuning recipes.

A custom loop rather than ``Model.fit``, as tf-models' Orbit does, because it
runs unchanged under every strategy (Keras 3 ``fit`` fails under
MirroredStrategy on boolean inputs and under MultiWorkerMirroredStrategy with
dict inputs), lets a TPU run many steps per call, and makes gradient
accumulation and resume explicit:

* ``steps_per_execution`` steps run inside one ``tf.function`` call.
* ``accumulation_steps`` k: each replica's batch holds k micro-batches; their
  gradients are summed inside the step and applied once, so k micro-batches
  of b give the same update as one batch of k*b with a k-th of the memory.
* Each replica's loss is divided by the number of replicas and the optimizer
  sums gradients across replicas: the update is the mean over the global batch.
* Checkpoints (model, optimizer and so the step) every ``save_every`` steps
  through ``tf.train.CheckpointManager``, which writes the data files first and
  the index last: a run killed mid-save resumes from the previous complete one.

What is trained is a :class:`Task`: it builds the model and optimizer, its
datasets, and computes a dict of *additive* quantities per batch (``loss`` and
sums like correct predictions) that the loop adds up over micro-batches,
replicas and steps and the task turns into metrics with ``summarize``.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Callable, Protocol

from bert_cli.strategy import Distribution


# Keras dtype policies a run may train in ("fp32" is Keras' "float32").
PRECISIONS = ("fp32", "mixed_bfloat16", "mixed_float16")


class Task(Protocol):
    """What the loop trains. Implemented by the pre-training and fine-tuning commands."""

    #: Names of the additive quantities ``compute`` returns; ``loss`` first.
    sums: tuple[str, ...]

    def build(self):
        """Returns ``(model, optimizer)``; called inside the strategy's scope."""

    def train_dataset(self, input_context):
        """A repeated ``tf.data.Dataset`` of per-replica batches (micro-batch x accumulation steps)."""

    def eval_dataset(self, input_context):
        """A finite dataset of per-replica batches, or None."""

    def compute(self, model, batch, training: bool) -> dict:
        """The additive quantities of one (micro-)batch; ``loss`` is the one minimised."""

    def summarize(self, totals: dict[str, float]) -> dict[str, float]:
        """Metrics from summed quantities; ``totals["batches"]`` counts (micro-)batches summed."""

    # Optional: ``evaluate(model) -> dict | None``. A task whose held-out metrics
    # are not sums over batches (F1, correlations, SQuAD's EM) defines it and
    # evaluates itself; the loop then ignores ``eval_dataset``.


@dataclasses.dataclass(frozen=True)
class LoopOptions:
    """How long and how to run the loop (all counts are optimizer updates)."""

    train_steps: int
    steps_per_execution: int = 1
    accumulation_steps: int = 1
    jit: bool = False
    save_every: int = 1000
    keep: int = 3
    log_every: int = 100
    eval_every: int = 0


@dataclasses.dataclass
class LoopResult:
    model: object
    optimizer: object
    start_step: int
    final_step: int
    history: list[dict]
    evaluations: list[dict]
    seconds: float
    resumed_from: str | None
    stopped_early: bool = False


def _worker_checkpoint_dir(directory: Path, distribution: Distribution) -> Path:
    """Non-chief workers of a multi-worker run must save too (the save is collective), but elsewhere."""
    if distribution.is_chief:
        return directory
    return directory / f".worker-{distribution.strategy.cluster_resolver.task_id}"


def run_loop(
    task: Task,
    distribution: Distribution,
    options: LoopOptions,
    checkpoint_dir: Path,
    on_log: Callable[[int, dict], None] | None = None,
    on_eval: Callable[[int, dict], None] | None = None,
    on_resume: Callable[[str, int], None] | None = None,
    init: Callable[[object], None] | None = None,
) -> LoopResult:
    """Trains ``task`` to ``options.train_steps`` updates, resuming from ``checkpoint_dir`` if it holds a run.

    Args:
        task: What to train.
        distribution: The strategy (see :mod:`bert_cli.strategy`).
        options: Steps, accumulation, checkpoint and logging cadence.
        checkpoint_dir: Where checkpoints are written and looked for.
        on_log: Called with ``(step, metrics)`` every ``log_every`` steps (metrics of that window,
            plus ``examples_per_second`` and ``seconds``).
        on_eval: Called with ``(step, metrics)`` after each evaluation; returning True stops
            training there (early stopping).
        on_resume: Called with ``(checkpoint_path, step)`` when resuming.
        init: Called with the model before the first step of a fresh run (e.g. to load initial weights).
    """
    import tensorflow as tf

    strategy = distribution.strategy
    replicas = float(distribution.replicas)
    accumulation = options.accumulation_steps
    with strategy.scope():
        model, optimizer = task.build()
        optimizer.build(model.trainable_variables)
    variables = model.trainable_variables

    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    own_dir = _worker_checkpoint_dir(checkpoint_dir, distribution)
    manager = tf.train.CheckpointManager(checkpoint, str(own_dir), max_to_keep=options.keep)
    resumed_from = None
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        resumed_from = manager.latest_checkpoint
    elif init is not None:
        init(model)
    start_step = int(optimizer.iterations.numpy())
    if resumed_from and on_resume:
        on_resume(resumed_from, start_step)

    keys = tuple(task.sums)

    def micro_batches(batch):
        # [k*b, ...] -> k slices of [b, ...]
        def piece(tensor, index):
            size = tf.shape(tensor)[0] // accumulation
            return tensor[index * size : (index + 1) * size]

        return piece

    def replica_step(batch):
        if accumulation == 1:
            with tf.GradientTape() as tape:
                values = task.compute(model, batch, True)
                loss = values["loss"] / replicas
                scaled = optimizer.scale_loss(loss)
            # Embedding gradients arrive as IndexedSlices whose repeated rows are not yet
            # summed; the global-norm clip would then measure the wrong norm. Dense
            # gradients make the clip (and so the update) the same as with accumulation.
            gradients = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                         for g in tape.gradient(scaled, variables)]
            totals = {key: tf.cast(values[key], tf.float32) for key in keys}
        else:
            piece = micro_batches(batch)
            gradients = [tf.zeros_like(v) for v in variables]
            totals = {key: tf.constant(0.0) for key in keys}
            for index in tf.range(accumulation):
                micro = {name: piece(tensor, index) for name, tensor in batch.items()}
                with tf.GradientTape() as tape:
                    values = task.compute(model, micro, True)
                    loss = values["loss"] / (replicas * accumulation)
                    scaled = optimizer.scale_loss(loss)
                step_gradients = tape.gradient(scaled, variables)
                gradients = [g + s for g, s in zip(gradients, step_gradients)]
                totals = {key: totals[key] + tf.cast(values[key], tf.float32) for key in keys}
        optimizer.apply(gradients, variables)
        totals["batches"] = tf.constant(float(accumulation))
        return totals

    step_function = tf.function(replica_step, jit_compile=True) if options.jit else replica_step

    @tf.function
    def train_chunk(iterator, steps):
        totals = {key: tf.constant(0.0) for key in keys + ("batches",)}
        for _ in tf.range(steps):
            values = strategy.run(step_function, args=(next(iterator),))
            totals = {
                key: totals[key] + strategy.reduce(tf.distribute.ReduceOp.SUM, values[key], axis=None)
                for key in totals
            }
        return totals

    def replica_eval(batch):
        values = task.compute(model, batch, False)
        totals = {key: tf.cast(values[key], tf.float32) for key in keys}
        totals["batches"] = tf.constant(1.0)
        return totals

    @tf.function
    def eval_batch(batch):
        values = strategy.run(replica_eval, args=(batch,))
        return {key: strategy.reduce(tf.distribute.ReduceOp.SUM, values[key], axis=None) for key in values}

    def evaluate() -> dict | None:
        if hasattr(task, "evaluate"):
            return task.evaluate(model)
        dataset = strategy.distribute_datasets_from_function(task.eval_dataset) if _has_eval(task) else None
        if dataset is None:
            return None
        totals: dict[str, float] = {}
        for batch in dataset:
            for key, value in eval_batch(batch).items():
                totals[key] = totals.get(key, 0.0) + float(value)
        return task.summarize(totals) if totals else None

    dataset = strategy.distribute_datasets_from_function(task.train_dataset)
    iterator = iter(dataset)
    history: list[dict] = []
    evaluations: list[dict] = []
    started = time.perf_counter()
    step = start_step
    stopped_early = False
    # Every boundary the loop must stop at: logs, saves, evaluations, the end.
    window: dict[str, float] = {}
    window_started = time.perf_counter()
    while step < options.train_steps:
        stop = min(
            options.train_steps,
            _next_multiple(step, options.steps_per_execution),
            _next_multiple(step, options.log_every),
            _next_multiple(step, options.save_every),
            _next_multiple(step, options.eval_every) if options.eval_every else options.train_steps,
        )
        totals = train_chunk(iterator, tf.constant(stop - step))
        for key, value in totals.items():
            window[key] = window.get(key, 0.0) + float(value)
        step = stop
        if step % options.log_every == 0 or step == options.train_steps:
            elapsed = time.perf_counter() - window_started
            metrics = task.summarize(window)
            metrics["step"] = step
            metrics["seconds"] = time.perf_counter() - started
            metrics["examples_per_second"] = window.get("examples", 0.0) / max(elapsed, 1e-9)
            metrics["tokens_per_second"] = window.get("tokens", 0.0) / max(elapsed, 1e-9)
            metrics["learning_rate"] = float(_current_learning_rate(optimizer))
            history.append(metrics)
            if on_log:
                on_log(step, metrics)
            window, window_started = {}, time.perf_counter()
        if step % options.save_every == 0 or step == options.train_steps:
            manager.save(checkpoint_number=step)
        if options.eval_every and (step % options.eval_every == 0 or step == options.train_steps):
            result = evaluate()
            if result is not None:
                result["step"] = step
                evaluations.append(result)
                if on_eval and on_eval(step, result):
                    stopped_early = True
                    break
    if not distribution.is_chief and own_dir != checkpoint_dir:
        shutil.rmtree(own_dir, ignore_errors=True)
    return LoopResult(
        model=model,
        optimizer=optimizer,
        start_step=start_step,
        final_step=step,
        history=history,
        evaluations=evaluations,
        seconds=time.perf_counter() - started,
        resumed_from=resumed_from,
        stopped_early=stopped_early,
    )


def _has_eval(task: Task) -> bool:
    return getattr(task, "has_eval", False)


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every


def _current_learning_rate(optimizer) -> float:
    rate = optimizer.learning_rate
    try:
        return float(rate.numpy())
    except AttributeError:
        return float(rate)
