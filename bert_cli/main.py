"""The ``bert`` command: one Typer app, one module per command.

Importing this module must stay cheap (no TensorFlow, keras or keras_hub):
``bert --help`` answers at once, and each command imports what it needs
when it runs. A test checks this in a fresh interpreter.
"""

from __future__ import annotations

import errno
import os
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from bert_cli import __version__, console
from bert_cli.commands import (
    convert,
    corpus,
    demo,
    distill,
    evaluate,
    export,
    inspect,
    make_data,
    predict,
    pretrain,
    score,
    tokenize,
    vocab,
)
from bert_cli.commands import finetune as finetune_commands
from bert_cli.errors import UserError
from data.errors import DataError
from models.errors import ModelError

# Exceptions that mean "the user asked for something that cannot be done":
# one line on stderr, exit status 2, no traceback (unless --debug).
USER_ERRORS = (UserError, DataError, ModelError)
USAGE_EXIT_CODE = 2


def _is_debug(ctx: Any) -> bool:
    while ctx is not None:
        if ctx.params.get("debug"):
            return True
        ctx = ctx.parent
    return os.environ.get("BERT_DEBUG", "") not in ("", "0")


class BertGroup(TyperGroup):
    """Root command group that turns user errors into one line and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            if _is_debug(ctx):
                raise
            console.error(str(exc))
            raise typer.Exit(USAGE_EXIT_CODE) from None
        except OSError as exc:
            # Disk full, permission denied, a file that vanished: the environment,
            # not a bug. Name the file when the OS told us which one.
            if _is_debug(ctx) or exc.errno is None:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            hint = {
                errno.ENOSPC: "; free some space and run the command again",
                errno.EACCES: "; choose a location you can write to",
                errno.EFBIG: "; the file system or the shell's file-size limit (ulimit -f) stops it: raise the "
                             "limit, write elsewhere or split the output (--num-shards)",
                errno.EROFS: "; choose a location you can write to",
            }.get(exc.errno, "")
            console.error(f"{where}{exc.strerror}{hint}")
            raise typer.Exit(USAGE_EXIT_CODE) from None
        except KeyboardInterrupt:
            console.error("interrupted; nothing half-written was left under a final name")
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=BertGroup,
    name="bert",
    help="BERT end to end: vocabulary, pre-training data, pre-training, fine-tuning, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        parts = [f"bert {__version__}"]
        for package in ("tensorflow", "tensorflow-text", "keras", "keras-hub"):
            try:
                parts.append(f"{package} {version(package)}")
            except PackageNotFoundError:
                parts.append(f"{package} (not installed)")
        console.stdout.print(", ".join(parts))
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print versions and exit."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    """BERT end to end: vocabulary, pre-training data, pre-training, fine-tuning, export."""
    console.set_debug(debug)
    console.quiet_tensorflow()


app.command("corpus")(corpus.corpus_command)
app.command("vocab")(vocab.vocab_command)
app.command("tokenize")(tokenize.tokenize_command)
app.command("make-data")(make_data.make_data_command)
inspect_app = typer.Typer(name="inspect", help="Look inside what the commands make: records.", no_args_is_help=True)
inspect_app.command("records")(inspect.records_command)
app.add_typer(inspect_app)
app.command("pretrain")(pretrain.pretrain_command)
app.command("evaluate")(evaluate.evaluate_command)
finetune = typer.Typer(
    name="finetune",
    help="Fine-tune a model: squad (span prediction), classify (sentences or pairs), tag (tokens).",
    no_args_is_help=True,
)
finetune.command("squad")(finetune_commands.squad_command)
finetune.command("classify")(finetune_commands.classify_command)
finetune.command("tag")(finetune_commands.tag_command)
app.add_typer(finetune)
app.command("distill")(distill.distill_command)
score_app = typer.Typer(
    name="score",
    help="Score predictions as the official evaluation scripts do: squad.",
    no_args_is_help=True,
)
score_app.command("squad")(score.squad_command)
app.add_typer(score_app)
app.command("export")(export.export_command)
app.command("predict")(predict.predict_command)
app.command("convert")(convert.convert_command)
app.command("demo")(demo.demo_command)


def main(argv: Optional[list[str]] = None) -> None:
    """Console-script entry point."""
    app(args=argv, prog_name="bert")


if __name__ == "__main__":
    main()
