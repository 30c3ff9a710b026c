"""Small socket facts shared by the service and the local stack."""

from __future__ import annotations

import errno
import secrets
import socket
from collections.abc import Collection
from pathlib import Path

from podtally.errors import PodtallyError, UsageError

# The kernel gives outgoing connections their source ports from this range (Linux).
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Fewer free ports than this above the ephemeral range, and free_port takes the kernel's pick.
ROOM_ABOVE = 1000


def check_ports(port: int, grpc_port: int) -> None:
    """A replica's HTTP port (1..65535) and gRPC port (0 = off), which must differ."""
    if not 1 <= port <= 65535:
        raise UsageError(f"port must be between 1 and 65535, got {port}")
    if not 0 <= grpc_port <= 65535:
        raise UsageError(
            f"must be between 0 (off) and 65535, got {grpc_port}",
            setting="grpc_port",
            value=grpc_port,
        )
    if grpc_port == port:
        raise UsageError(
            f"must differ from the HTTP port {port}", setting="grpc_port", value=grpc_port
        )


def bind_error(host: str, port: int) -> str | None:
    """Why a server could not listen on ``host:port``, or None if it could.

    Binds with SO_REUSEADDR, as the replicas and HAProxy do, so a port that only has connections
    in TIME_WAIT counts as free. The answer completes a sentence: ``f"{where} {reason}"``.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen(1)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "is already in use"
            if exc.errno == errno.EADDRNOTAVAIL:
                return "is not an address of this machine"
            if exc.errno == errno.EACCES:
                return "needs privileges to bind"
            return f"cannot be bound ({exc.strerror})"
    return None


def claim(host: str, port: int) -> socket.socket | None:
    """Hold ``host:port`` for this process, or return None if another podtally process holds it.

    granian binds with SO_REUSEPORT, so two replicas started at the same instant on the same
    address could both pass :func:`bind_error` and then share the port. A name in Linux's abstract
    socket namespace is taken atomically and given back by the kernel when the process ends, even
    on SIGKILL. Where there is no such namespace, the claim is skipped (a socket is still returned
    so that callers need not care).
    """
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        holder.bind(f"\0podtally-serve:{host}:{port}")
    except OSError as exc:
        holder.close()
        if exc.errno == errno.EADDRINUSE:
            return None
        return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    return holder


def ephemeral_range(path: Path | None = None) -> tuple[int, int] | None:
    """The kernel's ephemeral port range (first, last), or None where it cannot be read."""
    try:
        first, last = (int(word) for word in (path or EPHEMERAL_RANGE_FILE).read_text().split())
    except (OSError, ValueError):
        return None
    return first, last


def free_port(host: str, taken: Collection[int] = ()) -> int:
    """A port a server can listen on at ``host`` now, none of ``taken``.

    Chosen above the kernel's ephemeral range. A port from ``bind(host, 0)`` comes from the
    range the kernel also takes outgoing connections' source ports from, so between the check
    and the server's own bind any connection on the machine may take it (HAProxy then fails
    with "Address already in use"); no outgoing connection gets a port above the range. The
    pick is random so that two stacks starting at the same instant rarely pick the same port,
    and checked with :func:`bind_error`. Where the range leaves less than ``ROOM_ABOVE`` ports
    above it, or is unknown (not Linux), the kernel picks.
    """
    span = ephemeral_range()
    if span is not None and 65535 - span[1] >= ROOM_ABOVE:
        first = span[1] + 1
        for _ in range(200):
            port = first + secrets.randbelow(65536 - first)
            if port not in taken and bind_error(host, port) is None:
                return port
    for _ in range(50):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        if port not in taken:
            return port
    raise PodtallyError(f"no free port on {host}")
