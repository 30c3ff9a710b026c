"""`scale`, `restart` and `down` when the stack is not in shape or the command is disturbed: an
exited replica, one HAProxy does not see UP, SIGTERM and Ctrl-C half-way, a dead HAProxy, a
corrupt state file, a closed stdout, another command holding the lock. Real processes, real
HAProxy, real signals.

Each test takes its ports from this worker's pool (``free_base``), so tests share none.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.local.localstack_helpers import (
    assert_all_gone,
    free_base,
    read_until,
    stack_config,
    stack_processes,
)
from tests.support import clean_env, run_cli, wait_until

from podtally.errors import NotRunningError, PodtallyError
from podtally.local import AlreadyUpError, Stack, down, rundir, scale, status, up
from podtally.local import haproxy as hap
from podtally.local import processes as proc
from podtally.local import state as st
from podtally.net import bind_error

NAME = "chg"

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A state root for one test; whatever stack it holds is brought down afterwards."""
    yield tmp_path
    run_dir = tmp_path / NAME
    if run_dir.is_dir():
        down(NAME, run_dir=run_dir)


def start(root: Path, base: int, replicas: int = 3, drain: float = 0.5) -> Stack:
    return up(stack_config(root / NAME, replicas, base=base, drain_seconds=drain))


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--name", NAME, env={"PODTALLY_STATE_DIR": str(root)})


def spawn(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "podtally", *args, "--name", NAME],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env({"PODTALLY_STATE_DIR": str(root)}),
    )


def finish(process: subprocess.Popen[str], timeout: float = 90) -> tuple[str, str]:
    try:
        return process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def one_error_line(stderr: str) -> str:
    """The last stderr line, which must be the only ``error:`` line, and no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and stderr.splitlines()[-1] == errors[0], stderr
    return errors[0]


def interrupted(stderr: str) -> None:
    """Ends with the one line that says it was interrupted, and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert lines and "interrupted" in lines[-1], stderr
    assert sum(line.startswith("error: ") for line in lines) <= 1, stderr


def kill_replica(root: Path, stack: Stack, index: int) -> str:
    """SIGKILL one replica and wait until HAProxy marks it DOWN; its pod name."""
    victim = stack.replicas[index]
    proc.signal_group(victim.pid, signal.SIGKILL)
    assert_all_gone([victim.pid], within=10)

    def down_in_haproxy() -> bool:
        now = status(NAME, run_dir=root / NAME)
        return any(r.pod == victim.pod and r.health == "DOWN" for r in now.replicas)

    wait_until(down_in_haproxy, f"HAProxy marking {victim.pod} DOWN")
    return victim.pod


def set_maint(stack: Stack, index: int) -> str:
    """Take one running replica out of rotation through HAProxy's runtime API; its pod name."""
    state = st.load(stack.run_dir)
    assert state is not None
    api = hap.RuntimeApi(Path(state.socket_path))
    replica = stack.replicas[index]
    api.set_state(replica.server.split("/")[1], "maint")
    return replica.pod


# --- exited and not-UP replicas -------------------------------------------------------------


def test_scale_down_removes_an_exited_replica_not_a_healthy_one(root: Path) -> None:
    stack = start(root, free_base())
    dead = kill_replica(root, stack, 0)
    shrunk = cli(root, "scale", "2")
    assert shrunk.returncode == 0, shrunk.stderr
    now = status(NAME, run_dir=root / NAME)
    assert now.ready and len(now.replicas) == 2
    # The two healthy replicas stay; the dead one is gone from the stack.
    assert {r.pod for r in now.replicas} == {r.pod for r in stack.replicas} - {dead}
    assert dead not in shrunk.stdout
    assert now.config.replicas == 2


def test_scale_replaces_exited_replicas_and_keeps_the_others(root: Path) -> None:
    stack = start(root, free_base(), replicas=2)
    dead = kill_replica(root, stack, 0)
    survivor = stack.replicas[1].pod
    same = cli(root, "scale", "2")
    assert same.returncode == 0, same.stderr
    now = status(NAME, run_dir=root / NAME)
    assert now.ready and len(now.replicas) == 2
    assert survivor in {r.pod for r in now.replicas} and dead not in {r.pod for r in now.replicas}
    # The replacement takes the dead one's place (node), like a ReplicaSet's new pod.
    assert sorted(r.node for r in now.replicas) == ["local-node-1", "local-node-2"]
    dead = kill_replica(root, now, 1)
    grown = scale(4, NAME, run_dir=root / NAME)
    assert grown.ready and len(grown.replicas) == 4
    assert dead not in {r.pod for r in grown.replicas}
    assert now.replicas[0].pod in {r.pod for r in grown.replicas}


