"""``bert distill``: a small, fast student trained to reproduce a fine-tuned teacher's outputs.

Task-specific distillation as the lecture behind this project recommends for
serving: fine-tune the best teacher you can, run it over plenty of *unlabeled*
task-like text, and train a much smaller model on the teacher's distributions
(soft targets at ``--temperature``, Hinton et al. 2015). The student is trained
by the same runner as ``bert finetune`` (:func:`bert_cli.finetuning.run_finetuning`:
strategies, precision, resume, best-model keeping, curves), through a
:class:`DistillRecipe` that wraps the task's own recipe; so its output is an
ordinary fine-tuned model directory, plus ``distill.json``.

What differs between the tasks (reading unlabeled files, the teacher's outputs,
aligning them with the student's own tokenisation, the soft loss, agreement)
is each task module's ``Distillation`` part (:mod:`bert_cli.tasks`). Teacher
and student tokenise independently (their vocabularies and ``max_seq_length``
may differ): targets are aligned per example (classify), per word (tag) or per
character of the context (squad), never by word-piece ids.

The teacher's outputs are computed once, in batches, and cached as float16 in
``--cache`` (default ``OUTPUT/cache``), keyed by the teacher's weights and
task, the input files' contents and the teacher-side featurisation, so a rerun
or a second student reuses them.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from bert_cli.commands.options import DATA, START, argument, as_tuple, option
from bert_cli.errors import UserError

DISTILL_FILE = "distill.json"
CACHE_VERSION = 1
#: Sequence-like arrays padded to a common length when splits are concatenated (token axis 1).
_PAD_IDS = ("input_ids",)


@dataclasses.dataclass(frozen=True)
class DistillOptions:
    """``bert distill``'s own options (the training options are :class:`bert_cli.finetuning.FinetuneOptions`'s)."""

    teacher: Path = argument(help="Fine-tuned model directory to learn from (bert finetune classify|tag|squad).")
    unlabeled: tuple[str, ...] = argument(
        help="Unlabeled text in the teacher task's formats (TSV/CSV/JSONL with its text columns, CoNLL tokens, "
        "SQuAD JSON without answers); files, globs, .gz.", cli_type=list[str], parse=as_tuple)
    student: str | None = option(
        None, help="The student: a preset (mini, small, L-4_H-256, ...), a bert_config.json, or a pre-trained "
        "model directory.", panel=START)
    student_init: Path | None = option(
        None, help="Pre-trained model directory (bert pretrain, bert convert) to start the student from.",
        panel=START)
    student_vocab: Path | None = option(
        None, help="vocab.txt of a preset student; default: the teacher's.", panel=START)
    train: Path | None = option(
        None, help="The teacher's labelled training file: its examples are distilled too, and their gold labels "
        "mixed in with --hard-label-weight.", panel=DATA)
    dev: Path | None = option(
        None, help="Labelled file to evaluate teacher and student on (the task's metric) after every epoch.",
        panel=DATA)
    temperature: float = option(1.0, help="Softmax temperature of the soft targets (the loss is scaled by T²).")
    hard_label_weight: float = option(1.0, help="Weight of the gold-label loss on --train examples.")
    teacher_batch_size: int = option(64, help="Batch size of the teacher's pass over the inputs.")
    cache: Path | None = option(None, help="Folder of the teacher-output cache; default OUTPUT/cache.")
    measure_speed: bool = option(True, help="Time teacher and student (batch 1 p50/p99, batch 32) at the end.",
                                 flags=("--measure-speed/--no-measure-speed",))


def training_options() -> type:
    """:class:`FinetuneOptions` without its starting point (``--student`` names it) and with
    ``--max-seq-length`` defaulting to the teacher's."""
    from bert_cli.finetuning import FinetuneOptions

    fields = []
    for f in dataclasses.fields(FinetuneOptions):
        if f.name in ("init", "model", "vocab"):
            continue
        if f.name == "max_seq_length":
            fields.append((f.name, "int | None", option(
                None, help="Longest student input in word pieces; default: the teacher's.", panel=f.metadata[
                    "cli"].panel)))
            continue
        default = {} if f.default is dataclasses.MISSING else {"default": f.default}
        fields.append((f.name, f.type, dataclasses.field(metadata=f.metadata, **default)))
    cls = dataclasses.make_dataclass("DistillTraining", fields, frozen=True)
    cls.__module__ = FinetuneOptions.__module__  # its annotations resolve in that module
    cls.__doc__ = "The fine-tuning options of bert distill (the student's training)."
    return cls


