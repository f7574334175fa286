"""``bert convert`` and the on-the-fly reading of original checkpoints and keras-hub presets.

Four kinds of directory hold a BERT model (see :func:`bert_cli.model_dir.source_kind`):

* an original google-research/bert checkpoint directory: ``bert_model.ckpt.*``
  (TF1 variable names), ``bert_config.json``, ``vocab.txt``;
* a Hugging Face Transformers directory (``config.json``, ``model.safetensors``,
  ``vocab.txt``; read and written by :mod:`bert_cli.huggingface`, ELECTRA's by
  :mod:`bert_cli.huggingface_electra`);
* a keras-hub preset (``BertBackbone.save_to_preset`` and the tokenizer's);
* a model directory of ours.

``bert convert`` turns the first three into the fourth, and the fourth into the
first or the second (``--format``). ``--init`` / ``--init-checkpoint`` take any
of them: the others are converted into a scratch directory that lives as long
as the process.

Casing: the original cannot tell from a checkpoint whether its text was
lower-cased, so its ``validate_case_matches_checkpoint`` reads the release's
directory name (``uncased_L-12_H-768_A-12``). We do the same and also ask the
vocabulary: a vocabulary with upper-case tokens belongs to a cased model
(lower-cased text could never reach those tokens). A contradiction between a
given casing, the name and the vocabulary is an error, not a guess.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

from bert_cli.errors import UserError
from bert_cli.model_dir import (
    CONFIG_FILE,
    ENCODER_WEIGHTS,
    MODEL_WEIGHTS,
    VOCAB_FILE,
    ModelDir,
    read_model_dir,
    source_kind,
    write_model_dir,
)

# keras-hub preset files (BertBackbone.save_to_preset, BertTokenizer.save_to_preset).
PRESET_CONFIG = "config.json"
PRESET_TOKENIZER = "tokenizer.json"
PRESET_VOCAB = Path("assets") / "tokenizer" / "vocabulary.txt"


def _case(lowercase: bool) -> str:
    return "uncased" if lowercase else "cased"


# ----------------------------------------------------------------------------
# Original checkpoints
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OriginalSource:
    """An original checkpoint with its config and vocabulary, checked against each other."""

    path: Path
    config_path: Path
    config: object  # models.config.BertConfig
    vocab_path: Path
    lowercase: bool
    checkpoint: object  # models.checkpoints.OriginalCheckpoint

    @property
    def task(self) -> dict:
        return {
            "task": "pretraining",
            "masked_lm": self.checkpoint.masked_lm,
            "next_sentence": self.checkpoint.next_sentence,
            "lowercase": self.lowercase,
            "converted_from": self.checkpoint.prefix,
        }


def checkpoint_casing(named_by: str | Path, vocab, lowercase: bool | None, where: str) -> bool:
    """Decides and checks whether a checkpoint's text was lower-cased.

    Args:
        named_by: The checkpoint prefix or directory whose name may say "uncased"/"cased".
        vocab: Its :class:`data.tokenization.Vocabulary`.
        lowercase: The casing the user gave, or None to infer it.
        where: How to name the checkpoint in errors.
    """
    from data.tokenization import resolve_lowercase
    from models.checkpoints import lowercase_from_name

    named = lowercase_from_name(named_by)
    # False is certain (upper-case tokens, or a manifest saying cased); True only
    # means the vocabulary has no token that lower-cased text could not reach.
    vocab_lowercase = resolve_lowercase(vocab, None)
    if lowercase is not None and named is not None and lowercase != named:
        raise UserError(
            f"--{'lowercase' if lowercase else 'cased'} contradicts {where}, whose name says it was trained "
            f"{_case(named)}; drop the option or use the matching checkpoint"
        )
    chosen = lowercase if lowercase is not None else named if named is not None else vocab_lowercase
    if chosen and not vocab_lowercase:
        upper = next((t for t in vocab.tokens if not (t.startswith("[") and t.endswith("]")) and t.lower() != t), None)
        evidence = f"it holds upper-case tokens such as {upper!r}" if upper else "its manifest says so"
        reason = "--lowercase" if lowercase is not None else f"the name of {where}"
        raise UserError(
            f"{vocab.path}: is a cased vocabulary ({evidence}) but {reason} says uncased; lower-cased text would "
            "never reach those tokens: use the checkpoint's own vocab.txt, or --cased"
        )
    return chosen


def resolve_original(
    path: str | Path,
    option: str,
    config_path: Path | None = None,
    vocab_path: Path | None = None,
    lowercase: bool | None = None,
) -> OriginalSource:
    """Finds an original checkpoint's files and checks them against each other (reads no weights).

    Raises UserError / ModelError naming what is missing or disagrees: no
    checkpoint, no bert_config.json or vocab.txt, vocab size vs config, casing,
    missing variables, shapes.
    """
    from data.tokenization import Vocabulary
    from models.checkpoints import find_checkpoint, inspect_checkpoint
    from models.config import BertConfig

    path = Path(path)
    prefix = find_checkpoint(path)
    if prefix is None:
        raise UserError(f"{option} {path}: holds no TensorFlow checkpoint (bert_model.ckpt.index and .data-*)")
    directory = path if path.is_dir() else path.parent
    config_path = Path(config_path) if config_path else directory / CONFIG_FILE
    vocab_path = Path(vocab_path) if vocab_path else directory / VOCAB_FILE
    for name, file in (("bert_config.json", config_path), ("vocab.txt", vocab_path)):
        if not file.is_file():
            raise UserError(
                f"{option} {path}: no {name} at {file}; an original checkpoint directory holds bert_model.ckpt.*, "
                "bert_config.json and vocab.txt (bert convert takes --config / --vocab for files kept elsewhere)"
            )
    config = BertConfig.from_json_file(config_path)
    vocab = Vocabulary.load(vocab_path)
    if len(vocab) != config.vocab_size:
        raise UserError(
            f"{vocab_path}: has {len(vocab):,} tokens but {config_path} says vocab_size {config.vocab_size:,}; "
            "use the vocab.txt that came with the checkpoint"
        )
    chosen = checkpoint_casing(prefix, vocab, lowercase, f"{option} {path}")
    checkpoint = inspect_checkpoint(prefix, config)
    return OriginalSource(path, config_path, config, vocab_path, chosen, checkpoint)


def build_from_original(source: OriginalSource, on_variable=None):
    """The encoder, and a pre-training model when the checkpoint has the MLM head, with its weights.

    Returns:
        ``(backbone, pretrainer or None)``.
    """
    from models.checkpoints import assign_from_checkpoint
    from models.encoder import build_encoder
    from models.pretraining import build_pretrainer

    checkpoint = source.checkpoint
    if checkpoint.masked_lm:
        pretrainer = build_pretrainer(source.config, next_sentence=checkpoint.next_sentence)
        backbone = pretrainer.backbone
    else:
        pretrainer, backbone = None, build_encoder(source.config)
    assign_from_checkpoint(checkpoint, backbone, pretrainer, on_variable=on_variable)
    return backbone, pretrainer


def scratch_directory() -> Path:
    path = Path(tempfile.mkdtemp(prefix="bert-converted-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def electra_prefix(path: str | Path) -> str | None:
    """The checkpoint prefix at ``path`` when it is a google-research/electra checkpoint, else None."""
    from bert_cli.electra_conversion import is_electra_checkpoint
    from models.electra_checkpoints import find_electra_checkpoint

    prefix = find_electra_checkpoint(path)
    return prefix if prefix and is_electra_checkpoint(prefix) else None


def open_original(path: str | Path, option: str = "--init") -> ModelDir:
    """An original checkpoint directory (BERT's or ELECTRA's) as a :class:`ModelDir`, converted into a scratch
    directory."""
    from bert_cli import console

    electra = electra_prefix(path)
    if electra:
        from bert_cli.electra_conversion import open_electra

        return open_electra(path, electra, option)
    source = resolve_original(path, option)
    _warn_unknown(source.checkpoint)
    console.info(f"converting the original checkpoint {source.checkpoint.prefix} ({_case(source.lowercase)})")
    backbone, pretrainer = build_from_original(source)
    scratch = scratch_directory()
    write_model_dir(scratch, source.config, source.vocab_path, backbone, pretrainer, source.task)
    return ModelDir(path=Path(path), config=source.config, vocab_path=source.vocab_path, task=source.task,
                    weights_path=scratch)


def _warn_unknown(checkpoint) -> None:
    from bert_cli import console

    if checkpoint.unknown:
        names = ", ".join(checkpoint.unknown[:10]) + (f" and {len(checkpoint.unknown) - 10} more"
                                                      if len(checkpoint.unknown) > 10 else "")
        console.warning(f"{checkpoint.prefix}: {len(checkpoint.unknown)} variable(s) left out, not part of an "
                        f"encoder or the pre-training heads: {names}")


# ----------------------------------------------------------------------------
# keras-hub presets
# ----------------------------------------------------------------------------


def open_preset(path: str | Path, option: str = "--init") -> ModelDir:
    """A keras-hub ``BertBackbone`` preset directory as a :class:`ModelDir` (encoder only).

    The preset's ``model.weights.h5`` is exactly what ``BertBackbone.save_weights``
    writes, i.e. our ``encoder.weights.h5``, so it is linked, not converted.
    """
    from models.config import BertConfig

    path = Path(path)
    spec = read_json_object(path / PRESET_CONFIG)
    if spec.get("class_name") != "BertBackbone" or not isinstance(spec.get("config"), dict):
        raise UserError(f"{option} {path}: is a keras-hub preset of {spec.get('class_name')!r}, not of BertBackbone")
    values = spec["config"]
    try:
        config = BertConfig(
            vocab_size=values["vocabulary_size"], hidden_size=values["hidden_dim"],
            num_hidden_layers=values["num_layers"], num_attention_heads=values["num_heads"],
            intermediate_size=values["intermediate_dim"], hidden_dropout_prob=values.get("dropout", 0.1),
            attention_probs_dropout_prob=values.get("dropout", 0.1),
            max_position_embeddings=values.get("max_sequence_length", 512),
            type_vocab_size=values.get("num_segments", 2),
        )
    except KeyError as error:
        raise UserError(f"{path / PRESET_CONFIG}: has no {error.args[0]!r}; is it a BertBackbone preset?") from None
    vocab_path = path / PRESET_VOCAB
    if not vocab_path.is_file():
        raise UserError(f"{option} {path}: the preset has no tokenizer vocabulary ({PRESET_VOCAB}); save the "
                        "tokenizer into it too (BertTokenizer.save_to_preset)")
    from data.tokenization import Vocabulary, resolve_lowercase

    vocab = Vocabulary.load(vocab_path)
    if len(vocab) != config.vocab_size:
        raise UserError(f"{vocab_path}: has {len(vocab):,} tokens but the preset's vocabulary_size is "
                        f"{config.vocab_size:,}")
    tokenizer = read_json_object(path / PRESET_TOKENIZER) if (path / PRESET_TOKENIZER).is_file() else {}
    lowercase = tokenizer.get("config", {}).get("lowercase")
    if lowercase is None:
        lowercase = resolve_lowercase(vocab, None)
    scratch = scratch_directory()
    try:
        (scratch / ENCODER_WEIGHTS).symlink_to((path / MODEL_WEIGHTS).resolve())
    except OSError:
        shutil.copyfile(path / MODEL_WEIGHTS, scratch / ENCODER_WEIGHTS)
    task = {"task": "pretraining", "masked_lm": False, "next_sentence": False, "lowercase": bool(lowercase),
            "converted_from": str(path)}
    return ModelDir(path=path, config=config, vocab_path=vocab_path, task=task, weights_path=scratch)


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold an object; every failure is one UserError naming the file."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: cannot be read as JSON ({error})") from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: expected a JSON object")
    return value


# ----------------------------------------------------------------------------
# bert convert
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class ConversionResult:
    """What ``bert convert`` did, for the summary table."""

    source: Path
    output: Path
    direction: str
    config: object
    parts: list[str]
    variables: int
    parameters: int
    lowercase: bool | None
    unknown: tuple[str, ...] = ()
    training_state: int = 0
    left_out: str | None = None
    upcast: str | None = None
    seconds: float = 0.0
    files: list[str] = dataclasses.field(default_factory=list)


@contextlib.contextmanager
def atomic_directory(target: Path, overwrite: bool) -> Iterator[Path]:
    """Yields a temporary directory beside ``target`` that becomes ``target`` only when the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield scratch
        # mkdtemp makes a private (0700) directory; the result gets the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        scratch.chmod(0o777 & ~umask)
        if target.exists():
            # --overwrite: the old directory goes only once the new one is complete.
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            old.rmdir()
            target.rename(old)
            scratch.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            scratch.rename(target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _check_target(source: Path, target: Path, overwrite: bool, option: str = "TO") -> None:
    if target.exists() and not target.is_dir():
        raise UserError(f"{option} {target}: exists and is not a directory")
    if target.exists() and not overwrite:
        raise UserError(f"{option} {target}: already exists; pass --overwrite to replace it")
    if target.resolve() == source.resolve() or source.resolve() in target.resolve().parents:
        raise UserError(f"{option} {target}: is FROM or inside it; write the converted model elsewhere")


def _check_generator(kind: str, to_format: str, source: Path, target: Path, generator: Path | None,
                     overwrite: bool) -> None:
    """``--generator``: read beside a Hugging Face FROM, or written beside TO (its own directory)."""
    if generator is None or kind == "huggingface":
        return
    if kind == "model" and to_format != "huggingface":
        raise UserError("--generator writes an ELECTRA generator's Hugging Face directory, with --format huggingface; "
                        "the original layout keeps the generator in TO's checkpoint: drop --generator")
    if kind != "model":
        raise UserError(f"--generator is an ELECTRA generator's Hugging Face directory, read beside a Hugging Face "
                        f"FROM or written with --format huggingface; FROM {source} is a {_KIND_NAMES[kind]}")
    _check_target(source, generator, overwrite, "--generator")
    ours, theirs = target.resolve(), generator.resolve()
    if ours == theirs or ours in theirs.parents or theirs in ours.parents:
        raise UserError(f"--generator {generator}: is TO or inside it (or holds it); the generator needs its own "
                        "directory beside TO")


def convert(
    source: str | Path,
    target: str | Path,
    config_path: Path | None = None,
    vocab_path: Path | None = None,
    lowercase: bool | None = None,
    overwrite: bool = False,
    to_format: str = "original",
    generator_path: Path | None = None,
) -> ConversionResult:
    """Runs ``bert convert FROM TO``; the direction follows from what FROM holds.

    * original checkpoint -> model directory (``task.json`` task "pretraining",
      MLM and NSP heads in ``model.weights.h5`` when the checkpoint has them);
    * Hugging Face Transformers directory -> model directory (see bert_cli.huggingface);
    * keras-hub preset -> model directory (encoder only);
    * model directory -> the original layout (``to_format`` "original"):
      ``bert_model.ckpt.{index,data-00000-of-00001}``, ``checkpoint``,
      ``bert_config.json``, ``vocab.txt`` (an ELECTRA model: google-research/electra's
      names, see bert_cli.electra_conversion); or a Transformers directory ("huggingface").
    * an ELECTRA checkpoint (``electra/...`` variables) -> model directory.

    ``generator_path`` (``--generator``): an ELECTRA generator's Hugging Face directory
    (ElectraForMaskedLM), read beside a Hugging Face ELECTRA discriminator FROM, or
    written from an ELECTRA model directory with ``to_format`` "huggingface".

    TO is written under a temporary name and renamed when complete.
    """
    source, target = Path(source), Path(target)
    generator_path = Path(generator_path) if generator_path is not None else None
    started = time.perf_counter()
    kind = _source_kind(source, config_path, vocab_path, to_format)
    _check_target(source, target, overwrite)
    _check_generator(kind, to_format, source, target, generator_path, overwrite)
    electra = electra_prefix(source) if kind == "original" else None
    if electra:
        from bert_cli.electra_conversion import electra_to_model

        result = electra_to_model(source, electra, target, config_path, vocab_path, lowercase, overwrite)
    elif kind == "original":
        result = _original_to_model(source, target, config_path, vocab_path, lowercase, overwrite)
    elif kind == "huggingface":
        from bert_cli.huggingface import huggingface_to_model

        result = huggingface_to_model(source, target, lowercase, overwrite, generator_path)
    elif kind == "preset":
        result = _preset_to_model(source, target, lowercase, overwrite)
    elif to_format == "huggingface":
        from bert_cli.huggingface import model_to_huggingface

        result = model_to_huggingface(source, target, lowercase, overwrite, generator_path)
    else:
        result = _model_to_original(source, target, lowercase, overwrite)
    result.seconds = time.perf_counter() - started
    result.files = sorted(p.name for p in target.iterdir())
    return result


_KIND_NAMES = {"model": "model directory", "preset": "keras-hub preset", "huggingface": "Hugging Face directory",
               "original": "original checkpoint"}


def _source_kind(source: Path, config_path, vocab_path, to_format: str) -> str:
    kind = source_kind(source)
    if kind is None:
        if not source.exists():
            raise UserError(f"FROM {source}: no such file or directory")
        raise UserError(
            f"FROM {source}: is neither an original BERT checkpoint directory (bert_model.ckpt.*, bert_config.json, "
            "vocab.txt), a Hugging Face directory (config.json, model.safetensors, vocab.txt), a model directory of "
            "ours (bert pretrain, bert finetune), nor a keras-hub preset"
        )
    if kind != "original" and (config_path or vocab_path):
        raise UserError("--config and --vocab are for an original checkpoint kept without its bert_config.json or "
                        f"vocab.txt; FROM {source} is a {_KIND_NAMES[kind]}")
    if kind != "model" and to_format != "original":
        raise UserError(f"--format {to_format} chooses what a model directory of ours becomes; FROM {source} is a "
                        f"{_KIND_NAMES[kind]}, which becomes a model directory (convert that one again)")
    return kind


def parameter_count(weights) -> int:
    return int(sum(int(w.numpy().size) for w in weights))


def _original_to_model(source, target, config_path, vocab_path, lowercase, overwrite) -> ConversionResult:
    from bert_cli import console

    original = resolve_original(source, "FROM", config_path, vocab_path, lowercase)
    checkpoint = original.checkpoint
    _warn_unknown(checkpoint)
    mappings = checkpoint.mappings
    with console.count_progress("converting", len(mappings), unit="variables") as advance:
        backbone, pretrainer = build_from_original(original, on_variable=lambda _: advance(1))
    with atomic_directory(target, overwrite) as scratch:
        write_model_dir(scratch, original.config, original.vocab_path, backbone, pretrainer, original.task)
    parts = ["encoder"] + (["masked LM head"] if checkpoint.masked_lm else []) + \
            (["next-sentence head"] if checkpoint.next_sentence else [])
    return ConversionResult(
        source=Path(checkpoint.prefix), output=target, direction="original checkpoint → model directory",
        config=original.config, parts=parts, variables=len(mappings),
        parameters=parameter_count(pretrainer.weights if pretrainer else backbone.weights),
        lowercase=original.lowercase, unknown=checkpoint.unknown, training_state=checkpoint.training_state,
    )


def _preset_to_model(source, target, lowercase, overwrite) -> ConversionResult:
    from bert_cli.model_dir import load_encoder

    preset = open_preset(source, "FROM")
    if lowercase is not None and lowercase != preset.lowercase:
        raise UserError(f"--{'lowercase' if lowercase else 'cased'} contradicts FROM {source}, whose tokenizer is "
                        f"{_case(preset.lowercase)}")
    encoder = load_encoder(preset)
    with atomic_directory(target, overwrite) as scratch:
        write_model_dir(scratch, preset.config, preset.vocab_path, encoder, None, preset.task)
    return ConversionResult(
        source=source, output=target, direction="keras-hub preset → model directory", config=preset.config,
        parts=["encoder"], variables=len(encoder.weights), parameters=parameter_count(encoder.weights),
        lowercase=preset.lowercase,
    )


def model_casing(model_dir: ModelDir, lowercase: bool | None, source: Path, target: Path) -> bool:
    """The casing of a model directory being written for other tools, checked against ``--lowercase`` and TO's name."""
    from data.tokenization import Vocabulary, resolve_lowercase
    from models.checkpoints import lowercase_from_name

    casing = model_dir.lowercase
    if casing is not None and lowercase is not None and casing != lowercase:
        raise UserError(f"--{'lowercase' if lowercase else 'cased'} contradicts FROM {source}, which was trained "
                        f"{_case(casing)} (its task.json)")
    if casing is None:
        casing = lowercase if lowercase is not None else resolve_lowercase(Vocabulary.load(model_dir.vocab_path), None)
    named = lowercase_from_name(target)
    if named is not None and named != casing:
        # Other tools (the original's validate_case_matches_checkpoint among them)
        # read the casing from the directory name.
        raise UserError(f"TO {target}: the name says {_case(named)} but the model is {_case(casing)}; tools that read "
                        "the casing from the name would tokenize wrongly: choose another name")
    return casing


def _model_to_original(source, target, lowercase, overwrite) -> ConversionResult:
    from bert_cli import console
    from bert_cli.model_dir import load_encoder
    from models.checkpoints import CHECKPOINT_NAME, original_weights, write_checkpoint
    from models.pretraining import build_pretrainer

    model_dir = read_model_dir(source, "FROM")
    casing = model_casing(model_dir, lowercase, source, target)
    if model_dir.kind == "pretraining" and model_dir.objective == "electra":
        from bert_cli.electra_conversion import model_to_electra

        return model_to_electra(model_dir, source, target, casing, overwrite)

    pretrainer = None
    left_out = None
    if model_dir.has_masked_lm_heads:
        pretrainer = build_pretrainer(model_dir.config, next_sentence=model_dir.task.get("next_sentence", True))
        try:
            pretrainer.load_weights(str(model_dir.model_weights))
        except (ValueError, OSError) as error:
            raise UserError(f"{model_dir.model_weights}: cannot be loaded into its bert_config.json's "
                            f"pre-training model ({error})") from None
        backbone = pretrainer.backbone
    else:
        backbone = load_encoder(model_dir)
        if model_dir.kind != "pretraining":
            left_out = f"the fine-tuned {model_dir.kind} head (the original layout has no agreed name for it)"
            console.warning(f"FROM {source}: writing the encoder only; {left_out} is left out")
    weights = original_weights(model_dir.config, backbone, pretrainer)
    with atomic_directory(target, overwrite) as scratch:
        write_checkpoint(weights, scratch / CHECKPOINT_NAME)
        # The state file tf.train.latest_checkpoint reads; the released directories
        # lack it, tools that look for it find it.
        (scratch / "checkpoint").write_text(
            f'model_checkpoint_path: "{CHECKPOINT_NAME}"\nall_model_checkpoint_paths: "{CHECKPOINT_NAME}"\n',
            encoding="utf-8",
        )
        model_dir.config.to_json_file(scratch / CONFIG_FILE)
        shutil.copyfile(model_dir.vocab_path, scratch / VOCAB_FILE)
    parts = ["encoder"]
    if pretrainer is not None:
        parts.append("masked LM head")
        if pretrainer.next_sentence_head is not None:
            parts.append("next-sentence head")
    return ConversionResult(
        source=source, output=target, direction="model directory → original checkpoint", config=model_dir.config,
        parts=parts, variables=len(weights), parameters=int(sum(w.size for w in weights.values())),
        lowercase=casing, left_out=left_out,
    )
