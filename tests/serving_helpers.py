"""Tiny fine-tuned model directories for the export and predict tests, and the Python-side references.

The models are not trained: random weights with a wide initializer
(``initializer_range`` 0.5) give outputs that differ from input to input,
which is all export parity needs, in a fraction of a second. References are
computed the way fine-tuning does it: ``data.classification.featurize`` /
``data.tagging.featurize`` with ``Tokenizer.encode``, then the Keras model.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from finetune_helpers import FILLERS, NAMES, NEGATIVE, NUMBERS, ORGS, POSITIVE, SURNAMES, write_config, write_vocab

WIDE = {"initializer_range": 0.5}
TAGS = ["O", "B-ORG", "B-PER", "I-PER"]
WORDS = FILLERS + POSITIVE + NEGATIVE + NUMBERS + NAMES + SURNAMES + ORGS


def texts(count: int, seed: int, longest: int = 10) -> list[str]:
    """Short texts over the tiny vocabulary, some with punctuation and unknown words."""
    rng = random.Random(seed)
    extra = ["Anns", "zzz", ",", ".", "ACME.", "Bob,"]
    return [" ".join(rng.choices(WORDS + extra, k=rng.randint(1, longest))) for _ in range(count)]


# Inputs a server must survive: empty, whitespace, control characters, very long.
AWKWARD = ["", "   ", "\u200b\x00", "great " * 3000, "Ann" + "s" * 500]


def base(directory: Path) -> tuple[Path, object]:
    from models.config import BertConfig

    directory.mkdir(parents=True, exist_ok=True)
    write_vocab(directory)
    write_config(directory, **WIDE)
    return directory, BertConfig.from_json_file(directory / "bert_config.json")


def write_classifier(directory: Path, pair: bool = False, regression: bool = False, max_seq_length: int = 24,
                     seed: int = 1) -> Path:
    import keras

    from bert_cli.model_dir import write_model_dir
    from models.heads import build_classifier

    work, config = base(directory.parent / f"{directory.name}-source")
    keras.utils.set_random_seed(seed)
    labels = [] if regression else ["neg", "pos", "neutral"]
    model = build_classifier(config, len(labels) or 1, regression)
    task = {"task": "classify", "labels": labels, "regression": regression, "pair": pair, "lowercase": False,
            "max_seq_length": max_seq_length, "text_column": "sentence1" if pair else "sentence",
            "text_pair_column": "sentence2" if pair else None, "label_column": "label", "head": "pooled"}
    write_model_dir(directory, config, work / "vocab.txt", model.backbone, model, task)
    return directory


def write_tagger(directory: Path, max_seq_length: int = 12, seed: int = 2) -> Path:
    import keras

    from bert_cli.model_dir import write_model_dir
    from models.heads import build_tagger

    work, config = base(directory.parent / f"{directory.name}-source")
    keras.utils.set_random_seed(seed)
    model = build_tagger(config, len(TAGS))
    task = {"task": "tag", "labels": TAGS, "scheme": "IOB2", "lowercase": False, "max_seq_length": max_seq_length,
            "token_column": 0, "tag_column": -1, "label_pieces": "first", "head": "tokens"}
    write_model_dir(directory, config, work / "vocab.txt", model.backbone, model, task)
    return directory


def write_pretrained(directory: Path, seed: int = 3) -> Path:
    import keras

    from bert_cli.model_dir import write_model_dir
    from models.encoder import build_encoder

    work, config = base(directory.parent / f"{directory.name}-source")
    keras.utils.set_random_seed(seed)
    encoder = build_encoder(config)
    write_model_dir(directory, config, work / "vocab.txt", encoder, None,
                    {"task": "pretraining", "lowercase": False, "max_seq_length": 32})
    return directory


def tokenizer_of(model_dir: Path):
    from data.tokenization import Tokenizer, Vocabulary

    return Tokenizer(Vocabulary.load(model_dir / "vocab.txt"), lowercase=False)


def classification_features(model_dir: Path, texts_a: list[str], texts_b: list[str] | None, max_seq_length: int):
    """``data.classification.featurize`` of the texts: what fine-tuning feeds the model."""
    from data.classification import Columns, Dataset, Example, featurize

    tokenizer = tokenizer_of(model_dir)
    vocab = tokenizer.vocab
    examples = [Example(a, None if texts_b is None else texts_b[i], None, i + 1) for i, a in enumerate(texts_a)]
    dataset = Dataset(Path("inputs.tsv"), examples, Columns("text", None if texts_b is None else "text_pair", None))
    return featurize(dataset, tokenizer.encode, max_seq_length, vocab.cls_id, vocab.sep_id, vocab.pad_id)


def tagging_features(model_dir: Path, texts_: list[str], max_seq_length: int):
    """``data.tagging.featurize`` of the texts' whitespace-separated words (no tags)."""
    from data.tagging import Sentence, TaggedFile, featurize

    tokenizer = tokenizer_of(model_dir)
    vocab = tokenizer.vocab
    tagged = TaggedFile(Path("inputs.conll"), [Sentence(tuple(t.split()), None, i + 1) for i, t in enumerate(texts_)])
    features = featurize(tagged, tokenizer.encode, max_seq_length, vocab.cls_id, vocab.sep_id, vocab.pad_id,
                         vocab.unk_id)
    return tagged, features


