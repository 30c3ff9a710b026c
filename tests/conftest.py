"""Shared fixtures: real `podtally serve` processes on loopback, always torn down.

`make test` runs the files on two pytest-xdist workers (``--dist loadfile``): a file's tests stay
on one worker, so its module-scoped fixtures start once. Every test takes its ports from the
kernel (tests.support.free_port, free_ports), so files never share a port.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ServeProcess, start_serve


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