def test_scale_down_removes_a_replica_haproxy_does_not_see_up_first(root: Path) -> None:
    stack = start(root, free_base())
    out_of_rotation = set_maint(stack, 0)
    smaller = scale(2, NAME, run_dir=root / NAME)
    assert smaller.ready
    assert {r.pod for r in smaller.replicas} == {r.pod for r in stack.replicas} - {out_of_rotation}


def test_scale_that_leaves_a_replica_not_up_exits_1(root: Path) -> None:
    stack = start(root, free_base(), replicas=2)
    not_up = set_maint(stack, 0)
    grown = cli(root, "scale", "3")
    assert grown.returncode == 1, grown.stderr
    line = one_error_line(grown.stderr)
    assert "degraded" in line and not_up in line and f"'podtally status --name {NAME}'" in line
    assert "2/3 replicas UP" in grown.stdout and not_up in grown.stdout
    # A rolling restart replaces every replica, the one out of rotation too: healthy again.
    healed = cli(root, "restart")
    assert healed.returncode == 0, healed.stderr
    assert status(NAME, run_dir=root / NAME).ready


# --- SIGTERM and Ctrl-C half-way ------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_restart_rolls_back_cleanly(root: Path, sig: signal.Signals) -> None:
    base = free_base()
    stack = start(root, base)
    process = spawn(root, "restart")
    try:
        read_until(process.stderr, "[2/3] started")
        process.send_signal(sig)
    finally:
        _, err = finish(process)
    assert process.returncode == 130, err
    interrupted(err)
    now = status(NAME, run_dir=root / NAME)
    assert now.ready and len(now.replicas) == 3, now.replicas
    assert now.config.replicas == 3
    # Nothing else runs: three replicas and HAProxy, no replacement left half-started.
    assert len(stack_processes(root)) == 4, stack_processes(root)
    assert {r.pod for r in now.replicas} != {r.pod for r in stack.replicas}  # it was under way


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_scale_up_rolls_back_cleanly(root: Path, sig: signal.Signals) -> None:
    base = free_base()
    stack = start(root, base, replicas=2)
    process = spawn(root, "scale", "8")
    try:
        read_until(process.stderr, "starting 6 replica")

        def recorded() -> bool:
            state = st.load(root / NAME)
            return state is not None and len(state.replicas) >= 4

        wait_until(recorded, "new replicas recorded")
        process.send_signal(sig)
    finally:
        _, err = finish(process)
    assert process.returncode == 130, err
    interrupted(err)
    now = status(NAME, run_dir=root / NAME)
    assert now.ready and [r.pod for r in now.replicas] == [r.pod for r in stack.replicas]
    assert now.config.replicas == 2
    assert len(stack_processes(root)) == 3, stack_processes(root)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_down_still_removes_everything(root: Path, sig: signal.Signals) -> None:
    base = free_base()
    # A long drain: without the interrupt, down would wait for it.
    stack = start(root, base, replicas=2, drain=20)
    process = spawn(root, "down")
    try:
        read_until(process.stderr, "stopping 2 replica")
        process.send_signal(sig)
    finally:
        _, err = finish(process, timeout=15)
    assert process.returncode == 130, err
    interrupted(err)
    assert_all_gone([r.pid for r in stack.replicas] + [stack.haproxy_pid])
    assert stack_processes(root) == []
    assert not (root / NAME).exists()  # the CA key with it
    assert all(bind_error("127.0.0.1", port) is None for port in (base, base + 1, base + 2))


# --- a dead HAProxy, a corrupt state file -----------------------------------------------------


def test_restart_and_scale_refuse_a_stack_whose_haproxy_died(root: Path) -> None:
    stack = start(root, free_base(), replicas=2)
    proc.signal_group(stack.haproxy_pid, signal.SIGKILL)
    assert_all_gone([stack.haproxy_pid], within=10)
    recorded = (root / NAME / st.STATE_FILE).read_bytes()
    for command in (("scale", "3"), ("restart",), ("status",)):
        refused = cli(root, *command)
        assert refused.returncode == 3, (command, refused.stderr)
        line = one_error_line(refused.stderr)
        assert "HAProxy" in line and "not running" in line, line
        assert f"'podtally down --name {NAME}'" in line and f"'podtally up --name {NAME}'" in line
        assert "stale" not in refused.stderr
    # Nothing was touched: the replicas still run, the state is as it was.
    assert all(proc.pid_alive(r.pid) for r in stack.replicas)
    assert (root / NAME / st.STATE_FILE).read_bytes() == recorded
    cleaned = cli(root, "down")
    assert cleaned.returncode == 0, cleaned.stderr
    assert stack_processes(root) == [] and not (root / NAME).exists()


