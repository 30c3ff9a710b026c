"""The supervisor keeps both paths whole (issue 12 with issue 15): a replica killed with -9 is
replaced, and the replacement answers through the ALB path's gRPC port and through the Service
path, in the slot the dead one held in every backend. Bounded waits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.local.localstack_helpers import every_path_ports, running_stack, stack_config
from tests.local.test_paths import _plain, _pods, _secure
from tests.local.test_supervisor import kill, supervised
from tests.support import wait_until

from podtally.local import Stack, status

pytest.importorskip("grpc")
pytestmark = [pytest.mark.haproxy, pytest.mark.slow]
NAME = "pathsup"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(stack_config(tmp_path / NAME, 2, **every_path_ports())) as started:
        yield started


def test_a_replacement_answers_on_every_path(stack: Stack) -> None:
    assert stack.config.grpc_port is not None and stack.config.service_grpc_port is not None
    supervised(stack)
    victim = stack.replicas[0]
    kill(victim.pid)

    def replaced() -> bool:
        now = status(NAME, run_dir=stack.run_dir).replicas
        return (
            len(now) == 2
            and victim.pod not in {r.pod for r in now}
            and all(r.running and r.health == "UP" for r in now)
        )

    wait_until(replaced, "the killed replica replaced and UP", seconds=30, pause=0.1)
    pods = {r.pod for r in status(NAME, run_dir=stack.run_dir).replicas}
    with _secure(stack, stack.config.grpc_port) as channel:
        assert set(_pods(channel, 6)) == pods
    seen: set[str] = set()
    deadline = time.monotonic() + 20
    for _ in range(30):  # P(a replica missed in 30 random picks of 2) = 2**-29
        with _plain(stack.config.service_grpc_port) as channel:
            seen.update(_pods(channel, 1))
        if time.monotonic() > deadline:
            break
    assert seen == pods
