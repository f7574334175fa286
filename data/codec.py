"""Compiled kernels for writing pre-training records: protobuf encoding, TFRecord framing, CRC32C.

``bert make-data`` writes tens of millions of small ``tf.train.Example``
records. In Python (or protobuf's ``SerializeToString``) that costs 10-50 us a
record; vectorised numpy about 7 us (a byte matrix and a compaction); and
``tf.io.TFRecordWriter.write`` another 4 us for the framing. These loops,
compiled by numba, do both for about 1 us a record, in the worker processes,
which never import TensorFlow. (numba is imported only here, and this module
only by :mod:`data.records` when it encodes.)

TFRecord framing (TensorFlow's ``record_writer.cc``) of a record of ``n`` bytes:
``uint64 n`` little-endian, ``uint32 masked_crc32c(those 8 bytes)``, the
bytes, ``uint32 masked_crc32c(the bytes)``, where ``masked(c) = ((c >> 15) |
(c << 17)) + 0xa282ead8`` (mod 2**32) and CRC32C is the Castagnoli CRC
(reflected polynomial 0x82F63B78).
"""

from __future__ import annotations

import numba
import numpy as np

_POLYNOMIAL = 0x82F63B78
_MASK_DELTA = 0xA282EAD8
#: Bytes TFRecord framing adds to each record: length, its CRC, the data's CRC.
FRAME_OVERHEAD = 16


