"""What goes wrong, said clearly, with nothing left behind: up twice, stale state, a port in use,
haproxy missing, a replica that never becomes ready, bad input, Ctrl-C and SIGTERM.

Each test takes its ports from this worker's pool (``free_base``), so tests share none.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.local.localstack_helpers import (
    assert_all_gone,
    free_base,
    get,
    read_until,
    stack_pids,
    stack_processes,
)
from tests.support import clean_env, run_cli, wait_until

from podtally.errors import MissingDependencyError, NotRunningError, PodtallyError, UsageError
from podtally.local import AlreadyUpError, StackConfig, down, status, up
from podtally.local import processes as proc
from podtally.local import state as st
from podtally.net import bind_error

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A state root for one test; whatever stacks it holds are brought down afterwards."""
    yield tmp_path
    for run_dir in tmp_path.iterdir():
        if run_dir.is_dir() and (run_dir / st.STATE_FILE).exists():
            down(run_dir.name, run_dir=run_dir)


def config(root: Path, base: int, **overrides: object) -> StackConfig:
    values: dict[str, object] = {
        "name": "errs",
        "replicas": 2,
        "http_port": base,
        "https_port": base + 1,
        "stats_port": base + 2,
        "run_dir": root / "errs",
        "drain_seconds": 0.5,
    }
    values.update(overrides)
    return StackConfig(**values)  # type: ignore[arg-type]


def nothing_left(root: Path, http_port: int | None) -> None:
    """No replica or HAProxy of this test's stacks runs, nothing listens on the stack's ports,
    no run directory is left."""
    assert stack_processes(root) == []
    if http_port is not None:
        assert bind_error("127.0.0.1", http_port) is None
    assert not (root / "errs").exists()


def test_up_twice_says_already_up(root: Path) -> None:
    base = free_base()
    cfg = config(root, base)
    first = up(cfg)
    with pytest.raises(AlreadyUpError, match="already up") as caught:
        up(cfg)
    assert caught.value.stack.haproxy_pid == first.haproxy_pid
    env = {"PODTALLY_STATE_DIR": str(root)}
    ports = ["--http-port", str(base), "--https-port", str(base + 1), "--stats-port", str(base + 2)]
    same = run_cli(
        "up", "--name", "errs", "--replicas", "2", "--drain-seconds", "0.5", *ports, env=env
    )
    # The same stack asked for again: not an error, it says so and shows the URLs.
    assert same.returncode == 0, same.stderr
    assert "already up" in same.stderr and f"https://127.0.0.1:{base + 1}/" in same.stdout
    other = run_cli("up", "--name", "errs", "--replicas", "4", *ports, env=env)
    assert other.returncode == 2
    assert other.stderr.startswith("error: ") and other.stderr.count("\n") == 1
    assert "replicas 2" in other.stderr
    # Nothing changed underneath.
    assert status("errs", run_dir=root / "errs").haproxy_pid == first.haproxy_pid


def test_stale_state_is_detected_and_cleaned(root: Path) -> None:
    cfg = config(root, free_base())
    crashed = up(cfg)
    # A crash: HAProxy dies hard, replicas are left orphaned, the state file stays.
    proc.signal_group(crashed.haproxy_pid, signal.SIGKILL)
    assert_all_gone([crashed.haproxy_pid], within=5)
    with pytest.raises(NotRunningError, match="HAProxy"):
        status("errs", run_dir=root / "errs")
    lines: list[str] = []
    fresh = up(cfg, progress=lines.append)
    assert any("stale" in line for line in lines), lines
    assert_all_gone([r.pid for r in crashed.replicas])
    assert fresh.ready and {r.pod for r in fresh.replicas}.isdisjoint(
        {r.pod for r in crashed.replicas}
    )
    assert get(fresh.url, fresh.ca_path)[0] == 200


def test_down_cleans_stale_state_too(root: Path) -> None:
    base = free_base()
    crashed = up(config(root, base))
    proc.signal_group(crashed.haproxy_pid, signal.SIGKILL)
    assert down("errs", run_dir=root / "errs") is True  # the orphaned replicas were stopped
    assert_all_gone(stack_pids(crashed))
    nothing_left(root, base)


@pytest.mark.parametrize(("offset", "what"), [(0, "HTTP"), (1, "HTTPS"), (2, "stats")])
def test_port_in_use_is_a_one_line_error_and_starts_nothing(
    root: Path, offset: int, what: str
) -> None:
    base = free_base()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base + offset))
        squatter.listen(1)
        with pytest.raises(UsageError, match=rf"{what} port 127.0.0.1:{base + offset} is already"):
            up(config(root, base))
        nothing_left(root, None)  # the squatter holds one of the ports
        cli = run_cli(
            "up",
            *("--http-port", str(base), "--https-port", str(base + 1)),
            *("--stats-port", str(base + 2), "--name", "errs"),
            env={"PODTALLY_STATE_DIR": str(root)},
        )
    assert cli.returncode == 2
    assert cli.stderr.startswith("error: ") and cli.stderr.count("\n") == 1, cli.stderr
    assert "already in use" in cli.stderr
    # The library names the setting; the command line names the option that sets it.
    assert f"--{what.lower()}-port {base + offset}: " in cli.stderr, cli.stderr
    nothing_left(root, base)


