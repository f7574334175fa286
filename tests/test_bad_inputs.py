"""Every command, given bad input: exit 2, one line on stderr, no traceback, nothing new left on disk.

One table; a new command adds its rows. Each row builds its inputs in a
folder of its own (``make``), names the command's arguments and a fragment
the one line must hold. Whatever the failed command leaves in that folder
beyond what ``make`` wrote fails the row.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import finetune_helpers as fh
import serving_helpers as sh
from bert_cli.main import app
from conftest import REPO
from pretrain_helpers import make_examples, write_config, write_records, write_vocab

BAD_UTF8_ARGUMENT = "bad \udcff\udcfe"  # how Python hands over the bytes ff fe of an argument
LONE_SURROGATE_JSON = '"lone \\udcff"'


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def _records(work: Path) -> Path:
    """A make-data-like directory: a shard and a manifest recording its size."""
    shards = work / "records"
    shards.mkdir()
    write_vocab(shards)
    shard = write_records(shards / "part-00000-of-00001.tfrecord", make_examples(64, seed=1))
    manifest = {"shards": [{"file": shard.name, "instances": 64, "bytes": shard.stat().st_size}],
                "vocab_file": str(shards / "vocab.txt")}
    (shards / "manifest.json").write_text(json.dumps(manifest))
    write_config(work)
    return shards


def _truncated_records(work: Path) -> list[str]:
    shards = _records(work)
    shard = shards / "part-00000-of-00001.tfrecord"
    shard.write_bytes(shard.read_bytes()[:3000])
    return ["pretrain", str(shards), "-o", str(work / "model"), "--model", str(work / "bert_config.json")]


def _classify(work: Path, *extra: str, train: str = "train.tsv") -> list[str]:
    fh.write_vocab(work)
    fh.write_config(work)
    if train == "train.tsv":
        fh.write_tsv(work / train, ["sentence", "label"], fh.sentiment_rows(20, seed=1))
    return ["finetune", "classify", str(work / train), "-o", str(work / "model"), "--model",
            str(work / "bert_config.json"), "--vocab", str(work / "vocab.txt"), "--max-seq-length", "32", *extra]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return sh.write_classifier(tmp_path_factory.mktemp("bad-inputs") / "classifier")


CORPUS_BAD_UTF8 = b"a fine line\nthen \xff\xfe bad bytes\n"

CASES = {
    # name: (make(work) -> args, fragment of the one line)
    "corpus under /proc": (lambda w: ["corpus", "/proc/no/corpus.txt"], "/proc/no"),
    "vocab: missing input": (lambda w: ["vocab", str(w / "none.txt"), "-o", str(w / "out" / "vocab.txt")],
                             "no such file"),
    "vocab: bad UTF-8, new output folder": (
        lambda w: ["vocab", str(_write(w / "c.txt", CORPUS_BAD_UTF8)), "-o", str(w / "new" / "dir" / "vocab.txt"),
                   "--vocab-size", "300"], "c.txt:2: not valid UTF-8"),
    "vocab: output under /proc (before learning)": (
        lambda w: ["vocab", str(_write(w / "c.txt", "some text\n" * 10)), "-o", "/proc/vocab.txt",
                   "--vocab-size", "300"], "/proc"),
    "tokenize: missing vocab": (lambda w: ["tokenize", "--vocab", str(w / "v.txt")], "no such vocabulary file"),
    "make-data: bad UTF-8, new output folder": (
        lambda w: ["make-data", str(_write(w / "c.txt", CORPUS_BAD_UTF8)), "--vocab",
                   str(write_vocab(w)), "-o", str(w / "new" / "records")], "c.txt:2: not valid UTF-8"),
    "inspect: not records": (lambda w: ["inspect", "records", str(_write(w / "x.tfrecord", b"junk" * 40))],
                             "x.tfrecord"),
    "pretrain: truncated shard beside its manifest": (_truncated_records, "truncated or changed"),
    "pretrain: warmup longer than the run": (
        lambda w: ["pretrain", str(_records(w)), "-o", str(w / "model"), "--model", str(w / "bert_config.json"),
                   "--train-steps", "5", "--warmup-steps", "10"], "--warmup-steps"),
    "pretrain: unknown precision": (
        lambda w: ["pretrain", str(_records(w)), "-o", str(w / "model"), "--model", str(w / "bert_config.json"),
                   "--precision", "fp8"], "--precision"),
    "evaluate: no model": (lambda w: ["evaluate", str(w / "none"), str(_records(w))], "none"),
    "classify: missing training file": (lambda w: _classify(w, train="none.tsv"), "no such file"),
    "classify: empty training file": (lambda w: (_write(w / "e.tsv", ""), _classify(w, train="e.tsv"))[1],
                                      "empty"),
    "classify: lone surrogate in JSONL": (
        lambda w: (_write(w / "t.jsonl", '{"text": ' + LONE_SURROGATE_JSON + ', "label": "pos"}\n'),
                   _classify(w, train="t.jsonl"))[1], "lone surrogate"),
    "classify: unknown metric": (lambda w: _classify(w, "--metric", "bleu"), "--metric"),
    "tag: one column": (
        lambda w: ["finetune", "tag", str(_write(w / "t.conll", "a\nb\n")), "-o", str(w / "m"), "--model", "tiny",
                   "--vocab", str(fh.write_vocab(w))], "one field"),
    "squad: malformed JSON": (
        lambda w: ["finetune", "squad", str(_write(w / "s.json", '{"data": [')), "-o", str(w / "m"), "--model",
                   "tiny", "--vocab", str(fh.write_vocab(w))], "not valid JSON"),
    "squad: lone surrogate": (
        lambda w: ["finetune", "squad", str(_write(w / "s.json", '{"version": "1.1", "data": [{"title": '
                                                   + LONE_SURROGATE_JSON + ', "paragraphs": []}]}')),
                   "-o", str(w / "m"), "--model", "tiny", "--vocab", str(fh.write_vocab(w))], "data[0].title"),
    "score: missing predictions": (
        lambda w: ["score", "squad", str(sh.write_squad_file(w / "d.json", sh.squad_examples(3, 1))),
                   str(w / "p.json")], "no such file"),
    "export: no model directory": (lambda w: ["export", str(w / "none"), str(w / "export")], "none"),
    "export: output under /proc": (lambda w: ["export", str(sh.write_classifier(w / "m")), "/proc/export"], "/proc"),
    "classify: output under /proc": (lambda w: _classify(w)[:4] + ["/proc/model"] + _classify(w)[5:], "/proc"),
    "convert: nothing to convert": (lambda w: ["convert", str(w / "none"), str(w / "out")], "none"),
    "predict: no target": (lambda w: ["predict", str(w / "none"), "text"], "no such directory"),
}


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_leaves_nothing(name, runner, tmp_path):
    make, fragment = CASES[name]
    work = tmp_path / "work"
    work.mkdir()
    args = make(work)
    before = _listing(work)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.stderr
    assert fragment in lines[0], lines[0]
    assert _listing(work) == before, f"left behind: {sorted(_listing(work) - before)}"


def test_predict_refuses_invalid_utf8_arguments_and_json(runner, classifier, tmp_path):
    for target_args, fragment in (
        ([BAD_UTF8_ARGUMENT], "TEXT: not valid UTF-8 (byte 0xff at column 5)"),
        (["--input", str(_write(tmp_path / "x.jsonl", '{"text": ' + LONE_SURROGATE_JSON + "}\n"))],
         "x.jsonl:1: 'text': holds a lone surrogate \\udcff"),
    ):
        result = runner.invoke(app, ["predict", str(classifier), *target_args])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], result.stderr


def _bert(*args: str | bytes) -> subprocess.CompletedProcess:
    """``bert ARGS`` in a fresh interpreter with no log-level setting of the test run (as a user starts it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "BERT_DEBUG")}
    return subprocess.run([sys.executable, "-m", "bert_cli", *args], capture_output=True, cwd=REPO, env=env,
                          timeout=300)


