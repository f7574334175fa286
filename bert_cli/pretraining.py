"""Pre-training as a :class:`bert_cli.training.Task`: the model, its inputs and its metrics."""

from __future__ import annotations

import dataclasses
from typing import Callable

# Additive quantities per batch, summed over micro-batches, replicas and steps.
PRETRAIN_SUMS = ("loss", "mlm_loss", "mlm_correct", "mlm_weight", "nsp_loss", "nsp_correct", "examples", "tokens")


@dataclasses.dataclass
class PretrainTask:
    """MLM (+ NSP) pre-training of a :class:`models.pretraining.BertPretrainer`.

    Args:
        config: The model's :class:`models.config.BertConfig`.
        optimizer: ``"adamw"`` or ``"lamb"``.
        learning_rate / train_steps / warmup_steps / weight_decay: The schedule (see models.optimization).
        next_sentence: Train the NSP head too.
        precision: ``"fp32"``, ``"mixed_bfloat16"`` or ``"mixed_float16"`` (with dynamic loss scaling).
        train_input: ``input_context -> tf.data.Dataset`` of per-replica batches of the
            record features (``input_ids``, ``input_mask``, ``segment_ids``,
            ``masked_lm_positions``, ``masked_lm_ids``, ``masked_lm_weights``,
            ``next_sentence_labels``).
        eval_input: The same for held-out records (finite), or None.
    """

    config: object
    optimizer: str
    learning_rate: float
    train_steps: int
    warmup_steps: int
    train_input: Callable
    eval_input: Callable | None = None
    weight_decay: float = 0.01
    next_sentence: bool = True
    precision: str = "fp32"
    sums: tuple[str, ...] = PRETRAIN_SUMS

    @property
    def has_eval(self) -> bool:
        return self.eval_input is not None

    def build(self):
        import keras

        from models.optimization import build_optimizer
        from models.pretraining import build_pretrainer

        dtype = None if self.precision == "fp32" else self.precision
        model = build_pretrainer(self.config, next_sentence=self.next_sentence, dtype=dtype)
        optimizer = build_optimizer(
            self.optimizer, self.learning_rate, self.train_steps, self.warmup_steps, self.weight_decay
        )
        if self.precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return model, optimizer

    def train_dataset(self, input_context):
        return self.train_input(input_context)

    def eval_dataset(self, input_context):
        return self.eval_input(input_context)

    def compute(self, model, batch, training: bool) -> dict:
        import tensorflow as tf

        from models.pretraining import pretraining_losses

        inputs = {
            "token_ids": tf.cast(batch["input_ids"], tf.int32),
            "segment_ids": tf.cast(batch["segment_ids"], tf.int32),
            "padding_mask": tf.cast(batch["input_mask"], tf.int32),
            "masked_lm_positions": tf.cast(batch["masked_lm_positions"], tf.int32),
        }
        values = pretraining_losses(model(inputs, training=training), batch)
        zero = tf.constant(0.0)
        return {
            "loss": values["loss"],
            "mlm_loss": values["mlm_loss"],
            "mlm_correct": values["mlm_correct"],
            "mlm_weight": values["mlm_weight"],
            "nsp_loss": values.get("nsp_loss", zero),
            "nsp_correct": values.get("nsp_correct", zero),
            "examples": values["examples"],
            "tokens": tf.reduce_sum(tf.cast(batch["input_mask"], tf.float32)),
        }

    def summarize(self, totals: dict[str, float]) -> dict[str, float]:
        batches = max(totals.get("batches", 0.0), 1.0)
        metrics = {
            "loss": totals.get("loss", 0.0) / batches,
            "mlm_loss": totals.get("mlm_loss", 0.0) / batches,
            "mlm_accuracy": totals.get("mlm_correct", 0.0) / max(totals.get("mlm_weight", 0.0), 1.0),
        }
        if self.next_sentence:
            metrics["nsp_loss"] = totals.get("nsp_loss", 0.0) / batches
            metrics["nsp_accuracy"] = totals.get("nsp_correct", 0.0) / max(totals.get("examples", 0.0), 1.0)
        return metrics


# ----------------------------------------------------------------------------
# The `bert pretrain` run: inputs checked, model directory written.
# ----------------------------------------------------------------------------

import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

from bert_cli.errors import UserError  # noqa: E402



