"""Model directories: what every command that makes or consumes a model reads and writes.

A model directory holds:

    bert_config.json     the encoder's shape, original field names
    vocab.txt            the vocabulary (and vocab.json, its manifest, when there is one)
    encoder.weights.h5   the encoder alone: any command can start from it
    model.weights.h5     the whole model of the task (encoder + heads)
    task.json            what the model is: {"task": "pretraining" | "classify" | "tag" | "squad",
                         "lowercase": ..., "max_seq_length": ..., and the task's own keys
                         such as "labels"}

Keeping the encoder in its own file costs disk space but means fine-tuning,
export and conversion never need to know how another task's heads are built.

Wherever a model directory is read (``--init``, ``--init-checkpoint``, ``bert
convert FROM``), two other kinds of directory are accepted too, and
:func:`source_kind` is the one place that tells them apart:

    original   google-research/bert: bert_model.ckpt.*, bert_config.json, vocab.txt
               (converted on the fly into a scratch directory, see bert_cli.conversion)
    preset     keras-hub's BertBackbone.save_to_preset (+ the tokenizer's):
               config.json, model.weights.h5, assets/tokenizer/vocabulary.txt
    huggingface  Hugging Face Transformers: config.json, model.safetensors (or shards), vocab.txt
               (converted on the fly, see bert_cli.huggingface)
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from bert_cli.errors import UserError
from bert_cli.runs import write_json

CONFIG_FILE = "bert_config.json"
VOCAB_FILE = "vocab.txt"
ENCODER_WEIGHTS = "encoder.weights.h5"
MODEL_WEIGHTS = "model.weights.h5"
TASK_FILE = "task.json"


@dataclasses.dataclass(frozen=True)
class ModelDir:
    """A model directory that has been checked to hold what it must."""

    path: Path
    config: object  # models.config.BertConfig
    vocab_path: Path
    task: dict
    # Where encoder.weights.h5 / model.weights.h5 are when not in `path`: the
    # scratch directory an original checkpoint or a preset was converted into.
    weights_path: Path | None = None

    @property
    def lowercase(self) -> bool | None:
        return self.task.get("lowercase")

    @property
    def kind(self) -> str:
        return self.task.get("task", "pretraining")

    @property
    def objective(self) -> str:
        """The pre-training objective of ``model.weights.h5``: "mlm" (BERT's heads) or "electra"."""
        return self.task.get("objective", "mlm")

    @property
    def has_masked_lm_heads(self) -> bool:
        """Whether ``model.weights.h5`` is a BERT pre-training model (MLM, and NSP when task.json says so)."""
        return (self.kind == "pretraining" and self.objective == "mlm" and self.task.get("masked_lm", True)
                and self.model_weights.is_file())

    @property
    def encoder_weights(self) -> Path:
        return (self.weights_path or self.path) / ENCODER_WEIGHTS

    @property
    def model_weights(self) -> Path:
        return (self.weights_path or self.path) / MODEL_WEIGHTS


def source_kind(path: str | Path) -> str | None:
    """What a directory that should hold a model holds: "model", "original", "preset", "huggingface" or None.

    Decided by file names alone (no TensorFlow): our ``encoder.weights.h5``; a
    keras-hub preset's ``config.json`` + ``model.weights.h5``; a Transformers
    ``config.json`` + a weight file of theirs (``model.safetensors``, and also
    the pickles it will refuse, so the refusal is clear); an original
    checkpoint's ``*.index`` (or a checkpoint prefix such as
    ``.../model.ckpt-100000`` given directly).
    """
    path = Path(path)
    if path.is_dir():
        if (path / ENCODER_WEIGHTS).is_file():
            return "model"
        if (path / "config.json").is_file() and (path / MODEL_WEIGHTS).is_file():
            return "preset"
        from bert_cli.huggingface import is_huggingface

        if is_huggingface(path):
            return "huggingface"
        if any(path.glob("*.index")):
            return "original"
        return None
    return "original" if Path(f"{path}.index").is_file() else None


def read_model_dir(path: str | Path, option: str = "--init") -> ModelDir:
    """Checks a model directory and reads its config and task description."""
    from models.config import BertConfig

    path = Path(path)
    kind = source_kind(path)
    if kind in ("original", "preset", "huggingface"):
        from bert_cli.conversion import open_original, open_preset
        from bert_cli.huggingface import open_huggingface

        opener = {"original": open_original, "preset": open_preset, "huggingface": open_huggingface}[kind]
        return opener(path, option)
    if not path.is_dir():
        raise UserError(f"{option} {path}: no such model directory")
    missing = [name for name in (CONFIG_FILE, VOCAB_FILE, ENCODER_WEIGHTS) if not (path / name).is_file()]
    if missing:
        raise UserError(
            f"{option} {path}: not a model directory (missing {', '.join(missing)}); "
            "make one with bert pretrain, bert finetune or bert convert, or give an original BERT checkpoint "
            "directory (bert_model.ckpt.*, bert_config.json, vocab.txt), a Hugging Face directory (config.json, "
            "model.safetensors, vocab.txt) or a keras-hub preset directory"
        )
    config = BertConfig.from_json_file(path / CONFIG_FILE)
    task = {}
    if (path / TASK_FILE).is_file():
        try:
            task = json.loads((path / TASK_FILE).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise UserError(f"{path / TASK_FILE}: invalid JSON ({error.msg})") from None
    return ModelDir(path=path, config=config, vocab_path=path / VOCAB_FILE, task=task)


def load_encoder(model_dir: ModelDir, dtype: str | None = None):
    """The directory's encoder (a keras-hub ``BertBackbone``) with its trained weights."""
    from models.encoder import build_encoder

    encoder = build_encoder(model_dir.config, dtype=dtype)
    try:
        encoder.load_weights(str(model_dir.encoder_weights))
    except (ValueError, OSError) as error:
        raise UserError(f"{model_dir.encoder_weights}: cannot be loaded into the config's encoder ({error})") from None
    return encoder


def write_model_dir(path: Path, config, vocab_path: Path, encoder, model, task: dict) -> None:
    """Writes (or refreshes) a model directory; the task file last, so it marks a complete one.

    ``model`` None writes the encoder alone (no ``model.weights.h5``).
    """
    path.mkdir(parents=True, exist_ok=True)
    config.to_json_file(path / CONFIG_FILE)
    vocab_path = Path(vocab_path)
    if vocab_path.resolve() != (path / VOCAB_FILE).resolve():
        shutil.copyfile(vocab_path, path / VOCAB_FILE)
        manifest = vocab_path.with_suffix(".json")
        if manifest.is_file():
            shutil.copyfile(manifest, path / "vocab.json")
    # Keras writes .weights.h5 in place: write to a temporary name, then rename.
    for weights, target in ((encoder, ENCODER_WEIGHTS), (model, MODEL_WEIGHTS)):
        if weights is None:
            continue
        temporary = path / f".{target}.tmp.weights.h5"
        weights.save_weights(str(temporary))
        temporary.replace(path / target)
    write_json(path / TASK_FILE, task, sort_keys=True)
