"""Assertions shared by the command-line tests."""

from __future__ import annotations


def assert_one_line_error(result, *fragments: str) -> None:
    """A user error as the brief requires: exit status 2, one line on stderr holding every fragment, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
