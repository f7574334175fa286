"""The training loop every command shares (pre-training and every fine-tuning task) and its Task contract."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Callable, Protocol

from bert_cli import xla_random
from bert_cli.strategy import Distribution


class Task(Protocol):
    """What the loop trains: the pre-training objectives and every fine-tuning recipe implement it."""

    #: Names of the additive quantities ``compute`` returns; ``loss`` first.
    sums: tuple[str, ...]

    def build(self):
        """Returns ``(model, optimizer)``; called inside the strategy's scope."""

    def train_dataset(self, input_context, start_step: int):
        """A repeated ``tf.data.Dataset`` of per-replica batches (micro-batch x accumulation steps).

        Its first batch is the one an uninterrupted run takes at update
        ``start_step`` (0 for a fresh run): a resumed run sees exactly the
        batches the interrupted one would have seen.
        """

    def compute(self, model, batch, training: bool) -> dict:
        """The additive quantities of one (micro-)batch; ``loss`` is the one minimised."""

    def summarize(self, totals: dict[str, float]) -> dict[str, float]:
        """Metrics from summed quantities; ``totals["batches"]`` counts (micro-)batches summed."""

    def evaluate(self, model) -> dict | None:
        """Held-out metrics of the model now, or None when the task has no held-out data.

        Sums over held-out batches (pre-training) use :class:`SumEvaluator`;
        metrics that are not sums (F1, correlations, SQuAD's EM) are computed by
        the task from every example's outputs.
        """


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

    What is trained is a :class:`Task`: it builds the model and optimizer and its
    training dataset, evaluates itself, and computes a dict of *additive*
    quantities per batch (``loss`` and sums like correct predictions) that the
    loop adds up over micro-batches, replicas and steps and the task turns into
    metrics with ``summarize``.
    """
    run = _Run.restore(task, distribution, options, checkpoint_dir, init)
    if run.resumed_from and on_resume:
        on_resume(run.resumed_from, run.start_step)
    result = run.train(on_log, on_eval)
    if not distribution.is_chief and run.own_dir != checkpoint_dir:
        shutil.rmtree(run.own_dir, ignore_errors=True)
    return result


@dataclasses.dataclass
class _Run:
    """One run of the loop: the built model and optimizer, their checkpoint, and where training starts."""

    task: Task
    distribution: Distribution
    options: LoopOptions
    model: object
    optimizer: object
    manager: object  # tf.train.CheckpointManager
    checkpoint: object  # its tf.train.Checkpoint
    own_dir: Path
    start_step: int
    resumed_from: str | None

    @classmethod
    def restore(cls, task: Task, distribution: Distribution, options: LoopOptions, checkpoint_dir: Path,
                init: Callable | None) -> "_Run":
        """Builds the model under the strategy; restores the latest checkpoint, else calls ``init``."""
        import tensorflow as tf

        with distribution.strategy.scope():
            model, optimizer = task.build()
            optimizer.build(model.trainable_variables)
        # Keras 3 keeps the dropout layers' random state in seed-generator variables
        # that the model's checkpoint dependencies miss: saved explicitly, so a
        # resumed run draws the same dropout masks as an uninterrupted one.
        random_state = [v.value if hasattr(v, "value") else v for v in model.non_trainable_variables]
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, random_state=random_state)
        own_dir = _worker_checkpoint_dir(checkpoint_dir, distribution)
        for unfinished in Path(own_dir).glob("ckpt-*_temp"):  # a save killed half-way (the index was never written)
            shutil.rmtree(unfinished, ignore_errors=True)
        manager = tf.train.CheckpointManager(checkpoint, str(own_dir), max_to_keep=options.keep)
        resumed_from = None
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            resumed_from = manager.latest_checkpoint
        elif init is not None:
            init(model)
        return cls(task, distribution, options, model, optimizer, manager, checkpoint, own_dir,
                   int(optimizer.iterations.numpy()), resumed_from)

    def train(self, on_log, on_eval) -> LoopResult:
        """Runs chunks of steps up to each boundary (log, save, evaluation, end) and acts at each."""
        import tensorflow as tf

        options = self.options
        train_chunk = _chunk_function(self.distribution.strategy, self._step_function(), tuple(self.task.sums))
        iterator = self._input_iterator()
        history: list[dict] = []
        evaluations: list[dict] = []
        started = window_started = time.perf_counter()
        step, stopped_early, window = self.start_step, False, {}
        while step < options.train_steps:
            stop = _next_boundary(step, options)
            for key, value in train_chunk(iterator, tf.constant(stop - step)).items():
                window[key] = window.get(key, 0.0) + float(value)
            step = stop
            if step % options.log_every == 0 or step == options.train_steps:
                metrics = self._window_metrics(window, step, time.perf_counter() - window_started,
                                               time.perf_counter() - started)
                history.append(metrics)
                if on_log:
                    on_log(step, metrics)
                window, window_started = {}, time.perf_counter()
            if step % options.save_every == 0 or step == options.train_steps:
                self.manager.save(checkpoint_number=step)
            if options.eval_every and (step % options.eval_every == 0 or step == options.train_steps):
                result = self.task.evaluate(self.model)
                if result is not None:
                    result["step"] = step
                    evaluations.append(result)
                    if on_eval and on_eval(step, result):
                        stopped_early = True
                        break
        return LoopResult(self.model, self.optimizer, self.start_step, step, history, evaluations,
                          time.perf_counter() - started, self.resumed_from, stopped_early)

    def _input_iterator(self):
        """The training input at ``start_step``: restored from the checkpoint when it holds the input's state,
        else positioned by the task (``train_dataset(context, start_step)``).

        Under a one-replica strategy the tf.data iterator is trackable and is
        saved with every checkpoint (its shuffle buffer and position), so a
        resume costs nothing; a multi-replica iterator is not, and the task
        positions its input itself (pre-training reads past the used records).
        """
        import tensorflow as tf

        strategy = self.distribution.strategy

        def make(start: int):
            return iter(strategy.distribute_datasets_from_function(lambda c: self.task.train_dataset(c, start)))

        saved = bool(self.resumed_from) and any(
            name.startswith("data_iterator/") for name, _ in tf.train.list_variables(self.resumed_from))
        iterator = make(0 if saved else self.start_step)
        try:
            holder = tf.train.Checkpoint(data_iterator=iterator)
        except ValueError:  # a multi-replica iterator: not trackable
            return make(self.start_step) if saved else iterator
        if saved:
            holder.read(self.resumed_from).expect_partial()
        self.checkpoint.data_iterator = iterator
        return iterator

    def _window_metrics(self, window: dict, step: int, elapsed: float, seconds: float) -> dict:
        """The task's metrics of a logging window, with throughput and the learning rate."""
        metrics = self.task.summarize(window)
        metrics["step"] = step
        metrics["seconds"] = seconds
        metrics["examples_per_second"] = window.get("examples", 0.0) / max(elapsed, 1e-9)
        metrics["tokens_per_second"] = window.get("tokens", 0.0) / max(elapsed, 1e-9)
        metrics["learning_rate"] = float(_current_learning_rate(self.optimizer))
        return metrics

    def _step_function(self):
        """One replica's update: gradients of the (accumulated) loss, applied once."""
        import tensorflow as tf

        task, model, optimizer = self.task, self.model, self.optimizer
        variables = model.trainable_variables
        replicas = float(self.distribution.replicas)
        accumulation = self.options.accumulation_steps
        keys = tuple(task.sums)

        def replica_step(batch):
            if accumulation == 1:
                with tf.GradientTape() as tape:
                    values = task.compute(model, batch, True)
                    scaled = optimizer.scale_loss(values["loss"] / replicas)
                # Embedding gradients arrive as IndexedSlices whose repeated rows are not yet
                # summed; the global-norm clip would then measure the wrong norm. Dense
                # gradients make the clip (and so the update) the same as with accumulation.
                gradients = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                             for g in tape.gradient(scaled, variables)]
                totals = {key: tf.cast(values[key], tf.float32) for key in keys}
            else:
                gradients, totals = _accumulated(task, model, optimizer, batch, accumulation, replicas, keys)
            optimizer.apply(gradients, variables)
            totals["batches"] = tf.constant(float(accumulation))
            return totals

        if not self.options.jit:
            return replica_step

        def xla_replica_step(batch):  # traced once: dropout and uniform noise inside draw with XLA's fast generator
            with xla_random.threefry():
                return replica_step(batch)

        return tf.function(xla_replica_step, jit_compile=True)


