"""Generated, learnable fine-tuning tasks and a tiny model for the finetune tests.

* single sentences: a few filler words and one cue word; the label is "pos"
  when the cue is one of the positive cues, "neg" otherwise;
* sentence pairs: each sentence holds one number word (zero..three among
  fillers); the label is "1" when the two numbers add up to three or more, so
  neither sentence alone decides it. (A task whose every single feature is
  uncorrelated with the label, such as "B repeats a word of A", sits on a
  loss plateau for thousands of steps at this size: measured, chance after
  500 steps.)
* tagging: lower-case filler words, people (a first name, sometimes followed
  by a surname: B-PER I-PER) and all-capital organisations (B-ORG); some
  first names take a "##s" piece so the first-piece rule is exercised.
"""

from __future__ import annotations

import random
from pathlib import Path

import pretrain_helpers

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FILLERS = [f"w{i}" for i in range(30)]
POSITIVE = ["great", "fine", "nice"]
NEGATIVE = ["bad", "poor", "awful"]
NUMBERS = ["zero", "one", "two", "three"]
NAMES = ["Ann", "Bob", "Cid", "Dee", "Eve", "Fay", "Gus", "Hal"]
SURNAMES = ["Smith", "Jones", "Brown", "Lee"]
ORGS = ["ACME", "IBM", "NASA", "BBC"]
VOCAB = SPECIALS + FILLERS + POSITIVE + NEGATIVE + NUMBERS + NAMES + SURNAMES + ORGS + ["##s", ".", ","]
# The pre-training tests' tiny shape, with this vocabulary's size.
TINY_CONFIG = {**pretrain_helpers.TINY_CONFIG, "vocab_size": len(VOCAB)}


def write_vocab(directory: Path) -> Path:
    return pretrain_helpers.write_vocab(directory, VOCAB)


def write_config(directory: Path, **changes) -> Path:
    return pretrain_helpers.write_config(directory, TINY_CONFIG, **changes)


def sentiment_rows(count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        words = rng.choices(FILLERS, k=rng.randint(3, 8))
        positive = rng.random() < 0.5
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if positive else NEGATIVE))
        rows.append((" ".join(words), "pos" if positive else "neg"))
    return rows


def pair_rows(count: int, seed: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        a, b = rng.randrange(4), rng.randrange(4)
        texts = []
        for number in (a, b):
            words = rng.choices(FILLERS, k=rng.randint(1, 4))
            words.insert(rng.randint(0, len(words)), NUMBERS[number])
            texts.append(" ".join(words))
        rows.append((texts[0], texts[1], "1" if a + b >= 3 else "0"))
    return rows


def tagged_sentences(count: int, seed: int, longest: int = 12) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    sentences = []
    for _ in range(count):
        sentence: list[tuple[str, str]] = []
        while len(sentence) < rng.randint(4, longest):
            roll = rng.random()
            if roll < 0.2:
                sentence.append((rng.choice(NAMES) + ("s" if rng.random() < 0.3 else ""), "B-PER"))
                if rng.random() < 0.5:
                    sentence.append((rng.choice(SURNAMES), "I-PER"))
            elif roll < 0.3:
                sentence.append((rng.choice(ORGS), "B-ORG"))
            else:
                sentence.append((rng.choice(FILLERS), "O"))
        sentences.append(sentence)
    return sentences


def write_tsv(path: Path, header: list[str] | None, rows) -> Path:
    lines = (["\t".join(header)] if header else []) + ["\t".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_conll(path: Path, sentences, docstart: bool = True) -> Path:
    lines = ["-DOCSTART-\tO", ""] if docstart else []
    for sentence in sentences:
        lines += [f"{word}\t{tag}" for word, tag in sentence] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_pretrained_dir(work: Path) -> Path:
    """A model directory as `bert pretrain` leaves it, from ``work``'s config and vocabulary
    (random weights: what the fine-tuning tests check is the recipe)."""
    from bert_cli.model_dir import write_model_dir
    from models.config import BertConfig
    from models.encoder import build_encoder

    config = BertConfig.from_json_file(work / "bert_config.json")
    encoder = build_encoder(config)
    directory = work / "pretrained"
    write_model_dir(directory, config, work / "vocab.txt", encoder, encoder,
                    {"task": "pretraining", "lowercase": False, "max_seq_length": 64})
    return directory