# ----------------------------------------------------------------------------
# The teacher
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class Teacher:
    """A fine-tuned model directory checked for distillation, and its task module."""

    model_dir: object  # bert_cli.model_dir.ModelDir
    module: object
    max_seq_length: int
    lowercase: bool | None

    _model: object = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def task(self) -> dict:
        return self.model_dir.task

    def load(self):
        """The teacher's keras model with its weights (built and loaded once)."""
        if self._model is None:
            self._model = load_fine_tuned(self.model_dir)
        return self._model

    def identity(self) -> str:
        """The teacher's weights, config and task: what its outputs depend on."""
        digest = hashlib.sha256()
        for name in ("model.weights.h5", "bert_config.json", "vocab.txt", "task.json"):
            digest.update(_file_digest(self.model_dir.path / name).encode())
        return digest.hexdigest()


def load_fine_tuned(model_dir):
    """A fine-tuned model directory's whole keras model (its task's head included) with its weights."""
    from bert_cli.tasks import task_module

    model = task_module(model_dir.kind).build_model(model_dir)
    try:
        model.load_weights(str(model_dir.model_weights))
    except (ValueError, OSError) as error:
        raise UserError(f"{model_dir.model_weights}: cannot be loaded into its bert_config.json ({error})") from None
    return model


def read_teacher(path: Path) -> Teacher:
    """The teacher: a fine-tuned model directory with its whole model's weights."""
    from bert_cli.model_dir import read_model_dir
    from bert_cli.tasks import is_fine_tuned, task_module

    teacher = read_model_dir(path, "TEACHER_DIR")
    if not is_fine_tuned(teacher.kind):
        raise UserError(f"TEACHER_DIR {path}: is a pre-trained model (task.json says {teacher.kind!r}); a teacher "
                        "is a fine-tuned model directory: run bert finetune classify|tag|squad first")
    if not teacher.model_weights.is_file():
        raise UserError(f"TEACHER_DIR {path}: has no {teacher.model_weights.name} (the fine-tuned model's weights); "
                        "give the output directory of a finished bert finetune run")
    max_seq_length = int(teacher.task.get("max_seq_length") or 128)
    return Teacher(teacher, task_module(teacher.kind, f"{path}/task.json"), max_seq_length, teacher.lowercase)


def _file_digest(path: Path) -> str:
    from bert_cli.finetuning import file_sha256

    return file_sha256(path) if path.is_file() else "-"


# ----------------------------------------------------------------------------
# The teacher's outputs, computed once and cached
# ----------------------------------------------------------------------------


class TeacherCache:
    """The teacher's outputs on every split, one ``.npz`` per (teacher, inputs, featurisation).

    Floating arrays are stored as float16 (the logits need no more: soft
    targets at any temperature come out within 1e-3); read back as float32.
    Never a pickle: ``np.load(..., allow_pickle=False)``.
    """

    def __init__(self, folder: Path, key: dict) -> None:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        self.path = Path(folder) / f"teacher-{digest[:20]}.npz"

    def load(self) -> dict[str, dict[str, np.ndarray]] | None:
        if not self.path.is_file():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as stored:
                outputs: dict[str, dict[str, np.ndarray]] = {}
                for name in stored.files:
                    split, key = name.split("/", 1)
                    value = stored[name]
                    outputs.setdefault(split, {})[key] = value.astype(np.float32) if value.dtype == np.float16 \
                        else value
                return outputs
        except (OSError, ValueError):
            return None  # a damaged cache is recomputed

    def save(self, outputs: dict[str, dict[str, np.ndarray]]) -> None:
        from data.textio import atomic_path

        values = {}
        for split, arrays in outputs.items():
            for key, value in arrays.items():
                value = np.asarray(value)
                values[f"{split}/{key}"] = value.astype(np.float16) if value.dtype.kind == "f" else value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as temporary:
            with open(temporary, "wb") as handle:
                np.savez(handle, **values)


