"""The `podtally` command: parses arguments, calls the library, prints, sets the exit code.

Each command group lives in its own module with a ``register(subparsers)`` function that adds its
sub-commands and sets ``func`` on them; ``func(args) -> int`` returns the exit code. Nothing here
computes: errors from the library arrive as :class:`podtally.errors.PodtallyError` and leave as
one ``error: ...`` line with the exit code the error carries.

Everything the command does, from importing its modules and parsing the arguments to the last
flush of stdout, runs inside :func:`main`'s handlers: Ctrl-C at any moment is ``error:
interrupted`` and exit 130, a failed write to stdout is ``error: cannot write output: ...`` and
exit 3, and a reader that went away (``podtally ... | head``) is not an error at all. This module
imports nothing heavy at the top (argparse included), so that the window before those handlers
are in place is as short as the interpreter allows.
"""

from __future__ import annotations

import errno
import os
import sys

from podtally.errors import PodtallyError

# typing.TYPE_CHECKING without importing typing (and re), about 10 ms that would pass before
# main()'s handlers are in place; mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable, Sequence
    from typing import Any, NoReturn, TextIO

EXIT_INTERRUPTED = 130


class OutputError(PodtallyError):
    """Writing to stdout failed (a full disk, an I/O error): exit 3, never a traceback."""


class _Output:
    """``sys.stdout`` while a command runs.

    A reader that went away (``EPIPE``: ``podtally manifests | head``) is not the command's
    failure: the rest of the output is dropped and the command finishes with its own exit code.
    Any other failed write or flush is an :class:`OutputError`. Either way stdout's descriptor is
    pointed at ``/dev/null`` first, so that the bytes still in Python's buffer cannot fail again
    (and print ``Exception ignored ...``) when the interpreter exits.
    """

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream  # None: the process was started with stdout closed (`>&-`)
        self._gone = False

    def write(self, text: str) -> int:
        if self._stream is None:
            raise OutputError("cannot write output: stdout is closed")
        if not self._gone:
            try:
                self._stream.write(text)
            except OSError as exc:
                self._failed(exc)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._stream is not None and not self._gone:
            try:
                self._stream.flush()
            except OSError as exc:
                self._failed(exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _failed(self, exc: OSError) -> None:
        self._gone = True
        self._discard()
        if isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE:
            return
        reason = exc.strerror or str(exc)
        raise OutputError(f"cannot write output: {reason}") from None

    def _discard(self) -> None:
        try:
            fd = self._stream.fileno()  # type: ignore[union-attr]
        except (OSError, ValueError, AttributeError):  # not a real file (a test's capture)
            return
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
        except OSError:
            pass


def _parser_class() -> type[argparse.ArgumentParser]:
    import argparse

    class _Parser(argparse.ArgumentParser):
        """argparse, but a usage error is one line and exit 2, like every other bad input, and
        it names the command whose options were wrong (``see 'podtally serve --help'``)."""

        def parse_known_args(  # type: ignore[override]
            self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
        ) -> tuple[argparse.Namespace, list[str]]:
            self._arguments: list[str] = list(sys.argv[1:] if args is None else args)
            parsed, extras = super().parse_known_args(args, namespace)
            if extras:
                # Here, not in the top-level parser: a sub-command's unknown option is reported
                # with that sub-command's help.
                self.error(f"unrecognized arguments: {' '.join(extras)}")
            return parsed, extras

        def error(self, message: str) -> NoReturn:
            if message.startswith("the following arguments are required"):
                # `podtally --bogus`: argparse complains about the missing command, but the
                # real mistake is the option it did not know.
                unknown = self._unknown_options()
                if unknown:
                    message = f"unrecognized arguments: {' '.join(unknown)}"
            sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
            raise SystemExit(2)

        def _unknown_options(self) -> list[str]:
            known = list(self._option_string_actions)
            unknown = []
            for arg in getattr(self, "_arguments", []):
                if arg == "--":
                    break
                if not arg.startswith("-") or arg == "-":
                    continue
                if self._negative_number_matcher.match(arg) and not (
                    self._has_negative_number_optionals
                ):
                    continue  # a value such as `-n -1`: argparse reads it as one too
                name = arg.split("=", 1)[0]
                abbreviates = name.startswith("--") and self.allow_abbrev
                if name in known or (abbreviates and any(o.startswith(name) for o in known)):
                    continue
                unknown.append(arg)
            return unknown

    return _Parser


def build_parser() -> argparse.ArgumentParser:
    from podtally import __version__
    from podtally.cli import cloud, k8s, local, serve, verify

    parser_class = _parser_class()
    parser = parser_class(
        prog="podtally",
        description="Which pod answered? Serve identities, verify load balancing, run it all.",
    )
    parser.add_argument("--version", action="version", version=f"podtally {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=parser_class)
    sub.required = True
    for module in (serve, local, verify, k8s, cloud):
        module.register(sub)
    return parser


def _say(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except OSError:
        pass  # stderr is gone too: the exit code is all that is left to say it


def _in_flags(exc: PodtallyError) -> str:
    """The error in the command line's words: the setting to blame named by the option that
    feeds it (every option is named after the library setting it sets)."""
    if exc.setting is None:
        return str(exc)
    flag = "--" + exc.setting.replace("_", "-")
    if not exc.has_value:
        return f"{flag}: {exc.what}"
    value = exc.value
    shown = (
        repr(value)
        if isinstance(value, str)
        else f"{value:g}"
        if isinstance(value, float)
        else value
    )
    return f"{flag} {shown}: {exc.what}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code. Usage errors (and --help) raise SystemExit."""
    original = sys.stdout
    nested = isinstance(original, _Output)  # `cloud verify` runs `verify` through main()
    if not nested:
        sys.stdout = _Output(original)
    try:
        try:
            args = build_parser().parse_args(argv)
            code: int = args.func(args)
            sys.stdout.flush()
            return code
        except SystemExit:
            sys.stdout.flush()  # --help or --version into a full disk is an error too
            raise
        finally:
            if not nested:
                sys.stdout = original
    except PodtallyError as exc:
        _say(f"error: {_in_flags(exc)}")
        return exc.exit_code
    except KeyboardInterrupt:
        _say("error: interrupted")
        return EXIT_INTERRUPTED
    except OSError as exc:
        # A file or system error no command explained: still one line, not a traceback.
        where = f" ({exc.filename})" if exc.filename else ""
        _say(f"error: {(exc.strerror or str(exc)).lower()}{where}")
        return 3


def run() -> NoReturn:  # pragma: no cover - the console script entry point
    try:
        code = main()
    except KeyboardInterrupt:  # in the few instructions around main()'s own handler
        _say("error: interrupted")
        code = EXIT_INTERRUPTED
    raise SystemExit(code)
