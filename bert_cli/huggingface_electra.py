"""Hugging Face Transformers ELECTRA directories in ``bert convert`` and ``--init`` / ``--init-checkpoint``.

In: a discriminator directory (``config.json`` with ``model_type``
"electra"; ``ElectraForPreTraining``, or ``ElectraModel`` without the head)
becomes an ELECTRA model directory of ours, as a google-research/electra
checkpoint does (:mod:`bert_cli.electra_conversion`): the discriminator is
``encoder.weights.h5``, so ``bert finetune``, ``bert export`` and ``bert
predict`` use it unchanged, and ``task.json`` says ``"objective": "electra"``.
The replaced-token head is kept (``model.weights.h5``). Transformers keeps the
generator in a directory of its own (``ElectraForMaskedLM``, as Google's
``electra-*-generator`` releases): ``bert convert DISC_DIR TO --generator
GEN_DIR`` reads it too, and ``model.weights.h5`` is then the whole
:class:`models.electra.ElectraPretrainer`, which ``bert pretrain --objective
electra --init-checkpoint TO`` continues. A generator directory given as FROM
is refused with what it is.

Out: ``bert convert ELECTRA_MODEL_DIR TO --format huggingface`` writes the
discriminator as ``ElectraForPreTraining`` (``ElectraModel`` when the model
directory holds the encoder alone); ``--generator GEN_DIR`` writes the
generator beside it as ``ElectraForMaskedLM`` with its own copy of the shared
embeddings, the layout of the releases. The name tables are
:mod:`models.huggingface_electra`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bert_cli.errors import UserError
from bert_cli.huggingface import HF_CONFIG, _case, read_directory
from bert_cli.model_dir import ModelDir

ELECTRA_TOKENIZER = "ElectraTokenizer"


@dataclasses.dataclass(frozen=True)
class HFElectraSource:
    """A Transformers ELECTRA discriminator directory, and its generator's, checked (no weights read)."""

    path: Path
    config: object  # models.config.BertConfig
    vocab_path: Path
    lowercase: bool
    checkpoint: object  # models.huggingface_electra.HFElectraCheckpoint, the discriminator
    generator: object | None  # the same for --generator
    generator_shape: object | None  # models.electra.GeneratorShape
    notes: tuple[str, ...]

    @property
    def task(self) -> dict:
        from bert_cli.electra_conversion import electra_task

        return electra_task(self.config, self.lowercase, self.path, self.generator_shape,
                            self.checkpoint.discriminator_head)

    @property
    def mappings(self) -> list:
        return self.checkpoint.mappings + (self.generator.mappings if self.generator is not None else [])


def resolve_electra_huggingface(path: str | Path, option: str, lowercase: bool | None = None,
                                generator_path: Path | None = None) -> HFElectraSource:
    """Finds a Transformers ELECTRA directory's files (and ``--generator``'s) and checks them against each other.

    Raises UserError / ModelError naming what is wrong: config, pickles only, a missing shard,
    vocabulary size, casing, missing tensors, shapes, a generator FROM, a generator that does
    not belong to the discriminator.
    """
    from bert_cli.conversion import read_json_object
    from models.huggingface_electra import electra_config_from_hf, inspect_hf_discriminator

    path = Path(path)
    config, notes = electra_config_from_hf(read_json_object(path / HF_CONFIG), f"{option} {path / HF_CONFIG}")
    files, vocab_path, chosen = read_directory(path, config, option, lowercase)
    checkpoint = inspect_hf_discriminator(files, config, f"{option} {path}")
    generator = shape = None
    if generator_path is not None:
        if not checkpoint.discriminator_head:
            raise UserError(f"{option} {path}: has no discriminator_predictions (an ElectraModel); the generator is "
                            "kept only beside the discriminator's replaced-token head: drop --generator")
        generator, shape, more = _resolve_generator(Path(generator_path), config, checkpoint, vocab_path)
        notes = notes + more
    return HFElectraSource(path, config, vocab_path, chosen, checkpoint, generator, shape, tuple(notes))