def _accumulated(task: Task, model, optimizer, batch, accumulation: int, replicas: float, keys: tuple[str, ...]):
    """Gradients and sums of ``accumulation`` micro-batches of a replica's batch, added up (one update's worth)."""
    import tensorflow as tf

    def piece(tensor, index):  # [k*b, ...] -> the index-th slice of [b, ...]
        size = tf.shape(tensor)[0] // accumulation
        return tensor[index * size : (index + 1) * size]

    variables = model.trainable_variables
    gradients = [tf.zeros_like(v) for v in variables]
    totals = {key: tf.constant(0.0) for key in keys}
    for index in tf.range(accumulation):
        micro = {name: piece(tensor, index) for name, tensor in batch.items()}
        with tf.GradientTape() as tape:
            values = task.compute(model, micro, True)
            scaled = optimizer.scale_loss(values["loss"] / (replicas * accumulation))
        step_gradients = tape.gradient(scaled, variables)
        gradients = [g + s for g, s in zip(gradients, step_gradients)]
        totals = {key: totals[key] + tf.cast(values[key], tf.float32) for key in keys}
    return gradients, totals


def _chunk_function(strategy, step_function, keys: tuple[str, ...]):
    """``(iterator, steps) -> summed quantities``: ``steps`` updates inside one tf.function call."""
    import tensorflow as tf

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

    return train_chunk


