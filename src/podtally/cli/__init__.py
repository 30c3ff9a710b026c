"""The `podtally` command: parses arguments, calls the library, prints, sets the exit code.

Each command group lives in its own module with a ``register(subparsers)`` function that adds its
sub-commands and sets ``func`` on them; ``func(args) -> int`` returns the exit code. Nothing here
computes: errors from the library arrive as :class:`podtally.errors.PodtallyError` and leave as
one ``error: ...`` line with the exit code the error carries.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from podtally import __version__
from podtally.errors import PodtallyError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from podtally.cli import cloud, k8s, local, serve, verify

    parser = _Parser(
        prog="podtally",
        description="Which pod answered? Serve identities, verify load balancing, run it all.",
    )
    parser.add_argument("--version", action="version", version=f"podtally {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in (serve, local, verify, k8s, cloud):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except PodtallyError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        # `podtally ... | head`: the reader left; that is not an error of ours.
        return 0
    return code


def run() -> NoReturn:  # pragma: no cover - the console script entry point
    raise SystemExit(main())
