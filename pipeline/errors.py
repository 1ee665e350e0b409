"""The one error class every room raises for a mistake the user can fix.

A bad config value, a damaged or missing input file, a device that is not there: the message
names the problem and the fix, so the stages print it alone and exit 2 instead of showing a
traceback (``pipeline.stages._common.stage``). Errors of our own code stay tracebacks.
"""

from __future__ import annotations

EXIT_STATUS = 2  # what a command exits with on an InputError (argparse's usage errors exit 2 too)


class InputError(ValueError):
    """A mistake in a config, a command line or an input file; the message says what to do."""


class SettingError(InputError):
    """A value at a key path that is not allowed; the message starts with the path."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path, self.message = path, message

    def __reduce__(self):
        # rebuilt from (path, message), not from the joined text: a seed's worker process
        # sends its error to the stage pickled, and a failed rebuild broke the whole pool
        return type(self), (self.path, self.message)
