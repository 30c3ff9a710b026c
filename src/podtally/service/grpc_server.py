"""The replica's gRPC side: ``podtally.v1.Identity``, ``grpc.health.v1.Health`` and reflection.

It runs on the same event loop as the HTTP server (``grpc.aio``) and reads the same frozen
:class:`~podtally.identity.Identity` and :class:`~podtally.service.lifecycle.Lifecycle`:

- ``Identity/Get`` answers one identity; ``Identity/Watch`` streams one per interval, so a client
  sees which replica a long-lived stream is pinned to. Both send the identity as initial metadata
  too (``x-pod-name`` ... ``x-pod-version``), the HTTP header names in lower case.
- Health follows readiness: SERVING only while ``/readyz`` would answer 200, NOT_SERVING from the
  moment the replica is signalled (the drain), for the whole server (``""``) and for
  ``podtally.v1.Identity``.
- Calls are counted by method and status code in the replica's metrics registry.

grpcio is imported lazily by :func:`start`, so the HTTP side never pays for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from podtally.errors import MissingDependencyError
from podtally.identity import Identity
from podtally.service.lifecycle import Lifecycle

if TYPE_CHECKING:
    import grpc

SERVICE_NAME = "podtally.v1.Identity"
HEALTH_SERVICE_NAME = "grpc.health.v1.Health"
DEFAULT_WATCH_INTERVAL = 1.0  # seconds, when a Watch asks for 0
MIN_WATCH_INTERVAL = 0.01  # seconds: a Watch cannot make the replica spin
HEALTH_POLL = 0.05  # seconds between readiness checks of a Health/Watch stream


class GrpcMetrics(Collector):
    """gRPC calls by method and status code; registered in the replica's own registry."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.streams = 0

    def count(self, method: str, code: str) -> None:
        key = (method, code)
        self.counts[key] = self.counts.get(key, 0) + 1

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        calls = CounterMetricFamily(
            "podtally_grpc_calls",
            "gRPC calls finished, by method and status code.",
            labels=("method", "code"),
        )
        for (method, code), value in sorted(self.counts.items()):
            calls.add_metric((method, code), value)
        yield calls
        yield GaugeMetricFamily(
            "podtally_grpc_streams_open", "Identity/Watch streams open right now.", self.streams
        )


def identity_metadata(who: Identity) -> tuple[tuple[str, str], ...]:
    """The identity as gRPC metadata: the HTTP identity headers' names, lower case."""
    return who.headers()


def _import_grpc() -> Any:
    try:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        from grpc_reflection.v1alpha import reflection
    except ImportError as exc:
        raise MissingDependencyError(
            f"gRPC needs grpcio, grpcio-health-checking and grpcio-reflection ({exc}): "
            "pip install 'podtally[grpc]', or turn gRPC off with grpc_port=0"
        ) from None
    return grpc, health_pb2, health_pb2_grpc, reflection


