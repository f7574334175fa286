"""Options declared once: a dataclass field carries its default and help; Typer parameters are derived from it.

A runner's options are a frozen dataclass (``FinetuneOptions``, a task's own
``Options``, ``PretrainOptions``...). Each field that the command line sets is
declared with :func:`option` or :func:`argument`, which keep the help text,
flags and panel in the field's metadata; :func:`command` turns one or more such
dataclasses into a Typer command whose parameters are those fields, so a
default is written in one place only and the library never sees Typer.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Annotated, Any, Callable

CLI = "cli"
_UNSET = object()  # no per-command-line default (a field's default is Typer's)
# Help panels shared by the commands.
DATA, START, TRAIN, SCALE = "Data", "Starting point", "Training", "Scaling out"


@dataclasses.dataclass(frozen=True)
class CliSpec:
    """How a field appears on the command line (see :func:`option`)."""

    help: str
    flags: tuple[str, ...] = ()
    panel: str | None = None
    argument: bool = False
    cli_type: Any = None  # the type Typer parses, when it is not the field's (e.g. str for a tuple)
    parse: Callable | None = None  # the command-line value (None included) -> the field's value
    cli_default: Any = _UNSET  # what Typer passes when the option is not given, if not the default
    extra: dict = dataclasses.field(default_factory=dict)

    def info(self):
        """The ``typer.Option`` / ``typer.Argument`` of this field."""
        import typer

        if self.argument:
            return typer.Argument(help=self.help, **self.extra)
        return typer.Option(*self.flags, help=self.help, rich_help_panel=self.panel, **self.extra)


def option(default=dataclasses.MISSING, *, help: str, flags: tuple[str, ...] = (), panel: str | None = None,
           cli_type=None, parse: Callable | None = None, cli_default=_UNSET, **extra):
    """A dataclass field that is a command-line option; ``extra`` goes to ``typer.Option`` (min, show_default...)."""
    spec = CliSpec(help, tuple(flags), panel, False, cli_type, parse, cli_default, extra)
    return dataclasses.field(default=default, metadata={CLI: spec})


def argument(default=dataclasses.MISSING, *, help: str, cli_type=None, parse: Callable | None = None, **extra):
    """A dataclass field that is a positional command-line argument."""
    spec = CliSpec(help, (), None, True, cli_type, parse, _UNSET, extra)
    return dataclasses.field(default=default, metadata={CLI: spec})


def comma_list(value: str | None) -> tuple[str, ...] | None:
    """``"a,b,c"`` -> ``("a", "b", "c")``: the parser of options that name labels or tags in id order."""
    return tuple(value.split(",")) if value is not None else None


def dev_option():
    """``--dev``, as every fine-tuning task that reads labelled files declares it."""
    return option(None, help="Labelled file to evaluate on after every epoch; the best epoch is kept.", panel=DATA)


def test_option():
    """``--test``: a file to predict once training is done."""
    return option(None, help="File to predict with the final model (labels optional).", panel=DATA)


def cli_fields(group: type) -> list[tuple[dataclasses.Field, CliSpec, Any]]:
    """The fields of ``group`` that the command line sets, with their spec and resolved type."""
    hints = typing.get_type_hints(group)
    return [(f, f.metadata[CLI], hints[f.name]) for f in dataclasses.fields(group) if f.metadata.get(CLI)]


def command(body: Callable, *groups: type, defaults: dict | None = None, doc: str | None = None) -> Callable:
    """A Typer command whose parameters are the CLI fields of ``groups``, in order; it calls ``body(*instances)``.

    Args:
        body: Receives one instance of each group, built from the parsed values.
        groups: Option dataclasses; their CLI field names must not repeat.
        defaults: Per-command defaults that differ from the dataclass's (SQuAD's 384-piece windows).
        doc: The command's help (its first line is the summary); default: ``body``'s docstring.
    """
    defaults = defaults or {}
    parameters, seen = [], set()
    for group in groups:
        for field, spec, hint in cli_fields(group):
            if field.name in seen:
                raise ValueError(f"option {field.name!r} is declared by two option groups")
            seen.add(field.name)
            default = defaults.get(field.name, field.default if spec.cli_default is _UNSET
                                   else spec.cli_default)
            parameters.append(inspect.Parameter(
                field.name, inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if default is dataclasses.MISSING else default,
                annotation=Annotated[spec.cli_type or hint, spec.info()],
            ))
    unknown = set(defaults) - seen
    if unknown:
        raise ValueError(f"defaults for options no group declares: {sorted(unknown)}")

    def run(**values):
        instances = []
        for group in groups:
            arguments = {}
            for field, spec, _ in cli_fields(group):
                value = values[field.name]
                arguments[field.name] = spec.parse(value) if spec.parse else value
            instances.append(group(**arguments))
        return body(*instances)

    run.__signature__ = inspect.Signature(parameters)
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    run.__doc__ = doc or body.__doc__
    run.__name__ = run.__qualname__ = getattr(body, "__name__", "command")
    return run


def as_tuple(values) -> tuple:
    """A repeatable option or a variadic argument (a list from Typer) as the tuple a frozen dataclass keeps."""
    return tuple(values or ())
