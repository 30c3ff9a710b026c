"""The sampling unit: requests, or connections when a connection-level balancer pins them."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

Unit = Literal["requests", "connections"]


@dataclass(frozen=True)
class UnitChoice:
    """Which sampling unit the decision counts, and why (for the report)."""

    unit: Unit
    pinned: bool
    connections: int
    reason: str


def choose_unit(
    pods_per_connection: Mapping[int, Collection[str]],
    requests_per_connection: Mapping[int, int],
) -> UnitChoice:
    """Requests, or connections when a connection-level balancer pins them.

    Pinned means: no connection saw more than one pod, and some connection carried more than one
    request. Then the requests on a connection are one draw, and the connection is the unit. If any
    connection saw two pods, the balancer chooses per request and requests are the unit.
    """
    connections = len(pods_per_connection)
    mixed = sum(1 for pods in pods_per_connection.values() if len(pods) > 1)
    reused = sum(1 for count in requests_per_connection.values() if count > 1)
    if mixed:
        return UnitChoice(
            "requests",
            False,
            connections,
            f"{mixed} of {connections} connections saw more than one pod: balanced per request",
        )
    if reused:
        return UnitChoice(
            "connections",
            True,
            connections,
            f"each of {connections} connections stayed on one pod while {reused} carried more "
            "than one request: balanced per connection",
        )
    return UnitChoice(
        "requests",
        False,
        connections,
        "one request per connection: requests and connections are the same draws",
    )
