"""Hugging Face Transformers BERT directories in and out: ``bert convert`` and ``--init`` / ``--init-checkpoint``.

In: a local Transformers directory (``config.json`` with ``model_type``
"bert", ``model.safetensors`` or its shards, ``vocab.txt``, the tokenizer's
files) becomes a model directory of ours: the encoder, and the MLM / NSP
heads when it has them (BertForPreTraining, BertForMaskedLM), so ``bert
pretrain --init-checkpoint`` continues pre-training on a user's own text.
Fine-tuned heads of other tools (``classifier.*``, ``qa_outputs.*``) are listed
in a warning and left out; those of our own models written by the reverse
direction carry their ``task.json`` in ``config.json`` and come back whole.

Out: ``bert convert MODEL_DIR TO --format huggingface`` writes what
Transformers' ``from_pretrained`` loads: ``BertModel`` (encoder only),
``BertForMaskedLM`` / ``BertForPreTraining`` (pre-training heads), or
``BertForSequenceClassification`` / ``BertForTokenClassification`` /
``BertForQuestionAnswering`` for fine-tuned classify / tag / squad models.

ELECTRA (``model_type`` "electra": ElectraForPreTraining / ElectraModel, and
the generator's ElectraForMaskedLM as ``--generator``) goes both ways through
:mod:`bert_cli.huggingface_electra`; the functions here send it there.

Pickles are never opened: ``pytorch_model.bin``, ``*.pt``, ``*.pth``,
``*.ckpt`` are Python pickles that run code when loaded, so a directory that
has only those is refused with the file named; safetensors only.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from bert_cli.conversion import read_json_object
from bert_cli.errors import UserError
from bert_cli.model_dir import ModelDir
from bert_cli.runs import write_json

HF_CONFIG = "config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_JSON = "tokenizer.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
# config.json key under which a fine-tuned model of ours keeps its task.json.
OUR_KEY = "bert_cli"
# Weight files of Transformers directories: the safetensors ones we read, and the
# others, which mark a directory as Transformers' so it can be refused clearly.
SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_PATTERNS = ("pytorch_model*.bin", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")
OTHER_WEIGHTS = ("tf_model.h5", "flax_model.msgpack", "pytorch_model.bin.index.json")


def is_huggingface(path: Path) -> bool:
    """A directory with ``config.json`` and a Transformers weight file (by names only, nothing opened)."""
    if not (path / HF_CONFIG).is_file():
        return False
    names = SAFETENSORS + OTHER_WEIGHTS
    return any((path / name).is_file() for name in names) or bool(_pickles(path))


def _pickles(path: Path) -> list[Path]:
    found = {file for pattern in PICKLE_PATTERNS for file in path.glob(pattern) if file.is_file()}
    return sorted(found)


def label_maps(labels) -> dict:
    """Transformers' ``id2label`` (string ids, as its JSON has them) and ``label2id``."""
    labels = [str(label) for label in labels]
    return {"id2label": {str(i): label for i, label in enumerate(labels)},
            "label2id": {label: i for i, label in enumerate(labels)}}


def _case(lowercase: bool) -> str:
    return "uncased" if lowercase else "cased"


# ----------------------------------------------------------------------------
# Reading a Transformers directory
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HFSource:
    """A Transformers BERT directory checked against itself (no weights read).

    Attributes:
        task: The ``task.json`` of the model directory it becomes: pre-training (with
            the heads it has), or a fine-tuned task of ours restored from ``config.json``.
        head: The fine-tuned head's tensor prefix when ``task`` is a fine-tuned one.
    """

    path: Path
    config: object  # models.config.BertConfig
    vocab_path: Path
    lowercase: bool
    checkpoint: object  # models.huggingface.HFCheckpoint
    task: dict
    head: str | None
    notes: tuple[str, ...]


def resolve_huggingface(path: str | Path, option: str, lowercase: bool | None = None) -> HFSource:
    """Finds a Transformers directory's files and checks them against each other.

    Raises UserError / ModelError naming what is wrong: not BERT, pickles only,
    a missing shard, vocabulary size, casing, missing tensors, shapes.
    """
    from models.huggingface import config_from_hf, inspect_hf

    path = Path(path)
    values = read_json_object(path / HF_CONFIG)
    config, notes = config_from_hf(values, f"{option} {path / HF_CONFIG}")
    files, vocab_path, chosen = read_directory(path, config, option, lowercase)
    checkpoint = inspect_hf(files, config, f"{option} {path}")
    task, head = _task(values, checkpoint, chosen, path)
    return HFSource(path, config, vocab_path, chosen, checkpoint, task, head, tuple(notes))


