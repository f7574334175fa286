"""The TFRecord schema of pre-training examples: encoding, shard writing, reading.

Records keep the original release's schema, so files made by
google-research/bert's ``create_pretraining_data.py`` and by ``bert make-data``
can be used in place of each other. Each record is one serialized
``tf.train.Example`` with these features (T = max_seq_length, P =
max_predictions_per_seq), zero padded:

    input_ids, input_mask, segment_ids        int64   [T]
    masked_lm_positions, masked_lm_ids        int64   [P]
    masked_lm_weights                         float32 [P]   1.0 per real prediction, 0.0 on padding
    next_sentence_labels                      int64   [1]   1 = random next, 0 = actual next;
                                                            absent in --no-nsp records

Examples are serialized by :func:`encode_examples`, a protobuf encoder and
TFRecord framer written out in :mod:`data.codec` (compiled by numba): it makes
a whole batch at once, byte for byte what
``tf.train.Example(...).SerializeToString(deterministic=True)`` gives, without
TensorFlow (so the worker processes of ``bert make-data`` never load it) and
without a Python call per example or per value. :class:`ShardWriter` appends
those framed bytes to plain files.

TensorFlow is imported only inside the functions that read files.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import zlib
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from data.errors import DataError

INT_FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids")
FLOAT_FEATURES = ("masked_lm_weights",)
LABEL_FEATURE = "next_sentence_labels"
FEATURE_NAMES = INT_FEATURES + FLOAT_FEATURES + (LABEL_FEATURE,)

MANIFEST_NAME = "manifest.json"
# Bumped when the meaning of the records or of the manifest changes.
FORMAT_VERSION = 1
COMPRESSIONS = ("none", "gzip")
_GZIP_MAGIC = b"\x1f\x8b"


def feature_spec(max_seq_length: int, max_predictions_per_seq: int, next_sentence: bool = True,
                 masks: bool = True) -> dict:
    """The parsing spec for ``tf.io.parse_example``, as in the original ``run_pretraining.py``.

    ``masks`` False: records without the ``masked_lm_*`` features, as ELECTRA's
    ``build_pretraining_dataset.py`` writes them (masking then happens per batch).
    """
    import tensorflow as tf

    spec = {
        "input_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "input_mask": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
    }
    if masks:
        spec.update({
            "masked_lm_positions": tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64),
            "masked_lm_ids": tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64),
            "masked_lm_weights": tf.io.FixedLenFeature([max_predictions_per_seq], tf.float32),
        })
    if next_sentence:
        spec[LABEL_FEATURE] = tf.io.FixedLenFeature([1], tf.int64)
    return spec


def shard_name(index: int, num_shards: int, compression: str = "none") -> str:
    """``part-00003-of-00008.tfrecord`` (``.tfrecord.gz`` for gzip)."""
    suffix = ".tfrecord.gz" if compression == "gzip" else ".tfrecord"
    return f"part-{index:05d}-of-{num_shards:05d}{suffix}"


def is_shard_name(name: str) -> bool:
    return name.startswith("part-") and "-of-" in name and (name.endswith(".tfrecord") or name.endswith(".tfrecord.gz"))


def compression_of(path: str | os.PathLike) -> str:
    """``"GZIP"`` when the file starts with the gzip magic bytes, else ``""`` (TensorFlow's names)."""
    try:
        if "://" in str(path):  # gs:// and other remote file systems go through TensorFlow
            import tensorflow as tf

            with tf.io.gfile.GFile(str(path), "rb") as handle:
                return "GZIP" if handle.read(2) == _GZIP_MAGIC else ""
        with open(path, "rb") as handle:
            return "GZIP" if handle.read(2) == _GZIP_MAGIC else ""
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror})") from None


