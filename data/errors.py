"""The one exception type for mistakes a user can make with their data."""


class DataError(ValueError):
    """Bad input data or options: a missing file, an empty corpus, a broken vocabulary.

    The message is one line that names the file or option, says what is wrong
    and what to do; the command line prints it without a traceback and exits 2.
    """
