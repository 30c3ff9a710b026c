"""Waiting on the stack over HTTP: one GET's status code, a poll loop with a deadline and
progress notes, and the tail of a log to say why something never became ready.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from podtally.errors import PodtallyError

Progress = Callable[[str], None]
POLL = 0.05


def tail(path: str | Path, lines: int = 3) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def http_status(
    address: str,
    port: int,
    path: str,
    timeout: float = 1.0,
    context: ssl.SSLContext | None = None,
) -> int | None:
    """One GET on a new connection; the status code, or None if the connection failed."""
    conn: http.client.HTTPConnection
    if context is not None:
        conn = http.client.HTTPSConnection(address, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def accepts(address: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connection to ``address:port`` is accepted (a gRPC server listens)."""
    try:
        socket.create_connection((address, port), timeout=timeout).close()
    except OSError:
        return False
    return True


class Waiter:
    """Poll until a condition holds, with a deadline and a progress line every few seconds."""

    def __init__(self, what: str, timeout: float, progress: Progress) -> None:
        self.what = what
        self.timeout = timeout
        self.progress = progress
        self.start = time.monotonic()
        self.next_note = self.start + 3.0

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.start > self.timeout:
            raise PodtallyError(f"{self.what}: not done after {self.timeout:g} s")
        if now >= self.next_note:
            self.progress(f"  still waiting: {self.what} ({now - self.start:.0f} s)")
            self.next_note = now + 3.0
        time.sleep(POLL)