def test_replica_address_in_use_is_caught_before_starting(root: Path) -> None:
    base = free_base()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.12", base))
        squatter.listen(1)
        with pytest.raises(UsageError, match=rf"replica port 127.0.0.12:{base} is already in use"):
            up(config(root, base))
    nothing_left(root, base)


def test_missing_haproxy_is_a_one_line_error(root: Path) -> None:
    env = {"PODTALLY_STATE_DIR": str(root), "PODTALLY_HAPROXY": str(root / "no-such-haproxy")}
    base = free_base()
    ports = ("--http-port", str(base), "--https-port", str(base + 1), "--stats-port", str(base + 2))
    cli = run_cli("up", *ports, env=env)
    assert cli.returncode == 3
    assert cli.stderr.count("\n") == 1, cli.stderr
    assert cli.stderr.startswith("error: haproxy not found")
    assert "install it with 'sudo apt-get install haproxy'" in cli.stderr
    assert stack_processes(root) == []
    assert list(root.iterdir()) == []
    os.environ["PODTALLY_HAPROXY"] = str(root / "no-such-haproxy")
    try:
        with pytest.raises(MissingDependencyError):
            up(config(root, base))
    finally:
        del os.environ["PODTALLY_HAPROXY"]
    nothing_left(root, base)


def test_replica_never_ready_fails_after_the_bound_and_stops_everything(root: Path) -> None:
    base = free_base()
    # No Python program listens within 50 ms of being started: the bound always trips.
    with pytest.raises(PodtallyError, match=r"not ready after 0\.05 s"):
        up(config(root, base, ready_timeout=0.05))
    nothing_left(root, base)
    assert all(bind_error("127.0.0.1", p) is None for p in (base, base + 1, base + 2))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--replicas", "0"], "replicas must be between 1 and 64"),
        (["--name", "Bad_Name"], "is not a DNS-1123 label"),
        (["--http-port", "8080", "--https-port", "8080"], "ports must differ"),
        (["--host", "not a host"], "not a valid DNS hostname"),
    ],
)
def test_bad_input_is_exit_2_with_one_line(root: Path, args: list[str], message: str) -> None:
    cli = run_cli("up", *args, env={"PODTALLY_STATE_DIR": str(root)})
    assert cli.returncode == 2
    assert cli.stderr.startswith("error: ") and cli.stderr.count("\n") == 1, cli.stderr
    assert message in cli.stderr
    assert list(root.iterdir()) == []


def test_commands_on_a_stack_that_is_not_up_exit_3(root: Path) -> None:
    env = {"PODTALLY_STATE_DIR": str(root)}
    for command in (["status"], ["status", "--json"], ["restart"], ["scale", "2"]):
        cli = run_cli(*command, env=env)
        assert cli.returncode == 3, (command, cli.stderr)
        assert cli.stderr.startswith("error: stack 'podtally' is not up"), cli.stderr
        assert cli.stdout == ""


def _spawn_up(root: Path, base: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "podtally", "up", "--name", "errs", "--drain-seconds", "0.5"),
            *("--http-port", str(base), "--https-port", str(base + 1)),
            *("--stats-port", str(base + 2), *extra),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env({"PODTALLY_STATE_DIR": str(root)}),
    )


def _recorded_replica_pids(run_dir: Path, at_least: int, timeout: float = 30) -> list[int]:
    """Poll the stack's state file until it records ``at_least`` replicas; their pids."""
    pids: list[int] = []

    def recorded() -> bool:
        state = st.load(run_dir) if run_dir.is_dir() else None
        pids[:] = [] if state is None else [r.pid for r in state.replicas]
        return len(pids) >= at_least

    wait_until(recorded, f"{run_dir} recording {at_least} replicas", seconds=timeout, pause=0.01)
    return pids


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_foreground_stops_everything_on_ctrl_c_or_sigterm(root: Path, sig: signal.Signals) -> None:
    base = free_base()
    process = _spawn_up(root, base, "--foreground")
    try:
        # The signal must come once the command runs in the foreground, not while it prints.
        read_until(process.stderr, "running in the foreground")
        running = status("errs", run_dir=root / "errs")
        assert running.ready
        process.send_signal(sig)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "is down" in err
    assert_all_gone(stack_pids(running))
    nothing_left(root, base)


def test_ctrl_c_while_up_waits_leaves_nothing(root: Path) -> None:
    # Six replicas take well over a second to start on two cores: time enough to interrupt.
    base = free_base()
    process = _spawn_up(root, base, "--replicas", "6")
    try:
        read_until(process.stderr, "starting 6 replica")
        # Interrupt once replicas run and are recorded (not before the first one is spawned).
        spawned = _recorded_replica_pids(root / "errs", at_least=2)
        assert all(proc.pid_alive(pid) for pid in spawned)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "stopping what was started" in err
    assert_all_gone(spawned)
    nothing_left(root, base)
    assert all(bind_error(f"127.0.0.{10 + k}", base) is None for k in range(1, 7))


