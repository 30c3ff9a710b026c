"""Small helpers the command modules share: stderr output, terminal detection, extras checks."""

from __future__ import annotations

import importlib.util
import sys

from podtally.errors import MissingDependencyError


def err(message: str) -> None:
    """A line of progress or diagnostics: always stderr, so stdout stays machine-readable."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def require_extra(extra: str, *modules: str) -> None:
    """Raise a one-line error naming the pip extra when an optional module is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(
            f"this command needs {', '.join(missing)}: pip install 'podtally[{extra}]'"
        )
