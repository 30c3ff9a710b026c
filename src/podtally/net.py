"""Small socket facts shared by the service and the local stack."""

from __future__ import annotations

import errno
import socket

from podtally.errors import UsageError


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
