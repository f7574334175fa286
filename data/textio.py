"""Reading text inputs and writing outputs safely.

Every command that reads a corpus goes through :func:`expand_inputs` and
:func:`iter_lines`, so globs, ``.gz`` files, strict UTF-8 and the wording of
errors are the same everywhere. Every command that writes goes through
:func:`atomic_path`, so an interrupted run never leaves a file that looks
complete.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import os
import re
import shutil
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Sequence

from data.errors import DataError

_GLOB_CHARS = set("*?[")
# Report progress in chunks, not per line: a Python callback per line would
# cost more than reading the line.
_PROGRESS_CHUNK = 1 << 18
# Bytes read and decoded at a time.
_READ_BLOCK = 1 << 20


def expand_inputs(patterns: Sequence[str | os.PathLike]) -> list[Path]:
    """Turns file names and glob patterns into an ordered, duplicate-free list of files.

    Glob matches are sorted so the order (and so every output) does not depend
    on the file system's listing order.
    """
    files: list[Path] = []
    seen: set[Path] = set()
    if not patterns:
        raise DataError("no input files given: pass one or more files or glob patterns")
    for pattern in patterns:
        text = os.fspath(pattern)
        if _GLOB_CHARS & set(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            matches = [m for m in matches if m.is_file()]
            if not matches:
                raise DataError(f"{text}: no file matches this pattern")
        else:
            matches = [existing_file(text, f"pass files or a glob such as '{text}/*.txt'")]
        for match in matches:
            if match not in seen:
                seen.add(match)
                files.append(match)
    return files


def existing_file(path: str | os.PathLike, directory_hint: str) -> Path:
    """``path`` as a Path, or a DataError when it is missing or a directory (``directory_hint`` says what to pass)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory; {directory_hint}")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    return path


def total_bytes(files: Sequence[Path]) -> int:
    """Size on disk of all files (compressed size for ``.gz``): the progress bar's total."""
    return sum(f.stat().st_size for f in files)


def _open_binary(path: Path):
    try:
        raw = open(path, "rb")
    except PermissionError:
        raise DataError(f"{path}: permission denied; make the file readable") from None
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror})") from None
    return decompressed(raw, path), raw


def decompressed(raw, name: str | os.PathLike):
    """``raw`` (an open binary file) itself, or a gzip reader over it for ``.gz`` names and gzip bytes.

    ``name`` may be a URL (``gs://bucket/a.txt.gz``): the Beam pipeline opens
    remote files with Beam's file systems and reads them through here.
    """
    magic = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    if PurePosixPath(os.fspath(name)).suffix == ".gz" or magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


