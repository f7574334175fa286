"""`bert make-data --runner beam`: the Beam pipeline makes exactly the local command's records.

One DirectRunner run on 2 worker processes (a module fixture, the expensive part: each
worker starts Python, Beam and TensorFlow) serves several tests; the others start no
pipeline, or a small one in this process.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import data
from bert_cli.main import app
from cli_helpers import assert_one_line_error
from data import pretraining_data as pd
from data import records
from test_make_data import write_corpus, write_vocab

SMALL = ["--max-seq-length", "32", "--max-predictions-per-seq", "5", "--dupe-factor", "2", "--chunk-size-mb", "0.002"]
OUTPUT = ["--num-shards", "3", "--compression", "gzip"]


@pytest.fixture(scope="module")
def beam_pipeline():
    pytest.importorskip("apache_beam")
    from data import beam_pipeline

    return beam_pipeline


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Several files: plain, gzip, empty, and a large one whose documents span many chunks."""
    directory = tmp_path_factory.mktemp("beam")
    (directory / "corpus").mkdir()
    write_corpus(directory / "corpus" / "a.txt", documents=20, seed=1)
    small = write_corpus(directory / "small.txt", documents=3, seed=2)
    (directory / "corpus" / "b.txt.gz").write_bytes(gzip.compress(small.read_bytes()))
    (directory / "corpus" / "c.txt").write_text("")
    write_corpus(directory / "corpus" / "d_large.txt", documents=150, seed=3, sentences=(1, 12))
    return directory, write_vocab(directory), sorted((directory / "corpus").iterdir())


def _command(corpus, output, *extra, inputs=None):
    directory, vocab, _ = corpus
    inputs = inputs or [str(directory / "corpus" / "*")]
    return ["make-data", *inputs, "--vocab", str(vocab), "-o", str(output), *SMALL, *OUTPUT, *extra]


@pytest.fixture(scope="module")
def runs(beam_pipeline, corpus):
    """The local command (in this process) and the Beam pipeline on 2 worker processes, same seed and inputs.

    The runner deals every step's input out to both workers, so the files are read, and each
    chunk's pieces cut, in different processes and bundles; most chunks of the large file, and
    those at file boundaries, are gathered from several pieces.
    """
    directory = corpus[0]
    runner = CliRunner()
    local = runner.invoke(app, _command(corpus, directory / "local", "--workers", "0"))
    assert local.exit_code == 0, local.output
    dead = subprocess.Popen(["true"])  # a killed run's staging directory, its process gone: removed
    dead.wait()
    (directory / "beam" / f".beam-{dead.pid}").mkdir(parents=True)
    # --workers 1, but a Beam option wins: 2 worker processes
    beam_run = ["--runner", "beam", "--workers", "1", "--beam-option", "direct_num_workers=2"]
    beam = runner.invoke(app, _command(corpus, directory / "beam", *beam_run))
    assert beam.exit_code == 0, beam.output
    return directory / "local", directory / "beam", beam


def _manifest(directory) -> dict:
    return json.loads((directory / records.MANIFEST_NAME).read_text())


def _records(directory) -> list[bytes]:
    return sorted(records.iter_records(sorted(directory.glob("part-*"))))


def test_beam_makes_the_local_records(runs):
    local, beam, _ = runs
    assert _records(beam) == _records(local)  # the same multiset; shard assignment may differ
    assert len(_records(local)) == _manifest(local)["counts"]["instances"] > 100


def test_manifest_has_the_local_fields_and_counts(runs, corpus):
    local, beam, result = runs
    ours, theirs = _manifest(beam), _manifest(local)
    assert ours.keys() == theirs.keys()
    assert ours["counts"] == theirs["counts"] and theirs["counts"]["chunks"] >= 10
    for key in set(ours) - {"shards", "seconds"}:
        assert ours[key] == theirs[key], key
    assert [shard["file"] for shard in ours["shards"]] == [records.shard_name(i, 3, "gzip") for i in range(3)]
    assert sum(shard["instances"] for shard in ours["shards"]) == ours["counts"]["instances"]
    assert [shard["bytes"] for shard in ours["shards"]] == [p.stat().st_size for p in sorted(beam.glob("part-*"))]
    assert sorted(p.name for p in beam.iterdir()) == sorted(p.name for p in local.iterdir())  # no staging left
    assert "DirectRunner (2 worker processes)" in result.stderr and "masked share" in result.stdout


