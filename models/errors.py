"""The one exception type for mistakes a user can make with a model or its config."""


class ModelError(ValueError):
    """An invalid config, preset name or model directory.

    The message is one line that names the file or option, says what is wrong
    and what to do; the command line prints it without a traceback and exits 2.
    """
