"""A frozen replica costs no request (issue 15, point 6): `kill -STOP` of one replica under load,
through real HAProxy. HAProxy's server timeout is short enough that its response-timeout retry
sends the request to another replica well before a client with a 5 s timeout gives up."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.local.localstack_helpers import get, stack_config

from podtally.local import down, up

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]

NAME = "frz"
CLIENT_TIMEOUT = 5.0
FROZEN_SECONDS = 7.0  # longer than the client waits


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    if (tmp_path / NAME).is_dir():
        down(NAME, run_dir=tmp_path / NAME)


def test_a_replica_frozen_under_load_fails_no_request(root: Path) -> None:
    stack = up(stack_config(root / NAME))
    frozen = stack.replicas[0].pid
    ok, failures = [0], []
    lock, stop = threading.Lock(), threading.Event()

    def client() -> None:
        deadline = time.monotonic() + 30  # bounded in time and in count
        for _ in range(5000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            try:
                status, _, _ = get(stack.url, stack.ca_path, timeout=CLIENT_TIMEOUT)
                outcome = None if status == 200 else f"status {status}"
            except Exception as exc:  # noqa: BLE001 - any failure counts
                outcome = f"{type(exc).__name__}: {exc}"
            with lock:
                if outcome is None:
                    ok[0] += 1
                else:
                    failures.append(outcome)
            time.sleep(0.005)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        os.kill(frozen, signal.SIGSTOP)
        try:
            time.sleep(FROZEN_SECONDS)
        finally:
            os.kill(frozen, signal.SIGCONT)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=CLIENT_TIMEOUT + 5)
    assert ok[0] > 100
    assert failures == [], f"{len(failures)} of {ok[0] + len(failures)} failed: {failures[:3]}"
