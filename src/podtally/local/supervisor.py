"""The stack's supervisor: what a ReplicaSet and a kubelet do for pods, for the local stack.

One small process per stack, started by ``up`` and stopped by ``down``. Twice a second, when no
command holds the stack's lock, it compares what runs with the configuration and converges:

* HAProxy gone: start it again, from the same haproxy.cfg, on the same ports, with the same
  certificate (the CA in ``tls/`` never changes, so clients holding ``ca.pem`` keep working);
* for each track and each ordinal (which decides the node and the zone) exactly one live
  replica: a missing one is started and put in rotation once HAProxy sees it UP; extras (a
  ``restart`` or ``scale`` killed half-way, a replica whose process exited) are drained and
  stopped, so the placement over nodes and zones is the configured one again.

The supervisor is itself watched: it runs a watchdog child; if the watchdog dies the supervisor
starts another, and if the supervisor dies the watchdog starts a new supervisor and exits.
What it did goes to ``logs/supervisor.log``; its health and the restart counts to
``supervisor.json``, which ``status`` reads (:func:`report`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from podtally.errors import PodtallyError
from podtally.local import processes as proc
from podtally.local import rundir
from podtally.local import state as st
from podtally.local.controller import Controller

SUPERVISOR_FILE = "supervisor.json"
SWITCH_ENV = "PODTALLY_SUPERVISOR"  # "off": up starts no supervisor
INTERVAL = 0.5  # seconds between two looks at the stack
HEARTBEAT_STALE = 10.0  # a supervisor silent this long is reported unhealthy

__all__ = ["SupervisorReport", "converge", "ensure", "report", "start", "stop"]


# --- the record: supervisor.json ---------------------------------------------------------------


def _stack_state(run_dir: Path) -> st.StackState | None:
    """The stack's state; None if it is gone (``down``) or cannot be read right now."""
    try:
        return st.load(run_dir)
    except PodtallyError:
        return None


def _stack_gone(run_dir: Path) -> bool:
    return not (run_dir / rundir.STATE_FILE).exists()


def _path(run_dir: Path) -> Path:
    return run_dir / SUPERVISOR_FILE


def _read(run_dir: Path) -> dict[str, Any]:
    try:
        raw = json.loads(_path(run_dir).read_text())
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _write(run_dir: Path, record: dict[str, Any]) -> None:
    tmp = run_dir / "supervisor.tmp"
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, _path(run_dir))


def _log(run_dir: Path, event: str, **fields: object) -> None:
    line = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **fields}
    with contextlib.suppress(OSError), (run_dir / "logs" / "supervisor.log").open("a") as log:
        log.write(json.dumps(line) + "\n")


@dataclass(frozen=True)
class SupervisorReport:
    """The supervisor's health and what it restarted, for ``status``."""

    pid: int
    running: bool
    # Running, watched by its watchdog, and it looked at the stack within HEARTBEAT_STALE
    # seconds. (Between its start and its first look, about 0.5 s, nothing watches it yet.)
    healthy: bool
    started_at: float  # epoch seconds; 0.0 if never started
    restarts: int  # how often the supervisor itself was started again
    haproxy_restarts: int
    replica_restarts: dict[str, int] = field(default_factory=dict)  # by pod name
    replica_started: dict[str, float] = field(default_factory=dict)  # by pod name, epoch

    def age_of_supervisor(self, now: float | None = None) -> float | None:
        """Seconds since the supervisor started, or None if it never did."""
        return max(0.0, (now or time.time()) - self.started_at) if self.started_at else None

    def age(self, pod: str, now: float | None = None) -> float | None:
        """Seconds since the replica ``pod`` started, or None if unknown."""
        started = self.replica_started.get(pod)
        return None if started is None else max(0.0, (now or time.time()) - started)

    def to_dict(self, pods: Iterable[str]) -> dict[str, object]:
        """The report as ``status --json`` gives it: for each of ``pods``, its restarts and age."""
        return {
            "pid": self.pid,
            "running": self.running,
            "healthy": self.healthy,
            "restarts": self.restarts,
            "haproxy_restarts": self.haproxy_restarts,
            "replicas": {
                pod: {"restarts": self.replica_restarts.get(pod, 0), "age": self.age(pod)}
                for pod in pods
            },
        }


def report(run_dir: Path) -> SupervisorReport:
    record = _read(run_dir)
    pid = int(record.get("pid", 0))
    running = pid > 0 and proc.pid_alive(pid) and proc.create_time(pid) == record.get("ctime")
    heartbeat = float(record.get("heartbeat", 0.0))
    watchdog = int(record.get("watchdog", 0))
    watched = watchdog > 0 and proc.pid_alive(watchdog)
    started: dict[str, float] = {}
    state = _stack_state(run_dir)
    if state is not None:
        started = {r.pod: r.started_at for r in state.replicas}
    return SupervisorReport(
        pid=pid,
        running=running,
        healthy=running and watched and time.time() - heartbeat < HEARTBEAT_STALE,
        started_at=float(record.get("started_at", 0.0)),
        restarts=int(record.get("restarts", 0)),
        haproxy_restarts=int(record.get("haproxy_restarts", 0)),
        replica_restarts={str(k): int(v) for k, v in record.get("replicas", {}).items()},
        replica_started=started,
    )


# --- starting and stopping it (from up, down, and the watchdog) --------------------------------


