"""The fine-tuning tasks: one module each, and the one table from ``task.json``'s "task" to its module.

A task module holds everything about its task on the command-line side; the
shared runner (``bert_cli.finetuning``), export (``bert_cli.serving``,
``bert_cli.exporting``) and ``bert predict`` reach a task only through
:data:`TASKS`. Adding a task is a reader in ``data/``, a head in ``models/``,
one module here listed in :data:`TASKS`, and one line in
``bert_cli/commands/finetune.py``. What a module must define is :data:`PARTS`;
a test checks every module in the table has all of them.

Task modules import no TensorFlow when imported (``bert --help`` stays
instant): what needs it imports it when called.
"""

from __future__ import annotations

from types import ModuleType

from bert_cli.errors import UserError
from bert_cli.tasks import classify, squad, tag

#: ``task.json`` "task" (and the ``bert finetune`` subcommand) -> the task's module.
TASKS: dict[str, ModuleType] = {module.NAME: module for module in (squad, classify, tag)}

#: What every task module defines, by purpose.
PARTS = {
    # the command: its help, its own options and the shared options' defaults it changes
    "NAME": str, "HELP": str, "Options": type, "DEFAULTS": dict,
    # training: a bert_cli.finetuning.Recipe, and the tables printed after the results table
    "Recipe": type, "report": callable,
    # a fine-tuned model directory: its keras model from task.json, the shortest usable --max-seq-length
    "build_model": callable, "min_seq_length": callable,
    # export: the serving_default signature (inputs, serve, describe); bert convert --format huggingface:
    # the Transformers class, head tensors and config keys
    "Serving": type, "hugging_face": callable,
    # bert predict: the fields an example needs, one result's record, the terminal table
    "WORD_LIST_INPUT": bool, "predict_fields": callable, "prediction_record": callable, "prediction_table": callable,
    # bert distill: reading unlabeled inputs, the teacher's outputs aligned with the student's features, the soft
    # loss and agreement (bert_cli.distill.DistillRecipe uses it)
    "Distillation": type,
}


def missing_parts(module: ModuleType) -> list[str]:
    """The parts of :data:`PARTS` that ``module`` lacks or defines as the wrong kind of thing."""
    missing = []
    for name, kind in PARTS.items():
        value = getattr(module, name, None)
        ok = callable(value) if kind is callable else isinstance(value, kind)
        if not ok:
            missing.append(name)
    return missing


def is_fine_tuned(kind: str) -> bool:
    """Whether a model directory's ``task.json`` "task" is one of the fine-tuning tasks."""
    return kind in TASKS


def task_module(kind: str, where: str = "task.json") -> ModuleType:
    """The module of a fine-tuning task; a UserError names ``where`` for a task this version does not know."""
    module = TASKS.get(kind)
    if module is None:
        raise UserError(f"{where}: unknown task {kind!r}; this version knows {', '.join(TASKS)}")
    return module