# ---------------------------------------------------------------------------
# The protobuf encoder
# ---------------------------------------------------------------------------
#
# Wire format of the messages involved (tensorflow/core/example/*.proto):
#   Example   { Features features = 1; }
#   Features  { map<string, Feature> feature = 1; }   an entry: {string key = 1; Feature value = 2;}
#   Feature   { oneof { BytesList = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
#   Int64List { repeated int64 value = 1 [packed]; }   FloatList { repeated float value = 1 [packed]; }
# Deterministic serialization writes map entries sorted by key. Every field
# here is length-delimited (wire type 2): a tag byte, a varint length, the bytes.
#
# The loops that write these bytes (and TFRecord's framing around them) are
# compiled by numba in :mod:`data.codec`: about 1 us a record of 128 tokens,
# against about 7 us for the best numpy version and 50 us for upb's
# SerializeToString plus 4 us for TFRecordWriter.write (measured on the 2-core
# development machine).


def encode_examples(features: Mapping[str, np.ndarray], framed: bool = False) -> tuple[bytes, np.ndarray]:
    """Serializes a batch of ``tf.train.Example`` protos of int64 and float32 features.

    Args:
        features: name -> ``[N, k]`` array. Integer and bool arrays (values
            >= 0) become ``int64_list`` features, floating arrays
            ``float_list`` (as float32). Names must be shorter than 128 bytes.
        framed: Wrap each example in TFRecord framing (length, CRCs), ready to
            be appended to a ``.tfrecord`` file as :class:`ShardWriter` does.

    Returns:
        ``(blob, lengths)``: the N records back to back, and the byte length
        of each (``[N]`` int64, framing included). Record ``i`` is
        ``blob[offsets[i]:offsets[i + 1]]`` with ``offsets = [0, *cumsum(lengths)]``;
        unframed, its bytes equal ``SerializeToString(deterministic=True)`` of
        the same ``tf.train.Example``.
    """
    names = sorted(features)
    if not names:
        raise ValueError("an example needs at least one feature")
    rows = len(features[names[0]])
    for name in names:
        values = np.asarray(features[name])
        if values.ndim != 2 or len(values) != rows:
            raise ValueError(f"feature {name!r}: expected shape [{rows}, k], got {values.shape}")
        if len(name.encode("utf-8")) >= 128:
            raise ValueError(f"feature name {name!r} is too long")
        if not np.issubdtype(values.dtype, np.floating) and values.size and values.min() < 0:
            raise ValueError("the encoder only writes non-negative integers")
    if rows == 0:
        return b"", np.zeros(0, dtype=np.int64)
    from data import codec

    return codec.encode(dict(features), framed)


def split_blob(blob: bytes, lengths: np.ndarray) -> list[bytes]:
    """The separate records of an :func:`encode_examples` result."""
    ends = np.cumsum(lengths).tolist()
    starts = [0] + ends[:-1]
    return [blob[a:b] for a, b in zip(starts, ends)]


# ---------------------------------------------------------------------------
# Writing shards
# ---------------------------------------------------------------------------

# GZIP TFRecord files: TensorFlow writes one gzip stream (zlib, window bits
# 31, zlib's default level) and reads files of several gzip members one after
# another, as gzip itself does. Ours are a member per group of records (a
# chunk's share of a shard), compressed by the process that made the chunk:
# compression then runs in the workers, in parallel, and the main process
# only appends bytes.
_GZIP_LEVEL = 6


def gzip_member(data) -> bytes:
    """``data`` as one complete gzip member (empty for no data)."""
    if not len(data):
        return b""
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def write_fully(handle, data) -> None:
    """Writes all of ``data`` to an unbuffered file (whose ``write`` may take only part of it).

    A failed write (disk full, ``ulimit -f``) raises an OSError that names the
    file: the OS does not say which, and in a worker process nothing else
    would tell the user.
    """
    view = memoryview(data).cast("B")
    try:
        while len(view):
            view = view[handle.write(view) :]
    except OSError as error:
        raise with_filename(error, handle.name) from None


def with_filename(error: OSError, filename) -> OSError:
    """``error`` with ``filename`` when the OS gave none (a write's error names no file)."""
    if error.filename is not None or error.errno is None:
        return error
    return type(error)(error.errno, error.strerror, str(filename))