def start(run_dir: Path) -> int:
    """Start the supervisor of the stack in ``run_dir`` (detached); return its pid."""
    command = [sys.executable, "-m", "podtally.local.supervisor", str(run_dir)]
    process = proc.spawn(command, log_path=run_dir / "logs" / "supervisor.out", cwd=run_dir)
    # Recorded before this returns, so that a ``down`` right after ``up`` finds it to stop.
    record = _read(run_dir)
    now = time.time()
    record.update(
        pid=process.pid,
        ctime=proc.create_time(process.pid),
        started_at=now,
        heartbeat=now,
        restarts=int(record.get("restarts", -1)) + 1,
        watchdog=0,
    )
    _write(run_dir, record)
    return process.pid


def ensure(run_dir: Path) -> bool:
    """Start the supervisor if it is not running; True if it had to be started."""
    if report(run_dir).running:
        return False
    start(run_dir)
    return True


def stop(run_dir: Path) -> None:
    """Stop the supervisor and its watchdog (``down``; the caller holds the stack's lock)."""
    now = report(run_dir)
    if now.running:
        proc.stop_groups([now.pid], signal.SIGTERM, grace=5.0)


# --- what it does --------------------------------------------------------------------------------


def converge(runner: Controller, counts: dict[str, Any]) -> list[str]:
    """One pass of healing under the stack's lock; returns what it did, in words."""
    done: list[str] = []
    if not runner.haproxy_alive():
        runner.start_haproxy()
        counts["haproxy_restarts"] = int(counts.get("haproxy_restarts", 0)) + 1
        done.append("started HAProxy again (same ports, same certificate)")
    restarts: dict[str, int] = counts.setdefault("replicas", {})
    for track in runner.config.tracks():
        records = runner.replicas_of(track.name)
        health = runner.health_by_pod()
        live = [r for r in records if runner.replica_alive(r)]
        leaving = [r for r in records if r not in live]
        keep: dict[int, st.ReplicaRecord] = {}
        # Per ordinal, keep the replica HAProxy sees UP, the newest first; the rest leave.
        for record in sorted(
            live, key=lambda r: (health.get(r.pod) != "UP", r.server == 0, -r.started_at)
        ):
            if record.ordinal < track.replicas and record.ordinal not in keep:
                keep[record.ordinal] = record
            else:
                leaving.append(record)
        missing = [k for k in range(track.replicas) if k not in keep]
        fresh: list[st.ReplicaRecord] = []
        for ordinal in missing:
            record = runner.start_replica(ordinal, runner.state.template_hash, track)
            fresh.append(record)
            previous = [r for r in records if r.ordinal == ordinal]
            restarts[record.pod] = 1 + max((restarts.get(r.pod, 0) for r in previous), default=-1)
        if fresh:
            try:
                runner.wait_ready(fresh)
                for record in fresh:
                    runner.attach(record)
                runner.wait_up(fresh)
            except BaseException:
                runner.retire([r for r in fresh if r in runner.state.replicas])
                raise
            done.append("started " + ", ".join(r.pod for r in fresh))
        if leaving:
            runner.retire(leaving)
            done.append("removed " + ", ".join(r.pod for r in leaving))
    if done:
        alive = {r.pod for r in runner.state.replicas}
        counts["replicas"] = {pod: n for pod, n in restarts.items() if pod in alive and n > 0}
        runner.write_haproxy_config()
    return done


class _Stop(Exception):
    pass


def _watchdog(run_dir: Path, supervisor: int) -> int:
    """Wait for the supervisor (this process's parent) to die; then start another and exit."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while os.getppid() == supervisor:
        time.sleep(INTERVAL / 2)
    if not _stack_gone(run_dir):
        _log(run_dir, "watchdog", action="the supervisor died: starting another")
        start(run_dir)
    return 0


def _spawn_watchdog(run_dir: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "podtally.local.supervisor",
        str(run_dir),
        "--watchdog",
        str(os.getpid()),
    ]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, cwd=run_dir)


def _supervise(run_dir: Path) -> int:
    def on_term(*_: object) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    record = _read(run_dir)  # start() recorded this process
    _log(run_dir, "start", pid=os.getpid(), restarts=record["restarts"])
    watchdog = _spawn_watchdog(run_dir)
    try:
        while True:
            if watchdog.poll() is not None:
                watchdog = _spawn_watchdog(run_dir)
            record["watchdog"] = watchdog.pid
            if _stack_gone(run_dir):
                _log(run_dir, "stop", reason="the stack is gone")
                return 0
            _one_pass(run_dir, record)
            time.sleep(INTERVAL)
    except _Stop:
        _log(run_dir, "stop", reason="SIGTERM")
        return 0
    finally:
        with contextlib.suppress(OSError):
            watchdog.terminate()
            watchdog.wait(5)


def _one_pass(run_dir: Path, record: dict[str, Any]) -> None:
    try:
        with rundir.locked(run_dir, timeout=0.05):
            state = _stack_state(run_dir)
            if state is None:
                return
            done = converge(Controller(state, lambda _: None), record)
            for action in done:
                _log(run_dir, "converge", action=action)
    except _Stop:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever it is, log it and look again later
        error = str(exc) if isinstance(exc, PodtallyError | OSError) else repr(exc)
        busy = isinstance(exc, PodtallyError) and "holds" in error  # another command's lock
        if not busy and error != record.get("last_error"):  # the same error once, not 2/s
            _log(run_dir, "error", error=error)
            record["last_error"] = error
    else:
        record.pop("last_error", None)
    record["heartbeat"] = time.time()
    _write(run_dir, record)


def main(argv: list[str]) -> int:
    run_dir = Path(argv[0])
    if len(argv) == 3 and argv[1] == "--watchdog":
        return _watchdog(run_dir, int(argv[2]))
    return _supervise(run_dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
