"""Errors raised by the front end itself (bad option combinations, unbuilt commands)."""


class UserError(Exception):
    """Something the user can fix; printed as one line, exit status 2."""