def _crc_tables() -> np.ndarray:
    """``[8, 256]`` uint32 tables for CRC32C slicing-by-8 (table 0 is the byte-at-a-time one)."""
    tables = np.zeros((8, 256), dtype=np.uint32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLYNOMIAL if crc & 1 else crc >> 1
        tables[0, byte] = crc
    for k in range(1, 8):
        previous = tables[k - 1]
        tables[k] = (previous >> 8) ^ tables[0, previous & 0xFF]
    return tables


_TABLES = _crc_tables()


@numba.njit(cache=True, nogil=True)
def _crc32c(data, start, end, tables):  # pragma: no cover - compiled
    """CRC32C of ``data[start:end]`` (uint8), slicing-by-8."""
    crc = np.uint32(0xFFFFFFFF)
    i = start
    while end - i >= 8:
        low = crc ^ (
            np.uint32(data[i]) | (np.uint32(data[i + 1]) << 8) | (np.uint32(data[i + 2]) << 16)
            | (np.uint32(data[i + 3]) << 24)
        )
        crc = (
            tables[7, low & 0xFF] ^ tables[6, (low >> 8) & 0xFF] ^ tables[5, (low >> 16) & 0xFF]
            ^ tables[4, low >> 24] ^ tables[3, data[i + 4]] ^ tables[2, data[i + 5]]
            ^ tables[1, data[i + 6]] ^ tables[0, data[i + 7]]
        )
        i += 8
    while i < end:
        crc = tables[0, (crc ^ data[i]) & 0xFF] ^ (crc >> 8)
        i += 1
    return crc ^ np.uint32(0xFFFFFFFF)


@numba.njit(cache=True, nogil=True)
def _masked(crc):  # pragma: no cover - compiled
    crc = np.uint32(crc)
    return np.uint32(((crc >> 15) | (crc << 17)) + np.uint32(_MASK_DELTA))


@numba.njit(cache=True, nogil=True, inline="always")
def _varint_size(value):  # pragma: no cover - compiled
    """Bytes of the varint of ``0 <= value < 2**63``, without branches (token ids vary at random)."""
    return (
        1 + (value >= 1 << 7) + (value >= 1 << 14) + (value >= 1 << 21) + (value >= 1 << 28)
        + (value >= 1 << 35) + (value >= 1 << 42) + (value >= 1 << 49) + (value >= 1 << 56)
    )


@numba.njit(cache=True, nogil=True, inline="always")
def _put_varint(out, at, value, fast=True):  # pragma: no cover - compiled
    """Writes the varint of ``value`` at ``out[at]``; returns the position after it.

    With ``fast``, values below 2**21 (every token id and length here) take a
    branch-free path: three bytes are always stored and the position moves by
    the varint's size, so up to two bytes after the varint are overwritten:
    callers write left to right (bytes after are written later), and ``out``
    has slack at its end.
    """
    if value < 1 << 21 and fast:
        size = 1 + (value >= 1 << 7) + (value >= 1 << 14)
        out[at] = np.uint8((value & 0x7F) | ((value >= 1 << 7) << 7))
        out[at + 1] = np.uint8(((value >> 7) & 0x7F) | ((value >= 1 << 14) << 7))
        out[at + 2] = np.uint8(value >> 14)
        return at + size
    while value >= 128:
        out[at] = np.uint8((value & 0x7F) | 0x80)
        value >>= 7
        at += 1
    out[at] = np.uint8(value)
    return at + 1


@numba.njit(cache=True, nogil=True)
def _packed_sizes(values):  # pragma: no cover - compiled
    """``[N]`` bytes of the packed varints of each row of ``values`` ``[N, k]``."""
    sizes = np.zeros(values.shape[0], dtype=np.int64)
    for r in range(values.shape[0]):
        size = 0
        for c in range(values.shape[1]):
            size += _varint_size(np.int64(values[r, c]))
        sizes[r] = size
    return sizes


@numba.njit(cache=True, nogil=True)
def _write_feature(out, f, offsets, key, tag, entry, feature, listed, size, values,
                   kind):  # pragma: no cover - compiled
    """Writes feature ``f``'s map entry of every record: ``out[offsets[r, f]:]`` for row ``r``.

    ``entry``/``feature``/``listed``/``size`` are ``[N, F]`` byte lengths of
    the map entry, the Feature, the Int64List/FloatList and its packed values
    (:func:`_layout`); ``kind`` 0 = varints, 1 = one byte each (values < 128),
    2 = float32 bits.
    """
    for r in range(values.shape[0]):
        at = offsets[r, f]
        out[at] = 0x0A  # Features.feature: a map entry
        at = _put_varint(out, at + 1, entry[r, f])
        out[at] = 0x0A  # entry key
        out[at + 1] = np.uint8(len(key))
        at += 2
        for i in range(len(key)):
            out[at + i] = key[i]
        at += len(key)
        out[at] = 0x12  # entry value
        at = _put_varint(out, at + 1, feature[r, f])
        out[at] = tag  # Feature.int64_list / Feature.float_list
        at = _put_varint(out, at + 1, listed[r, f])
        if size[r, f] == 0:
            continue  # an empty packed field is left out
        out[at] = 0x0A  # the packed values
        at = _put_varint(out, at + 1, size[r, f])
        if kind == 2:
            for c in range(values.shape[1]):
                bits = values[r, c]
                out[at] = np.uint8(bits & 0xFF)
                out[at + 1] = np.uint8((bits >> 8) & 0xFF)
                out[at + 2] = np.uint8((bits >> 16) & 0xFF)
                out[at + 3] = np.uint8((bits >> 24) & 0xFF)
                at += 4
        elif kind == 1:
            for c in range(values.shape[1]):
                out[at + c] = np.uint8(values[r, c])
        else:
            for c in range(values.shape[1]):
                at = _put_varint(out, at, np.int64(values[r, c]))


@numba.njit(cache=True, nogil=True)
def _layout(size, key_bytes, framed):  # pragma: no cover - compiled
    """The byte layout of N records of F features, from the packed size of each ``size[r, f]``.

    Returns ``[N, F]`` offsets (where each map entry starts) and lengths of
    the map entry, the Feature and the Int64List/FloatList; ``[N]`` record
    starts, serialized Example lengths and Features lengths; and the total
    bytes. ``key_bytes[f]`` is the entry's key field and value tag (3 + key length).
    """
    rows, count = size.shape
    offsets = np.empty((rows, count), dtype=np.int64)
    entry = np.empty((rows, count), dtype=np.int64)
    feature = np.empty((rows, count), dtype=np.int64)
    listed = np.empty((rows, count), dtype=np.int64)
    starts = np.empty(rows, dtype=np.int64)
    lengths = np.empty(rows, dtype=np.int64)
    features = np.empty(rows, dtype=np.int64)
    at = 0
    for r in range(rows):
        total = 0
        for f in range(count):
            packed = size[r, f]
            listed[r, f] = 1 + _varint_size(packed) + packed if packed > 0 else 0  # an empty list has no field
            feature[r, f] = 1 + _varint_size(listed[r, f]) + listed[r, f]
            entry[r, f] = key_bytes[f] + _varint_size(feature[r, f]) + feature[r, f]
            total += 1 + _varint_size(entry[r, f]) + entry[r, f]
        features[r] = total
        lengths[r] = 1 + _varint_size(total) + total
        starts[r] = at
        offset = at + (12 if framed else 0) + 1 + _varint_size(total)
        for f in range(count):
            offsets[r, f] = offset
            offset += 1 + _varint_size(entry[r, f]) + entry[r, f]
        at += lengths[r] + (FRAME_OVERHEAD if framed else 0)
    return offsets, entry, feature, listed, starts, lengths, features, at


@numba.njit(cache=True, nogil=True)
def _write_records(out, starts, lengths, features, framed, tables):  # pragma: no cover - compiled
    """The Example header of every record, and with ``framed`` TFRecord's length and CRCs around it.

    ``starts[r]`` is where record ``r`` begins (its frame, if framed),
    ``lengths[r]`` the serialized Example's bytes, ``features[r]`` its
    Features message's. Called after the features are written (the data CRC
    covers them).
    """
    for r in range(len(starts)):
        at = starts[r]
        if framed:
            length = lengths[r]
            for b in range(8):
                out[at + b] = np.uint8((length >> (8 * b)) & 0xFF)
            crc = _masked(_crc32c(out, at, at + 8, tables))
            for b in range(4):
                out[at + 8 + b] = np.uint8((crc >> (8 * b)) & 0xFF)
            at += 12
        out[at] = 0x0A  # Example.features
        _put_varint(out, at + 1, features[r], False)  # the first feature follows: exact stores
        if framed:
            end = at + lengths[r]
            crc = _masked(_crc32c(out, at, end, tables))
            for b in range(4):
                out[end + b] = np.uint8((crc >> (8 * b)) & 0xFF)



def encode(features: dict, framed: bool) -> tuple[bytes, np.ndarray]:
    """See :func:`data.records.encode_examples` (which checks the arguments).

    Each feature is written by its own compiled call on its own array (no
    copy into a common dtype); the byte layout is computed first
    (:func:`_layout`) from the packed size of every (record, feature).
    Shapes: N records, F features.
    """
    names = sorted(features)
    rows = len(features[names[0]])
    arrays, kinds, sizes = [], [], []
    for name in names:
        values = np.ascontiguousarray(features[name])
        if np.issubdtype(values.dtype, np.floating):
            values = values.astype("<f4", copy=False).view("<u4")
            kinds.append(2)
            sizes.append(np.full(rows, 4 * values.shape[1], np.int64))
        elif values.dtype == np.bool_ or values.size == 0 or int(values.max()) < 128:
            values = values.view(np.uint8) if values.dtype == np.bool_ else values
            kinds.append(1)
            sizes.append(np.full(rows, values.shape[1], np.int64))
        else:
            kinds.append(0)
            sizes.append(_packed_sizes(values))
        arrays.append(values)
    keys = [np.frombuffer(name.encode("utf-8"), np.uint8) for name in names]
    size = np.stack(sizes, axis=1)  # [N, F] packed values
    key_bytes = np.array([3 + len(key) for key in keys], np.int64)  # entry key field and value tag
    offsets, entry, feature, listed, starts, lengths, features_length, total = _layout(size, key_bytes, framed)
    # Written feature by feature, then the headers: every write of a fast
    # varint's spare bytes lands where a later write puts the real ones.
    out = np.empty(total + 8, dtype=np.uint8)  # + slack for _put_varint's stores
    for f, values in enumerate(arrays):
        tag = 0x12 if kinds[f] == 2 else 0x1A
        _write_feature(out, f, offsets, keys[f], tag, entry, feature, listed, size, values, kinds[f])
    _write_records(out, starts, lengths, features_length, framed, _TABLES)
    return out[: len(out) - 8].tobytes(), lengths + (FRAME_OVERHEAD if framed else 0)


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli) of ``data``: the checksum TFRecord files use (unmasked)."""
    array = np.frombuffer(bytes(data), np.uint8)
    return int(_crc32c(array, 0, len(array), _TABLES))


def _load_kernels() -> None:
    """Loads (from numba's cache) or compiles the kernels for the argument types make-data uses.

    Done at import: the forkserver of ``bert make-data`` imports this module,
    so every worker forked from it starts with the kernels ready (loading them
    takes about half a second per process).
    """
    rows, width = 2, 8
    ids = np.arange(rows * width, dtype=np.int32).reshape(rows, width) * 40  # [2, 8] int32, varints of 1-2 bytes
    features = {
        "input_ids": ids,
        "input_mask": ids > 0,
        "segment_ids": ids > 1,
        "masked_lm_positions": np.ones((rows, 2), np.int32),
        "masked_lm_ids": np.full((rows, 2), 300, np.int32),
        "masked_lm_weights": np.ones((rows, 2), np.float32),
        "next_sentence_labels": np.ones((rows, 1), np.int64),
    }
    encode(features, True)


_load_kernels()