def _resolve_generator(path: Path, config, discriminator, vocab_path: Path):
    """``--generator``: ``(checkpoint, GeneratorShape, notes)``, its config, vocabulary and embeddings checked
    against the discriminator's."""
    from bert_cli.conversion import read_json_object
    from bert_cli.huggingface import _refuse_pickles, is_huggingface
    from models.huggingface import SafetensorsFiles
    from models.huggingface_electra import check_shared_embeddings, generator_shape_from_hf, inspect_hf_generator

    option = "--generator"
    if not path.is_dir() or not is_huggingface(path):
        raise UserError(f"{option} {path}: is not a Hugging Face directory (config.json, model.safetensors); give "
                        "the ELECTRA generator's directory (ElectraForMaskedLM)")
    shape, notes = generator_shape_from_hf(read_json_object(path / HF_CONFIG), config, f"{option} {path / HF_CONFIG}")
    _refuse_pickles(path, option)
    vocab = path / "vocab.txt"
    if vocab.is_file() and vocab.read_bytes() != vocab_path.read_bytes():
        raise UserError(f"{vocab}: differs from the discriminator's vocabulary {vocab_path}; give the generator "
                        "trained with this discriminator")
    checkpoint = inspect_hf_generator(SafetensorsFiles(path), config, shape, f"{option} {path}")
    check_shared_embeddings(checkpoint, discriminator, f"{option} {path}")
    return checkpoint, shape, notes


def build_from_electra_huggingface(source: HFElectraSource, on_variable=None):
    """``(backbone, model or None)`` with the directories' weights (see
    :func:`bert_cli.electra_conversion.build_electra_model`)."""
    from bert_cli.electra_conversion import build_electra_model
    from models.electra import electra_variables
    from models.huggingface import assign_from_hf

    backbone, model = build_electra_model(source.config, source.generator_shape, source.checkpoint.discriminator_head)
    variables = electra_variables(model or backbone)
    for checkpoint in (source.checkpoint, source.generator):
        if checkpoint is not None:
            assign_from_hf(checkpoint, variables, on_variable)
    return backbone, model


