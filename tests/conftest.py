"""Shared fixtures: real `podtally serve` processes on loopback, always torn down."""

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
