"""Exceptions that carry a message for the user.

Only the CLI turns them into an exit code and a one-line error; library code
raises them with wording that names the field, argument or container involved.
"""

from __future__ import annotations


class YacrError(Exception):
    """A failure the user can act on; str(self) is the one line they will read."""

    exit_code = 1


class ConfigError(YacrError):
    """config.json (or an exec process file) is malformed; the message names the JSON path."""


class UsageError(YacrError):
    """A bad command line: unknown flag, missing argument, wrong value."""


class NotFoundError(YacrError):
    """The container id is unknown. containerd matches on "does not exist"."""

    def __init__(self, cid: str) -> None:
        super().__init__(f"container does not exist: {cid}")


class StateError(YacrError):
    """The operation is not allowed in the container's current status."""
