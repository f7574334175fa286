"""`bert vocab` (being written)."""

from bert_cli.errors import UserError


def vocab_command() -> None:
    """(being written)"""
    raise UserError("`bert vocab` is not built yet")
