"""`bert corpus` (being written)."""

from bert_cli.errors import UserError


def corpus_command() -> None:
    """(being written)"""
    raise UserError("`bert corpus` is not built yet")