def teacher_outputs(function, model, arrays: dict, batch_size: int, description: str) -> dict[str, np.ndarray]:
    """``function(model, batch)`` over ``arrays`` in batches (last one padded, then cut), with a progress bar."""
    import tensorflow as tf

    from bert_cli import console

    count = len(next(iter(arrays.values())))
    step = tf.function(lambda batch: function(model, batch))
    collected: dict[str, list] = {}
    with console.count_progress(description, count, "examples") as advance:
        for start in range(0, count, batch_size):
            real = min(batch_size, count - start)
            batch = {key: value[start:start + batch_size] for key, value in arrays.items()}
            if real < batch_size:  # one shape for every call: no retracing for the last batch
                batch = {key: np.concatenate([value, np.repeat(value[:1], batch_size - real, axis=0)])
                         for key, value in batch.items()}
            for key, value in step(batch).items():
                collected.setdefault(key, []).append(np.asarray(value)[:real])
            advance(real)
    return {key: np.concatenate(values) for key, values in collected.items()}


# ----------------------------------------------------------------------------
# The recipe the fine-tuning runner trains
# ----------------------------------------------------------------------------


def _twin(recipe):
    """A second recipe over the same data (read once) with its own features: the teacher's view."""
    twin = copy.copy(recipe)
    twin.features = {}
    if hasattr(twin, "_predicted"):
        twin._predicted = None
    return twin


def pad_to(value: np.ndarray, length: int, fill) -> np.ndarray:
    """``value`` [N, T, ...] padded with ``fill`` along the token axis to ``length``."""
    if value.ndim < 2 or value.shape[1] >= length:
        return value
    width = [(0, 0)] * value.ndim
    width[1] = (0, length - value.shape[1])
    return np.pad(value, width, constant_values=fill)


def concatenate_splits(parts: list[dict[str, np.ndarray]], pad_id: int, token_keys: tuple[str, ...]) -> dict:
    """Rows of several splits in one set of arrays, token-axis arrays padded to the longest split."""
    if len(parts) == 1:
        return parts[0]
    length = max(part["input_ids"].shape[1] for part in parts)
    merged = {}
    for key in parts[0]:
        fill = pad_id if key in _PAD_IDS else 0
        values = [pad_to(part[key], length, fill) if key in token_keys else part[key] for part in parts]
        merged[key] = np.concatenate(values)
    return merged


