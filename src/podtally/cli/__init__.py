"""The `podtally` command: parses arguments, calls the library, prints, sets the exit code.

The commands are click commands (:mod:`podtally.cli.app` gathers them); each command module
declares its options once (:func:`podtally.cli.params.option`) and calls the library. Nothing
here computes: errors from the library arrive as :class:`podtally.errors.PodtallyError` and
leave as one ``error: ...`` line, worded with the command's own flags, with the exit code the
error carries. A usage error is one line too, pointing at the command's ``--help``, exit 2.

Everything the command does, from importing its modules and parsing the arguments to the last
flush of stdout, runs inside :func:`main`'s handlers: Ctrl-C at any moment is ``error:
interrupted`` and exit 130, a failed write to stdout is ``error: cannot write output: ...`` and
exit 3, and a reader that went away (``podtally ... | head``) is not an error at all. This module
imports nothing heavy at the top (click included), so that the window before those handlers
are in place is as short as the interpreter allows.
"""

from __future__ import annotations

import sys

from podtally.cli.output import Output, OutputError
from podtally.errors import PodtallyError

# typing.TYPE_CHECKING without importing typing; mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

EXIT_INTERRUPTED = 130
EXIT_USAGE = 2

__all__ = ["EXIT_INTERRUPTED", "OutputError", "main", "run"]


def _say(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except OSError:
        pass  # stderr is gone too: the exit code is all that is left to say it


def _invoke(argv: Sequence[str] | None) -> int:
    """Parse and run one command; return its exit code (``--help`` and ``--version``: 0)."""
    import click

    from podtally.cli.app import podtally

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        with podtally.make_context("podtally", args) as ctx:
            value = podtally.invoke(ctx)
    except click.exceptions.Exit as exc:  # --help, --version
        return exc.exit_code
    return value if isinstance(value, int) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code. Never raises for bad input or a failed command."""
    original = sys.stdout
    sys.stdout = Output(original)
    try:
        try:
            code = _invoke(argv)
            sys.stdout.flush()
            return code
        finally:
            sys.stdout = original
    except PodtallyError as exc:
        from podtally.cli.params import error_line

        _say(error_line(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _say("error: interrupted")
        return EXIT_INTERRUPTED
    except OSError as exc:
        # A file or system error no command explained: still one line, not a traceback.
        where = f" ({exc.filename})" if exc.filename else ""
        _say(f"error: {(exc.strerror or str(exc)).lower()}{where}")
        return 3
    except Exception as exc:  # noqa: BLE001 - click's own errors; anything else is re-raised
        return _click_error(exc)


def _click_error(exc: Exception) -> int:
    """A usage error (one line, exit 2) or an error a command already worded."""
    import click

    from podtally.cli.params import WordedError, usage_line

    if isinstance(exc, WordedError):
        _say(exc.line)
        return exc.exit_code
    if isinstance(exc, click.UsageError):
        _say(usage_line(exc))
        return EXIT_USAGE
    if isinstance(exc, click.ClickException):  # a bad file argument, for example
        _say(f"error: {exc.format_message()}")
        return exc.exit_code
    raise exc


def run() -> NoReturn:  # pragma: no cover - the console script entry point
    try:
        code = main()
    except KeyboardInterrupt:  # in the few instructions around main()'s own handler
        _say("error: interrupted")
        code = EXIT_INTERRUPTED
    raise SystemExit(code)
