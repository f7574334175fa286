"""bert: BERT end to end from the command line.

This package is the front end: the Typer app, training loops, export and
display. It imports ``data`` and ``models``; they never import it.
"""

__version__ = "0.1.0"