def test_status_does_not_show_pid_0_for_a_haproxy_that_never_started(root: Path) -> None:
    stack = start(root, free_base(), replicas=1)
    proc.signal_group(stack.haproxy_pid, signal.SIGKILL)
    assert_all_gone([stack.haproxy_pid], within=10)
    state = st.load(root / NAME)
    assert state is not None
    state.haproxy_pid = 0  # as an `up` killed before it started HAProxy leaves it
    st.save(state)
    with pytest.raises(NotRunningError) as caught:
        status(NAME, run_dir=root / NAME)
    assert "pid 0" not in str(caught.value) and "HAProxy is not running" in str(caught.value)


def test_down_stops_a_stack_whose_state_file_is_corrupt(root: Path) -> None:
    base = free_base()
    stack = start(root, base, replicas=2)
    (root / NAME / st.STATE_FILE).write_text("{garbage")
    for command in (("status",), ("scale", "3"), ("restart",)):
        refused = cli(root, *command)
        assert refused.returncode == 3, (command, refused.stderr)
        line = one_error_line(refused.stderr)
        assert "state.json" in line and f"'podtally down --name {NAME}'" in line, line
    assert all(proc.pid_alive(r.pid) for r in stack.replicas)
    cleaned = cli(root, "down")
    assert cleaned.returncode == 0, cleaned.stderr
    assert "is down" in cleaned.stderr
    assert_all_gone([r.pid for r in stack.replicas] + [stack.haproxy_pid])
    assert stack_processes(root) == []
    assert not (root / NAME).exists()
    assert all(bind_error("127.0.0.1", port) is None for port in (base, base + 1, base + 2))
    assert all(bind_error(r.address, r.port) is None for r in stack.replicas)


# --- output, hints, the lock --------------------------------------------------------------------


def run_with_closed_stdout(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a command whose stdout reader is already gone, as `podtally ... | head -0` would."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "podtally", *args, "--name", NAME],
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env({"PODTALLY_STATE_DIR": str(root)}),
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)


def test_a_closed_stdout_does_not_change_the_outcome(root: Path) -> None:
    base = free_base()
    ports = ("--http-port", str(base), "--https-port", str(base + 1))
    started = run_with_closed_stdout(
        root, "up", *ports, "--stats-port", str(base + 2), "--replicas", "2"
    )
    assert started.returncode == 0, started.stderr
    assert "error" not in started.stderr and "Exception" not in started.stderr, started.stderr
    stack = status(NAME, run_dir=root / NAME)
    assert stack.ready
    shown = run_with_closed_stdout(root, "status")
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    # The command's own outcome still decides: a degraded stack is exit 1, pipe or not.
    kill_replica(root, stack, 0)
    shown = run_with_closed_stdout(root, "status")
    assert shown.returncode == 1 and shown.stderr == "", shown.stderr


def test_hints_name_the_stack_and_read_like_options(root: Path) -> None:
    base = free_base()
    stack = start(root, base, replicas=2)
    with pytest.raises(AlreadyUpError) as caught:
        start(root, base, replicas=2)
    assert f"--name {NAME}'" in str(caught.value)
    again = cli(
        root,
        "up",
        *("--http-port", str(base), "--https-port", str(base + 1)),
        *("--stats-port", str(base + 2), "--replicas", "3", "--nodes", "2", "--no-tls"),
    )
    assert again.returncode == 2
    line = one_error_line(again.stderr)
    assert f"'podtally down --name {NAME}'" in line and f"'podtally scale N --name {NAME}'" in line
    assert "--replicas 2 (asked: --replicas 3)" in line and "--no-tls" in line, line
    for internal in ("None", "True", "False", "_port", "drain_seconds"):
        assert internal not in line, line
    assert status(NAME, run_dir=root / NAME).haproxy_pid == stack.haproxy_pid


def test_a_command_waiting_for_the_lock_says_so(root: Path) -> None:
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with rundir.locked(root / NAME):
            held.set()
            release.wait(15)  # bounded: an old podtally that never says so still finishes

    worker = threading.Thread(target=holder)
    worker.start()
    try:
        assert held.wait(10)
        process = spawn(root, "scale", "2")
        try:
            waited = read_until(process.stderr, "waiting for another podtally command")
        finally:
            release.set()
            _, err = finish(process)
    finally:
        release.set()
        worker.join(20)
    assert f"stack {NAME!r}" in waited
    # Once the lock is free, it goes on (and finds no stack).
    assert process.returncode == 3 and "is not up" in err


def test_scale_to_a_bad_count_changes_nothing(root: Path) -> None:
    stack = start(root, free_base(), replicas=1)
    with pytest.raises(PodtallyError, match="between 1 and 64"):
        scale(0, NAME, run_dir=root / NAME)
    assert [r.pod for r in status(NAME, run_dir=root / NAME).replicas] == [stack.replicas[0].pod]
