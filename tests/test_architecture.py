"""The three parts stay apart, and the CLI starts without TensorFlow."""

import ast
import subprocess
import sys

from conftest import REPO


def _imports(package: str) -> set[str]:
    names = set()
    for path in (REPO / package).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_data_and_models_never_import_each_other_or_the_front_end():
    forbidden = {"bert_cli", "typer", "rich"}
    assert not _imports("data") & (forbidden | {"models"})
    assert not _imports("models") & (forbidden | {"data"})


def test_importing_the_cli_does_not_import_tensorflow():
    code = (
        "import sys, bert_cli.main\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'keras_hub', 'tensorflow_text', 'tokenizers') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.strip() == ""


def test_help_runs_as_a_program():
    result = subprocess.run(
        [sys.executable, "-m", "bert_cli", "--help"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0
    for command in ("vocab", "tokenize", "make-data", "pretrain", "finetune", "export", "corpus", "demo"):
        assert command in result.stdout