class _Shard:
    """One output file, bytes appended as they come (already compressed for gzip shards).

    Unbuffered: writes are whole blobs, and :meth:`copy_from` appends with
    ``copy_file_range``, which writes at the file's own position.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = open(path, "wb", buffering=0)

    def write(self, data) -> None:
        write_fully(self.handle, data)

    def copy_from(self, source: int, offset: int, count: int) -> None:
        """Appends ``count`` bytes of the open file ``source`` from ``offset``.

        Inside the kernel where the file system allows (``copy_file_range``:
        no trip through this process's memory), else by reading and writing.
        """
        global _COPY_IN_KERNEL
        while count and _COPY_IN_KERNEL:
            try:
                done = os.copy_file_range(source, self.handle.fileno(), count, offset)
            except OSError as error:
                if error.errno not in (errno.ENOSYS, errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
                    raise with_filename(error, self.path) from None
                _COPY_IN_KERNEL = False
                break
            if done == 0:
                raise OSError(errno.EIO, "file ended before its records", f"/proc/self/fd/{source}")
            offset, count = offset + done, count - done
        while count:
            block = os.pread(source, min(count, 1 << 22), offset)
            if not block:
                raise OSError(errno.EIO, "file ended before its records", f"/proc/self/fd/{source}")
            self.write(block)
            offset, count = offset + len(block), count - len(block)

    def close(self) -> None:
        self.handle.close()


# copy_file_range exists on Linux 4.5 and later; some file systems refuse it.
_COPY_IN_KERNEL = hasattr(os, "copy_file_range")


def grouped_order(count: int, groups: int, first: int = 0) -> np.ndarray:
    """The order that lays ``count`` records out group by group: ``[count]`` row indices.

    Record ``i`` belongs to group ``(first + i) % groups``; within a group
    records keep their order. Records laid out so are dealt round-robin by
    :meth:`ShardWriter.write_groups` with one contiguous write per shard.
    """
    return np.argsort((first + np.arange(count)) % groups, kind="stable")


class ShardWriter:
    """Writes records round-robin over ``num_shards`` TFRecord files, all-or-nothing.

    The files are written under hidden temporary names in ``directory``;
    :meth:`close` finishes them and :meth:`publish` gives them their final
    names (:func:`shard_name`). If anything fails before that, :meth:`abort`
    (also called on leaving a ``with`` block by an exception) deletes them,
    so no shard that looks complete is ever left behind. Records come framed
    (``encode_examples(..., framed=True)``), so writing is plain file output:
    no TensorFlow, no call per record.

    Example:
        >>> with ShardWriter(Path("out"), num_shards=2) as writer:
        ...     writer.write_blob(*encode_examples(features, framed=True))
        ...     writer.close()
        ...     writer.publish()
    """

    def __init__(self, directory: Path, num_shards: int, compression: str = "none") -> None:
        if compression not in COMPRESSIONS:
            raise DataError(f"--compression {compression}: use one of {', '.join(COMPRESSIONS)}")
        self.directory = Path(directory)
        self.names = [shard_name(i, num_shards, compression) for i in range(num_shards)]
        self.compression = compression
        self.temporary = [self.directory / f".{name}.tmp-{os.getpid()}" for name in self.names]
        self.counts = [0] * num_shards
        self._next = 0
        self._shards: list[_Shard] = []
        try:
            for path in self.temporary:
                self._shards.append(_Shard(path))
        except OSError:
            self.abort()
            raise

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            self.abort()

    def write_blob(self, blob: bytes, lengths: np.ndarray) -> None:
        """Appends framed records (``encode_examples(..., framed=True)``), continuing the round-robin."""
        shards, count = len(self._shards), len(lengths)
        if count == 0:
            return
        ends = np.cumsum(lengths)
        starts = ends - lengths
        order = grouped_order(count, shards)
        group = order % shards  # [count] group of each record, in grouped order
        view = memoryview(blob)
        groups = [b"".join([view[starts[i] : ends[i]] for i in order[group == g].tolist()]) for g in range(shards)]
        if self.compression == "gzip":
            groups = [gzip_member(data) for data in groups]
        self.write_groups(b"".join(groups), np.array([len(g) for g in groups], np.int64),
                          np.bincount(group, minlength=shards))

    def write_groups(self, source, group_bytes: np.ndarray, group_counts: np.ndarray) -> None:
        """Appends records laid out group by group (see :func:`grouped_order`): group ``g`` to shard ``(next + g) % N``.

        ``source`` holds the groups back to back, each as it goes into a
        shard (a :func:`gzip_member` for gzip shards): bytes, or the path of
        a file (copied into the shards without passing through this process
        when the file system allows). ``group_bytes``/``group_counts`` are
        ``[N]``: each group's bytes and records.
        """
        shards = len(self._shards)
        if len(group_bytes) != shards or len(group_counts) != shards:
            raise ValueError(f"expected {shards} groups, got {len(group_bytes)}")
        ends = np.cumsum(group_bytes).tolist()
        starts = [0] + ends[:-1]
        handle = None if isinstance(source, (bytes, bytearray, memoryview)) else os.open(source, os.O_RDONLY)
        try:
            view = memoryview(source) if handle is None else None
            for group in range(shards):
                if group_counts[group] == 0:
                    continue
                index = (self._next + group) % shards
                if handle is None:
                    self._shards[index].write(view[starts[group] : ends[group]])
                else:
                    self._shards[index].copy_from(handle, starts[group], ends[group] - starts[group])
                self.counts[index] += int(group_counts[group])
        finally:
            if handle is not None:
                os.close(handle)
        self._next = (self._next + int(np.sum(group_counts))) % shards

    def close(self) -> None:
        """Flushes and closes every shard (still under its temporary name)."""
        while self._shards:
            shard = self._shards[0]
            self._shards.pop(0)
            shard.close()

    def publish(self) -> list[Path]:
        """Renames the closed shards to their final names; returns those paths."""
        if self._shards:
            raise RuntimeError("close() the shards before publishing them")
        finals = []
        for temporary, name in zip(self.temporary, self.names):
            final = self.directory / name
            os.replace(temporary, final)
            finals.append(final)
        return finals

    def abort(self) -> None:
        """Closes what is open (ignoring errors) and deletes the temporary files."""
        for shard in self._shards:
            try:
                shard.handle.close()
            except Exception:  # noqa: BLE001  the disk may be full; the file goes anyway
                pass
        self._shards = []
        for path in self.temporary:
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def read_manifest(directory: str | os.PathLike) -> dict | None:
    """The ``manifest.json`` of a ``bert make-data`` output directory; None when absent."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a valid manifest ({error}); delete it or make the data again") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{path}: not a valid manifest (expected a JSON object); delete it or make the data again")
    return manifest