def test_real_invalid_bytes_on_the_command_line(classifier):
    result = _bert("predict", str(classifier), b"bad \xff\xfe")
    assert result.returncode == 2, result.stderr
    assert result.stderr.decode().splitlines() == [
        "error: TEXT: not valid UTF-8 (byte 0xff at column 5); pass UTF-8 text"]


def test_no_native_start_up_lines_and_debug_shows_them(tmp_path):
    """TensorFlow is imported (the TPU is looked for) before the error: still one line; --debug lets TF speak."""
    args = _classify(tmp_path, "--strategy", "tpu", "--tpu", "no-such-tpu")
    quiet = _bert(*args)
    assert quiet.returncode == 2
    lines = quiet.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "tpu" in lines[0].lower(), lines
    loud = _bert("--debug", *args)
    assert b"Traceback" in loud.stderr and len(loud.stderr.decode().splitlines()) > 3


def test_extra_columns_are_named(runner, tmp_path):
    """A CoNLL file of three fields and a headerless TSV of three: the command says which columns it took."""
    fh.write_vocab(tmp_path)
    fh.write_config(tmp_path)

    def finetune(task: str, train: Path) -> str:
        result = runner.invoke(app, ["finetune", task, str(train), "-o", str(tmp_path / task), "--model",
                                     str(tmp_path / "bert_config.json"), "--vocab", str(tmp_path / "vocab.txt"),
                                     "--epochs", "0.1", "--max-seq-length", "32"])
        assert result.exit_code == 0, result.output
        return result.stderr

    conll = _write(tmp_path / "t.conll", "".join(f"Ann B-PER x{i}\nruns O y{i}\n\n" for i in range(8)))
    assert "rows have 3 fields; tokens from column 0, tags from column 2 (e.g. 'x0')" in finetune("tag", conll)
    tsv = _write(tmp_path / "t.tsv", "".join(f"id{i}\tgreat w{i}\t{'pos' if i % 2 else 'neg'}\n" for i in range(8)))
    assert "no header row and 3 fields a row: text from column 0 and labels from column 2" in finetune("classify", tsv)


def test_a_worker_stopped_by_the_file_size_limit_names_the_file(tmp_path):
    """``ulimit -f`` stops a make-data worker mid-write: the OSError crosses the process boundary with its file."""
    import resource

    corpus = _write(tmp_path / "c.txt", "".join(f"sentence {i} of doc {i // 5} w{i % 7} w{i % 11}.\n"
                                                + ("\n" if i % 5 == 4 else "") for i in range(4000)))
    vocab = fh.write_vocab(tmp_path)
    output = tmp_path / "records"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "BERT_DEBUG")}
    result = subprocess.run([sys.executable, "-m", "bert_cli", "make-data", str(corpus), "--vocab", str(vocab),
                             "-o", str(output), "--workers", "1", "--dupe-factor", "5"],
                            capture_output=True, cwd=REPO, env=env, timeout=300, preexec_fn=limit)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "File too large" in lines[0] and "ulimit -f" in lines[0], lines
    assert str(output) in lines[0]  # the file the worker was writing
    assert not output.exists()
