"""The one exception type users see: a one-line message naming what is wrong."""


class WmnetError(Exception):
    """Bad input or an unrunnable request. The CLI prints it as one line and exits non-zero."""