def test_no_sentence_is_lost_or_duplicated(runs, beam_pipeline, corpus):
    """Files are read whole, one per worker call, so no split point of a runner falls inside a
    document: the reading steps give the local command's chunks exactly (every sentence once, in
    the chunk of the same index), and the 2-worker run counted the local sentences and tokens."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    local, ours, _ = runs
    assert _manifest(ours)["counts"]["sentences"] == _manifest(local)["counts"]["sentences"] > 800
    files = corpus[2]
    chunk_chars = 300  # chunks of about 8 documents: the large file's many, and some across files
    expected = list(enumerate(pd.chunk_documents(pd.read_documents(files), chunk_chars)))
    assert len(expected) > 15 and sum(len(chunk) for _, chunk in expected) == 173
    options = beam_pipeline.pipeline_options(0, [])
    with beam.Pipeline(runner=beam_pipeline.local_runner(options), options=options) as pipeline:
        chunks = (
            pipeline
            | beam.Create(list(enumerate(str(f) for f in files)))
            | beam.Reshuffle()
            | beam_pipeline.ReadChunks("lines", chunk_chars)
            | beam.MapTuple(lambda index, pieces: (index, beam_pipeline.chunk_text(pieces)))
        )
        assert_that(chunks, equal_to(expected))


@pytest.fixture(scope="module")
def url_file_system(beam_pipeline):
    """Beam's local file system under a URL scheme (``testfs:///tmp/x`` is /tmp/x): to the pipeline, a
    file system like ``gs://``. Beam finds it among the live subclasses of its FileSystem, so the
    fixture keeps it alive; only runs in this process see it."""
    import os
    import shutil

    from apache_beam.io.filesystem import FileMetadata
    from apache_beam.io.localfilesystem import LocalFileSystem

    prefix = "testfs://"

    def local(path):
        return path.removeprefix(prefix)

    class UrlFileSystem(LocalFileSystem):
        @classmethod
        def scheme(cls):
            return "testfs"

        def join(self, base, *paths):
            return prefix + os.path.join(local(base), *paths)

        def split(self, path):
            head, tail = os.path.split(local(path))
            return prefix + head, tail

        def _url_dirname(self, url):
            return prefix + os.path.dirname(local(url))

        def _list(self, directory):
            for root, _, names in os.walk(local(directory)):
                for name in names:
                    yield self.metadata(prefix + os.path.join(root, name))

        def metadata(self, path):
            return FileMetadata(path, os.path.getsize(local(path)), os.path.getmtime(local(path)))

        def exists(self, path):
            return os.path.exists(local(path))

        def mkdirs(self, path):
            super().mkdirs(local(path))

        def create(self, path, *args, **kwargs):
            return super().create(local(path), *args, **kwargs)

        def open(self, path, *args, **kwargs):
            return super().open(local(path), *args, **kwargs)

        def rename(self, sources, destinations):
            super().rename([local(p) for p in sources], [local(p) for p in destinations])

        def delete(self, paths):
            for path in map(local, paths):
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)

    return UrlFileSystem


def test_inputs_and_output_on_another_file_system(runs, corpus, url_file_system):
    """URLs all the way (as gs:// is on Dataflow): inputs matched, read and sized, the output checked,
    staged, published and its manifest written through Beam's file systems; the same records."""
    local, _, _ = runs
    directory = corpus[0]
    output, inputs = directory / "remote", [f"testfs://{directory}/corpus/*"]
    in_this_process = ["--runner", "beam", "--workers", "0"]
    result = CliRunner().invoke(app, _command(corpus, f"testfs://{output}", *in_this_process, inputs=inputs))
    assert result.exit_code == 0, result.output
    assert _records(output) == _records(local)
    manifest = _manifest(output)
    assert manifest["counts"] == _manifest(local)["counts"]
    assert [i["file"] for i in manifest["inputs"]] == [f"testfs://{p}" for p in corpus[2]]
    assert manifest["dataset"]["inputs"] == [i["file"] for i in manifest["inputs"]]
    assert sorted(p.name for p in output.iterdir()) == sorted(p.name for p in local.iterdir())
    assert "testfs://" in result.stdout  # the table names the URLs
    again = CliRunner().invoke(
        app, _command(corpus, f"testfs://{output}", *in_this_process, "--seed", "7", inputs=inputs)
    )
    assert_one_line_error(again, "already holds a different dataset (other options)", "--overwrite")


def test_chunk_plan_follows_the_local_rule_across_files():
    import numpy as np

    pytest.importorskip("apache_beam")
    from data.beam_pipeline import chunk_plan

    sizes = {0: np.array([5] * 10), 1: np.array([], dtype=np.int64), 2: np.array([50, 1, 1, 1, 1, 1, 1, 1, 1, 1])}
    plan = chunk_plan(reversed(sizes.items()), chunk_chars=20)
    flat = [size for index in sorted(sizes) for size in sizes[index].tolist()]
    expected = [len(chunk) for chunk in pd.chunk_documents(flat, 20, int)]
    assert expected == [8, 12]  # the last chunk is short of 8 documents: it joins the one before
    assert plan == {0: [(0, 0, 8), (1, 8, 10)], 1: [], 2: [(1, 0, 10)]}


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("missing", ["missing.txt: no such file"]),
        ("empty", ["no text to make examples from"]),
        ("single", ["only one document", "--no-nsp"]),
        ("no-mask", ["missing required special token [MASK]"]),
        ("bad-option", ["--beam-option =x: expected KEY=VALUE"]),
    ],
)
def test_bad_input_fails_before_the_pipeline_starts(beam_pipeline, corpus, tmp_path, monkeypatch, case, fragments):
    directory, vocab, _ = corpus
    text, extra = directory / "corpus" / "a.txt", []
    if case == "missing":
        text = tmp_path / "missing.txt"
    elif case == "empty":
        text = tmp_path / "empty.txt"
        text.write_text("\n  \n\n")
    elif case == "single":
        text = tmp_path / "single.txt"
        text.write_text("One sentence here.\nAnd another one.\n")
    elif case == "no-mask":
        vocab = write_vocab(tmp_path, drop="[MASK]")
    elif case == "bad-option":
        extra = ["--beam-option", "=x"]

    def started(*args, **kwargs):
        raise AssertionError("the pipeline was built")

    monkeypatch.setattr(beam_pipeline, "build_pipeline", started)
    output = tmp_path / "out"
    command = ["make-data", str(text), "--vocab", str(vocab), "-o", str(output), *SMALL, "--runner", "beam", *extra]
    assert_one_line_error(CliRunner().invoke(app, command), *fragments)
    assert not output.exists() or not any(output.iterdir())