def iter_lines(path: Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[str]:
    """Yields the lines of a UTF-8 text file (plain or gzip), without line endings.

    Raises DataError naming the file and line for bytes that are not UTF-8 or
    that look binary (NUL bytes), since a silently mangled corpus is worse than
    a stopped run. ``on_bytes`` is told how many bytes of the file on disk
    have been consumed, in chunks, for progress bars.
    """
    stream, raw = _open_binary(path)
    reported = 0

    def advance() -> None:
        nonlocal reported
        position = raw.tell()
        if position - reported >= _PROGRESS_CHUNK:
            on_bytes(position - reported)
            reported = position

    yield from stream_lines(stream, path, advance if on_bytes is not None else None)
    if on_bytes is not None:
        end = path.stat().st_size
        if end > reported:
            on_bytes(end - reported)


def stream_lines(stream, name: str | os.PathLike, on_block: Callable[[], None] | None = None) -> Iterator[str]:
    """The lines of an open binary ``stream`` (closed at the end), decoded and checked as :func:`iter_lines` says.

    ``name`` is the file the errors name; ``on_block`` is called after each
    block read (for progress).
    """
    line_number = 0  # lines before the current block
    carry = b""  # a line cut by the block boundary
    try:
        with stream:
            while True:
                block = stream.read(_READ_BLOCK)
                if not block:
                    break
                cut = block.rfind(b"\n") + 1
                if cut == 0:  # no line end in the whole block: keep gathering
                    carry += block
                    continue
                data, carry = carry + block[:cut], block[cut:]
                yield from _decode_lines(name, data, line_number)
                line_number += data.count(b"\n")
                if on_block is not None:
                    on_block()
            if carry:
                yield from _decode_lines(name, carry + b"\n", line_number)
    except (OSError, EOFError) as error:  # truncated or corrupt gzip
        raise DataError(f"{name}: cannot be read ({error})") from None


def _decode_lines(path: str | os.PathLike, data: bytes, before: int) -> list[str]:
    """The lines of ``data`` (whole lines, each ending in a newline), decoded and checked.

    One decode and one split for a whole block: a Python step per line is
    most of the cost of reading a corpus. ``before`` counts the lines before
    ``data``, for the line number in errors.
    """
    if b"\x00" in data:
        number = before + data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise DataError(f"{path}:{number}: contains NUL bytes; this looks like a binary file, not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line_start = data.rfind(b"\n", 0, error.start) + 1
        number = before + data.count(b"\n", 0, error.start) + 1
        raise DataError(
            f"{path}:{number}: not valid UTF-8 (byte 0x{data[error.start]:02x} at column "
            f"{error.start - line_start + 1}); convert the file to UTF-8, e.g. with iconv"
        ) from None
    lines = text.split("\n")
    lines.pop()  # the empty string after the last newline
    if "\r" in text:
        lines = [line.rstrip("\r") for line in lines]
    return lines


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(text: str, where: str, from_json: bool = False) -> str:
    """``text`` when it is real Unicode text; a DataError naming ``where`` when it holds a lone surrogate.

    The one check for user text that did not come through :func:`iter_lines`'s
    strict decoding: command-line arguments (Python keeps bytes that are not
    UTF-8 as surrogates U+DC80-U+DCFF) and strings from JSON (``from_json``: a
    lone ``\\ud800``-``\\udfff`` escape). Neither can be encoded as UTF-8, so
    tokenization would fail deep inside TensorFlow.
    """
    match = _SURROGATE.search(text)
    if match is None:
        return text
    code, column = ord(match.group()), match.start() + 1
    if not from_json and 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of an argument
        raise DataError(f"{where}: not valid UTF-8 (byte 0x{code - 0xDC00:02x} at column {column}); "
                        "pass UTF-8 text")
    raise DataError(f"{where}: holds a lone surrogate \\u{code:04x} at column {column}, which is not a character "
                    "(JSON \\u escapes of characters beyond U+FFFF come in pairs); fix or remove it")


def check_json_text(value, where: str, path: str = "") -> None:
    """:func:`check_text` on every string (keys too) of a parsed JSON value; errors name ``where`` and the key path."""
    if isinstance(value, str):
        check_text(value, f"{where}: {path}" if path else where, from_json=True)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, f"{where}: a key of {path or 'the top level'}", from_json=True)
            check_json_text(item, where, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json_text(item, where, f"{path}[{index}]")


def writable_parent(final: str | os.PathLike) -> Path:
    """Creates the directory that will hold ``final`` and checks it can be written (see :func:`writable_directory`)."""
    return writable_directory(Path(final).parent)


def writable_directory(directory: str | os.PathLike, option: str | None = None) -> Path:
    """Creates ``directory`` if needed and proves it writable by creating and deleting a file in it.

    Commands call this before long work, so a bad output location is reported
    at once rather than after the work is done. A real write, not
    ``os.access``: root passes every permission check, but not a read-only file
    system, a full disk or a path under /proc.
    """
    import tempfile

    directory = Path(directory)
    where = f"{option} {directory}" if option else str(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"{where}: cannot create the output directory ({error.strerror})") from None
    try:
        handle, probe = tempfile.mkstemp(dir=directory, prefix=".write-check-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise DataError(f"{where}: cannot write there ({error.strerror}); choose another output location") from None
    return directory


def missing_directories(path: str | os.PathLike) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, outermost first: what making it would create."""
    missing = []
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing[::-1]


@contextlib.contextmanager
def output_directories(path: str | os.PathLike) -> Iterator[None]:
    """On an error inside the block, removes the directories up to ``path`` that did not exist before it.

    Only directories that hold nothing but hidden leftovers (temporaries) are
    removed, so a failed command leaves no empty or half-filled output behind
    while anything a user put there stays.
    """
    created = missing_directories(path)
    try:
        yield
    except BaseException:
        for directory in reversed(created):
            remove_if_only_leftovers(directory)
        raise


def remove_if_only_leftovers(directory: Path) -> None:
    """Deletes ``directory`` if it holds only hidden names (``.x.tmp-123``...), else leaves it."""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return
    if any(not entry.name.startswith(".") for entry in entries):
        return
    shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary sibling path to write; renames it to ``final`` on success.

    Works for a file or a directory. On any error the temporary is removed, so
    nothing half-written ever sits under the final name.
    """
    final = Path(final)
    parent = writable_parent(final)
    temporary = parent / f".{final.name}.tmp-{os.getpid()}"
    try:
        yield temporary
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(temporary, final)
    except BaseException:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)
        raise
