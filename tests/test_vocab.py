"""`bert vocab`: exact size, the original layout, determinism, coverage figures, bad input."""

import gzip
import json
import random

import pytest

from bert_cli.main import app
from data.errors import DataError
from data.vocab import build_vocabulary, layout

SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "zu", "el", "an", "or", "is", "ü", "é"]


def _text(lines: int, seed: int) -> str:
    """A made-up language: a skewed word distribution built from syllables, with punctuation."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(400)]
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    out = []
    for _ in range(lines):
        sentence = rng.choices(words, weights, k=rng.randint(4, 14))
        sentence[0] = sentence[0].capitalize()
        out.append(" ".join(sentence) + rng.choice([".", "!", "?", ", ok."]))
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "corpus.txt"
    path.write_text(_text(3000, seed=1), encoding="utf-8")
    return path


def test_layout_follows_the_original_vocabularies():
    tokens = layout(["a", "b", "##a"], unused=99, vocab_size=110)
    assert tokens[0] == "[PAD]" and tokens[1] == "[unused0]" and tokens[99] == "[unused98]"
    assert tokens[100:104] == ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # Slots the corpus could not fill become more unused ones, after [MASK] as in the original.
    assert tokens[104:107] == ["[unused99]", "[unused100]", "[unused101]"]
    assert tokens[107:] == ["a", "b", "##a"]
    small = layout(["x"], unused=2, vocab_size=9)
    assert small == ["[PAD]", "[unused0]", "[unused1]", "[unused2]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "x"]


def test_exact_size_and_casing(corpus, tmp_path):
    report = build_vocabulary([corpus], tmp_path / "vocab.txt", vocab_size=300, unused=10)
    tokens = (tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(tokens) == 300 == report.vocab_size
    assert len(set(tokens)) == 300
    assert tokens[11:15] == ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert not any(t != t.lower() for t in tokens if not t.startswith("["))
    assert "é" not in tokens, "uncased vocabularies strip accents"
    cased = build_vocabulary([corpus], tmp_path / "cased.txt", vocab_size=300, unused=10, lowercase=False)
    cased_tokens = (tmp_path / "cased.txt").read_text(encoding="utf-8").splitlines()
    assert any(t[:1].isupper() for t in cased_tokens if not t.startswith("[")) and "é" in cased_tokens
    assert not cased.lowercase
    manifest = json.loads((tmp_path / "vocab.json").read_text())
    assert manifest["lowercase"] is True and manifest["vocab_size"] == 300
    assert manifest["sha256"] == report.sha256


def test_same_input_gives_byte_identical_output(corpus, tmp_path):
    build_vocabulary([corpus], tmp_path / "a.txt", vocab_size=400, unused=5)
    build_vocabulary([corpus], tmp_path / "b.txt", vocab_size=400, unused=5)
    assert (tmp_path / "a.txt").read_bytes() == (tmp_path / "b.txt").read_bytes()


def test_too_small_a_corpus_is_topped_up_with_unused_slots(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("ab ab ab ba\nab ba ba\n", encoding="utf-8")
    report = build_vocabulary([path], tmp_path / "v.txt", vocab_size=200, unused=0)
    tokens = (tmp_path / "v.txt").read_text().splitlines()
    assert len(tokens) == 200 and report.filled_unused > 150
    assert sum(t.startswith("[unused") for t in tokens) == report.filled_unused


def test_coverage_figures_match_a_hand_count(corpus, tmp_path):
    """[UNK] share and pieces per word, recomputed here with the reference tokenizer."""
    from data.vocab import HOLDOUT_EVERY
    from reference_tokenizer import basic_words, wordpiece

    report = build_vocabulary([corpus], tmp_path / "v.txt", vocab_size=120, unused=0, alphabet_limit=14)
    lines = [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    held_out = lines[HOLDOUT_EVERY - 1 :: HOLDOUT_EVERY]
    vocab = set((tmp_path / "v.txt").read_text(encoding="utf-8").splitlines())
    words = unknown = pieces = 0
    for line in held_out:
        for word in basic_words(line, lowercase=True):
            split = wordpiece(word, vocab)
            words += 1
            pieces += len(split)
            unknown += split == ["[UNK]"]
    assert report.holdout_words == words
    assert report.unk_word_share == pytest.approx(unknown / words)
    assert report.pieces_per_word == pytest.approx(pieces / words)
    assert report.unk_word_share > 0, "with 14 characters some words must be unknown"


def test_gzip_and_globs(corpus, tmp_path):
    with gzip.open(tmp_path / "part1.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write(corpus.read_text(encoding="utf-8"))
    (tmp_path / "part2.txt").write_text(_text(200, seed=2), encoding="utf-8")
    report = build_vocabulary([str(tmp_path / "part*")], tmp_path / "v.txt", vocab_size=250, unused=0)
    assert report.files == 2 and report.vocab_size == 250


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "no text found"),
        (b"\n\n   \n", "no text found"),
        (b"good line\n\xff\xfe bad\n", ":2: not valid UTF-8"),
        (b"\x7fELF\x00\x01binary", ":1: contains NUL bytes"),
    ],
)
def test_bad_corpora(tmp_path, content, message):
    path = tmp_path / "input.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        build_vocabulary([path], tmp_path / "v.txt", vocab_size=300)
    assert not (tmp_path / "v.txt").exists()


def test_cli_table_and_errors(runner, corpus, tmp_path):
    output = tmp_path / "out" / "vocab.txt"
    result = runner.invoke(app, ["vocab", str(corpus), "--vocab-size", "300", "--unused", "10", "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert "words → [UNK]" in result.stdout and "pieces per word" in result.stdout
    assert len(output.read_text().splitlines()) == 300
    again = runner.invoke(app, ["vocab", str(corpus), "--vocab-size", "300", "-o", str(output)])
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    for args, message in [
        ([str(tmp_path / "missing.txt")], "missing.txt: no such file"),
        ([str(tmp_path / "nothing-*.txt")], "no file matches"),
        ([str(corpus), "--vocab-size", "50"], "--vocab-size 50"),
    ]:
        result = runner.invoke(app, ["vocab", *args, "-o", str(tmp_path / "x.txt")])
        assert result.exit_code == 2, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "x.txt").exists()


def test_output_location_that_cannot_be_created(runner, corpus, tmp_path):
    # A file where the output's directory should be: fails even for root, unlike permissions.
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a directory")
    result = runner.invoke(app, ["vocab", str(corpus), "--vocab-size", "300", "-o", str(blocker / "v.txt")])
    assert result.exit_code == 2, result.output
    assert "cannot create the output directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