@dataclasses.dataclass(frozen=True)
class PretrainOptions:
    """Everything ``bert pretrain`` was asked to do (names as the CLI options)."""

    inputs: tuple[str, ...]
    output: Path
    model: str = "base"
    vocab: Path | None = None
    batch_size: int = 32
    train_steps: int = 100_000
    warmup_steps: int = 10_000
    learning_rate: float = 5e-5
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    accumulation_steps: int = 1
    precision: str = "fp32"
    jit: bool = False
    steps_per_execution: int = 1
    save_every: int = 1000
    keep: int = 3
    log_every: int = 100
    eval_input: tuple[str, ...] = ()
    eval_every: int = 0
    eval_batches: int = 100
    dynamic_masking: bool = False
    whole_word_mask: bool = False
    masked_lm_prob: float = 0.15
    no_nsp: bool = False
    strategy: str = "auto"
    tpu: str | None = None
    init_checkpoint: Path | None = None
    seed: int = 12345
    overwrite: bool = False


@dataclasses.dataclass
class RecordsInfo:
    files: list[str]
    max_seq_length: int
    max_predictions: int
    next_sentence: bool
    manifest: dict | None


def inspect_records(patterns, option: str = "INPUT") -> RecordsInfo:
    """Finds the record files and reads their shapes from their first records.

    Every file's first record is read, so a file that is not a TFRecord file is
    named now rather than failing hours into a run.
    """
    import tensorflow as tf

    from data.records import compression_of, find_record_files

    if not any("://" in str(p) for p in patterns):
        local, manifest = find_record_files(patterns)
        files = [str(f) for f in local]
    else:
        files, manifest = _remote_record_files(patterns, option)

    shapes = set()
    has_nsp = set()
    for name in files:
        try:
            record = next(iter(tf.data.TFRecordDataset(name, compression_type=compression_of(name)).take(1)), None)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
            raise UserError(f"{name}: not a readable TFRecord file ({error.message.splitlines()[0]})") from None
        if record is None:
            continue
        try:
            example = tf.train.Example.FromString(record.numpy())
        except Exception:  # noqa: BLE001  a protobuf DecodeError
            raise UserError(f"{name}: holds records that are not tf.train.Example protos") from None
        features = example.features.feature
        missing = {"input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
                   "masked_lm_weights"} - set(features)
        if missing:
            raise UserError(
                f"{name}: not pre-training records (missing {', '.join(sorted(missing))}); make them with bert make-data"
            )
        shapes.add((len(features["input_ids"].int64_list.value), len(features["masked_lm_ids"].int64_list.value)))
        has_nsp.add("next_sentence_labels" in features)
    if not shapes:
        raise UserError(f"{option}: the record files hold no records")
    if len(shapes) > 1:
        raise UserError(f"{option}: record files disagree on (max_seq_length, max_predictions): {sorted(shapes)}")
    (seq_length, predictions), = shapes
    return RecordsInfo(files, seq_length, predictions, all(has_nsp), manifest)


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
    """A preset name or a ``bert_config.json`` path, with the vocabulary's size."""
    from models.config import PRESETS, BertConfig

    path = Path(model)
    if model in PRESETS:
        return BertConfig.from_preset(model, vocab_size=vocab_size)
    if path.is_dir() and (path / "bert_config.json").is_file():
        path = path / "bert_config.json"
    if path.is_file():
        config = BertConfig.from_json_file(path)
        if config.vocab_size != vocab_size:
            raise UserError(
                f"--model {model}: vocab_size {config.vocab_size} differs from the vocabulary's {vocab_size} entries"
            )
        return config
    raise UserError(f"--model {model}: neither a preset (tiny, mini, small, medium, base, large, L-4_H-256, ...) "
                    "nor a bert_config.json")


