"""The TFRecord schema: our protobuf encoder against TensorFlow's, shard writing, reading."""

from __future__ import annotations

import collections
import errno
import os

import numpy as np
import pytest

from data import records
from data.errors import DataError

tf = pytest.importorskip("tensorflow")

T, P = 16, 4


def _reference_example(row: dict) -> "tf.train.Example":
    """tf.train.Example built the way the original script builds it."""
    feature = collections.OrderedDict()
    for name, values in row.items():
        if np.issubdtype(np.asarray(values).dtype, np.floating):
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))
        else:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _features(rows: int, seed: int = 0, largest: int = 30522, label: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    features = {
        "input_ids": rng.integers(0, largest, (rows, T)),
        "input_mask": rng.integers(0, 2, (rows, T)).astype(bool),
        "segment_ids": rng.integers(0, 2, (rows, T)).astype(np.int32),
        "masked_lm_positions": rng.integers(0, T, (rows, P)),
        "masked_lm_ids": rng.integers(0, largest, (rows, P)).astype(np.int32 if largest < 1 << 31 else np.int64),
        "masked_lm_weights": rng.integers(0, 2, (rows, P)).astype(np.float32),
    }
    if label:
        features["next_sentence_labels"] = rng.integers(0, 2, (rows, 1))
    return features


def _rows(features: dict) -> list[dict]:
    count = len(next(iter(features.values())))
    return [{name: values[i] for name, values in features.items()} for i in range(count)]


@pytest.mark.parametrize("largest", [2, 128, 30522, 1 << 21, 1 << 35])
@pytest.mark.parametrize("label", [True, False])
def test_encoder_gives_tensorflows_deterministic_bytes(largest, label):
    features = _features(64, seed=largest, largest=largest, label=label)
    # Values on every varint boundary, in the first row.
    edges = [0, 1, 127, 128, 16383, 16384, (1 << 21) - 1, 1 << 21, (1 << 28) - 1, 1 << 28, (1 << 35) - 1]
    edges = [e for e in edges if e < largest] or [0]
    features["input_ids"][0, : len(edges)] = edges[:T]
    blob, lengths = records.encode_examples(features)
    encoded = records.split_blob(blob, lengths)
    assert len(encoded) == 64 and sum(lengths) == len(blob)
    for row, ours in zip(_rows(features), encoded):
        assert ours == _reference_example(row).SerializeToString(deterministic=True)


def test_encoder_rejects_negative_values():
    features = _features(2)
    features["input_ids"][0, 0] = -1
    with pytest.raises(ValueError):
        records.encode_examples(features)


def _original_spec() -> dict:
    """The parsing spec of the original run_pretraining.py, written out here independently."""
    return {
        "input_ids": tf.io.FixedLenFeature([T], tf.int64),
        "input_mask": tf.io.FixedLenFeature([T], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([T], tf.int64),
        "masked_lm_positions": tf.io.FixedLenFeature([P], tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature([P], tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature([P], tf.float32),
        "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
    }


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_shards_parse_with_the_original_spec(tmp_path, compression):
    features = _features(10)
    with records.ShardWriter(tmp_path, 3, compression) as writer:
        writer.write_blob(*records.encode_examples(features, framed=True))
        writer.close()
        shards = writer.publish()
    assert [p.name for p in shards] == [records.shard_name(i, 3, compression) for i in range(3)]
    assert writer.counts == [4, 3, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in shards]  # no temporaries left
    # Round-robin: record i is in shard i % 3.
    parsed = {}
    for shard_index, shard in enumerate(shards):
        kind = "GZIP" if compression == "gzip" else ""
        assert records.compression_of(shard) == kind
        for k, record in enumerate(tf.data.TFRecordDataset(str(shard), compression_type=kind)):
            parsed[shard_index + 3 * k] = tf.io.parse_single_example(record, _original_spec())
    assert sorted(parsed) == list(range(10))
    for i, example in parsed.items():
        for name, values in features.items():
            np.testing.assert_array_equal(example[name].numpy(), values[i].astype(example[name].dtype.as_numpy_dtype))
    assert records.feature_spec(T, P).keys() == _original_spec().keys()


def test_shard_writer_deletes_its_files_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with records.ShardWriter(tmp_path, 2) as writer:
            writer.write_blob(*records.encode_examples(_features(4), framed=True))
            raise RuntimeError("disk trouble")
    assert list(tmp_path.iterdir()) == []


def test_read_examples_reads_the_original_scripts_records(tmp_path):
    """Records as the original writes them (insertion-ordered map, one plain and one gzip file)."""
    features = _features(6)
    rows = _rows(features)
    plain, packed = tmp_path / "a.tfrecord", tmp_path / "b.tfrecord"
    with tf.io.TFRecordWriter(str(plain)) as writer:
        for row in rows[:4]:
            writer.write(_reference_example(row).SerializeToString())
    with tf.io.TFRecordWriter(str(packed), "GZIP") as writer:
        for row in rows[4:]:
            writer.write(_reference_example(row).SerializeToString())
    files, manifest = records.find_record_files([str(tmp_path / "*.tfrecord")])
    assert files == [plain, packed] and manifest is None
    examples = records.read_examples(files, limit=100)
    assert examples["file"].tolist() == [0, 0, 0, 0, 1, 1]
    assert examples["record"].tolist() == [0, 1, 2, 3, 0, 1]
    for name, values in features.items():
        np.testing.assert_array_equal(examples[name], values.astype(examples[name].dtype))
    assert len(records.read_examples(files, limit=5)["file"]) == 5


def test_statistics_count_mask_kept_and_random():
    mask_id = 9
    examples = {
        "input_ids": np.array([[1, 9, 5, 6, 2, 0], [1, 9, 9, 7, 2, 2]]),
        "input_mask": np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]),
        "masked_lm_positions": np.array([[1, 2, 0], [1, 2, 3]]),
        "masked_lm_ids": np.array([[4, 5, 0], [4, 4, 8]]),
        "masked_lm_weights": np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]),
        "next_sentence_labels": np.array([[1], [0]]),
    }
    stats = records.record_statistics(examples, mask_id, bins=2)
    assert (stats.masked, stats.as_mask_token, stats.kept, stats.random_token) == (5, 3, 1, 1)
    assert stats.next_sentence_labels == 1 and stats.real_tokens == 11
    assert stats.length_histogram == ((0, 3, 0), (4, 6, 2))
    assert stats.padding_share == pytest.approx(1 / 12)


