"""Small socket facts shared by the service and the local stack."""

from __future__ import annotations

import errno
import socket


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
