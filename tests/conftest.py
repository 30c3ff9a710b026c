"""Shared fixtures: real `podtally serve` processes on loopback, always torn down.

`make test` runs the files on three pytest-xdist workers (``--dist loadfile``): a file's tests stay
on one worker, so its module-scoped fixtures start once. Every test takes its ports from
its worker's slice of the ports below the kernel's ephemeral range (tests.support.free_port,
free_ports, free_base), so files never share a port and no outgoing connection takes one.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ServeProcess, start_serve

# Every option reads PODTALLY_<OPTION>: one exported in the shell (PODTALLY_IMAGE would turn every
# stack the tests start into containers) must not change what the tests run, in this process or
# in the ones it starts. The tests' own settings are named PODTALLY_TEST_*.
for _name in [name for name in os.environ if name.startswith("PODTALLY_")]:
    if not _name.startswith("PODTALLY_TEST_"):
        del os.environ[_name]

# A suite started in the background (`make test &` in a script) inherits SIGINT ignored, and so
# would every process it starts: the tests that press Ctrl-C on a command would wait in vain.
# Python's own handler, as in a foreground run; exec resets it to the default in the children.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    """Factory: ``serve(host=..., env=...)`` starts a replica; all are killed at teardown."""
    started: list[ServeProcess] = []

    def factory(**kwargs: object) -> ServeProcess:
        server = start_serve(tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
