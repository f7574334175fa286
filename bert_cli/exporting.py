"""``bert export``: a model directory -> a TensorFlow SavedModel that serves raw strings.

The SavedModel is written under a temporary name beside ``OUTPUT_DIR`` and
renamed when complete, so a directory under the final name is always a whole
export. Beside ``saved_model.pb``, ``variables/`` and ``assets/`` (the
vocabulary and ``bert_config.json``) it holds ``bert_export.json``: the task,
labels, casing, sequence length and every signature's inputs and outputs.
TensorFlow Serving and ``tf.saved_model.load`` ignore that file; ``bert
predict`` reads it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from bert_cli.errors import UserError

EXPORT_FILE = "bert_export.json"
EXPORT_FORMAT = "bert-export"
EXPORT_VERSION = 1


@dataclasses.dataclass
class ExportResult:
    output: Path
    source: Path
    task: str
    max_seq_length: int
    batch_size: int | None
    lowercase: bool
    signatures: dict  # name -> {"inputs": ..., "outputs": ...}
    notes: list[str]
    seconds: float


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is a SavedModel directory (ours or another's)."""
    path = Path(path)
    return path.is_dir() and ((path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file())


def check_output(output: Path, model_dir: Path, overwrite: bool) -> None:
    """Refuses an output that exists (unless ``overwrite``), is a file, or is or holds the model directory."""
    if output.exists() and not output.is_dir():
        raise UserError(f"OUTPUT_DIR {output}: exists and is not a directory; choose another path")
    resolved, source = output.resolve(), model_dir.resolve()
    if resolved == source or resolved in source.parents:
        raise UserError(f"OUTPUT_DIR {output}: is (or holds) the model directory {model_dir}; "
                        "export to another directory")
    if output.exists() and not overwrite:
        raise UserError(f"OUTPUT_DIR {output}: already exists; pass --overwrite to replace it "
                        "(the old one stays until the new export is complete) or choose another directory")
    if output.parent.is_dir():  # a real write before the model is built
        from data.textio import writable_directory

        writable_directory(output.parent, "OUTPUT_DIR")


def export_model(model_dir: Path, output: Path, max_seq_length: int | None = None, batch_size: int | None = None,
                 all_layers: bool = False, overwrite: bool = False) -> ExportResult:
    """Writes the SavedModel of ``model_dir`` to ``output`` (see the module docstring)."""
    from bert_cli.model_dir import read_model_dir

    started = time.perf_counter()
    model_dir, output = Path(model_dir), Path(output)
    if max_seq_length is not None and max_seq_length < 3:
        raise UserError(f"--max-seq-length must be at least 3, got {max_seq_length}")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--fixed-batch-size must be at least 1, got {batch_size}")
    check_output(output, model_dir, overwrite)
    source = read_model_dir(model_dir, "MODEL_DIR")

    from bert_cli import console

    console.load_tensorflow()

    from bert_cli.runs import write_json
    from bert_cli.serving import ServingOptions, build_serving
    from data.textio import atomic_path

    module = build_serving(source, ServingOptions(max_seq_length, batch_size, all_layers))
    notes = []
    from bert_cli.tasks import is_fine_tuned

    if not is_fine_tuned(source.kind):
        notes.append(f"{model_dir} is not fine-tuned (task {source.kind!r}): only the preprocess/encode "
                     "signatures (a feature extractor) were exported, no serving_default")
    signatures = module.signatures()
    with atomic_path(output) as temporary:
        _save(module, temporary, signatures, output)
        loaded_signatures = saved_signatures(temporary)
        description = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            **module.describe(),
            "max_seq_length": module.max_seq_length,
            "lowercase": module.tokenizer.lowercase,
            "batch_size": batch_size,
            "all_layers": module.all_layers,
            "hidden_size": source.config.hidden_size,
            "num_hidden_layers": source.config.num_hidden_layers,
            "vocab_sha256": module.tokenizer.vocab.sha256,
            "source": str(model_dir.resolve()),
            "assets": ["vocab.txt", "bert_config.json"],
            "signatures": loaded_signatures,
        }
        write_json(temporary / EXPORT_FILE, description)
    return ExportResult(
        output=output, source=model_dir, task=source.kind, max_seq_length=module.max_seq_length,
        batch_size=batch_size, lowercase=module.tokenizer.lowercase, signatures=loaded_signatures, notes=notes,
        seconds=time.perf_counter() - started,
    )


def _save(module, temporary: Path, signatures: dict, output: Path) -> None:
    """``tf.saved_model.save``, with a full or read-only disk reported as one line naming OUTPUT_DIR."""
    import tensorflow as tf

    from bert_cli.runs import storage_problem

    try:
        tf.saved_model.save(module, str(temporary), signatures=signatures)
    except (tf.errors.OpError, OSError) as error:
        problem = storage_problem(error)
        if problem is None:
            raise
        reason = problem.split(": ", 1)[-1]
        raise UserError(f"OUTPUT_DIR {output}: {reason} (nothing was left under that name)") from None


def saved_signatures(path: Path) -> dict:
    """``{name: {"inputs": {name: {dtype, shape}}, "outputs": {...}}}`` as written in ``saved_model.pb``.

    Read from the file rather than from the functions, so it describes exactly
    what TensorFlow Serving and ``saved_model_cli`` see (and costs no retracing).
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((Path(path) / "saved_model.pb").read_bytes())

    def spec(info) -> dict:
        shape = None if info.tensor_shape.unknown_rank else [d.size if d.size >= 0 else None
                                                             for d in info.tensor_shape.dim]
        return {"dtype": tf.dtypes.as_dtype(info.dtype).name, "shape": shape}

    result = {}
    for name, signature in sorted(saved.meta_graphs[0].signature_def.items()):
        if name.startswith("__"):  # TensorFlow's own (__saved_model_init_op)
            continue
        result[name] = {"inputs": {key: spec(value) for key, value in sorted(signature.inputs.items())},
                        "outputs": {key: spec(value) for key, value in sorted(signature.outputs.items())}}
    return result


def read_export_description(path: Path) -> dict:
    """``bert_export.json`` of an export directory; UserError when it is missing or not ours."""
    file = Path(path) / EXPORT_FILE
    if not file.is_file():
        raise UserError(f"{path}: a SavedModel without {EXPORT_FILE}; bert predict reads exports made by bert export")
    try:
        description = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{file}: not valid JSON ({error}); export the model again") from None
    if not isinstance(description, dict) or description.get("format") != EXPORT_FORMAT:
        raise UserError(f"{file}: not a bert export description; export the model again")
    return description
