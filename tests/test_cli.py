"""The CLI shell: registration, --version, one-line errors and exit status 2."""

import pytest

from bert_cli import __version__
from bert_cli.main import app


def test_version(runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert f"bert {__version__}" in result.stdout
    assert "tensorflow 2.21" in result.stdout


@pytest.mark.parametrize(
    "args",
    [["export"], ["finetune", "squad"]],
)
def test_unbuilt_commands_say_so_in_one_line(runner, args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not built yet" in lines[0]
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback(runner):
    result = runner.invoke(app, ["--debug", "export"])
    assert result.exit_code != 0
    assert result.exception is not None and "not built yet" in str(result.exception)


def test_unknown_option_is_a_usage_error(runner):
    result = runner.invoke(app, ["vocab", "--no-such-option"])
    assert result.exit_code == 2