def find_record_files(patterns: Sequence[str | os.PathLike]) -> tuple[list[Path], dict | None]:
    """Record files named by files, globs or directories, and the manifest beside them if any.

    A directory made by ``bert make-data`` gives the shards its manifest
    lists; any other directory gives its ``*.tfrecord*`` files (hidden
    temporaries excluded).
    """
    from data.textio import expand_inputs

    files: list[Path] = []
    manifest = None
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = read_manifest(path)
            if found is not None and isinstance(found.get("shards"), list):
                manifest = manifest or found
                matches = [path / shard["file"] for shard in found["shards"]]
                missing = [m for m in matches if not m.is_file()]
                if missing:
                    raise DataError(f"{missing[0]}: listed in {path / MANIFEST_NAME} but missing; make the data again")
            else:
                matches = sorted(p for p in path.glob("*.tfrecord*") if p.is_file() and not p.name.startswith("."))
            if not matches:
                raise DataError(f"{path}: holds no record files (*.tfrecord, *.tfrecord.gz)")
        else:
            matches = expand_inputs([pattern])
        for match in matches:
            if match not in files:
                files.append(match)
    if manifest is None and files:
        manifest = read_manifest(files[0].parent)
    check_shard_sizes(files, manifest)
    return files, manifest


def check_shard_sizes(files: Sequence[Path], manifest: dict | None) -> None:
    """A DataError for a shard whose size differs from what its manifest recorded (truncated by a copy, say).

    Costs one ``stat`` a file, so a cut-off shard is named before training
    starts instead of hours into it. Manifests without sizes (older ones, the
    original script's output) are not checked.
    """
    if not manifest or not isinstance(manifest.get("shards"), list):
        return
    recorded = {shard.get("file"): shard.get("bytes") for shard in manifest["shards"] if isinstance(shard, dict)}
    for path in files:
        size = recorded.get(Path(path).name)
        if isinstance(size, int) and Path(path).stat().st_size != size:
            raise DataError(f"{path}: {Path(path).stat().st_size:,} bytes but its {MANIFEST_NAME} recorded "
                            f"{size:,} (truncated or changed since bert make-data wrote it); make the data again "
                            "or copy the shard again")