def read_directory(path: Path, config, option: str, lowercase: bool | None = None):
    """A Transformers directory's safetensors files (headers), vocabulary and casing: ``(files, vocab_path,
    lowercase)``, the vocabulary checked against ``config``'s size (BERT and ELECTRA alike)."""
    from data.tokenization import Vocabulary
    from models.huggingface import SafetensorsFiles

    _refuse_pickles(path, option)
    files = SafetensorsFiles(path)
    vocab_path = _vocabulary(path, option)
    vocab = Vocabulary.load(vocab_path)
    if len(vocab) != config.vocab_size:
        raise UserError(f"{vocab_path}: has {len(vocab):,} tokens but {path / HF_CONFIG} says vocab_size "
                        f"{config.vocab_size:,}; use the vocab.txt that came with the checkpoint")
    return files, vocab_path, _casing(path, vocab, lowercase, option)


def is_electra(path: Path) -> bool:
    """Whether a Transformers directory's ``config.json`` says ``model_type`` "electra"."""
    return read_json_object(Path(path) / HF_CONFIG).get("model_type") == "electra"


def _vocabulary(path: Path, option: str) -> Path:
    """``vocab.txt``, or one written from ``tokenizer.json``'s WordPiece vocabulary (ids in order) if only that."""
    if (path / "vocab.txt").is_file():
        return path / "vocab.txt"
    model = read_json_object(path / TOKENIZER_JSON).get("model") if (path / TOKENIZER_JSON).is_file() else None
    if not isinstance(model, dict) or model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
        raise UserError(f"{option} {path}: has no vocab.txt (nor a WordPiece tokenizer.json); a BERT checkpoint's "
                        "vocabulary is needed: save the tokenizer with the model (tokenizer.save_pretrained)")
    by_id = {index: token for token, index in model["vocab"].items()}
    if sorted(by_id) != list(range(len(model["vocab"]))):
        raise UserError(f"{path / TOKENIZER_JSON}: its WordPiece vocabulary's ids are not 0..{len(by_id) - 1}")
    from bert_cli.conversion import scratch_directory

    written = scratch_directory() / "vocab.txt"
    written.write_text("".join(f"{by_id[i]}\n" for i in range(len(by_id))), encoding="utf-8")
    return written


def _refuse_pickles(path: Path, option: str) -> None:
    if any((path / name).is_file() for name in SAFETENSORS):
        return
    pickles = _pickles(path)
    if pickles:
        raise UserError(
            f"{option} {path}: holds its weights only as {pickles[0].name}, a Python pickle that can run code when "
            "loaded, so it is not opened; convert it to safetensors first (in Transformers: "
            "model.save_pretrained(directory, safe_serialization=True))")
    others = [name for name in OTHER_WEIGHTS if (path / name).is_file()]
    raise UserError(f"{option} {path}: has no model.safetensors ({', '.join(others) or 'no weights'} found); save "
                    "the model as safetensors (model.save_pretrained(directory, safe_serialization=True))")


def _declared_casing(path: Path) -> tuple[bool | None, Path | None, object]:
    """``do_lower_case`` from tokenizer_config.json, else the BertNormalizer of tokenizer.json; and strip_accents."""
    if (path / TOKENIZER_CONFIG).is_file():
        values = read_json_object(path / TOKENIZER_CONFIG)
        if isinstance(values.get("do_lower_case"), bool):
            return values["do_lower_case"], path / TOKENIZER_CONFIG, values.get("strip_accents")
    if (path / TOKENIZER_JSON).is_file():
        normalizer = read_json_object(path / TOKENIZER_JSON).get("normalizer") or {}
        for step in normalizer.get("normalizers", [normalizer]):
            if isinstance(step, dict) and step.get("type") == "BertNormalizer" and isinstance(step.get("lowercase"),
                                                                                                bool):
                return step["lowercase"], path / TOKENIZER_JSON, step.get("strip_accents")
    return None, None, None