def _warnings(source: HFElectraSource) -> None:
    from bert_cli import console

    for note in source.notes:
        console.warning(f"{source.path / HF_CONFIG}: {note}")
    unknown = source.checkpoint.unknown + (source.generator.unknown if source.generator is not None else ())
    if unknown:
        shown = ", ".join(unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
        console.warning(f"{source.path}: left out, not part of ELECTRA's discriminator, its replaced-token head or "
                        f"the generator: {shown} (a fine-tuned head of another tool; fine-tune the converted "
                        "encoder with bert finetune)")


def open_electra_huggingface(path: str | Path, option: str = "--init") -> ModelDir:
    """A Transformers ELECTRA directory as a :class:`ModelDir`, converted into a scratch directory for this
    process (the discriminator and its head; a generator needs ``bert convert --generator``)."""
    from bert_cli import console
    from bert_cli.conversion import scratch_directory
    from bert_cli.model_dir import write_model_dir

    source = resolve_electra_huggingface(path, option)
    _warnings(source)
    console.info(f"converting the Hugging Face ELECTRA checkpoint {source.path} ({_case(source.lowercase)})")
    backbone, model = build_from_electra_huggingface(source)
    scratch = scratch_directory()
    write_model_dir(scratch, source.config, source.vocab_path, backbone, model, source.task)
    return ModelDir(path=Path(path), config=source.config, vocab_path=source.vocab_path, task=source.task,
                    weights_path=scratch)


def electra_huggingface_to_model(source_path: Path, target: Path, lowercase: bool | None, overwrite: bool,
                                 generator_path: Path | None = None):
    """``bert convert HF_ELECTRA_DIR TO [--generator HF_GENERATOR_DIR]``: an ELECTRA model directory."""
    from bert_cli import console
    from bert_cli.conversion import ConversionResult, atomic_directory, parameter_count
    from bert_cli.electra_conversion import electra_part_names
    from bert_cli.model_dir import write_model_dir

    source = resolve_electra_huggingface(source_path, "FROM", lowercase, generator_path)
    _warnings(source)
    mappings = source.mappings
    with console.count_progress("converting", len(mappings), unit="tensors") as advance:
        backbone, model = build_from_electra_huggingface(source, on_variable=lambda _: advance(1))
    with atomic_directory(target, overwrite) as scratch:
        write_model_dir(scratch, source.config, source.vocab_path, backbone, model, source.task)
    checkpoints = [c for c in (source.checkpoint, source.generator) if c is not None]
    dtypes = sorted({d for c in checkpoints for d in c.dtypes if d != "F32"})
    return ConversionResult(
        source=source_path, output=target, direction="Hugging Face ELECTRA → model directory", config=source.config,
        parts=electra_part_names(model), variables=len(mappings),
        parameters=parameter_count((model or backbone).weights), lowercase=source.lowercase,
        unknown=tuple(name for c in checkpoints for name in c.unknown), upcast=", ".join(dtypes) or None,
    )


def electra_model_to_huggingface(model_dir: ModelDir, source_path: Path, target: Path, casing: bool,
                                 overwrite: bool, generator_path: Path | None = None):
    """``bert convert ELECTRA_MODEL_DIR TO --format huggingface [--generator GEN_DIR]``."""
    from bert_cli.conversion import ConversionResult, atomic_directory
    from bert_cli.electra_conversion import electra_part_names, load_electra
    from bert_cli.huggingface import write_hf_directory
    from data.tokenization import Vocabulary
    from models.huggingface_electra import electra_config_to_hf, hf_discriminator_weights

    config = model_dir.config
    model = load_electra(model_dir)
    has_generator = getattr(model, "generator_shape", None) is not None
    _check_generator_out(model_dir, source_path, generator_path, has_generator)
    architecture = "ElectraForPreTraining" if hasattr(model, "discriminator_dense") else "ElectraModel"
    weights = hf_discriminator_weights(model, config)
    pad_id = Vocabulary.load(model_dir.vocab_path).pad_id
    written = [weights]
    with atomic_directory(target, overwrite) as scratch:
        write_hf_directory(scratch, weights, electra_config_to_hf(config, architecture, pad_id), model_dir, casing,
                           ELECTRA_TOKENIZER)
        if generator_path is not None:
            written.append(_write_generator(model, model_dir, generator_path, casing, overwrite, pad_id))
    parts = [name if "generator" not in name else f"{name} → {generator_path}" for name in electra_part_names(model)
             if generator_path is not None or "generator" not in name]
    left_out = None
    if has_generator and generator_path is None:
        left_out = "the generator (give --generator DIR to write it too, as ElectraForMaskedLM)"
    classes = architecture + (" + ElectraForMaskedLM" if generator_path is not None else "")
    return ConversionResult(
        source=source_path, output=target, direction=f"model directory → Hugging Face {classes}", config=config,
        parts=parts, variables=sum(len(w) for w in written),
        parameters=int(sum(w.size for tensors in written for w in tensors.values())), lowercase=casing,
        left_out=left_out,
    )


def _check_generator_out(model_dir: ModelDir, source_path: Path, generator_path, has_generator: bool) -> None:
    from bert_cli.conversion import model_casing

    if generator_path is None:
        return
    model_casing(model_dir, None, source_path, generator_path)  # a name saying the other casing is refused
    if not has_generator:
        raise UserError(f"--generator {generator_path}: FROM {source_path} holds no generator (its task.json names "
                        "none); drop --generator")
    if model_dir.config.hidden_act != "gelu_exact":
        raise UserError(f"--generator {generator_path}: FROM {source_path} has hidden_act "
                        f"{model_dir.config.hidden_act!r}, which its generator's masked-LM head applies, but "
                        "Transformers' ElectraForMaskedLM always applies the exact GELU there (\"gelu_exact\" here); "
                        "it would compute other logits: drop --generator")


def _write_generator(model, model_dir: ModelDir, generator_path: Path, casing: bool, overwrite: bool,
                     pad_id: int) -> dict:
    """Writes ``--generator`` (its own temporary name, renamed when complete); returns its tensors."""
    from bert_cli.conversion import atomic_directory
    from bert_cli.huggingface import write_hf_directory
    from models.huggingface_electra import generator_config_to_hf, hf_generator_weights

    weights = hf_generator_weights(model)
    values = generator_config_to_hf(model_dir.config, model.generator_shape, pad_id)
    with atomic_directory(generator_path, overwrite) as scratch:
        write_hf_directory(scratch, weights, values, model_dir, casing, ELECTRA_TOKENIZER)
    return weights
