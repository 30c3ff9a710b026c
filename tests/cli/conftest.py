"""Run ``podtally ARGS`` in-process: click's CliRunner isolation around the real ``main``.

``main`` is the console script minus ``SystemExit``: parsing, the library call, the error
wording and the exit code are all the real ones; stdout and stderr are captured separately.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from podtally.cli import main


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


Run = Callable[..., Ran]


def one_error_line(ran: Ran, code: int = 2) -> str:
    """The single ``error: ...`` line of a failed run (exit ``code``, nothing on stdout)."""
    assert ran.code == code, ran
    assert ran.out == ""
    assert ran.err.count("\n") == 1 and ran.err.startswith("error: "), ran.err
    assert "Traceback" not in ran.err
    return ran.err.rstrip("\n")


@pytest.fixture
def podtally() -> Run:
    def run(*args: str, env: Mapping[str, str] | None = None) -> Ran:
        with CliRunner().isolation(env=dict(env or {})) as (out, err, _):
            code = main(list(args))
        return Ran(code, out.getvalue().decode(), err.getvalue().decode())

    return run
