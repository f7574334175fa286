"""The task table, the task and loop contracts, and options declared once."""

import ast
import dataclasses
import inspect
import types

import pytest

from conftest import REPO


def _protocol_members(protocol) -> set[str]:
    members = {name for name in vars(protocol) if not name.startswith("_")}
    return members | set(getattr(protocol, "__annotations__", {}))


def test_every_registered_task_module_has_all_its_parts():
    from bert_cli.tasks import TASKS, missing_parts

    assert set(TASKS) == {"classify", "tag", "squad"}
    for name, module in TASKS.items():
        assert module.NAME == name
        assert missing_parts(module) == [], name


def test_a_task_module_without_a_part_is_reported():
    from bert_cli.tasks import PARTS, classify, missing_parts

    partial = types.ModuleType("partial")
    for part in PARTS:
        setattr(partial, part, getattr(classify, part))
    del partial.Serving
    partial.WORD_LIST_INPUT = "no"  # the wrong kind of thing
    assert missing_parts(partial) == ["Serving", "WORD_LIST_INPUT"]


def test_task_recipes_implement_the_recipe_protocol():
    from bert_cli.finetuning import Recipe
    from bert_cli.tasks import TASKS

    members = _protocol_members(Recipe)
    assert {"read", "featurize", "compute", "evaluate", "write_predictions", "task", "sums"} <= members
    for name, module in TASKS.items():
        missing = [m for m in members if not hasattr(module.Recipe, m) and m not in ("files", "sums")]
        assert missing == [], name


def test_training_tasks_implement_the_loop_protocol_with_evaluate():
    from bert_cli.finetuning import FinetuneTask
    from bert_cli.pretraining import PretrainTask
    from bert_cli.training import Task

    members = _protocol_members(Task)
    assert "evaluate" in members and "eval_dataset" not in members
    for task in (PretrainTask, FinetuneTask):
        assert [m for m in members if not hasattr(task, m) and m != "sums"] == [], task.__name__


def test_every_task_has_a_finetune_command():
    from typer.main import get_command

    from bert_cli.main import app
    from bert_cli.tasks import TASKS

    finetune = get_command(app).commands["finetune"]
    assert set(finetune.commands) == set(TASKS)


def _task_name_comparisons(path) -> list[int]:
    """Lines of ``x == "classify"``, ``kind in ("tag", ...)`` and the like in one file."""
    names = {"classify", "tag", "squad"}
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Compare):
            continue
        for side in [node.left, *node.comparators]:
            values = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
            if any(isinstance(v, ast.Constant) and v.value in names for v in values):
                found.append(node.lineno)
    return found


def test_no_task_name_is_compared_outside_the_task_modules(tmp_path):
    found = [f"{path.relative_to(REPO)}:{line}" for path in (REPO / "bert_cli").rglob("*.py")
             if "tasks" not in path.parts for line in _task_name_comparisons(path)]
    assert found == []
    sample = tmp_path / "sample.py"
    sample.write_text('names = {"tag"}\nif kind == "squad" or kind in ("tag", "x"):\n    pass\n')
    assert _task_name_comparisons(sample) == [2, 2]


@pytest.mark.parametrize("command", ["finetune_classify", "finetune_squad", "pretrain", "make_data"])
def test_command_parameters_are_the_option_fields_with_their_defaults(command):
    from bert_cli.commands import finetune, make_data, pretrain
    from bert_cli.commands.options import _UNSET, cli_fields
    from bert_cli.finetuning import FinetuneOptions
    from bert_cli.pretraining import PretrainOptions
    from bert_cli.tasks import classify, squad

    function, groups, overrides = {
        "finetune_classify": (finetune.classify_command, (classify.Options, FinetuneOptions), classify.DEFAULTS),
        "finetune_squad": (finetune.squad_command, (squad.Options, FinetuneOptions), squad.DEFAULTS),
        "pretrain": (pretrain.pretrain_command, (PretrainOptions,), {}),
        "make_data": (make_data.make_data_command, (make_data.MakeDataArgs,), {}),
    }[command]
    parameters = inspect.signature(function).parameters
    expected = {}
    for group in groups:
        for field, spec, _ in cli_fields(group):
            default = field.default if spec.cli_default is _UNSET else spec.cli_default
            default = overrides.get(field.name, default)
            expected[field.name] = inspect.Parameter.empty if default is dataclasses.MISSING else default
    assert {name: p.default for name, p in parameters.items()} == expected
    assert list(parameters) == list(expected)
    if command == "finetune_squad":
        assert parameters["max_seq_length"].default == 384 and FinetuneOptions.max_seq_length == 128


def test_options_run_the_body_with_parsed_values():
    import typer
    from typer.testing import CliRunner

    from bert_cli.commands.options import argument, as_tuple, command, option

    @dataclasses.dataclass(frozen=True)
    class Sample:
        names: tuple = argument(help="names", cli_type=list[str], parse=as_tuple)
        labels: tuple | None = option(None, help="comma-separated", cli_type=str | None,
                                      parse=lambda v: tuple(v.split(",")) if v is not None else None)
        count: int = option(3, help="a count")

    seen = []
    app = typer.Typer()
    app.command()(command(lambda sample: seen.append(sample), Sample, defaults={"count": 5}))
    result = CliRunner().invoke(app, ["a", "b", "--labels", "x,y"])
    assert result.exit_code == 0, result.output
    assert seen == [Sample(names=("a", "b"), labels=("x", "y"), count=5)]
    with pytest.raises(ValueError, match="no group declares"):
        command(lambda sample: None, Sample, defaults={"missing": 1})