def _casing(path: Path, vocab, lowercase: bool | None, option: str) -> bool:
    from bert_cli import console
    from bert_cli.conversion import checkpoint_casing

    declared, where, strip_accents = _declared_casing(path)
    if declared is None:
        return checkpoint_casing(path, vocab, lowercase, f"{option} {path}")
    if lowercase is not None and lowercase != declared:
        raise UserError(f"--{'lowercase' if lowercase else 'cased'} contradicts {where}, which says the model is "
                        f"{_case(declared)} (do_lower_case {str(declared).lower()}); drop the option")
    # The tokenizer's own file is how the checkpoint's text was tokenized: it decides,
    # whatever the directory's name or unreachable upper-case tokens in the vocabulary say.
    chosen = declared
    if strip_accents is not None and strip_accents != chosen:
        console.warning(f"{where}: strip_accents {str(strip_accents).lower()} with do_lower_case "
                        f"{str(chosen).lower()}; this tokenizer strips accents exactly when it lower-cases, so "
                        "accented text tokenizes differently from the checkpoint's own tokenizer")
    return chosen


def _task(values: dict, checkpoint, lowercase: bool, path: Path) -> tuple[dict, str | None]:
    """The task.json the directory becomes, and the fine-tuned head to convert (or None)."""
    from bert_cli import console
    from bert_cli.tasks import TASKS
    from models.huggingface import MASKED_LM, NEXT_SENTENCE

    ours = (values.get(OUR_KEY) or {}).get("task") if isinstance(values.get(OUR_KEY), dict) else None
    if isinstance(ours, dict) and ours.get("task") in TASKS:
        head = TASKS[ours["task"]].hugging_face(ours)["head"]
        if head in checkpoint.heads:
            return {**ours, "lowercase": lowercase, "converted_from": str(path)}, head
    if checkpoint.heads or checkpoint.unknown:
        names = [f"{head}.weight, {head}.bias" for head in checkpoint.heads] + list(checkpoint.unknown)
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        console.warning(f"{path}: left out, not part of an encoder or the pre-training heads: {shown} (a fine-tuned "
                        "head of another tool; fine-tune the converted encoder with bert finetune)")
    task = {"task": "pretraining", "masked_lm": MASKED_LM in checkpoint.parts,
            "next_sentence": NEXT_SENTENCE in checkpoint.parts, "lowercase": lowercase, "converted_from": str(path)}
    return task, None


def build_from_huggingface(source: HFSource, on_variable=None):
    """Our model of a checked directory, with its weights: ``(backbone, model or None)``.

    ``model`` is the pre-training model (MLM head present) or the restored fine-tuned
    model; None for an encoder alone. A BertForMaskedLM file has no pooler: ours is
    then drawn from a fixed seed (truncated normal, ``initializer_range``), so the
    conversion stays byte-for-byte repeatable.
    """
    from bert_cli.tasks import task_module
    from models.encoder import build_encoder, seeded_pooler
    from models.huggingface import MASKED_LM, NEXT_SENTENCE, POOLER, assign_from_hf, head_from_hf
    from models.pretraining import build_pretrainer, keras_variables

    checkpoint = source.checkpoint
    if source.head is not None:
        model = task_module(source.task["task"]).build_model(
            ModelDir(path=source.path, config=source.config, vocab_path=source.vocab_path, task=source.task))
        backbone, variables = model.backbone, keras_variables(model.backbone)
    elif MASKED_LM in checkpoint.parts:
        model = build_pretrainer(source.config, next_sentence=NEXT_SENTENCE in checkpoint.parts)
        backbone, variables = model.backbone, keras_variables(model.backbone, model)
    else:
        model, backbone = None, build_encoder(source.config)
        variables = keras_variables(backbone)
    if POOLER not in checkpoint.parts:
        seeded_pooler(backbone, source.config.initializer_range)
    assign_from_hf(checkpoint, variables, on_variable)
    if source.head is not None:
        head_from_hf(checkpoint, source.head, model.head.dense)
    return backbone, model


def _notes(source: HFSource) -> None:
    from bert_cli import console
    from models.huggingface import POOLER

    for note in source.notes:
        console.warning(f"{source.path / HF_CONFIG}: {note}")
    if POOLER not in source.checkpoint.parts:
        console.warning(f"{source.path}: has no pooler (bert.pooler.dense; a BertForMaskedLM checkpoint): the "
                        "pooled [CLS] output starts from a random initialisation, which classify fine-tuning trains")