def find_corrupt_record_file(files: Sequence[str]) -> tuple[str, str] | None:
    """The first file that cannot be read to its end, and TensorFlow's reason (``truncated record at 499964``).

    Called after a read failed somewhere in a pipeline over many files, to name
    the file; reads every record of each file once.
    """
    import tensorflow as tf

    for name in files:
        dataset = tf.data.TFRecordDataset(name, compression_type=compression_of(name))
        try:
            dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1).numpy()
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
            return name, tensorflow_reason(error.message)
    return None


def tensorflow_reason(message: str) -> str:
    """The informative part of a TensorFlow error message: ``truncated record at 499760 (read less bytes than
    requested)`` rather than "Graph execution error:", node names and op listings."""
    lines = [line.strip() for line in message.splitlines()]
    useful = [line for line in lines if line and not line.startswith(("[[", "Detected at node", "Graph execution"))
              and not line.endswith(":")]
    text = useful[-1] if useful else (lines[0] if lines else message)
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:[^\]]*\].*$", "", text)
    if "' failed with " in text:
        what, why = text.split("' failed with ", 1)
        text = f"{what.strip(chr(39))} ({why[:1].lower()}{why[1:]})"
    return text.rstrip(".")


def read_examples(files: Sequence[Path], limit: int) -> dict[str, np.ndarray]:
    """The first ``limit`` records of ``files`` (in order) as dense arrays.

    Reads any record with this schema, whatever its lengths (records of the
    original script included; gzip detected per file). Returns name ->
    ``[N, k]`` array (int64, float32 for the weights; a feature missing from
    the records is absent), plus ``"file"`` and ``"record"``: where each came
    from. Raises DataError naming a file that is not TFRecords of
    ``tf.train.Example`` protos with these features.
    """
    import tensorflow as tf

    spec = {name: tf.io.VarLenFeature(tf.int64) for name in INT_FEATURES + (LABEL_FEATURE,)}
    spec.update({name: tf.io.VarLenFeature(tf.float32) for name in FLOAT_FEATURES})
    batches: dict[str, list[np.ndarray]] = {name: [] for name in FEATURE_NAMES}
    where_file: list[int] = []
    where_record: list[int] = []
    seen_names: set[str] = set()
    for file_index, path in enumerate(files):
        if len(where_file) >= limit:
            break
        dataset = tf.data.TFRecordDataset(str(path), compression_type=compression_of(path))
        dataset = dataset.take(limit - len(where_file)).batch(256)
        record = 0
        try:
            for serialized in dataset:
                parsed = tf.io.parse_example(serialized, spec)
                count = int(serialized.shape[0])
                for name in FEATURE_NAMES:
                    sparse = parsed[name]
                    if sparse.values.shape[0]:
                        seen_names.add(name)
                    batches[name].append(tf.sparse.to_dense(sparse).numpy())
                where_file.extend([file_index] * count)
                where_record.extend(range(record, record + count))
                record += count
        except tf.errors.DataLossError:
            raise DataError(f"{path}: not a TFRecord file, or a truncated one") from None
        except tf.errors.InvalidArgumentError as error:
            first = error.message.splitlines()[0]
            raise DataError(f"{path}: records are not pre-training tf.train.Example protos ({first})") from None
    result: dict[str, np.ndarray] = {}
    for name in FEATURE_NAMES:
        if name not in seen_names:
            continue
        width = max(array.shape[1] for array in batches[name])
        padded = [np.pad(array, ((0, 0), (0, width - array.shape[1]))) for array in batches[name]]
        result[name] = np.concatenate(padded, axis=0)
    result["file"] = np.asarray(where_file, dtype=np.int64)
    result["record"] = np.asarray(where_record, dtype=np.int64)
    return result