class DistillRecipe:
    """A :class:`bert_cli.finetuning.Recipe` that trains the student on the teacher's outputs.

    Splits: the unlabeled inputs (and ``--train``, with gold labels) are the
    training rows; ``--dev`` is evaluated with the task's metrics plus the
    student's ``agreement`` with the teacher.
    """

    def __init__(self, options: DistillOptions, common, teacher: Teacher) -> None:
        self.options, self.common, self.teacher = options, common, teacher
        self.distillation = teacher.module.Distillation(teacher.task)
        self.student = self.distillation.recipe(common)
        self.teacher_view = None
        self.task, self.unit = self.student.task, self.student.unit
        self.sums = tuple(self.distillation.SUMS)
        self.token_keys = tuple(self.distillation.TOKEN_KEYS) if self.student.token_keys else ()
        self.unlabeled: list[Path] = []
        self.files = {"train": None, "dev": options.dev, "test": None}
        self.outputs_of_teacher: dict[str, dict] = {}
        self.teacher_dev: dict | None = None
        self.cache_path: Path | None = None
        self.cache_hit = False
        self._train: dict | None = None
        self._key: dict | None = None
        self.counts: dict[str, int] = {}

    # -- reading and featurising ------------------------------------------------

    def read(self) -> None:
        from data.textio import expand_inputs

        self.unlabeled = expand_inputs(self.options.unlabeled)
        self.files["train"] = self.unlabeled[0]
        self.distillation.read(self.student, self.unlabeled, self.options.train, self.options.dev)
        self.teacher_view = _twin(self.student)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.student.metrics) + ("agreement",)

    def splits(self) -> list[str]:
        """The splits read: ``unlabeled``, and ``labeled`` / ``dev`` when given."""
        return ["unlabeled"] + [s for s, path in (("labeled", self.options.train), ("dev", self.options.dev))
                                if path is not None]

    def featurize(self, tokenize, vocab, max_seq_length: int) -> None:
        self.student.featurize(tokenize, vocab, max_seq_length)
        self._teacher_pass()
        parts = []
        for split in ("unlabeled", "labeled"):
            arrays = self.student.arrays(split)
            if arrays is None:
                continue
            targets = self.distillation.targets(self.teacher_view, self.outputs_of_teacher[split], self.student,
                                                split, self.options.temperature)
            count = len(arrays["input_ids"])
            self.counts[split] = count
            weight = self.options.hard_label_weight if split == "labeled" else 0.0
            hard = np.full(count, weight, np.float32) * targets.pop("hard_mask", np.ones(count, np.float32))
            parts.append({**arrays, **targets, "hard_weight": hard})
        self._train = concatenate_splits(parts, vocab.pad_id, self.distillation.TOKEN_KEYS)

    def _teacher_pass(self) -> None:
        """The teacher's featurisation and outputs on every split (from the cache when it has them)."""
        from data.tokenization import Tokenizer, Vocabulary, resolve_lowercase

        teacher = self.teacher
        vocab = Vocabulary.load(teacher.model_dir.vocab_path)
        lowercase = resolve_lowercase(vocab, teacher.lowercase)
        self.teacher_view.featurize(Tokenizer(vocab, lowercase).encode, vocab, teacher.max_seq_length)
        cache = TeacherCache(self.options.cache or Path(self.common.output) / "cache", self._cache_key())
        self.cache_path = cache.path
        outputs = cache.load()
        self.cache_hit = outputs is not None and all(split in outputs for split in self.splits())
        if not self.cache_hit:
            model = teacher.load()
            outputs = {}
            for split in self.splits():
                outputs[split] = teacher_outputs(self.distillation.teacher_outputs, model,
                                                 self.teacher_view.arrays(split), self.options.teacher_batch_size,
                                                 f"teacher on {split}")
            cache.save(outputs)
        self.outputs_of_teacher = outputs
        if "dev" in outputs:
            self.teacher_dev = self.teacher_view.evaluate(outputs["dev"])

    def _cache_key(self) -> dict:
        if self._key is None:
            self._key = self._identity()
        return self._key

    def _identity(self) -> dict:
        """The teacher's identity and the input files' contents (sha256 of each: read once)."""
        files = {split: [_file_digest(p) for p in paths] for split, paths in (
            ("unlabeled", self.unlabeled), ("labeled", [self.options.train] if self.options.train else []),
            ("dev", [self.options.dev] if self.options.dev else []))}
        # The teacher's featurisation (max_seq_length, casing, columns, windows) is in its task.json.
        return {"version": CACHE_VERSION, "task": self.task, "teacher": self.teacher.identity(), "files": files}

    def arrays(self, split: str) -> dict | None:
        if split == "train":
            return self._train
        return self.student.arrays(split) if split == "dev" else None

    # -- model and training ---------------------------------------------------

    def build_model(self, config, dtype):
        return self.student.build_model(config, dtype)

    def compute(self, model, batch, training: bool) -> dict:
        return self.distillation.compute(model, batch, self.options.temperature, training)

    def summarize(self, totals: dict) -> dict:
        batches = max(totals.get("batches", 0.0), 1.0)
        metrics = {"loss": totals.get("loss", 0.0) / batches}
        if totals.get("judged"):  # what agreement counts: examples, words or span ends (none for regression)
            metrics["agreement"] = totals.get("agree", 0.0) / totals["judged"]
        return metrics

    def outputs(self, model, batch) -> dict:
        return self.student.outputs(model, batch)

    # -- evaluation, predictions, the model directory ---------------------------

    def evaluate(self, outputs: dict) -> dict[str, float]:
        metrics = self.student.evaluate(outputs)
        metrics["agreement"] = self.distillation.agreement(self.student, outputs, self.teacher_view,
                                                           self.outputs_of_teacher["dev"])
        return metrics

    def details(self, outputs: dict) -> dict:
        return self.student.details(outputs)

    def write_predictions(self, split: str, outputs: dict, path: Path) -> None:
        self.student.write_predictions(split, outputs, path)

    def prediction_file(self, split: str) -> str:
        return self.student.prediction_file(split)

    def task_file(self) -> dict:
        """The teacher's task description (labels, columns, scheme...): the student does the same task."""
        kept = {k: v for k, v in self.teacher.task.items() if k not in ("task", "max_seq_length", "lowercase",
                                                                          "metric")}
        return {**kept, "distilled_from": str(self.teacher.model_dir.path.resolve())}

    def same_head(self, task: dict) -> bool:
        return self.student.same_head(task)

    def signature(self) -> dict:
        return {"distill": self._cache_key(), "temperature": self.options.temperature,
                "hard_label_weight": self.options.hard_label_weight}

    def describe(self) -> list[tuple[str, str]]:
        teacher = self.teacher
        labels = teacher.task.get("labels") or []
        what = f"{self.task}" + (f", {len(labels)} labels" if labels else "")
        rows = [("task", f"{what}, distilled from {teacher.model_dir.path}")]
        data = [f"unlabeled {self.counts.get('unlabeled', 0):,} {self.unit} from {len(self.unlabeled)} file(s)"]
        if "labeled" in self.counts:
            data.append(f"labelled {self.counts['labeled']:,} (hard-label weight {self.options.hard_label_weight:g})")
        if self.options.dev:
            data.append(f"dev {len(self.student.arrays('dev')['input_ids']):,}")
        rows.append(("data", ", ".join(data)))
        cached = "read from" if self.cache_hit else "written to"
        rows.append(("teacher outputs", f"{cached} {self.cache_path} (T={self.options.temperature:g})"))
        return rows


