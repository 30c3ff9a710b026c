"""The stack heals itself (issue 15, points 3 to 5): real processes, real HAProxy, kill -9.

A dead replica is replaced on its node, a dead HAProxy comes back on the same ports with the
same CA, a dead supervisor is started again by its watchdog, and a `restart` killed half-way
converges to the configured replicas, one per node. Each waits a bounded time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.local.localstack_helpers import get, stack_config, stack_processes
from tests.support import clean_env, run_cli, wait_until

from podtally.local import Stack, down, status, supervisor, up
from podtally.local import processes as proc

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]

NAME = "sup"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    run_dir = tmp_path / NAME
    yield up(stack_config(run_dir))
    if run_dir.is_dir():
        down(NAME, run_dir=run_dir)
    wait_until(lambda: stack_processes(run_dir) == [], "down stopping everything", seconds=5)


def kill(pid: int) -> None:
    """kill -9, and wait until it is gone (so that no check sees it still alive)."""
    os.kill(pid, signal.SIGKILL)
    assert proc.wait_gone([pid], 5) == []


def supervised(stack: Stack) -> supervisor.SupervisorReport:
    wait_until(
        lambda: supervisor.report(stack.run_dir).healthy,
        "supervised and watched",
        seconds=10,
        pause=0.1,
    )
    return supervisor.report(stack.run_dir)


def converged(stack: Stack) -> Callable[[], bool]:
    def check() -> bool:
        try:
            now = status(NAME, run_dir=stack.run_dir)
        except Exception:  # noqa: BLE001 - not up yet is "not converged" too
            return False
        nodes = sorted(r.node for r in now.replicas)
        return (
            len(now.replicas) == 3
            and all(r.running and r.health == "UP" for r in now.replicas)
            and nodes == sorted(r.node for r in stack.replicas)
        )

    return check


def test_a_killed_replica_is_replaced_on_its_node_and_counted(stack: Stack) -> None:
    supervised(stack)
    victim = stack.replicas[1]
    kill(victim.pid)
    wait_until(converged(stack), "back to 3 replicas UP", seconds=30, pause=0.1)
    now = status(NAME, run_dir=stack.run_dir)
    replacement = next(r for r in now.replicas if r.node == victim.node)
    assert replacement.pod != victim.pod
    health = supervisor.report(stack.run_dir)
    assert health.running and health.healthy
    assert health.replica_restarts == {replacement.pod: 1}
    age = health.age(replacement.pod)
    assert age is not None and age < 30
    # `status` shows it, like `kubectl get pods`: RESTARTS and AGE, and the supervisor's health.
    env = {"PODTALLY_STATE_DIR": str(stack.run_dir.parent)}
    shown = run_cli("status", "--name", NAME, env=env).stdout
    assert re.search(rf"^  {replacement.pod}\s+1\s+\d+s$", shown, re.M), shown
    assert "supervisor: healthy (pid " in shown, shown
    as_json = json.loads(run_cli("status", "--name", NAME, "--json", env=env).stdout)
    assert as_json["supervisor"]["replicas"][replacement.pod]["restarts"] == 1


def test_a_killed_haproxy_comes_back_on_the_same_port_with_the_same_ca(stack: Stack) -> None:
    assert stack.ca_path is not None
    ca_before = stack.ca_path.read_bytes()
    supervised(stack)
    kill(stack.haproxy_pid)

    def serves() -> bool:
        try:
            return get(stack.url, stack.ca_path, timeout=1)[0] == 200
        except OSError:
            return False

    took = wait_until(serves, "serving again with the old ca.pem", seconds=15, pause=0.1)
    assert took < 10
    assert stack.ca_path.read_bytes() == ca_before
    assert status(NAME, run_dir=stack.run_dir).haproxy_pid != stack.haproxy_pid
    wait_until(
        lambda: supervisor.report(stack.run_dir).haproxy_restarts == 1,
        "counted",
        seconds=5,
        pause=0.1,
    )


def test_a_killed_supervisor_is_started_again(stack: Stack) -> None:
    before = supervised(stack)
    kill(before.pid)
    wait_until(
        lambda: (r := supervisor.report(stack.run_dir)).healthy and r.pid != before.pid,
        "supervised again",
        seconds=10,
        pause=0.1,
    )
    assert supervisor.report(stack.run_dir).restarts == before.restarts + 1
    # ... and it still heals.
    kill(stack.replicas[0].pid)
    wait_until(converged(stack), "back to 3 replicas UP", seconds=30, pause=0.1)


def test_a_restart_killed_half_way_converges_to_the_configuration(stack: Stack) -> None:
    supervised(stack)
    command = [sys.executable, "-m", "podtally", "restart", "--name", NAME]
    env = clean_env({"PODTALLY_STATE_DIR": str(stack.run_dir.parent)})
    restarting = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert restarting.stderr is not None
    for _ in range(200):  # bounded: until the first replacement is UP
        line = restarting.stderr.readline()
        if not line or "is UP; draining" in line:
            break
    restarting.kill()
    restarting.wait(10)
    wait_until(converged(stack), "back to 3 replicas UP, one per node", seconds=60, pause=0.1)
    assert proc.wait_gone([restarting.pid], 1) == []