def model_inputs(arrays: dict) -> dict:
    return {
        "token_ids": arrays["input_ids"],
        "segment_ids": arrays["segment_ids"],
        "padding_mask": arrays["input_mask"],
    }


def reference_probabilities(model_dir: Path, texts_a, texts_b, max_seq_length: int) -> np.ndarray:
    """Class probabilities [N, L] of the in-process Keras model on the training featurisation."""
    from bert_cli.model_dir import read_model_dir
    from bert_cli.serving import load_task_model

    model = load_task_model(read_model_dir(model_dir))
    features = classification_features(model_dir, texts_a, texts_b, max_seq_length)
    logits = np.asarray(model(model_inputs(features.arrays), training=False), dtype=np.float64)
    if logits.ndim == 1:
        return logits
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def reference_tags(model_dir: Path, texts_: list[str], max_seq_length: int) -> list[list[str]]:
    """Per-word tags of the in-process Keras model on the training windows."""
    from bert_cli.model_dir import read_model_dir
    from bert_cli.serving import load_task_model
    from data.tagging import assemble

    model = load_task_model(read_model_dir(model_dir))
    tagged, features = tagging_features(model_dir, texts_, max_seq_length)
    logits = np.asarray(model(model_inputs(features.arrays), training=False))
    predicted = assemble(features, logits.argmax(axis=-1), tagged)
    return [[TAGS[i] for i in sentence] for sentence in predicted]


SQUAD_TASK = {"task": "squad", "lowercase": False, "max_seq_length": 32, "doc_stride": 8, "max_query_length": 8,
              "max_answer_length": 6, "n_best_size": 20, "null_score_diff_threshold": 0.0, "head": "span"}


def write_span_predictor(directory: Path, version_2: bool = True, seed: int = 4) -> Path:
    import keras

    from bert_cli.model_dir import write_model_dir
    from models.heads import build_span_predictor

    work, config = base(directory.parent / f"{directory.name}-source")
    keras.utils.set_random_seed(seed)
    model = build_span_predictor(config)
    write_model_dir(directory, config, work / "vocab.txt", model.backbone, model,
                    {**SQUAD_TASK, "version_2_with_negative": version_2})
    return directory


def squad_examples(count: int, seed: int) -> list[dict]:
    """Questions about contexts of all lengths (one window to several), some with non-ASCII characters."""
    rng = random.Random(seed)
    extra = ["Ann,", "café", "naïve", "東京", "Bob.", "(ACME)", "—", "w1\u200bw2"]
    examples = []
    for index in range(count):
        context = " ".join(rng.choices(WORDS + extra, k=rng.choice([0, 3, 12, 30, 60])))
        question = " ".join(rng.choices(WORDS, k=rng.randint(1, 12)))
        examples.append({"id": f"q{index}", "question": question, "context": context})
    return examples


def write_squad_file(path: Path, examples: list[dict]) -> Path:
    import json

    paragraphs = [{"context": e["context"], "qas": [{"id": e["id"], "question": e["question"], "answers": [],
                                                      "is_impossible": True}]} for e in examples]
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": paragraphs}]}),
                    encoding="utf-8")
    return path


def reference_answers(model_dir: Path, examples: list[dict], squad_path: Path, max_seq_length: int = 32) -> dict:
    """``data.squad.predict_answers`` of the in-process Keras model on ``data.squad.featurize``'s windows."""
    import json

    from bert_cli.model_dir import read_model_dir
    from bert_cli.serving import load_task_model
    from data import squad

    task = json.loads((model_dir / "task.json").read_text())
    model = load_task_model(read_model_dir(model_dir))
    data = squad.read_squad(squad_path, require_answers=False)
    features = squad.featurize(data, tokenizer_of(model_dir), max_seq_length, task["doc_stride"],
                               task["max_query_length"])
    logits = model(model_inputs(features.arrays), training=False)
    predictions = squad.predict_answers(data, features, np.asarray(logits["start_logits"]),
                                        np.asarray(logits["end_logits"]), task["n_best_size"],
                                        task["max_answer_length"], task["version_2_with_negative"],
                                        task["null_score_diff_threshold"])
    return predictions, features
