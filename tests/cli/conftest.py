"""Run ``podtally ARGS`` in-process (:func:`tests.support.cli_in_process`): click's CliRunner
isolation around the real ``main``, stdout and stderr captured separately."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support import Ran, cli_in_process

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
    return cli_in_process
