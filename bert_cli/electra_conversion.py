"""google-research/electra checkpoints in ``bert convert`` and ``--init`` / ``--init-checkpoint``.

An ELECTRA release directory (``electra_small/``: ``electra_small.index`` +
``.data-*``, ``vocab.txt``; no config file, the original takes its sizes on
the command line) is recognised by its ``electra/embeddings/...`` variables
and becomes a model directory whose ``task.json`` says ``"objective":
"electra"``: the discriminator is the encoder, and with the generator the
whole :class:`models.electra.ElectraPretrainer` is kept for continued
pre-training (a discriminator with its replaced-token head but no generator
keeps the head as an :class:`models.electra.ElectraDiscriminator`,
``"discriminator_head": true``). The config comes from a ``bert_config.json``
beside the checkpoint when there is one, else from the checkpoint's shapes
(heads by the original's ``max(1, H / 64)``, its erf GELU). The reverse
direction writes the original ELECTRA names (and a ``bert_config.json`` so
the sizes travel). The name table is :mod:`models.electra_checkpoints`.

Hugging Face ELECTRA directories (:mod:`bert_cli.huggingface_electra`) become
the same model directories, through :func:`electra_task`,
:func:`build_electra_model` and :func:`load_electra`.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from bert_cli.errors import UserError
from bert_cli.model_dir import CONFIG_FILE, VOCAB_FILE, ModelDir


def is_electra_checkpoint(prefix: str) -> bool:
    """Whether a TF1 checkpoint holds ELECTRA's discriminator variables (not BERT's)."""
    import tensorflow as tf

    try:
        return any(name == "electra/embeddings/word_embeddings" for name, _ in tf.train.list_variables(prefix))
    except (tf.errors.OpError, ValueError):
        return False


@dataclasses.dataclass(frozen=True)
class ElectraSource:
    path: Path
    config: object  # models.config.BertConfig
    vocab_path: Path
    lowercase: bool
    checkpoint: object  # models.electra_checkpoints.ElectraCheckpoint

    @property
    def task(self) -> dict:
        checkpoint = self.checkpoint
        generator = checkpoint.generator_shape if checkpoint.discriminator_head else None
        return electra_task(self.config, self.lowercase, checkpoint.prefix, generator, checkpoint.discriminator_head)


def electra_task(config, lowercase: bool, converted_from: str, generator_shape=None,
                 discriminator_head: bool = False) -> dict:
    """The ``task.json`` of a converted ELECTRA model directory.

    ``model.weights.h5`` is the whole :class:`models.electra.ElectraPretrainer` when there is a
    generator (its shape recorded, as ``bert pretrain --objective electra`` records it), an
    :class:`models.electra.ElectraDiscriminator` with only the head, and absent otherwise.
    """
    task = {"task": "pretraining", "masked_lm": False, "next_sentence": False, "lowercase": lowercase,
            "converted_from": str(converted_from), "objective": "electra"}
    if discriminator_head:
        task["discriminator_head"] = True
    if generator_shape is not None:
        from models.electra import DISCRIMINATOR_WEIGHT

        task.update(generator=generator_shape.to_dict(), discriminator_weight=DISCRIMINATOR_WEIGHT,
                    generator_hidden_fraction=generator_shape.hidden_size / config.hidden_size)
    return task


def build_electra_model(config, generator_shape=None, discriminator_head: bool = False):
    """``(backbone, model or None)``, freshly built: an ``ElectraPretrainer`` with a generator and the head,
    an ``ElectraDiscriminator`` with the head alone, else the encoder alone. ELECTRA has no pooler: a
    fixed-seed one keeps conversions byte-for-byte repeatable."""
    from models.electra import build_electra, build_electra_discriminator
    from models.encoder import build_encoder, seeded_pooler

    if discriminator_head and generator_shape is not None:
        model = build_electra(config, generator_shape=generator_shape)
    elif discriminator_head:
        model = build_electra_discriminator(config)
    else:
        model = None
    backbone = model.backbone if model is not None else build_encoder(config)
    seeded_pooler(backbone, config.initializer_range)
    return backbone, model


def load_electra(model_dir: ModelDir):
    """An ELECTRA model directory's model with its weights: the ``ElectraPretrainer``, the
    ``ElectraDiscriminator`` or the encoder alone, as its ``task.json`` says."""
    from bert_cli.model_dir import load_encoder

    task = model_dir.task
    if not model_dir.model_weights.is_file() or not (task.get("generator") or task.get("discriminator_head")):
        return load_encoder(model_dir)
    if task.get("generator"):
        from models.electra import GeneratorShape, build_electra

        model = build_electra(model_dir.config, generator_shape=GeneratorShape(**task["generator"]))
    else:
        from models.electra import build_electra_discriminator

        model = build_electra_discriminator(model_dir.config)
    try:
        model.load_weights(str(model_dir.model_weights))
    except (ValueError, OSError) as error:
        raise UserError(f"{model_dir.model_weights}: cannot be loaded into the ELECTRA model task.json "
                        f"describes ({error})") from None
    return model


def resolve_electra(path: str | Path, prefix: str, option: str, config_path: Path | None = None,
                    vocab_path: Path | None = None, lowercase: bool | None = None) -> ElectraSource:
    """An ELECTRA checkpoint's config, vocabulary and casing, checked against its variables."""
    from bert_cli.conversion import checkpoint_casing
    from data.tokenization import Vocabulary
    from models.config import BertConfig
    from models.electra_checkpoints import config_from_electra_checkpoint, inspect_electra_checkpoint

    path = Path(path)
    directory = path if path.is_dir() else path.parent
    vocab_path = Path(vocab_path) if vocab_path else directory / VOCAB_FILE
    if not vocab_path.is_file():
        raise UserError(f"{option} {path}: no vocab.txt at {vocab_path}; an ELECTRA release directory holds the "
                        "checkpoint and vocab.txt (bert convert takes --vocab for one kept elsewhere)")
    vocab = Vocabulary.load(vocab_path)
    config_path = Path(config_path) if config_path else directory / CONFIG_FILE
    if config_path.is_file():
        config = BertConfig.from_json_file(config_path)
        if config.vocab_size != len(vocab):
            raise UserError(f"{vocab_path}: has {len(vocab):,} tokens but {config_path} says vocab_size "
                            f"{config.vocab_size:,}")
    else:
        config, _ = config_from_electra_checkpoint(prefix, len(vocab))
    chosen = checkpoint_casing(prefix, vocab, lowercase, f"{option} {path}")
    return ElectraSource(path, config, vocab_path, chosen, inspect_electra_checkpoint(prefix, config))


