"""The local stack's drills (issue 15; bench/drills.py runs them): 3 replicas, HAProxy and the
supervisor under steady HTTPS load (3 threads, a new connection per request, 5 s client timeout)
while a fault is done to them: kill -9 of a replica, of HAProxy, of the supervisor; kill -STOP of
a replica for 10 s; a `restart` killed with SIGKILL; two restarts at once. For each: failed of
total, seconds until the stack is healthy again, converged or not.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.local.localstack_helpers import get  # noqa: E402
from tests.support import free_port  # noqa: E402

from podtally.local import Stack, StackConfig, down, status, supervisor, up  # noqa: E402
from podtally.local import processes as proc  # noqa: E402

Row = tuple[str, ...]


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Load:
    """Steady HTTPS load through HAProxy: 3 threads, new connection per request, 5 s timeout."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.ok = 0
        self.failed = 0
        self.first_ok_after: float | None = None
        self._since = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(3)]

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                good = get(self.stack.url, self.stack.ca_path, timeout=5.0)[0] == 200
            except OSError:
                good = False
            with self._lock:
                if good:
                    self.ok += 1
                else:
                    self.failed += 1
            time.sleep(0.005)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        time.sleep(1)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


def healthy(stack: Stack) -> bool:
    try:
        now = status(stack.config.name, run_dir=stack.run_dir)
    except Exception:  # noqa: BLE001 - not up is not healthy
        return False
    nodes = sorted(r.node for r in now.replicas)
    return (
        len(now.replicas) == stack.config.replicas
        and all(r.running and r.health == "UP" for r in now.replicas)
        and nodes == sorted(r.node for r in stack.replicas)
        and supervisor.report(stack.run_dir).healthy
    )


def serving(stack: Stack) -> bool:
    try:
        return get(stack.url, stack.ca_path, timeout=1)[0] == 200
    except OSError:
        return False


def until(check: Callable[[], bool], within: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < within:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def _restart_cli(stack: Stack) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "podtally", "restart", "--name", stack.config.name],
        env={**os.environ, "PODTALLY_STATE_DIR": str(stack.run_dir.parent)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def fault_kill_replica(stack: Stack) -> Callable[[], bool] | None:
    pid = status(stack.config.name, run_dir=stack.run_dir).replicas[1].pid
    os.kill(pid, signal.SIGKILL)
    proc.wait_gone([pid], 5)  # so that "healthy" is not the moment before it died
    return None


def fault_kill_haproxy(stack: Stack) -> Callable[[], bool] | None:
    pid = status(stack.config.name, run_dir=stack.run_dir).haproxy_pid
    os.kill(pid, signal.SIGKILL)
    proc.wait_gone([pid], 5)
    return lambda: serving(stack)


def fault_kill_supervisor(stack: Stack) -> Callable[[], bool] | None:
    pid = supervisor.report(stack.run_dir).pid
    os.kill(pid, signal.SIGKILL)
    proc.wait_gone([pid], 5)
    return None


def fault_stop_replica(stack: Stack) -> Callable[[], bool] | None:
    pid = status(stack.config.name, run_dir=stack.run_dir).replicas[0].pid
    os.kill(pid, signal.SIGSTOP)
    time.sleep(10)
    os.kill(pid, signal.SIGCONT)
    return None


def fault_restart_killed(stack: Stack) -> Callable[[], bool] | None:
    restarting = _restart_cli(stack)
    assert restarting.stderr is not None
    for _ in range(200):
        line = restarting.stderr.readline()
        if not line or "is UP; draining" in line:
            break
    restarting.kill()
    restarting.wait(10)
    return None


def fault_two_restarts(stack: Stack) -> Callable[[], bool] | None:
    both = [_restart_cli(stack), _restart_cli(stack)]
    for restarting in both:
        try:
            restarting.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            restarting.kill()
            restarting.communicate()
    return None


FAULTS: tuple[tuple[str, Callable[[Stack], Callable[[], bool] | None]], ...] = (
    ("kill -9 a replica", fault_kill_replica),
    ("kill -9 HAProxy", fault_kill_haproxy),
    ("kill -9 the supervisor", fault_kill_supervisor),
    ("kill -STOP a replica 10 s", fault_stop_replica),
    ("restart killed with SIGKILL", fault_restart_killed),
    ("two restarts at once", fault_two_restarts),
)


def stack_drills() -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="podtally-drills-stack-") as tmp:
        run_dir = Path(tmp) / "drill"
        base = free_port("127.0.0.1")
        stack = up(
            StackConfig(
                name="drill",
                replicas=3,
                http_port=base,
                https_port=free_port("127.0.0.1"),
                stats_port=free_port("127.0.0.1"),
                run_dir=run_dir,
                drain_seconds=1.0,
            )
        )
        try:
            until(lambda: healthy(stack), 20)
            for name, fault in FAULTS:
                say(f"stack: {name}")
                with Load(stack) as load:
                    started = time.monotonic()
                    back = fault(stack)
                    done = until(back or (lambda: healthy(stack)), 60)
                    took = None if done is None else time.monotonic() - started
                    time.sleep(1)
                converged = until(lambda: healthy(stack), 30) is not None
                total = load.ok + load.failed
                when = "-" if took is None else f"{took:.1f}"
                rows.append((name, f"{load.failed}/{total}", when, "yes" if converged else "NO"))
        finally:
            down("drill", run_dir=run_dir)
    return rows
