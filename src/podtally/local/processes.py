"""The stack's processes: start them, tell whether a recorded pid is still ours, signal and stop
them, and find them by their working directory. Process facts come from psutil.

A pid alone is not an identity: after a crash the pid of a replica may belong to an unrelated
process. A pid is taken as the stack's only if the process also started when the recorded one
did (the kernel's create time, recorded at spawn) and its command line says what it is.
Every process the stack starts leads its own session (and process group), so that a group
signal takes any worker processes with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from podtally.errors import MissingDependencyError, PodtallyError

try:
    import psutil
except ModuleNotFoundError as missing:  # the core install has no psutil: say what to install
    raise MissingDependencyError(
        "the local stack needs psutil: pip install 'podtally[local]'"
    ) from missing

# Two create times of one process agree exactly; an unrelated process that reused the pid
# started at least a clock tick later. The slack only covers rounding in older state files.
_CREATE_TIME_SLACK = 0.5

# Processes this interpreter started: polled through Popen so that they are reaped, never zombies.
_children: dict[int, subprocess.Popen[bytes]] = {}


def spawn(
    command: Sequence[str], *, log_path: Path, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session, output appended to ``log_path``, stdin closed."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    _children[process.pid] = process
    return process


def create_time(pid: int) -> float:
    """When ``pid`` started (seconds since the epoch, as psutil reports it), 0.0 if unknown."""
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, ValueError):
        return 0.0


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    if pid <= 0:
        return False
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists, owned by someone else


def cmdline(pid: int) -> str | None:
    """The command line of ``pid`` joined by spaces, or None if it cannot be read."""
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return None


def pid_is(pid: int, *needles: str, created: float = 0.0) -> bool:
    """True if ``pid`` is alive, started at ``created`` (when recorded, non-zero), and its command
    line has every needle.

    Guards against signalling an unrelated process that reused the pid of a crashed stack. A
    process whose command line cannot be read is not trusted unless its create time matches.
    """
    if not pid_alive(pid):
        return False
    if pid in _children:
        return True  # started by this process and not reaped yet: the pid cannot be reused
    started = create_time(pid)
    if created and abs(started - created) > _CREATE_TIME_SLACK:
        return False
    line = cmdline(pid)
    # Just after a spawn the command line reads empty until the kernel finishes the exec.
    deadline = time.monotonic() + 1.0
    while line == "" and time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.005)
        line = cmdline(pid)
    if line is None:
        return bool(created) and started > 0
    return all(needle in line for needle in needles)


def group_alive(pgid: int) -> bool:
    """True while any live (non-zombie) process is in process group ``pgid``."""
    if pgid <= 0:
        return False
    if pid_alive(pgid):
        return True
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and pid_alive(pid):
                return True
        except OSError:
            continue  # gone meanwhile
    return False


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def signal_pid(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until every process group in ``pids`` is gone; return those still alive."""
    deadline = time.monotonic() + timeout
    remaining = [pid for pid in pids if group_alive(pid)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.05)
        remaining = [pid for pid in remaining if group_alive(pid)]
    return remaining


def stop_groups(pids: list[int], first: signal.Signals, grace: float) -> bool:
    """Send ``first`` to each leader, SIGKILL each whole group after ``grace`` seconds.

    Returns True if anything was running.
    """
    alive = [pid for pid in pids if group_alive(pid)]
    for pid in alive:
        signal_pid(pid, first)
    stubborn = wait_gone(alive, grace)
    for pid in stubborn:
        signal_group(pid, signal.SIGKILL)
    left = wait_gone(stubborn, 5.0)
    if left:
        raise PodtallyError(f"process(es) {', '.join(map(str, left))} survived SIGKILL")
    for pid in alive:
        pid_alive(pid)  # reap our own children
    return bool(alive)


def kill_groups(pids: list[int]) -> None:
    """SIGKILL each process group in ``pids`` and wait (bounded) until they are gone."""
    for pid in pids:
        signal_group(pid, signal.SIGKILL)
    left = wait_gone(pids, 5.0)
    if left:
        raise PodtallyError(f"process(es) {', '.join(map(str, left))} survived SIGKILL")


def processes_in(run_dir: Path) -> list[tuple[int, str]]:
    """Live processes working in ``run_dir`` (where the stack starts HAProxy and every replica),
    with their command lines.

    What runs from a run directory can be found this way even when ``state.json`` is lost.
    """
    wanted = os.path.realpath(run_dir)
    found: list[tuple[int, str]] = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            cwd = process.cwd().removesuffix(" (deleted)")
            line = " ".join(process.cmdline())
        except psutil.Error:
            continue  # gone meanwhile, or not ours to look at
        if cwd == wanted and line and pid_alive(process.pid):
            found.append((process.pid, line))
    return found
