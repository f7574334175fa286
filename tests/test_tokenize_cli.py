"""`bert tokenize`: pieces or ids, from a file or stdin, one output line per input line."""

from __future__ import annotations

import json

import pytest

from bert_cli.main import app

TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", ",", "!", "un", "##aff", "##able", "Hello"]


@pytest.fixture
def vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    # Without a manifest the vocabulary's "Hello" would make it look cased.
    (tmp_path / "vocab.json").write_text(json.dumps({"lowercase": True}), encoding="utf-8")
    return path


def test_pieces_from_a_file(runner, vocab_file, tmp_path):
    text = tmp_path / "in.txt"
    text.write_text("Hello, world!\n\nUnaffable héllo\n", encoding="utf-8")
    result = runner.invoke(app, ["tokenize", "--vocab", str(vocab_file), "--input", str(text), "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "hello , world !\n\nun ##aff ##able hello\n"


def test_ids_from_stdin_cased(runner, vocab_file):
    result = runner.invoke(
        app, ["tokenize", "--vocab", str(vocab_file), "--ids", "--cased"], input="Hello, world!\nhello\n"
    )
    assert result.exit_code == 0, result.output
    ids = {token: index for index, token in enumerate(TOKENS)}
    assert result.stdout == f"{ids['Hello']} {ids[',']} {ids['world']} {ids['!']}\n{ids['hello']}\n"


def test_missing_vocabulary_is_one_line_and_exit_2(runner, tmp_path):
    result = runner.invoke(app, ["tokenize", "--vocab", str(tmp_path / "missing.txt")], input="hi\n")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.txt" in lines[0] and "no such vocabulary file" in lines[0]
    assert "Traceback" not in result.output


def test_bad_utf8_on_stdin_names_the_line(runner, vocab_file):
    result = runner.invoke(app, ["tokenize", "--vocab", str(vocab_file)], input=b"hello\ncaf\xe9\n")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        "<stdin>:2: not valid UTF-8 (byte 0xe9 at column 4); convert the input to UTF-8, e.g. with iconv"
    )