class SumEvaluator:
    """Held-out metrics that are sums over batches (pre-training's): ``task.compute`` over a finite dataset.

    Args:
        distribution: The strategy the model was built under.
        compute / summarize: The task's (see :class:`Task`).
        sums: The quantities ``compute`` returns.
        dataset: ``input_context -> tf.data.Dataset`` of per-replica batches, finite.
    """

    def __init__(self, distribution: Distribution, compute: Callable, summarize: Callable, sums: tuple[str, ...],
                 dataset: Callable) -> None:
        self.distribution, self.compute, self.summarize = distribution, compute, summarize
        self.sums, self.dataset = tuple(sums), dataset
        self._functions: dict[int, Callable] = {}

    def _function(self, model):
        import tensorflow as tf

        strategy = self.distribution.strategy
        if id(model) not in self._functions:
            def replica_eval(batch):
                values = self.compute(model, batch, False)
                totals = {key: tf.cast(values[key], tf.float32) for key in self.sums}
                totals["batches"] = tf.constant(1.0)
                return totals

            @tf.function
            def eval_batch(batch):
                values = strategy.run(replica_eval, args=(batch,))
                return {key: strategy.reduce(tf.distribute.ReduceOp.SUM, values[key], axis=None) for key in values}

            self._functions[id(model)] = eval_batch
        return self._functions[id(model)]

    def __call__(self, model, on_batch: Callable[[int], None] | None = None) -> dict | None:
        """Held-out metrics of ``model``; ``on_batch(examples)`` after each global batch (progress)."""
        eval_batch = self._function(model)
        totals: dict[str, float] = {}
        for batch in self.distribution.strategy.distribute_datasets_from_function(self.dataset):
            values = eval_batch(batch)
            for key, value in values.items():
                totals[key] = totals.get(key, 0.0) + float(value)
            if on_batch is not None:
                on_batch(int(values.get("examples", 0)))
        if not totals:
            return None
        # How much was evaluated: fewer batches than asked when the held-out records run out.
        return {**self.summarize(totals), "eval_batches": int(totals.get("batches", 0)),
                "eval_examples": int(totals.get("examples", 0))}


def consumed_per_pipeline(context, start_step: int, micro_batch: int) -> int:
    """Examples one input pipeline has handed out by update ``start_step`` (each replica takes one micro-batch
    x accumulation per update; ``context`` None is one pipeline feeding one replica)."""
    replicas = context.num_replicas_in_sync // context.num_input_pipelines if context is not None else 1
    return start_step * micro_batch * replicas


def _next_boundary(step: int, options: LoopOptions) -> int:
    """The next step the loop must stop at: a log, a save, an evaluation, the end, or a full execution."""
    return min(
        options.train_steps,
        _next_multiple(step, options.steps_per_execution),
        _next_multiple(step, options.log_every),
        _next_multiple(step, options.save_every),
        _next_multiple(step, options.eval_every) if options.eval_every else options.train_steps,
    )


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every


def _current_learning_rate(optimizer) -> float:
    rate = optimizer.learning_rate
    try:
        return float(rate.numpy())
    except AttributeError:
        return float(rate)