def test_a_run_directory_with_foreign_files_is_never_deleted(root: Path) -> None:
    precious = root / "errs" / "notes.txt"
    precious.parent.mkdir()
    precious.write_text("not podtally's")
    with pytest.raises(UsageError, match="holds files podtally did not create"):
        up(config(root, free_base()))
    assert down("errs", run_dir=root / "errs") is False
    assert precious.read_text() == "not podtally's"
    assert stack_processes(root) == []


def test_run_directory_with_a_space_works_and_a_dollar_is_refused(root: Path) -> None:
    spaced = root / "my stacks" / "errs"
    stack = up(config(root, free_base(), run_dir=spaced, replicas=1))
    try:
        assert stack.ready and get(stack.url, stack.ca_path)[0] == 200
    finally:
        assert down("errs", run_dir=spaced)
    assert not spaced.exists()
    with pytest.raises(UsageError, match=r"contains '\$'"):
        up(config(root, free_base(), run_dir=root / "$HOME" / "errs"))
    assert not (root / "$HOME").exists()


@pytest.mark.parametrize(
    "layout",
    ["state-dir-is-a-file", "parent-is-a-file", "run-dir-is-a-file", "lock-is-a-directory"],
)
def test_an_unusable_state_directory_is_one_line_exit_2(root: Path, layout: str) -> None:
    blocker = root / "blocker"
    if layout == "state-dir-is-a-file":
        blocker.write_text("mine")
        state_dir = blocker
    elif layout == "parent-is-a-file":
        blocker.write_text("mine")
        state_dir = blocker / "deeper"
    elif layout == "run-dir-is-a-file":
        blocker.mkdir()
        (blocker / "errs").write_text("mine")
        state_dir = blocker
    else:
        (blocker / ".errs.lock").mkdir(parents=True)
        state_dir = blocker
    env = {"PODTALLY_STATE_DIR": str(state_dir)}
    base = free_base()
    ports = ("--http-port", str(base), "--https-port", str(base + 1), "--stats-port", str(base + 2))
    commands: list[tuple[str, ...]] = [("up", "--name", "errs", *ports)]
    if layout != "lock-is-a-directory":  # only commands that change a stack take the lock
        commands += [("status", "--name", "errs"), ("restart", "--name", "errs")]
        commands += [("scale", "2", "--name", "errs"), ("down", "--name", "errs")]
    for command in commands:
        cli = run_cli(*command, env=env)
        assert cli.returncode == 2, (command, cli.returncode, cli.stderr)
        assert cli.stderr.startswith("error: cannot ") and cli.stderr.count("\n") == 1, cli.stderr
        assert "PODTALLY_STATE_DIR" in cli.stderr and "Traceback" not in cli.stderr
    # The same from Python: a UsageError, the user's file untouched, nothing started.
    with pytest.raises(UsageError, match="cannot "):
        up(config(root, base, run_dir=state_dir / "errs"))
    if blocker.is_file():
        assert blocker.read_text() == "mine"
    assert stack_processes(root) == []
    assert bind_error("127.0.0.1", base) is None


def test_a_state_directory_the_system_refuses_is_one_line_exit_2(root: Path) -> None:
    # /sys refuses new directories, even to root (EPERM, EACCES or EROFS depending on the host).
    base = free_base()
    cli = run_cli(
        "up",
        *("--http-port", str(base), "--https-port", str(base + 1)),
        *("--stats-port", str(base + 2)),
        env={"PODTALLY_STATE_DIR": "/sys/podtally-test"},
    )
    assert cli.returncode == 2, cli.stderr
    assert cli.stderr.startswith("error: cannot create /sys/podtally-test: "), cli.stderr
    assert cli.stderr.count("\n") == 1
    assert not Path("/sys/podtally-test").exists()


@pytest.mark.parametrize("option", ["--ready-timeout", "--drain-seconds"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "1e9"])
def test_timeouts_must_be_finite_and_bounded(root: Path, option: str, value: str) -> None:
    base = free_base()
    ports = ("--http-port", str(base), "--https-port", str(base + 1), "--stats-port", str(base + 2))
    cli = run_cli("up", f"{option}={value}", *ports, env={"PODTALLY_STATE_DIR": str(root)})
    assert cli.returncode == 2, cli.stderr
    assert cli.stderr.startswith("error: ") and cli.stderr.count("\n") == 1, cli.stderr
    assert ("ready timeout must be" if "ready" in option else "drain seconds must be") in cli.stderr
    assert list(root.iterdir()) == []
    field = "ready_timeout" if "ready" in option else "drain_seconds"
    with pytest.raises(UsageError):
        StackConfig(**{field: float(value)})  # type: ignore[arg-type]
