"""Small process helpers shared by the fixtures that run servers (HAProxy, nginx, replicas): find a
binary, run a server until it listens, stop it, and take it down with the test process."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.support import accepts, wait_until


def die_with_parent(signal_name: str = "KILL") -> list[str]:
    """A command prefix: the program gets SIGNAL when this test process dies, however it dies.

    Context managers stop everything on a normal exit, a failure or Ctrl-C; this also covers a
    killed pytest. ``setpriv --pdeathsig`` sets it and it survives ``exec`` (of nsenter, then of
    the program). Without setpriv (not Linux): no prefix.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", signal_name, "--"] if setpriv else []


def binary(name: str, package: str) -> str:
    """The executable ``name`` on PATH or in an sbin directory; skip the test without it."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    pytest.skip(f"{name} is not installed (Debian: apt-get install {package})")


def wait_listening(
    proc: subprocess.Popen[bytes], host: str, port: int, log: Path, seconds: float = 10.0
) -> None:
    """Return once ``host:port`` accepts a connection; fail with the log if the process died."""
    what = f"listening on {host}:{port}"
    wait_until(lambda: accepts(host, port), what, seconds=seconds, proc=proc, log=log, pause=0.02)


@contextlib.contextmanager
def listening(
    argv: Sequence[str],
    host: str,
    port: int,
    log: Path,
    *,
    output_to_log: bool = True,
    seconds: float = 10.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (its stderr, and its stdout unless ``output_to_log`` is off, to ``log``)
    until ``host:port`` accepts (within ``seconds``); stop it on exit."""
    with log.open("ab") as stderr:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stderr if output_to_log else subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_listening(proc, host, port, log, seconds)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], signum: int = signal.SIGTERM) -> None:
    """Ask politely, then kill: nothing is left running after a fixture."""
    if proc.poll() is None:
        proc.send_signal(signum)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