# ----------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class DistillResult:
    finetune: object  # bert_cli.finetuning.FinetuneResult
    teacher: Path
    teacher_parameters: int
    teacher_dev: dict | None
    metric: str
    speed: dict | None
    summary: Path


def finetune_options(options: DistillOptions, training, teacher: Teacher):
    """The runner's options: the student's starting point from ``--student`` / ``--student-init``."""
    from bert_cli.finetuning import FinetuneOptions

    init, model, vocab = options.student_init, None, None
    if options.student is not None:
        if Path(options.student).is_dir():
            if init is not None:
                raise UserError("--student is a model directory and --student-init was given too; give one")
            init = Path(options.student)
        else:
            model = options.student
    if init is None and model is None:
        raise UserError("give --student PRESET (mini, small, L-4_H-256, ... or a bert_config.json) or "
                        "--student-init MODEL_DIR (a pre-trained model directory)")
    if init is not None and options.student_vocab is not None:
        raise UserError(f"--student-vocab: the student {init} brings its own vocab.txt; leave --student-vocab out")
    if model is not None:
        vocab = options.student_vocab or teacher.model_dir.vocab_path
    values = dataclasses.asdict(training)
    values["max_seq_length"] = values["max_seq_length"] or teacher.max_seq_length
    return FinetuneOptions(init=init, model=model, vocab=vocab, **values)


