"""Run one replica: resolve the identity, listen, serve, and drain gracefully on a signal.

The shutdown sequence, in order (as Kubernetes and any load balancer need it):

1. SIGTERM or SIGINT: ``/readyz`` answers 503 at once, so health checks take us out of rotation;
2. everything else keeps answering for ``drain_seconds``, while endpoints and targets update;
3. the listener closes and in-flight requests get up to ``shutdown_timeout`` to finish;
4. exit 0. A second signal at any point exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from podtally import __version__, identity
from podtally.errors import PodtallyError, UsageError
from podtally.net import bind_error
from podtally.service.config import ServeConfig
from podtally.service.lifecycle import Lifecycle, Phase
from podtally.service.metrics import Metrics
from podtally.service.routes import App


def log_event(event: str, fields: Mapping[str, object] | None = None) -> None:
    """One JSON line per lifecycle event on stderr."""
    line: dict[str, object] = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": event,
    }
    line.update(fields or {})
    sys.stderr.write(json.dumps(line) + "\n")
    sys.stderr.flush()


def _check_port_free(host: str, port: int) -> None:
    """Fail early and clearly: the HTTP library reuses ports, so a clash could go unnoticed."""
    reason = bind_error(host, port)
    if reason:
        where = f"address {host}" if "not an address" in reason else f"port {port} on {host}"
        raise UsageError(f"{where} {reason}")


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


def embedded_server(app: Any, host: str, port: int) -> Any:
    """granian's embedded server, as every replica runs it (and the benchmark's control too)."""
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.server.embed import Server

    logging.getLogger("_granian").setLevel(logging.ERROR)
    return Server(
        app,
        address=host,
        port=port,
        interface=Interfaces.RSGI,
        log_enabled=False,
        websockets=False,
        http=HTTPModes.http1,
        # Requests are tiny: with this read buffer, header blocks above about 64 KB and more
        # than 100 header fields get 431 (measured); a client gets 10 s to send its headers.
        http1_settings=HTTP1Settings(header_read_timeout=10_000, max_buffer_size=16 * 1024),
        backlog=1024,
    )


class Replica:
    """One running replica; :meth:`run` returns the process exit code."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.lifecycle = Lifecycle()
        self._signals = 0
        self._stop = asyncio.Event()

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals > 1:
            log_event(
                "stopped", {"reason": f"second {signal.Signals(signum).name}", "code": 128 + signum}
            )
            os._exit(128 + signum)
        self.lifecycle.phase = Phase.DRAINING
        log_event(
            "draining",
            {"signal": signal.Signals(signum).name, "drain_seconds": self.config.drain_seconds},
        )
        self._stop.set()

    async def run(self) -> int:
        cfg = self.config
        _check_port_free(cfg.host, cfg.port)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

        who = await asyncio.to_thread(
            identity.resolve, cfg.host, log=log_event, budget=cfg.zone_lookup_budget
        )
        log_event(
            "start",
            {
                "version": __version__,
                "listen": f"{cfg.host}:{cfg.port}",
                "pid": os.getpid(),
                **{f"{k}": f.value for k, f in who.fields().items()},
                "sources": {k: f.source for k, f in who.fields().items()},
            },
        )
        metrics = Metrics(who, self.lifecycle, __version__)
        app = App(who, self.lifecycle, metrics, __version__, access_log=cfg.access_log)
        server = embedded_server(app, cfg.host, cfg.port)
        serving = asyncio.create_task(server.serve())
        if not await _wait_listening(cfg.host, cfg.port, timeout=10):
            serving.cancel()
            raise PodtallyError(f"the server did not start listening on {cfg.host}:{cfg.port}")
        if not self._stop.is_set():
            self.lifecycle.phase = Phase.READY
            log_event("ready", {"listen": f"{cfg.host}:{cfg.port}"})

        stop = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait({serving, stop}, return_when=asyncio.FIRST_COMPLETED)
        if serving in done:  # the server died on its own
            stop.cancel()
            exc = serving.exception()
            log_event("stopped", {"reason": f"server exited: {exc!r}", "code": 3})
            return 3

        # Draining: /readyz already says 503; keep serving everything else a while.
        await asyncio.sleep(cfg.drain_seconds)
        # Stop accepting; granian finishes in-flight requests. Bound the wait.
        server.stop()
        try:
            await asyncio.wait_for(serving, timeout=cfg.shutdown_timeout)
        except TimeoutError:
            self.lifecycle.phase = Phase.STOPPED
            log_event("stopped", {"reason": "in-flight requests outlived the bound", "code": 3})
            return 3
        self.lifecycle.phase = Phase.STOPPED
        log_event("stopped", {"reason": "drained", "code": 0})
        return 0


def serve(config: ServeConfig) -> int:
    """Run a replica in this process until it is signalled; returns the exit code."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(Replica(config).run())
    return uvloop.run(Replica(config).run())
