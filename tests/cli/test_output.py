"""stdout trouble in a real process: a full disk is exit 3, a reader that left is no error."""

from __future__ import annotations

import os

import pytest

from tests.support import run_cli


@pytest.mark.parametrize(
    "args", [["--help"], ["--version"], ["up", "--help"], ["manifests", "-o", "json"]]
)
def test_a_full_disk_is_one_line_and_exit_3(args: list[str]) -> None:
    """click probes stdout with an empty write before it prints: that probe failing must not
    hide the failure (it did: `--help > /dev/full` was exit 0)."""
    with open("/dev/full", "w") as full:
        proc = run_cli(*args, stdout=full)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr == "error: cannot write output: No space left on device\n"


@pytest.mark.parametrize("args", [["--help"], ["manifests", "-o", "json"]])
def test_a_closed_pipe_is_not_an_error(args: list[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = run_cli(*args, stdout=write_end)
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
