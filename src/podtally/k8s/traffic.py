"""The Service's ``trafficDistribution``: `podtally manifests --traffic-distribution`.

``PreferSameZone`` (GA in Kubernetes 1.35; ``PreferClose`` is its older name) makes kube-proxy
send a client's connections to endpoints in the client's own zone when that zone has any;
``PreferSameNode`` to the client's own node first. Either narrows what an in-cluster verifier
sees: from one zone it reaches only that zone's pods, so the spread it measures is that zone's,
and ``--expect-pods`` must count only those (docs/kubernetes.md). The ALB targets pod IPs, so the
outside check is unaffected.
"""

from __future__ import annotations

import copy

from podtally.errors import UsageError
from podtally.k8s.render import Obj

TRAFFIC_DISTRIBUTIONS = ("PreferSameZone", "PreferSameNode", "PreferClose")


def with_traffic_distribution(objs: list[Obj], value: str) -> list[Obj]:
    """A copy of ``objs`` whose Service asks for ``value``."""
    if value not in TRAFFIC_DISTRIBUTIONS:
        raise UsageError(
            f"must be one of {', '.join(TRAFFIC_DISTRIBUTIONS)}",
            setting="traffic_distribution",
            value=value,
        )
    out = copy.deepcopy(objs)
    services = [o for o in out if o["kind"] == "Service"]
    if len(services) != 1:
        raise UsageError(
            "needs exactly one Service among the objects", setting="traffic_distribution"
        )
    services[0]["spec"]["trafficDistribution"] = value
    return out
