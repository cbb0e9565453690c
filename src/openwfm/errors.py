"""The root of every error openwfm raises on purpose.

Each subsystem subclasses it (``VideoError``, ``ConfigError``, ``SimError``, ...). Messages name the
input and the problem; the CLI prints them without a traceback (``--debug`` shows it).
"""


class OpenWFMError(Exception):
    """An error caused by the user's input or environment, with a message meant to be read."""
