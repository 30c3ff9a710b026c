"""One family of errors. The CLI turns any of them into a single ``error: ...`` line.

Each class carries the process exit code it stands for, so that callers (the CLI, CI scripts)
never have to map exceptions to codes themselves.
"""

from __future__ import annotations


class PodtallyError(Exception):
    """Something podtally could not do. Exit code 3: an operational failure."""

    exit_code: int = 3


class UsageError(PodtallyError):
    """Bad usage or bad input: a malformed argument, a port in use, an invalid name. Exit 2."""

    exit_code = 2


class MissingDependencyError(PodtallyError):
    """A program or optional package podtally needs is not installed. Exit 3.

    The message says what to install.
    """


class NotRunningError(PodtallyError):
    """A stack or service that should be up is not. Exit 3."""
