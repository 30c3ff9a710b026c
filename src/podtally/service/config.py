"""How to run one replica: kept apart from the server so tests and the CLI build it alike."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from podtally.contract import DEFAULT_PORT
from podtally.errors import UsageError
from podtally.net import check_ports

__all__ = [
    "DEFAULT_DRAIN_SECONDS",
    "DEFAULT_KEEP_ALIVE_TIMEOUT",
    "DEFAULT_PORT",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_SILENT_TIMEOUT",
    "ServeConfig",
]

DEFAULT_DRAIN_SECONDS = 5.0
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
# How long an idle keep-alive connection is kept. A load balancer in front must give up on an idle
# connection first (AWS: the target's keep-alive timeout above the ALB's idle timeout, 60 s by
# default), or a request it sends on a connection the replica is closing gets a 502. nginx's 75 s.
DEFAULT_KEEP_ALIVE_TIMEOUT = 75.0
DEFAULT_SILENT_TIMEOUT = 10.0
# --- gRPC (issue 12) ---------------------------------------------------------------------------
# podtally.contract.DEFAULT_GRPC_PORT is the CLI's default for --grpc-port. The library's own
# default stays 0 (off): replicas sharing one host (the local stack) cannot all take 9090.


@dataclass(frozen=True, slots=True)
class ServeConfig:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    # After the drain, how long in-flight requests get to finish before the process exits anyway.
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    access_log: bool = False
    # Zone lookups (Kubernetes API, IMDS) share this budget at start-up.
    zone_lookup_budget: float = 1.0
    # gRPC on its own port (podtally.service.grpc_server); 0 turns it off.
    grpc_port: int = 0
    # Idle keep-alive connections are closed after this many seconds. granian (hyper) has one timer
    # for "no complete request head yet", so this also bounds how long a connection may take to
    # send its headers, or may send nothing at all (tests/service/test_timeouts.py shows it).
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT
    # A new connection that sends no byte at all is closed after this many seconds (granian
    # itself would keep it for ever; podtally.service.guard).
    silent_timeout: float = DEFAULT_SILENT_TIMEOUT

    def __post_init__(self) -> None:
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            raise UsageError(
                f"host {self.host!r} is not an IP address (use 0.0.0.0, :: or an address of this "
                "machine)"
            ) from None
        object.__setattr__(self, "host", str(address))
        check_ports(self.port, self.grpc_port)
        if not 1 <= self.keep_alive_timeout <= 3600:
            raise UsageError(
                "must be between 1 and 3600 seconds",
                setting="keep_alive_timeout",
                value=self.keep_alive_timeout,
            )
        if not 0.5 <= self.silent_timeout <= 3600:
            raise UsageError(
                "must be between 0.5 and 3600 seconds",
                setting="silent_timeout",
                value=self.silent_timeout,
            )
        if not 0 <= self.drain_seconds <= 3600:
            raise UsageError(f"drain seconds must be between 0 and 3600, got {self.drain_seconds}")
        if not 0 < self.shutdown_timeout <= 3600:
            raise UsageError(
                f"shutdown timeout must be between 0 and 3600 seconds, got {self.shutdown_timeout}"
            )
