"""Prometheus metrics of one replica, in a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from podtally.identity import Identity
from podtally.service.lifecycle import Lifecycle

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self, identity: Identity, lifecycle: Lifecycle, version: str) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series only add noise for a replica
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "podtally_requests",
            "HTTP requests answered, by route and status code.",
            ("route", "status"),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "podtally_requests_in_flight",
            "Requests being handled right now.",
            registry=self.registry,
        )
        ready = Gauge("podtally_ready", "1 when /readyz answers 200.", registry=self.registry)
        ready.set_function(lambda: 1.0 if lifecycle.ready else 0.0)
        draining = Gauge(
            "podtally_draining",
            "1 while the replica drains before it stops.",
            registry=self.registry,
        )
        draining.set_function(lambda: 1.0 if lifecycle.draining else 0.0)
        info = Info(
            "podtally_build", "This replica's version and identity.", registry=self.registry
        )
        info.info({"version": version, **{k: f.value for k, f in identity.fields().items()}})
        self._children: dict[tuple[str, int], Counter] = {}

    def count(self, route: str, status: int) -> None:
        child = self._children.get((route, status))
        if child is None:
            child = self._children[(route, status)] = self.requests.labels(route, str(status))
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
