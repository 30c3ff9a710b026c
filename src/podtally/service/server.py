"""Run one replica: resolve the identity, listen, serve, and drain gracefully on a signal.

The shutdown sequence, in order (as Kubernetes and any load balancer need it):

1. SIGTERM or SIGINT: ``/readyz`` answers 503 at once, so health checks take us out of rotation;
2. everything else keeps answering for ``drain_seconds``, while endpoints and targets update;
3. the listener closes and in-flight requests get up to ``shutdown_timeout`` to finish (what is
   still open then is closed);
4. exit 0. A second signal at any point exits at once. A signal that comes before the replica
   was ever ready skips the drain: no load balancer can be sending it traffic yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from podtally import __version__, identity
from podtally.errors import PodtallyError, UsageError
from podtally.net import bind_error, claim
from podtally.service.config import DEFAULT_KEEP_ALIVE_TIMEOUT, ServeConfig
from podtally.service.lifecycle import Lifecycle, Phase
from podtally.service.metrics import Metrics
from podtally.service.routes import MAX_HEAD_BYTES, App

if TYPE_CHECKING:
    from podtally.service.grpc_server import GrpcService


def log_event(event: str, fields: Mapping[str, object] | None = None) -> None:
    """One JSON line per lifecycle event on stderr."""
    line: dict[str, object] = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": event,
    }
    line.update(fields or {})
    # A log reader that went away must not stop the replica (or its signal handling).
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(json.dumps(line) + "\n")
        sys.stderr.flush()


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _claim_port(host: str, port: int) -> socket.socket:
    """Fail early and clearly: the HTTP library reuses ports, so a clash could go unnoticed.

    Returns the claim, to be held for the life of the replica (see :func:`podtally.net.claim`).
    """
    held = claim(host, port)
    if held is None:
        raise UsageError(f"port {port} on {host} is already in use (by another podtally serve)")
    reason = bind_error(host, port)
    if reason:
        held.close()
        where = f"address {host}" if "not an address" in reason else f"port {port} on {host}"
        raise UsageError(f"{where} {reason}")
    return held


async def _wait_listening(host: str, port: int, timeout: float) -> bool:
    """Ready means the listener accepts: prove it with a real connection."""
    target = "127.0.0.1" if host == "0.0.0.0" else "::1" if host == "::" else host
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(target, port), 0.5)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.01)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


# Connection capacity (issue 15). The kernel queues this many finished handshakes per listener
# (Linux caps it at net.core.somaxconn, 4096 by default).
LISTEN_BACKLOG = 4096
# File descriptors kept back from connections: the process's own files, the gRPC port, logs.
FD_RESERVE = 256


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; return the soft limit.

    Every connection is a file descriptor: with the usual soft limit of 1,024 a replica could not
    hold more connections than that, however cheap each is.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # keep what we have: the capacity is then smaller, never wrong
    return int(soft)


def connection_capacity(fd_limit: int) -> int:
    """How many connections granian may hold at once (its "backpressure"), from the fd limit.

    granian's default is backlog / workers (1,024 here): a thousand idle sockets then took every
    slot and the replica answered no one. An idle connection costs a few KB, so the bound is the
    file descriptors the process may open, less a reserve.
    """
    return max(1024, fd_limit - FD_RESERVE)


def embedded_server(
    app: Any,
    host: str,
    port: int,
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
    capacity: int = 1024,
) -> Any:
    """granian's embedded server, as every replica runs it (and the benchmark's control too)."""
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings, HTTP2Settings
    from granian.server.embed import Server

    logging.getLogger("_granian").setLevel(logging.ERROR)
    return Server(
        app,
        address=host,
        port=port,
        interface=Interfaces.RSGI,
        log_enabled=False,
        websockets=False,
        # h2c hook (issue 12): HTTP/1.1 and, on the same port, HTTP/2 with prior knowledge
        # (granian's auto mode tells them apart by the client's first bytes).
        http=HTTPModes.auto,
        http1_settings=HTTP1Settings(
            # hyper's one timer for "no complete request head yet": it closes an idle keep-alive
            # connection and a connection still sending (or never sending) its headers alike.
            # It must outlast the balancer's idle timeout, so it is the keep-alive timeout.
            header_read_timeout=round(keep_alive_timeout * 1000),
            # With this read buffer, header blocks above about 64 KB and more than 100 header
            # fields get 431 (measured); request targets above 16 KB get 414 from the app.
            max_buffer_size=MAX_HEAD_BYTES,
        ),
        http2_settings=HTTP2Settings(max_concurrent_streams=200, max_headers_size=16 * 1024),
        backlog=LISTEN_BACKLOG,
        backpressure=capacity,
    )


async def _start_grpc(
    cfg: ServeConfig, who: identity.Identity, lifecycle: Lifecycle, metrics: Metrics
) -> GrpcService:
    """gRPC hook (issue 12): claim the port, start podtally.v1.Identity, Health, reflection."""
    from podtally.service.grpc_server import GrpcMetrics, GrpcService

    held = _claim_port(cfg.host, cfg.grpc_port)  # released when the process ends
    grpc_metrics = GrpcMetrics()
    metrics.registry.register(grpc_metrics)
    service = GrpcService(who, lifecycle, grpc_metrics, host=cfg.host, port=cfg.grpc_port)
    service.claim = held
    await service.start()
    log_event("grpc", {"listen": _where(cfg.host, cfg.grpc_port)})
    return service


async def _guard_silent(port: int, silent_timeout: float) -> None:
    """Close connections that never send a byte (podtally.service.guard), for ever."""
    from podtally.service.guard import cut_silent_connections

    interval = min(max(silent_timeout / 5, 0.2), 2.0)
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(cut_silent_connections, port, silent_timeout)


class Replica:
    """One running replica; :meth:`run` returns the process exit code."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.lifecycle = Lifecycle()
        self._signals = 0
        self._stop = asyncio.Event()
        self._claim: socket.socket | None = None

    def _on_signal(self, signum: int) -> None:
        # Act first, log second: logging can fail (a closed pipe), acting must not.
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals > 1:
            try:
                log_event("stopped", {"reason": f"second {name}", "code": 128 + signum})
            finally:
                os._exit(128 + signum)
        was_ready = self.lifecycle.ready
        self.lifecycle.phase = Phase.DRAINING
        self._stop.set()
        if was_ready:
            log_event("draining", {"signal": name, "drain_seconds": self.config.drain_seconds})

    async def run(self) -> int:
        cfg = self.config
        self._claim = _claim_port(cfg.host, cfg.port)
        if cfg.grpc_port and (taken := bind_error(cfg.host, cfg.grpc_port)):
            # gRPC hook (issue 12): a gRPC port that cannot be had fails before anything starts.
            raise UsageError(f"{taken} on {cfg.host}", setting="grpc_port", value=cfg.grpc_port)
        listen = _where(cfg.host, cfg.port)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

        who = await asyncio.to_thread(
            identity.resolve, cfg.host, log=log_event, budget=cfg.zone_lookup_budget
        )
        log_event(
            "start",
            {
                "podtally_version": __version__,
                "listen": listen,
                "pid": os.getpid(),
                **{f"{k}": f.value for k, f in who.fields().items()},
                "sources": {k: f.source for k, f in who.fields().items()},
            },
        )
        if self._stop.is_set():  # signalled before it was ever ready: nothing to drain
            log_event("stopped", {"reason": "signalled before ready", "code": 0})
            return 0
        metrics = Metrics(who, self.lifecycle, __version__)
        # --- gRPC hook (issue 12): podtally.service.grpc_server, on its own port --------------
        grpc_service = (
            await _start_grpc(cfg, who, self.lifecycle, metrics) if cfg.grpc_port else None
        )
        # --- end of gRPC hook --------------------------------------------------------------------
        app = App(who, self.lifecycle, metrics, __version__, access_log=cfg.access_log)
        server = embedded_server(
            app,
            cfg.host,
            cfg.port,
            keep_alive_timeout=cfg.keep_alive_timeout,
            capacity=connection_capacity(raise_fd_limit()),
        )
        serving = asyncio.create_task(server.serve())
        guard = asyncio.create_task(_guard_silent(cfg.port, cfg.silent_timeout))
        if not await _wait_listening(cfg.host, cfg.port, timeout=10):
            serving.cancel()
            if grpc_service is not None:
                await grpc_service.stop(0)
            raise PodtallyError(f"the server did not start listening on {listen}")
        drain = cfg.drain_seconds
        if self._stop.is_set():
            drain = 0.0  # never ready, so no load balancer sends it traffic: stop at once
        else:
            self.lifecycle.phase = Phase.READY
            log_event("ready", {"listen": listen})

        stop = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait({serving, stop}, return_when=asyncio.FIRST_COMPLETED)
        if serving in done:  # the server died on its own
            stop.cancel()
            guard.cancel()
            exc = serving.exception()
            if grpc_service is not None:
                await grpc_service.stop(0)
            log_event("stopped", {"reason": f"server exited: {exc!r}", "code": 3})
            return 3

        # Draining: /readyz already says 503; keep serving everything else a while.
        await asyncio.sleep(drain)
        # Stop accepting; granian finishes in-flight requests. Bound the wait.
        server.stop()
        if grpc_service is not None:  # gRPC hook (issue 12): GOAWAY, Watch streams end with OK
            await grpc_service.stop(cfg.shutdown_timeout)
        try:
            await asyncio.wait_for(serving, timeout=cfg.shutdown_timeout)
        except TimeoutError:
            # Every request the app sees is answered at once, so what is still open here is a
            # client that never finished sending its request, or is not reading its answer.
            # Cutting it off is the bound doing its job, not a failure of the replica.
            reason = "drained; connections still open after the shutdown bound were closed"
        else:
            reason = "drained"
        guard.cancel()
        self.lifecycle.phase = Phase.STOPPED
        log_event("stopped", {"reason": reason, "code": 0})
        return 0


def serve(config: ServeConfig) -> int:
    """Run a replica in this process until it is signalled; returns the exit code."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(Replica(config).run())
    return uvloop.run(Replica(config).run())
