"""iter_lines reads in blocks: the lines and the errors must be those of a line-by-line reader."""

from __future__ import annotations

import gzip

import pytest

from data import textio
from data.errors import DataError

TEXT = ("first line\r\nsecond, längere Zeile\n\n   \nthe line that goes past several tiny blocks, é\n"
        "last without newline")


def _reference(data: bytes) -> list[str]:
    """Line by line, as Python's binary file iteration splits them."""
    return [line.decode("utf-8").rstrip("\r\n") for line in data.splitlines(keepends=True) if line != b""]


@pytest.mark.parametrize("block", [1, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("compressed", [False, True])
def test_lines_equal_a_line_by_line_reader_for_any_block_size(tmp_path, monkeypatch, block, compressed):
    monkeypatch.setattr(textio, "_READ_BLOCK", block)
    data = TEXT.encode("utf-8")
    path = tmp_path / ("c.txt.gz" if compressed else "c.txt")
    path.write_bytes(gzip.compress(data, mtime=0) if compressed else data)
    seen = []
    assert list(textio.iter_lines(path, seen.append)) == _reference(data)
    assert sum(seen) == path.stat().st_size  # progress adds up to the file's size


@pytest.mark.parametrize("block", [5, 1 << 20])
def test_bad_bytes_name_their_line_and_column_in_any_block(tmp_path, monkeypatch, block):
    monkeypatch.setattr(textio, "_READ_BLOCK", block)
    path = tmp_path / "bad.txt"
    path.write_bytes(b"one\ntwo\nthree \xff here\nfour\n")
    with pytest.raises(DataError, match=r"bad.txt:3: not valid UTF-8 \(byte 0xff at column 7\)"):
        list(textio.iter_lines(path))
    path.write_bytes(b"one\ntwo\nthree\nfo\x00ur\n")
    with pytest.raises(DataError, match=r"bad.txt:4: contains NUL bytes"):
        list(textio.iter_lines(path))
