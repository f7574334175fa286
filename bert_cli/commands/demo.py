"""`bert demo` (being written)."""

from bert_cli.errors import UserError


def demo_command() -> None:
    """(being written)"""
    raise UserError("`bert demo` is not built yet")
