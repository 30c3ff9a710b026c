"""Cut connections that send nothing: the one timeout granian does not have.

granian (2.8, ``HTTPModes.auto``) reads a new connection's first bytes to tell HTTP/1.1 from h2c
with no time limit: a client that connects and stays silent holds a connection slot and a file
descriptor for as long as it likes (measured: still open after 25 s with a 2 s header timeout).
hyper's header timer only starts once a byte has arrived.

The connections are file descriptors of this very process, so the replica can look after them
itself: every ``interval`` seconds it lists its own TCP sockets on the serving port and asks the
kernel (``TCP_INFO``) how many bytes each has received and how long ago it last received any. A
connection that has received nothing for ``silent_timeout`` seconds is shut down; granian then
reads end-of-file and frees it. Nothing else is touched: a connection that sent even one byte
is left to hyper's timer (the keep-alive timeout).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct

__all__ = ["cut_silent_connections"]

_TCP_INFO_SIZE = 232
_ESTABLISHED = 1
# Offsets into Linux's struct tcp_info (include/uapi/linux/tcp.h).
_LAST_DATA_RECV = 52  # __u32, milliseconds since data was last received (or since accept)
_BYTES_RECEIVED = 128  # __u64, since Linux 4.1


def _own_sockets() -> list[int]:
    """File descriptors of this process that are sockets."""
    fds: list[int] = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                    fds.append(int(name))
    return fds


def _silent_for(sock: socket.socket, port: int) -> float | None:
    """Seconds this connection to ``port`` has been silent since it was accepted, or None if it
    has received data, is a listener, or is not a TCP connection to ``port``."""
    try:
        if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        if sock.getsockname()[1] != port:
            return None
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return None
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    except OSError:
        return None
    if len(info) < _BYTES_RECEIVED + 8 or info[0] != _ESTABLISHED:
        return None
    (received,) = struct.unpack_from("=Q", info, _BYTES_RECEIVED)
    if received:
        return None
    (idle_ms,) = struct.unpack_from("=I", info, _LAST_DATA_RECV)
    return float(idle_ms) / 1000.0


def cut_silent_connections(port: int, silent_timeout: float) -> int:
    """Shut down every connection to ``port`` silent for ``silent_timeout`` s; return how many.

    Decisions are made on the socket itself (a duplicate of the descriptor), so a descriptor the
    server closes and reuses meanwhile is judged by what it is now, never by what it was.
    """
    cut = 0
    for fd in _own_sockets():
        try:
            dup = os.dup(fd)
        except OSError:
            continue
        try:
            sock = socket.socket(fileno=dup)
        except OSError:
            os.close(dup)
            continue
        with sock:
            silent = _silent_for(sock, port)
            if silent is not None and silent >= silent_timeout:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                    cut += 1
    return cut
