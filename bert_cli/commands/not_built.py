"""Commands of the mission that are registered but not built yet.

Each says so in one line and exits 2, so scripts fail loudly rather than
doing nothing.
"""

from __future__ import annotations

from typing import List, Optional

import typer

from bert_cli.errors import UserError


def _not_built(command: str, issue: int) -> None:
    raise UserError(f"`bert {command}` is not built yet (tracked in issue #{issue})")


_ARGS = typer.Argument(None, help="Arguments (not used yet).")


def finetune_squad_command(args: Optional[List[str]] = _ARGS) -> None:
    """Fine-tune on SQuAD v1.1 / v2.0 span prediction (not built yet)."""
    _not_built("finetune squad", 5)


def export_command(args: Optional[List[str]] = _ARGS) -> None:
    """Export a SavedModel that serves raw text (not built yet)."""
    _not_built("export", 6)