def _run_signature(options: PretrainOptions, config, vocab_sha: str) -> dict:
    """What must match for a rerun to resume rather than clash (train_steps may grow)."""
    return {
        "config": config.to_dict(),
        "vocab_sha256": vocab_sha,
        "next_sentence": not options.no_nsp,
        "batch_size": options.batch_size,
        "accumulation_steps": options.accumulation_steps,
        "optimizer": options.optimizer,
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


def run_pretraining(options: PretrainOptions) -> PretrainResult:
    """Runs ``bert pretrain``: checks inputs, trains (or resumes), writes the model directory."""
    from bert_cli import console, strategy as strategies
    from bert_cli.display import plot_curves, training_display
    from bert_cli.model_dir import prepare_run_output, write_model_dir
    from bert_cli.training import LoopOptions, run_loop

    for name in ("batch_size", "train_steps", "accumulation_steps", "steps_per_execution", "log_every",
                 "save_every", "keep", "eval_batches"):
        if getattr(options, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(options, name)}")
    if not 0.0 < options.masked_lm_prob < 1.0:
        raise UserError(f"--masked-lm-prob must be between 0 and 1, got {options.masked_lm_prob}")
    # The strategy first: multi-worker and TPU set-up must precede other TensorFlow work.
    distribution = strategies.resolve(options.strategy, options.tpu)
    per_replica = distribution.per_replica_batch(options.batch_size)
    from bert_cli.training import PRECISIONS

    if options.precision not in PRECISIONS:
        raise UserError(f"--precision {options.precision!r}: use fp32, mixed_bfloat16 or mixed_float16")

    import tensorflow as tf

    from data.pretraining_input import DynamicMasking, pretraining_dataset
    from data.tokenization import Vocabulary

    records = inspect_records(options.inputs)
    manifest = records.manifest or {}
    vocab_path = options.vocab
    if vocab_path is None:
        recorded = manifest.get("vocab_file")
        candidates = [Path(recorded)] if recorded else []
        candidates += [Path(records.files[0]).parent / "vocab.txt"]
        vocab_path = next((c for c in candidates if c.is_file()), None)
        if vocab_path is None:
            raise UserError("--vocab is needed: the records' manifest names no vocabulary file that exists here")
    vocab = Vocabulary.load(vocab_path)
    recorded_sha = manifest.get("vocab_sha256")
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
    next_sentence = not options.no_nsp
    if next_sentence and not records.next_sentence:
        raise UserError("the records have no next_sentence_labels (made with --no-nsp); pass --no-nsp")

    eval_records = inspect_records(options.eval_input, "--eval-input") if options.eval_input else None
    if eval_records and (eval_records.max_seq_length, eval_records.max_predictions) != (
        records.max_seq_length, records.max_predictions
    ):
        raise UserError("--eval-input records have a different max_seq_length or max_predictions than the training records")

    signature = _run_signature(options, config, vocab.sha256)
    if distribution.is_chief:
        prepare_run_output(options.output, signature, options.overwrite, (
            "checkpoints", "logs", "model.weights.h5", "encoder.weights.h5", "task.json", "pretrain.json",
            "training_curves.png"))

    masking = None
    if options.dynamic_masking:
        masking = DynamicMasking(
            vocab_size=len(vocab), cls_id=vocab.cls_id, sep_id=vocab.sep_id, mask_id=vocab.mask_id,
            masked_lm_prob=options.masked_lm_prob,
            continuation_ids=tuple(i for i, t in enumerate(vocab.tokens) if t.startswith("##")),
            whole_word=options.whole_word_mask,
        )
    micro_batch = per_replica * options.accumulation_steps
    # A resumed run shuffles with another seed so it does not replay the data it already saw.
    shuffle_seed = {"value": options.seed}

    def train_input(context):
        return pretraining_dataset(
            records.files, records.max_seq_length, records.max_predictions, micro_batch,
            next_sentence=next_sentence, seed=shuffle_seed["value"], input_context=context,
            dynamic_masking=masking,
        )

    def eval_input(context):
        return pretraining_dataset(
            eval_records.files, records.max_seq_length, records.max_predictions, per_replica,
            training=False, next_sentence=next_sentence, input_context=context,
        ).take(options.eval_batches)

    task = PretrainTask(
        config=config, optimizer=options.optimizer, learning_rate=options.learning_rate,
        train_steps=options.train_steps, warmup_steps=options.warmup_steps,
        train_input=train_input, eval_input=eval_input if eval_records else None,
        weight_decay=options.weight_decay, next_sentence=next_sentence, precision=options.precision,
    )
    loop = LoopOptions(
        train_steps=options.train_steps, steps_per_execution=options.steps_per_execution,
        accumulation_steps=options.accumulation_steps, jit=options.jit, save_every=options.save_every,
        keep=options.keep, log_every=options.log_every,
        eval_every=(options.eval_every or options.train_steps) if eval_records else 0,
    )

    init = None
    if options.init_checkpoint is not None:
        init = _initializer(options.init_checkpoint, config, manifest.get("lowercase"))

    import keras

    keras.utils.set_random_seed(options.seed)
    logs = options.output / "logs"
    writers = {
        "train": tf.summary.create_file_writer(str(logs / "train")),
        "eval": tf.summary.create_file_writer(str(logs / "eval")),
    } if distribution.is_chief else {}

    def write_summaries(kind: str, step: int, metrics: dict) -> None:
        if kind in writers:
            with writers[kind].as_default(step=step):
                for key, value in metrics.items():
                    if key != "step":
                        tf.summary.scalar(key, value)

    console.info(f"[bold]{distribution.description}[/]; global batch {options.batch_size} "
                 f"({per_replica} per replica x {options.accumulation_steps} accumulation), "
                 f"records T={records.max_seq_length} P={records.max_predictions}, {len(records.files)} file(s)")

    def on_resume(path: str, step: int) -> None:
        shuffle_seed["value"] = options.seed + step
        console.info(f"resuming from {path} at step {step:,} of {options.train_steps:,}")

    with training_display(options.train_steps, 0, "pre-training") as display:
        def on_log(step, metrics):
            display.log(step, metrics)
            write_summaries("train", step, metrics)

        def on_eval(step, metrics):
            display.evaluation(step, metrics)
            write_summaries("eval", step, metrics)

        try:
            result = run_loop(
                task, distribution, loop, options.output / "checkpoints",
                on_log=on_log, on_eval=on_eval, on_resume=on_resume, init=init,
            )
        except tf.errors.DataLossError as error:
            raise UserError(f"a record file is corrupt: {error.message.splitlines()[0]}") from None

    if result.start_step >= options.train_steps:
        console.info(f"already trained to step {result.start_step:,} (--train-steps {options.train_steps:,}); "
                     "raise --train-steps to train further")

    curves = None
    final = result.history[-1] if result.history else {}
    evaluation = result.evaluations[-1] if result.evaluations else None
    if distribution.is_chief:
        write_model_dir(
            options.output, config, Path(vocab_path), result.model.backbone, result.model,
            {
                "task": "pretraining",
                "next_sentence": next_sentence,
                "lowercase": manifest.get("lowercase"),
                "max_seq_length": records.max_seq_length,
            },
        )
        previous = _read_json(options.output / "pretrain.json")
        history = (previous.get("history", []) if result.resumed_from else []) + result.history
        evaluations = (previous.get("evaluations", []) if result.resumed_from else []) + result.evaluations
        summary = {
            "task": "pretraining",
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(options).items()},
            "records": {"files": records.files, "max_seq_length": records.max_seq_length,
                        "max_predictions": records.max_predictions},
            "lowercase": manifest.get("lowercase"),
            "final_step": result.final_step,
            "final_metrics": final,
            "evaluation": evaluation,
            "history": history,
            "evaluations": evaluations,
        }
        (options.output / "pretrain.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        curves = plot_curves(history, evaluations, options.output / "training_curves.png",
                             f"pre-training {options.model}")
    parameters = int(sum(int(tf.size(v)) for v in result.model.weights))
    return PretrainResult(
        output=options.output, config=config, records=records,
        distribution_description=distribution.description, start_step=result.start_step,
        final_step=result.final_step, resumed_from=result.resumed_from, final_metrics=final,
        evaluation=evaluation, curves=curves, seconds=result.seconds, parameters=parameters,
    )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


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
        raise UserError(f"--init-checkpoint {path}: its bert_config.json differs from --model's config")
    if lowercase is not None and source.lowercase is not None and lowercase != source.lowercase:
        cases = {True: "uncased (lower-cased)", False: "cased"}
        raise UserError(f"--init-checkpoint {path}: was trained {cases[source.lowercase]} but the records were made "
                        f"{cases[lowercase]}; make the records with the model's casing")
    whole = source.kind == "pretraining" and source.model_weights.is_file()

    def init(model) -> None:
        # Heads come along only when they are the same heads (NSP on both sides or on neither).
        if whole and source.task.get("next_sentence", True) == model.next_sentence:
            model.load_weights(str(source.model_weights))
        else:
            model.backbone.load_weights(str(source.encoder_weights))

    return init