def open_huggingface(path: str | Path, option: str = "--init") -> ModelDir:
    """A Transformers directory as a :class:`ModelDir`, converted into a scratch directory for this process."""
    from bert_cli import console
    from bert_cli.conversion import scratch_directory
    from bert_cli.model_dir import write_model_dir

    if is_electra(path):
        from bert_cli.huggingface_electra import open_electra_huggingface

        return open_electra_huggingface(path, option)
    source = resolve_huggingface(path, option)
    _notes(source)
    console.info(f"converting the Hugging Face checkpoint {source.path} ({_case(source.lowercase)})")
    backbone, model = build_from_huggingface(source)
    scratch = scratch_directory()
    write_model_dir(scratch, source.config, source.vocab_path, backbone, model, source.task)
    return ModelDir(path=Path(path), config=source.config, vocab_path=source.vocab_path, task=source.task,
                    weights_path=scratch)


# ----------------------------------------------------------------------------
# bert convert, both directions
# ----------------------------------------------------------------------------


def huggingface_to_model(source_path: Path, target: Path, lowercase: bool | None, overwrite: bool,
                         generator_path: Path | None = None):
    """``bert convert HF_DIR TO``: a model directory of ours (``--generator``: an ELECTRA one's generator)."""
    from bert_cli import console
    from bert_cli.conversion import ConversionResult, atomic_directory, parameter_count
    from bert_cli.model_dir import write_model_dir

    if is_electra(source_path):
        from bert_cli.huggingface_electra import electra_huggingface_to_model

        return electra_huggingface_to_model(source_path, target, lowercase, overwrite, generator_path)
    if generator_path is not None:
        raise UserError(f"--generator is an ELECTRA generator's directory; FROM {source_path} is a Hugging Face "
                        "BERT directory (model_type \"bert\"), which has none: drop --generator")
    source = resolve_huggingface(source_path, "FROM", lowercase)
    _notes(source)
    mappings = source.checkpoint.mappings
    with console.count_progress("converting", len(mappings), unit="tensors") as advance:
        backbone, model = build_from_huggingface(source, on_variable=lambda _: advance(1))
    with atomic_directory(target, overwrite) as scratch:
        write_model_dir(scratch, source.config, source.vocab_path, backbone, model, source.task)
    parts = _part_names(source.checkpoint.parts) + ([f"{source.task['task']} head ({source.head})"]
                                                     if source.head else [])
    dtypes = source.checkpoint.dtypes
    return ConversionResult(
        source=source_path, output=target, direction="Hugging Face → model directory", config=source.config,
        parts=parts, variables=len(mappings) + (2 if source.head else 0),
        parameters=parameter_count((model or backbone).weights), lowercase=source.lowercase,
        unknown=source.checkpoint.unknown, upcast=", ".join(d for d in dtypes if d != "F32") or None,
    )


def _part_names(parts) -> list[str]:
    from models.huggingface import MASKED_LM, NEXT_SENTENCE, POOLER

    names = ["encoder" if POOLER in parts else "encoder (no pooler)"]
    names += ["masked LM head"] if MASKED_LM in parts else []
    names += ["next-sentence head"] if NEXT_SENTENCE in parts else []
    return names


def model_to_huggingface(source_path: Path, target: Path, lowercase: bool | None, overwrite: bool,
                         generator_path: Path | None = None):
    """``bert convert MODEL_DIR TO --format huggingface``: a directory Transformers' ``from_pretrained`` loads
    (an ELECTRA model: its discriminator, and with ``--generator`` its generator, see bert_cli.huggingface_electra).
    """
    from bert_cli.conversion import ConversionResult, atomic_directory, model_casing
    from bert_cli.model_dir import read_model_dir
    from data.tokenization import Vocabulary
    from models.huggingface import config_to_hf

    model_dir = read_model_dir(source_path, "FROM")
    casing = model_casing(model_dir, lowercase, source_path, target)
    if model_dir.kind == "pretraining" and model_dir.objective == "electra":
        from bert_cli.huggingface_electra import electra_model_to_huggingface

        return electra_model_to_huggingface(model_dir, source_path, target, casing, overwrite, generator_path)
    if generator_path is not None:
        raise UserError(f"--generator writes an ELECTRA model's generator; FROM {source_path} is not an ELECTRA "
                        "model (its task.json has no \"objective\": \"electra\"): drop --generator")
    weights, architecture, extra, parts = _weights_to_hf(model_dir)
    vocab = Vocabulary.load(model_dir.vocab_path)
    values = config_to_hf(model_dir.config, architecture, vocab.pad_id, extra)
    with atomic_directory(target, overwrite) as scratch:
        write_hf_directory(scratch, weights, values, model_dir, casing)
    return ConversionResult(
        source=source_path, output=target, direction=f"model directory → Hugging Face {architecture}",
        config=model_dir.config, parts=parts, variables=len(weights),
        parameters=int(sum(w.size for w in weights.values())), lowercase=casing,
    )


