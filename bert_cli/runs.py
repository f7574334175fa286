"""Run plumbing shared by pre-training and fine-tuning: output directory, JSON files, logs, precision, failures.

Both runners (``bert pretrain``, ``bert finetune ...``) and the demo use these
helpers, so a run directory is prepared, resumed, logged and summarised the
same way whichever command made it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Iterator

from bert_cli.errors import UserError

RUN_FILE = "run.json"
# Keras dtype policies a run may train in ("fp32" is Keras' "float32").
PRECISIONS = ("fp32", "mixed_bfloat16", "mixed_float16")


# ----------------------------------------------------------------------------
# JSON files
# ----------------------------------------------------------------------------


def read_json(path: Path, missing_ok: bool = False) -> dict:
    """A JSON file's content; with ``missing_ok`` an unreadable or invalid file reads as ``{}``."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        if missing_ok:
            return {}
        raise


def write_json(path: Path, value, sort_keys: bool = False) -> None:
    """Writes ``value`` as indented JSON under a temporary name, then renames: never a half-written file."""
    from data.textio import atomic_path

    with atomic_path(Path(path)) as temporary:
        temporary.write_text(json.dumps(value, indent=2, sort_keys=sort_keys) + "\n", encoding="utf-8")


def options_json(options) -> dict:
    """A frozen options dataclass as JSON-ready values (paths as strings), for a run's summary file."""
    return {key: (str(value) if isinstance(value, Path) else value)
            for key, value in dataclasses.asdict(options).items()}


# ----------------------------------------------------------------------------
# The output directory
# ----------------------------------------------------------------------------


def prepare_run_output(output: Path, signature: dict, overwrite: bool, names: tuple[str, ...]) -> None:
    """Readies ``output`` for a training run described by ``signature``.

    A rerun with the same signature resumes; a different one is refused unless
    ``overwrite``, which deletes the ``names`` a run writes there (and nothing
    else). The signature is recorded in ``run.json``.
    """
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output}: exists and is not a directory")
    run_file = output / RUN_FILE
    if run_file.is_file() and not overwrite:
        previous = read_json(run_file, missing_ok=True)
        if previous != signature:
            changed = sorted(k for k in signature.keys() | previous.keys() if previous.get(k) != signature.get(k))
            raise UserError(
                f"--output {output}: holds a run with a different {', '.join(changed) or 'setup'}; "
                "pass --overwrite to start over or choose another directory"
            )
    if overwrite and output.is_dir():
        for name in names + (RUN_FILE,):
            target = output / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    output.mkdir(parents=True, exist_ok=True)
    write_json(run_file, signature, sort_keys=True)


@contextlib.contextmanager
def removed_unless_resumable(output: Path) -> Iterator[None]:
    """A run that fails before its first checkpoint leaves nothing of an output directory it created.

    After the first checkpoint the directory stays: rerunning the same command
    resumes from it.
    """
    from data.textio import missing_directories

    created = missing_directories(output)
    try:
        yield
    except BaseException:
        if created and not (Path(output) / "checkpoints" / "checkpoint").is_file():
            shutil.rmtree(created[0], ignore_errors=True)
        raise


# ----------------------------------------------------------------------------
# While training
# ----------------------------------------------------------------------------


class SummaryWriters:
    """TensorBoard logs of a run: ``logs/train`` and ``logs/eval`` (on the chief only)."""

    def __init__(self, logs: Path, enabled: bool = True) -> None:
        import tensorflow as tf

        self._writers = {kind: tf.summary.create_file_writer(str(logs / kind)) for kind in ("train", "eval")} \
            if enabled else {}

    def write(self, kind: str, step: int, metrics: dict) -> None:
        """Every metric but ``step`` as a scalar at ``step``."""
        import tensorflow as tf

        if kind not in self._writers:
            return
        with self._writers[kind].as_default(step=step):
            for key, value in metrics.items():
                if key != "step":
                    tf.summary.scalar(key, value)


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision!r}: use {', '.join(PRECISIONS)}")


def model_dtype(precision: str) -> str | None:
    """The dtype policy name a model is built with: None (float32) for fp32, else the mixed policy."""
    return None if precision == "fp32" else precision


def with_loss_scaling(optimizer, precision: str):
    """float16 needs dynamic loss scaling (its range is too small for small gradients); bfloat16 does not."""
    if precision != "mixed_float16":
        return optimizer
    import keras

    return keras.optimizers.LossScaleOptimizer(optimizer)


def count_parameters(model) -> int:
    """Every weight of the model, trainable or not (the figure the results tables show)."""
    import numpy as np

    return int(sum(int(np.prod(v.shape)) for v in model.weights))


# What the OS says when storage, not the program, is at fault, and what to do about it.
_STORAGE_PROBLEMS = (
    ("No space left on device", "no space left on the device; free some space and run the command again"),
    ("File too large", "file too large for the file system or the shell's limit (ulimit -f); raise the limit or "
                       "write elsewhere"),
    ("Read-only file system", "the file system is read-only; write elsewhere"),
    ("Disk quota exceeded", "disk quota exceeded; free some space and run the command again"),
)


def storage_problem(error, resumable: bool = False) -> str | None:
    """One line for a TensorFlow error that is the disk's (full, read-only...), naming the place; else None.

    TensorFlow reports these as ResourceExhaustedError or UnknownError with the
    temporary file's path in the message; the line names the directory the
    user chose instead (the part before ``..._temp``).
    """
    import re

    message = re.sub(r"\{\{[^}]*\}\}", "", getattr(error, "message", str(error)))  # TensorFlow's node names
    for needle, advice in _STORAGE_PROBLEMS:
        if needle in message:
            match = re.search(r"(/[^\s;'\"]+)", message.split(needle)[0])
            filename = getattr(error, "filename", None) or (match.group(1) if match else None)
            place = _chosen_directory(str(filename)) if filename else None
            again = "; the run resumes from its last complete checkpoint" if resumable else ""
            return f"{place + ': ' if place else ''}{advice}{again}"
    return None


def _chosen_directory(path: str) -> str:
    """``/out/checkpoints/ckpt-3_temp/part-0.data...`` -> ``/out/checkpoints``."""
    parts = Path(path).parts
    for index, part in enumerate(parts):
        if part.endswith("_temp") or ".tmp-" in part or part.startswith(".tmp"):
            return str(Path(*parts[:index])) if index else path
    return path
