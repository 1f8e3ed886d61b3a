"""The one base of every error etn raises on purpose."""


class EtnError(Exception):
    """An expected failure (bad input, a missing tool, a failed build or run): its message is one line
    that says what is wrong and what to do. ``etn``'s command line prints it without a traceback."""