class GrpcService:
    """The gRPC server of one replica: :meth:`start`, then :meth:`stop` after the drain."""

    def __init__(
        self,
        who: Identity,
        lifecycle: Lifecycle,
        metrics: GrpcMetrics,
        *,
        host: str,
        port: int,
    ) -> None:
        self.who = who
        self.lifecycle = lifecycle
        self.metrics = metrics
        self.host = host
        self.port = port
        self.closing = asyncio.Event()
        self._server: grpc.aio.Server | None = None
        self.claim: object = None  # the port's claim (podtally.net.claim), held while running

    async def start(self) -> None:
        grpc, health_pb2, health_pb2_grpc, reflection = _import_grpc()
        from podtally.proto import identity_pb2, identity_pb2_grpc

        server = grpc.aio.server(
            options=[
                # The port is checked and claimed by the replica first; never share it silently.
                ("grpc.so_reuseport", 0),
                # Let idle clients keep their channels (the case a balancer must handle), but
                # answer their keepalive pings.
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
            ]
        )
        identity_pb2_grpc.add_IdentityServicer_to_server(  # type: ignore[no-untyped-call]
            _IdentityServicer(self, identity_pb2, grpc), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(
            _HealthServicer(self, health_pb2, grpc), server
        )
        reflection.enable_server_reflection(
            (
                identity_pb2.DESCRIPTOR.services_by_name["Identity"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            bound = 0
            reason = str(exc)
        else:
            reason = "could not bind it"
        if bound != self.port:
            await server.stop(None)
            from podtally.errors import UsageError

            raise UsageError(f"gRPC port {self.port} on {self.host}: {reason}")
        await server.start()
        self._server = server

    async def stop(self, grace: float) -> None:
        """End the Watch streams, then close: calls in flight get ``grace`` seconds."""
        self.closing.set()
        if self._server is not None:
            await self._server.stop(grace)

    # --- shared by the servicers ---------------------------------------------------------------
    @property
    def serving(self) -> bool:
        return self.lifecycle.ready


class _IdentityServicer:
    """``podtally.v1.Identity``; the generated base class is not typed, so this one is plain."""

    def __init__(self, service: GrpcService, pb2: Any, grpc: Any) -> None:
        self._service = service
        self._pb2 = pb2
        self._grpc = grpc
        who = service.who
        self._metadata = identity_metadata(who)
        self._reply = pb2.IdentityReply(
            pod=who.pod.value,
            node=who.node.value,
            namespace=who.namespace.value,
            ip=who.ip.value,
            zone=who.zone.value,
            version=who.version.value,
        )

    async def Get(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.send_initial_metadata(self._metadata)
        self._service.metrics.count("Get", "OK")
        return self._reply

    async def Watch(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        service = self._service
        metrics = service.metrics
        interval = request.interval_ms / 1000 if request.interval_ms else DEFAULT_WATCH_INTERVAL
        interval = max(interval, MIN_WATCH_INTERVAL)
        await context.send_initial_metadata(self._metadata)
        metrics.streams += 1
        code = "CANCELLED"
        try:
            sequence = 0
            while request.count == 0 or sequence < request.count:
                sequence += 1
                reply = self._pb2.IdentityReply()
                reply.CopyFrom(self._reply)
                reply.sequence = sequence
                yield reply
                if request.count and sequence >= request.count:
                    break
                # Wait for the interval, or for the replica to stop: then end the stream
                # cleanly (OK), so the client reconnects elsewhere instead of seeing an error.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(service.closing.wait(), interval)
                if service.closing.is_set():
                    break
            code = "OK"
        finally:
            metrics.streams -= 1
            metrics.count("Watch", code)


class _HealthServicer:
    """``grpc.health.v1.Health``, answered from the lifecycle at the moment of each call."""

    def __init__(self, service: GrpcService, pb2: Any, grpc: Any) -> None:
        self._service = service
        self._pb2 = pb2
        self._grpc = grpc
        self._known = {"", SERVICE_NAME}

    def _status(self) -> Any:
        response = self._pb2.HealthCheckResponse
        return response.SERVING if self._service.serving else response.NOT_SERVING

    async def Check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if request.service not in self._known:
            self._service.metrics.count("Health/Check", "NOT_FOUND")
            await context.abort(
                self._grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}"
            )
        self._service.metrics.count("Health/Check", "OK")
        return self._pb2.HealthCheckResponse(status=self._status())

    async def Watch(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        response = self._pb2.HealthCheckResponse
        if request.service not in self._known:
            # As the health protocol says: SERVICE_UNKNOWN, and the stream stays open.
            yield response(status=response.SERVICE_UNKNOWN)
            await self._service.closing.wait()
            return
        last = None
        while not self._service.closing.is_set():
            status = self._status()
            if status != last:
                last = status
                yield response(status=status)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._service.closing.wait(), HEALTH_POLL)
        if last != response.NOT_SERVING:
            yield response(status=response.NOT_SERVING)