def test_bad_text_found_by_a_worker_ends_in_one_error_line_and_leaves_nothing(beam_pipeline, corpus, tmp_path):
    """A bad byte past the documents the checks read first (in a second file) stops the pipeline
    (here run in this process); the worker's DataError is the command's one error line."""
    late = tmp_path / "late.txt"
    late.write_bytes(b"The cat sat.\nCaf\xe9 au lait.\n")
    output = tmp_path / "out"
    inputs = [str(corpus[0] / "corpus" / "a.txt"), str(late)]
    result = CliRunner().invoke(app, _command(corpus, output, "--runner", "beam", "--workers", "0", inputs=inputs))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    started, error = result.stderr.strip().splitlines()  # the pipeline had started, then stopped
    assert "Apache Beam on DirectRunner" in started and "late.txt:2: not valid UTF-8" in error
    assert not output.exists()


def test_worker_errors_are_found_in_the_runners_report():
    pytest.importorskip("apache_beam")
    from data.beam_pipeline import worker_data_error

    text = (
        "Traceback (most recent call last):\n  File ...\ndata.errors.DataError: x.txt:3: not valid UTF-8 "
        "(byte 0xe9 at column 4); convert [while running 'Read chunks/Document sizes']\n"
    )
    assert worker_data_error(text) == "x.txt:3: not valid UTF-8 (byte 0xe9 at column 4); convert"
    assert worker_data_error("RuntimeError: something else") is None


def test_without_beam_the_error_says_how_to_install_it(corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # import apache_beam now fails
    monkeypatch.delitem(sys.modules, "data.beam_pipeline", raising=False)
    monkeypatch.delattr(data, "beam_pipeline", raising=False)
    result = CliRunner().invoke(app, _command(corpus, tmp_path / "out", "--runner", "beam"))
    assert_one_line_error(result, "--runner beam", "pip install -e '.[beam]'")


def test_beam_options_and_urls_need_the_beam_runner(corpus, tmp_path):
    result = CliRunner().invoke(app, _command(corpus, tmp_path / "out", "--beam-option", "runner=DataflowRunner"))
    assert_one_line_error(result, "--beam-option runner=DataflowRunner", "--runner beam")
    result = CliRunner().invoke(app, _command(corpus, "gs://bucket/records/"))
    assert_one_line_error(result, "gs://bucket/records/: the local runner", "--runner beam")


def test_options_pass_through_and_a_named_runner_drops_the_local_defaults():
    pytest.importorskip("apache_beam")
    from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, StandardOptions

    from data.beam_pipeline import pipeline_options

    local = pipeline_options(3, ["direct_num_workers=5"]).view_as(DirectOptions)
    assert local.direct_running_mode == "multi_processing" and local.direct_num_workers == 5  # the user's wins
    dataflow = ["runner=DataflowRunner", "project=p", "region=europe-west4", "temp_location=gs://b/tmp"]
    cluster = pipeline_options(3, dataflow)
    assert cluster.view_as(StandardOptions).runner == "DataflowRunner"
    assert cluster.view_as(GoogleCloudOptions).temp_location == "gs://b/tmp"
    assert "default_sdk_harness_log_level" not in cluster.get_all_options(drop_default=True)
