"""A replica holding thousands of idle and slow connections still answers everyone else
(issue 15, point 1). The full drill (10,000 connections, nginx beside it) is `make drills`."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from typing import Any

# Twice granian's old default of 1,024 connections per worker, which this many took whole.
IDLE = 2_500


def _raise_own_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _timed_get(host: str, port: int) -> float:
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=3) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    return time.monotonic() - start


def test_thousands_of_idle_and_slow_connections_leave_room_for_clients(serve: Any) -> None:
    _raise_own_fd_limit(IDLE + 500)
    replica = serve(host="127.0.0.25", args=("--silent-timeout", "30"))
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        for i in range(IDLE):
            assert time.monotonic() < deadline, "could not even connect in 30 s"
            sock = socket.create_connection((replica.host, replica.port), timeout=5)
            if i % 2:  # half say nothing; half start a request head and never finish it
                sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
            held.append(sock)
        time.sleep(0.5)  # let the server accept them all
        times = [_timed_get(replica.host, replica.port) for _ in range(20)]
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()
    assert max(times) < 1.0, f"slowest answer {max(times):.3f} s with {IDLE} idle connections"
    assert replica.proc.poll() is None


def test_the_replica_raises_its_open_file_limit_to_the_hard_limit() -> None:
    """Most systems start processes with a soft limit of 1,024 files: one per connection."""
    import subprocess
    import sys

    code = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))\n"
        "from podtally.service.server import connection_capacity, raise_fd_limit\n"
        "got = raise_fd_limit()\n"
        "assert got == resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard, (got, hard)\n"
        "assert connection_capacity(got) >= 1024\n"
        "print(got)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == resource.getrlimit(resource.RLIMIT_NOFILE)[1]
