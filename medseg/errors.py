"""User-facing errors.

Anything the user can fix (a bad path, a malformed file, a wrong config key) is
raised as :class:`MedsegError` with a one-line message that names the file or key
and the problem. The CLI prints it as ``medseg: error: <message>`` and exits with
status 2, without a traceback. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations


class MedsegError(Exception):
    """An error caused by user input; its message is shown as one line."""

    exit_code = 2

    def __init__(self, message: str):
        # Keep the message on one line whatever the caller passed in.
        super().__init__(" ".join(str(message).split()))


class ConfigError(MedsegError):
    """A config file or a ``key=value`` override is invalid."""


class DataError(MedsegError):
    """A dataset file or folder is missing, unreadable or inconsistent."""


class CheckpointError(MedsegError):
    """A checkpoint is missing, unsafe or incompatible."""
