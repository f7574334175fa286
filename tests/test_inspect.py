"""`bert inspect records`: decoded examples and statistics, for our records and the original's."""

from __future__ import annotations

import collections

import pytest

from bert_cli.main import app
from test_make_data import SMALL, write_corpus, write_vocab

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from typer.testing import CliRunner

    directory = tmp_path_factory.mktemp("inspect")
    vocab = write_vocab(directory)
    corpus = write_corpus(directory / "corpus.txt", documents=20)
    output = directory / "records"
    result = CliRunner().invoke(
        app, ["make-data", str(corpus), "--vocab", str(vocab), "-o", str(output), "--workers", "0", *SMALL]
    )
    assert result.exit_code == 0, result.output
    return directory, vocab, output


def test_a_dataset_directory_decodes_with_the_manifests_vocabulary(runner, dataset):
    _, _, output = dataset
    result = runner.invoke(app, ["inspect", "records", str(output), "-n", "2"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.count("example ") == 2 and "[CLS]" in out and "[SEP]" in out and "│" in out
    assert "[MASK]→" in out  # a masked position and the token it hides
    assert "next sentence: " in out and ("random (label 1)" in out or "actual (label 0)" in out)
    for row in ("masked share", "masked as", "next sentence", "real lengths", "padding share", "dataset (manifest)"):
        assert row in out


def _original_style_records(path, vocab, gzip: bool):
    """Records written the way the original script writes them, with ids from ``vocab``."""
    tokens = vocab.read_text().split("\n")
    ids = {t: i for i, t in enumerate(tokens)}
    sentence = ["[CLS]", "the", "cat", "[MASK]", "on", "[SEP]", "a", "dog", "ran", "[SEP]"]
    input_ids = [ids[t] for t in sentence] + [0] * 6
    features = collections.OrderedDict(
        input_ids=input_ids,
        input_mask=[1] * 10 + [0] * 6,
        segment_ids=[0] * 6 + [1] * 4 + [0] * 6,
        masked_lm_positions=[3, 7, 0],
        masked_lm_ids=[ids["sat"], ids["dog"], 0],
        masked_lm_weights=[1.0, 1.0, 0.0],
        next_sentence_labels=[1],
    )
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                name: tf.train.Feature(float_list=tf.train.FloatList(value=values))
                if name == "masked_lm_weights"
                else tf.train.Feature(int64_list=tf.train.Int64List(value=values))
                for name, values in features.items()
            }
        )
    )
    with tf.io.TFRecordWriter(str(path), "GZIP" if gzip else "") as writer:
        for _ in range(3):
            writer.write(example.SerializeToString())


@pytest.mark.parametrize("gzip", [False, True])
def test_records_of_the_original_script(runner, dataset, tmp_path, gzip):
    _, vocab, _ = dataset
    path = tmp_path / "original.tf_record"
    _original_style_records(path, vocab, gzip)
    result = runner.invoke(app, ["inspect", "records", str(path), "--vocab", str(vocab), "-n", "1"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "[MASK]→sat" in out and "dog→dog" in out  # masked, and kept
    assert "next sentence: random (label 1)" in out
    assert "[MASK] 50.0% · same 50.0% · random 0.0%" in out
    assert "random 100.0% · actual 0.0%" in out
    assert "max_seq_length 16, max_predictions_per_seq 3" in out


def test_without_a_vocabulary_ids_are_shown(runner, dataset, tmp_path):
    _, vocab, _ = dataset
    path = tmp_path / "original.tfrecord"
    _original_style_records(path, vocab, gzip=False)
    result = runner.invoke(app, ["inspect", "records", str(path), "-n", "1"])
    assert result.exit_code == 0, result.output
    assert "pass --vocab" in result.stderr


def test_bad_input_is_one_line(runner, tmp_path):
    junk = tmp_path / "junk.tfrecord"
    junk.write_text("not records at all\n" * 20)
    for args, fragment in [
        ([str(junk)], "junk.tfrecord: not a TFRecord file"),
        ([str(tmp_path / "nothing-*.tfrecord")], "no file matches this pattern"),
        ([str(tmp_path / "absent.tfrecord")], "absent.tfrecord: no such file"),
    ]:
        result = runner.invoke(app, ["inspect", "records", *args])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], result.stderr