def test_not_a_record_file_is_a_data_error(tmp_path):
    path = tmp_path / "notes.tfrecord"
    path.write_text("these are not records\n" * 10)
    with pytest.raises(DataError, match="notes.tfrecord: not a TFRecord file"):
        records.read_examples([path], limit=10)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_full_disk_raises_enospc_and_leaves_no_file(tmp_path, monkeypatch):
    """Every write goes to /dev/full (ENOSPC); the writer's temporary files are removed."""
    real_open = open
    monkeypatch.setattr(records, "open", lambda path, mode, **kw: real_open("/dev/full", mode, **kw), raising=False)
    touched = tmp_path / "out"
    touched.mkdir()
    with pytest.raises(OSError) as raised:
        with records.ShardWriter(touched, 2) as writer:
            for (path, _) in zip(writer.temporary, range(2)):
                path.touch()  # as if the files had been created
            writer.write_blob(*records.encode_examples(_features(2000), framed=True))
            writer.close()
    assert raised.value.errno == errno.ENOSPC
    assert list(touched.iterdir()) == []


def test_crc32c_matches_the_published_check_value_and_tensorflows_framing(tmp_path):
    from data import codec

    assert codec.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720, B.4)
    assert codec.crc32c(b"") == 0
    # Framing equal to TFRecordWriter's, byte for byte, for records of many lengths (slicing-by-8 tails).
    features = {"x": np.arange(40).reshape(40, 1) * 1000, "y": np.ones((40, 3), np.float32)}
    blob, lengths = records.encode_examples(features, framed=True)
    path = tmp_path / "tf.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records.split_blob(*records.encode_examples(features)):
            writer.write(record)
    assert path.read_bytes() == blob
