"""`bert tokenize` (being written)."""

from bert_cli.errors import UserError


def tokenize_command() -> None:
    """(being written)"""
    raise UserError("`bert tokenize` is not built yet")