def build_from_electra(source: ElectraSource, on_variable=None):
    """``(backbone, model or None)`` with the checkpoint's weights (see :func:`build_electra_model`; a
    generator is kept only beside the discriminator head)."""
    from models.electra_checkpoints import assign_from_electra_checkpoint

    checkpoint = source.checkpoint
    backbone, model = build_electra_model(source.config, checkpoint.generator_shape, checkpoint.discriminator_head)
    assign_from_electra_checkpoint(checkpoint, model or backbone, on_variable=on_variable)
    return backbone, model


def open_electra(path: str | Path, prefix: str, option: str = "--init") -> ModelDir:
    """An ELECTRA checkpoint as a :class:`ModelDir`, converted into a scratch directory for this process."""
    from bert_cli import console
    from bert_cli.conversion import scratch_directory
    from bert_cli.model_dir import write_model_dir

    source = resolve_electra(path, prefix, option)
    console.info(f"converting the ELECTRA checkpoint {prefix}")
    backbone, model = build_from_electra(source)
    scratch = scratch_directory()
    write_model_dir(scratch, source.config, source.vocab_path, backbone, model, source.task)
    return ModelDir(path=Path(path), config=source.config, vocab_path=source.vocab_path, task=source.task,
                    weights_path=scratch)


def electra_to_model(source_path: Path, prefix: str, target: Path, config_path, vocab_path, lowercase,
                     overwrite: bool):
    """``bert convert ELECTRA_DIR TO``."""
    from bert_cli import console
    from bert_cli.conversion import ConversionResult, atomic_directory, parameter_count
    from bert_cli.model_dir import write_model_dir

    source = resolve_electra(source_path, prefix, "FROM", config_path, vocab_path, lowercase)
    checkpoint = source.checkpoint
    if checkpoint.unknown:
        console.warning(f"{prefix}: {len(checkpoint.unknown)} variable(s) left out, not part of ELECTRA's "
                        f"discriminator or generator: {', '.join(checkpoint.unknown[:10])}")
    mappings = checkpoint.mappings
    with console.count_progress("converting", len(mappings), unit="variables") as advance:
        backbone, model = build_from_electra(source, on_variable=lambda _: advance(1))
    with atomic_directory(target, overwrite) as scratch:
        write_model_dir(scratch, source.config, source.vocab_path, backbone, model, source.task)
    parts = electra_part_names(model)
    return ConversionResult(
        source=Path(prefix), output=target, direction="ELECTRA checkpoint → model directory", config=source.config,
        parts=parts, variables=len(mappings), parameters=parameter_count((model or backbone).weights),
        lowercase=source.lowercase, unknown=checkpoint.unknown, training_state=checkpoint.training_state,
    )


def model_to_electra(model_dir: ModelDir, source_path: Path, target: Path, casing: bool, overwrite: bool):
    """``bert convert ELECTRA_MODEL_DIR TO``: the original ELECTRA layout (prefix named after TO)."""
    from bert_cli.conversion import ConversionResult, atomic_directory
    from models.checkpoints import write_checkpoint
    from models.electra_checkpoints import electra_weights

    model = load_electra(model_dir)
    weights, parts = electra_weights(model, model_dir.config), electra_part_names(model)
    with atomic_directory(target, overwrite) as scratch:
        write_checkpoint(weights, scratch / target.name)
        (scratch / "checkpoint").write_text(f'model_checkpoint_path: "{target.name}"\n'
                                            f'all_model_checkpoint_paths: "{target.name}"\n', encoding="utf-8")
        model_dir.config.to_json_file(scratch / CONFIG_FILE)
        shutil.copyfile(model_dir.vocab_path, scratch / VOCAB_FILE)
    return ConversionResult(
        source=source_path, output=target, direction="model directory → ELECTRA checkpoint", config=model_dir.config,
        parts=parts, variables=len(weights), parameters=int(sum(w.size for w in weights.values())), lowercase=casing,
    )


def electra_part_names(model) -> list[str]:
    """What a converted ELECTRA model holds, for the summary table."""
    names = ["discriminator (encoder)"]
    if hasattr(model, "discriminator_dense"):
        names.append("replaced-token head")
    shape = getattr(model, "generator_shape", None)
    if shape is not None:
        names.append(f"generator (hidden {shape.hidden_size})")
    return names
