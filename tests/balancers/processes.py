"""Small process helpers shared by the balancer fixtures: find a binary, wait for a port, stop."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


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
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}: {read(log)}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.02)
    raise AssertionError(f"not listening on {host}:{port} after {seconds:g} s: {read(log)}")


def stop(proc: subprocess.Popen[bytes], signum: int = signal.SIGTERM) -> None:
    """Ask politely, then kill: nothing is left running after a fixture."""
    if proc.poll() is None:
        proc.send_signal(signum)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except FileNotFoundError:
        return "(no log)"
