"""The built-in default corpus: deterministic, in the input format, the size asked for."""

import hashlib
import os
import subprocess
import sys

import pytest

from data.corpus import build_default_corpus, write_default_corpus
from data.errors import DataError
from data.sentences import split_sentences

SMALL = 50_000


@pytest.fixture(scope="module")
def megabyte():
    return build_default_corpus(1_000_000)


@pytest.fixture(scope="module")
def small():
    return build_default_corpus(SMALL)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_two_builds_are_byte_identical(small):
    assert build_default_corpus(SMALL).text() == small.text()


def test_another_hash_seed_locale_and_directory_give_the_same_bytes(small, tmp_path):
    code = (
        "import hashlib\n"
        "from data.corpus import build_default_corpus\n"
        f"text = build_default_corpus({SMALL}).text()\n"
        "print(hashlib.sha256(text.encode('utf-8')).hexdigest())\n"
    )
    digests = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "LC_ALL": "C", "LANG": "C"}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, check=True
        )
        digests.add(result.stdout.strip())
    assert digests == {_sha256(small.text())}


@pytest.mark.parametrize("corpus_name, target", [("megabyte", 1_000_000), ("small", SMALL)])
def test_format_and_size(request, corpus_name, target):
    corpus = request.getfixturevalue(corpus_name)
    text = corpus.text()
    size = len(text.encode("utf-8"))
    assert 0.9 * target <= size <= target
    assert size == corpus.stats.bytes

    assert text.endswith("\n") and not text.endswith("\n\n")
    assert "\n\n\n" not in text
    documents = text[:-1].split("\n\n")
    assert len(documents) == corpus.stats.documents
    lines = [line for document in documents for line in document.split("\n")]
    assert len(lines) == corpus.stats.sentences
    assert sum(len(line.split()) for line in lines) == corpus.stats.words
    for document in documents:
        assert len(document.split("\n")) >= 2  # next-sentence prediction needs a continuation
    for line in lines:
        assert line and line == line.strip()
        assert len(line.split()) >= 3
        assert not line.startswith((">>>", "...", ".. ", ":param"))
        assert split_sentences(line) == [line], "a line holds exactly one sentence"
    assert ">>>" not in text


@pytest.mark.parametrize("corpus_name", ["megabyte", "small"])
def test_both_sources_are_used_and_recorded(request, corpus_name):
    sources = request.getfixturevalue(corpus_name).stats.sources
    assert any(source.startswith("topic:") for source in sources)
    assert any(source.startswith("module:") for source in sources)
    assert len(set(sources)) == len(sources)
    assert not any(".test" in source or source.startswith(("module:test", "module:idlelib")) for source in sources)


def test_write_is_the_built_text_and_leaves_no_temporary(small, tmp_path):
    path = tmp_path / "out" / "corpus.txt"
    stats = write_default_corpus(path, SMALL)
    assert path.read_bytes() == small.text().encode("utf-8")
    assert stats == small.stats
    assert [p.name for p in path.parent.iterdir()] == ["corpus.txt"]


def test_too_small_a_target_is_a_data_error():
    with pytest.raises(DataError, match="too small"):
        build_default_corpus(100)


def test_the_library_modules_import_only_the_standard_library():
    code = (
        "import sys, data.corpus, data.sentences\n"
        "heavy = ('tensorflow', 'keras', 'numpy', 'typer', 'rich', 'models', 'bert_cli')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_cli_writes_the_corpus_and_refuses_to_overwrite(runner, tmp_path):
    from bert_cli.main import app

    path = tmp_path / "corpus.txt"
    result = runner.invoke(app, ["corpus", str(path), "--size-mb", "0.05"])
    assert result.exit_code == 0, result.output
    assert path.read_bytes() == build_default_corpus(SMALL).text().encode("utf-8")
    assert "documents" in result.stdout and "sentences" in result.stdout

    result = runner.invoke(app, ["corpus", str(path), "--size-mb", "0.02"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "already exists" in lines[0] and "--overwrite" in lines[0]
    assert len(path.read_bytes()) > 20_000  # untouched

    result = runner.invoke(app, ["corpus", str(path), "--size-mb", "0.02", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert 18_000 <= len(path.read_bytes()) <= 20_000


def test_cli_rejects_a_size_too_small(runner, tmp_path):
    from bert_cli.main import app

    result = runner.invoke(app, ["corpus", str(tmp_path / "c.txt"), "--size-mb", "0"])
    assert result.exit_code == 2
    assert "--size-mb" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.txt").exists()