def iter_records(files: Sequence[Path]) -> Iterator[bytes]:
    """Every serialized record of ``files`` in order (gzip detected per file)."""
    import tensorflow as tf

    for path in files:
        try:
            for record in tf.data.TFRecordDataset(str(path), compression_type=compression_of(path)):
                yield record.numpy()
        except tf.errors.DataLossError:
            raise DataError(f"{path}: not a TFRecord file, or a truncated one") from None


# ---------------------------------------------------------------------------
# Statistics over a sample of records
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RecordStatistics:
    """What ``bert inspect records`` reports about a sample of records."""

    examples: int
    max_seq_length: int
    max_predictions_per_seq: int
    real_tokens: int  # input_mask ones
    masked: int  # masked_lm_weights > 0
    as_mask_token: int  # input id at the position is [MASK]
    kept: int  # input id equals the original
    random_token: int  # anything else
    next_sentence_labels: int | None  # examples labelled 1 (random next); None when the records have no labels
    length_histogram: tuple[tuple[int, int, int], ...]  # (from, to inclusive, examples)

    @property
    def masked_share(self) -> float:
        return self.masked / self.real_tokens if self.real_tokens else 0.0

    @property
    def padding_share(self) -> float:
        slots = self.examples * self.max_seq_length
        return 1.0 - self.real_tokens / slots if slots else 0.0

    @property
    def mean_length(self) -> float:
        return self.real_tokens / self.examples if self.examples else 0.0


def record_statistics(examples: Mapping[str, np.ndarray], mask_id: int | None, bins: int = 8) -> RecordStatistics:
    """Statistics of :func:`read_examples` output; ``mask_id`` None counts every change as random."""
    input_ids = examples["input_ids"]
    count, T = input_ids.shape
    P = examples["masked_lm_ids"].shape[1] if "masked_lm_ids" in examples else 0
    real = examples["input_mask"].sum(axis=1) if "input_mask" in examples else np.zeros(count, np.int64)
    masked = as_mask = kept = 0
    if P:
        weights = examples["masked_lm_weights"] > 0  # [N, P]
        positions = np.clip(examples["masked_lm_positions"], 0, T - 1)
        shown = np.take_along_axis(input_ids, positions, axis=1)  # [N, P] what the model sees
        original = examples["masked_lm_ids"]
        masked = int(weights.sum())
        as_mask = int((weights & (shown == mask_id)).sum()) if mask_id is not None else 0
        kept = int((weights & (shown == original) & (shown != (-1 if mask_id is None else mask_id))).sum())
    labels = examples.get(LABEL_FEATURE)
    edges = np.linspace(0, T, bins + 1).round().astype(int)
    histogram = []
    for k in range(bins):
        low, high = int(edges[k]) + (1 if k else 0), int(edges[k + 1])
        histogram.append((low, high, int(((real >= low) & (real <= high)).sum())))
    return RecordStatistics(
        examples=count,
        max_seq_length=T,
        max_predictions_per_seq=P,
        real_tokens=int(real.sum()),
        masked=masked,
        as_mask_token=as_mask,
        kept=kept,
        random_token=masked - as_mask - kept,
        next_sentence_labels=None if labels is None else int((labels[:, 0] == 1).sum()),
        length_histogram=tuple(histogram),
    )