def check_options(options: DistillOptions) -> None:
    if not options.temperature > 0:
        raise UserError(f"--temperature must be positive, got {options.temperature}")
    if options.hard_label_weight < 0:
        raise UserError(f"--hard-label-weight must be 0 or more, got {options.hard_label_weight}")
    if options.teacher_batch_size < 1:
        raise UserError(f"--teacher-batch-size must be at least 1, got {options.teacher_batch_size}")


def run_distill(options: DistillOptions, training) -> DistillResult:
    """Distils ``options.teacher`` into a student model directory; see the module docstring."""
    from bert_cli.finetuning import run_finetuning
    from bert_cli.runs import count_parameters, options_json, write_json

    check_options(options)
    teacher = read_teacher(options.teacher)
    common = finetune_options(options, training, teacher)
    if Path(common.output).resolve() == teacher.model_dir.path.resolve():
        raise UserError(f"--output {common.output}: is the teacher's directory; write the student elsewhere")
    recipe = DistillRecipe(options, common, teacher)
    result = run_finetuning(recipe, common)
    teacher_model = teacher.load()
    speed = None
    if options.measure_speed and options.dev:
        from bert_cli.model_dir import read_model_dir

        student = load_fine_tuned(read_model_dir(common.output, "--output"))  # as the directory holds it
        speed = measure_speed(recipe, teacher_model, student)
    summary = Path(common.output) / DISTILL_FILE
    teacher_parameters = count_parameters(teacher_model)
    write_json(summary, {
        "teacher": str(teacher.model_dir.path.resolve()), "task": recipe.task,
        "unlabeled": [str(p) for p in recipe.unlabeled], "train": str(options.train) if options.train else None,
        "examples": recipe.counts, "options": options_json(options), "temperature": options.temperature,
        "metric": result.metric, "teacher_dev": recipe.teacher_dev, "student_dev": result.dev,
        "agreement": (result.dev or {}).get("agreement"), "teacher_parameters": teacher_parameters,
        "student_parameters": result.parameters, "speed": speed, "teacher_cache": str(recipe.cache_path),
    })
    return DistillResult(result, options.teacher, teacher_parameters, recipe.teacher_dev, result.metric, speed,
                         summary)


# ----------------------------------------------------------------------------
# Serving speed of teacher and student
# ----------------------------------------------------------------------------


def _timed_calls(function, batch: dict, calls: int) -> list[float]:
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        for value in function(batch).values():
            value.numpy()
        seconds.append(time.perf_counter() - start)
    return seconds


def model_speed(outputs, model, arrays: dict, calls: int = 30) -> dict:
    """Batch-1 latency (p50/p99 ms) and batch-32 throughput (examples/s) of ``outputs(model, batch)``.

    The model's forward pass as its export serves it (a ``tf.function``
    over fixed-shape batches of featurised dev inputs: tokenisation, the same
    for both, is left out), warmed up before timing.
    """
    import tensorflow as tf

    step = tf.function(lambda batch: outputs(model, batch))
    count = len(arrays["input_ids"])

    def batch_of(size: int) -> dict:
        index = np.arange(size) % count
        return {key: tf.constant(value[index]) for key, value in arrays.items()}

    one, many = batch_of(1), batch_of(32)
    _timed_calls(step, one, 3)
    latency = np.array(_timed_calls(step, one, calls)) * 1000
    _timed_calls(step, many, 2)
    throughput = 32 / np.median(_timed_calls(step, many, max(5, calls // 5)))
    return {"batch1_p50_ms": float(np.percentile(latency, 50)), "batch1_p99_ms": float(np.percentile(latency, 99)),
            "batch32_examples_per_second": float(throughput)}


def measure_speed(recipe: DistillRecipe, teacher_model, student_model) -> dict:
    """Both models timed on the same dev examples, each with its own featurisation."""
    from bert_cli import console

    console.info("timing teacher and student on the dev inputs (batch 1 and 32)")
    return {
        "teacher": model_speed(recipe.teacher_view.outputs, teacher_model, recipe.teacher_view.arrays("dev")),
        "student": model_speed(recipe.student.outputs, student_model, recipe.student.arrays("dev")),
    }
