"""The CLI shell: registration, --version, one-line errors and exit status 2."""

from bert_cli import __version__
from bert_cli.main import app


def test_version(runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert f"bert {__version__}" in result.stdout
    assert "tensorflow 2.21" in result.stdout


def test_debug_shows_the_traceback(runner, tmp_path):
    result = runner.invoke(app, ["--debug", "predict", str(tmp_path / "missing"), "text"])
    assert result.exit_code != 0
    assert result.exception is not None and "no such directory" in str(result.exception)


def test_unknown_option_is_a_usage_error(runner):
    result = runner.invoke(app, ["vocab", "--no-such-option"])
    assert result.exit_code == 2