def write_hf_directory(directory: Path, weights: dict, values: dict, model_dir, lowercase: bool,
                       tokenizer_class: str = "BertTokenizer") -> None:
    """model.safetensors, config.json, the model directory's vocab.txt and the tokenizer's files."""
    from models.huggingface import WEIGHTS_FILE, write_safetensors

    write_safetensors(weights, directory / WEIGHTS_FILE)
    write_json(directory / HF_CONFIG, values, sort_keys=True)
    shutil.copyfile(model_dir.vocab_path, directory / "vocab.txt")
    _write_tokenizer_files(directory, lowercase, model_dir.config.max_position_embeddings, tokenizer_class)


def _weights_to_hf(model_dir) -> tuple[dict, str, dict, list[str]]:
    """Our weights under Transformers names, the class they form, its config keys and the parts' names."""
    from bert_cli.model_dir import load_encoder
    from bert_cli.tasks import is_fine_tuned, task_module
    from models.huggingface import ENCODER, MASKED_LM, NEXT_SENTENCE, POOLER, hf_weights
    from models.pretraining import build_pretrainer, keras_variables

    config, kind = model_dir.config, model_dir.kind
    if is_fine_tuned(kind):
        module = task_module(kind, str(model_dir.path / "task.json"))
        model = module.build_model(model_dir)
        _load(model, model_dir)
        spec = module.hugging_face(model_dir.task)
        weights = hf_weights(config, keras_variables(model.backbone), {ENCODER, POOLER}, "bert.")
        dense = model.head.dense
        weights[f"{spec['head']}.weight"] = _array(dense.kernel).T.copy()  # [H, L] -> [L, H]
        weights[f"{spec['head']}.bias"] = _array(dense.bias)
        extra = {**spec["config"], OUR_KEY: {"task": model_dir.task}}
        return weights, spec["architecture"], extra, ["encoder", f"{kind} head ({spec['head']})"]
    if model_dir.has_masked_lm_heads:
        next_sentence = bool(model_dir.task.get("next_sentence", True))
        pretrainer = build_pretrainer(config, next_sentence=next_sentence)
        _load(pretrainer, model_dir)
        parts = {ENCODER, POOLER, MASKED_LM} | ({NEXT_SENTENCE} if next_sentence else set())
        weights = hf_weights(config, keras_variables(pretrainer.backbone, pretrainer), parts, "bert.")
        architecture = "BertForPreTraining" if next_sentence else "BertForMaskedLM"
        return weights, architecture, {}, _part_names(parts)
    encoder = load_encoder(model_dir)
    return hf_weights(config, keras_variables(encoder), {ENCODER, POOLER}, ""), "BertModel", {}, ["encoder"]


def _load(model, model_dir) -> None:
    try:
        model.load_weights(str(model_dir.model_weights))
    except (ValueError, OSError) as error:
        raise UserError(f"{model_dir.model_weights}: cannot be loaded into the model task.json and "
                        f"bert_config.json describe ({error})") from None


def _array(variable):
    import numpy as np

    return np.asarray(variable.numpy(), dtype=np.float32)


def _write_tokenizer_files(directory: Path, lowercase: bool, max_length: int, tokenizer_class: str) -> None:
    """tokenizer_config.json and special_tokens_map.json of a BertTokenizer (or ElectraTokenizer, the same
    WordPiece tokenizer) with our casing."""
    from data.tokenization import CLS_TOKEN, MASK_TOKEN, PAD_TOKEN, SEP_TOKEN, UNK_TOKEN

    specials = {"unk_token": UNK_TOKEN, "sep_token": SEP_TOKEN, "pad_token": PAD_TOKEN, "cls_token": CLS_TOKEN,
                "mask_token": MASK_TOKEN}
    write_json(directory / TOKENIZER_CONFIG, sort_keys=True, value={
        "tokenizer_class": tokenizer_class, "do_lower_case": lowercase,
        # None: accents are stripped exactly when lower-casing, as the original tokenizer does.
        "strip_accents": None, "tokenize_chinese_chars": True, "do_basic_tokenize": True,
        "model_max_length": max_length, "clean_up_tokenization_spaces": True, **specials,
    })
    write_json(directory / SPECIAL_TOKENS_MAP, specials, sort_keys=True)
