"""Prometheus metrics of one replica, in a registry of its own (no global state).

The hot path only bumps plain integers: every request is handled on the event loop's one thread,
so no lock is needed, and a scrape turns the integers into metric families through a collector.
prometheus-client does the exposition format.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from podtally.identity import Identity
from podtally.service.lifecycle import Lifecycle

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics(Collector):
    def __init__(self, identity: Identity, lifecycle: Lifecycle, version: str) -> None:
        self.lifecycle = lifecycle
        self.build: dict[str, str] = {
            "podtally_version": version,
            **{k: f.value for k, f in identity.fields().items()},
        }
        self.counts: dict[tuple[str, int], int] = {}
        self.in_flight = 0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def count(self, route: str, status: int) -> None:
        key = (route, status)
        self.counts[key] = self.counts.get(key, 0) + 1

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | InfoMetricFamily]:
        requests = CounterMetricFamily(
            "podtally_requests",
            "HTTP requests answered, by route and status code.",
            labels=("route", "status"),
        )
        for (route, status), value in sorted(self.counts.items()):
            requests.add_metric((route, str(status)), value)
        yield requests
        yield GaugeMetricFamily(
            "podtally_requests_in_flight",
            "Requests inside the handler right now (it answers without waiting, so a scrape "
            "mostly sees itself).",
            self.in_flight,
        )
        yield GaugeMetricFamily(
            "podtally_ready", "1 when /readyz answers 200.", 1 if self.lifecycle.ready else 0
        )
        yield GaugeMetricFamily(
            "podtally_draining",
            "1 while the replica drains before it stops.",
            1 if self.lifecycle.draining else 0,
        )
        yield InfoMetricFamily("podtally_build", "This replica's version and identity.", self.build)

    def render(self) -> bytes:
        return generate_latest(self.registry)
