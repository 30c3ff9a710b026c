"""A plain counting client: which pod answered each request, and on which connection.

Standard library only, so it also runs as a script inside a private network namespace
(``python counting.py URL --connections N --requests-per-connection M``), where it prints
one JSON document. Bounded in count (connections x requests) and in time (``max_seconds``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

POD_HEADER = "X-Pod-Name"


@dataclass
class Tally:
    """What a run saw: pods per request, the pods each connection saw, and every failure."""

    pods: Counter[str] = field(default_factory=Counter)
    per_connection: list[list[str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.pods.values())

    def shares(self) -> dict[str, float]:
        total = self.requests
        return {pod: count / total for pod, count in self.pods.items()} if total else {}

    def connection_pods(self) -> Counter[str]:
        """One count per connection that saw a single pod (the connection as the unit)."""
        return Counter(seen[0] for seen in self.per_connection if len(set(seen)) == 1)

    def pods_per_connection(self) -> list[int]:
        return [len(set(seen)) for seen in self.per_connection]

    def to_json(self) -> dict[str, object]:
        return {
            "pods": dict(self.pods),
            "per_connection": self.per_connection,
            "failures": self.failures,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> Tally:
        pods = doc["pods"]
        per_connection = doc["per_connection"]
        failures = doc["failures"]
        seconds = doc["seconds"]
        assert isinstance(pods, dict)
        assert isinstance(per_connection, list)
        assert isinstance(failures, list)
        assert isinstance(seconds, float | int)
        return cls(Counter(pods), per_connection, failures, float(seconds))


def count(
    url: str,
    connections: int,
    requests_per_connection: int = 1,
    source: str | None = None,
    max_seconds: float = 30.0,
    timeout: float = 5.0,
) -> Tally:
    """Open ``connections`` connections one after another, ``requests_per_connection`` GETs each.

    One request per connection is ``curl`` in a loop (a new draw for a per-connection balancer);
    several are a kept-alive client. ``source`` binds the client to that address (ip_hash, source).
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path or "/"
    tally = Tally()
    started = time.monotonic()
    deadline = started + max_seconds
    for _ in range(connections):
        if time.monotonic() > deadline:
            tally.failures.append(f"stopped after {max_seconds:g} s")
            break
        conn = http.client.HTTPConnection(
            host, port, timeout=timeout, source_address=(source, 0) if source else None
        )
        seen: list[str] = []
        try:
            for index in range(requests_per_connection):
                last = index == requests_per_connection - 1
                conn.request("GET", path, headers={"Connection": "close"} if last else {})
                response = conn.getresponse()
                response.read()
                pod = response.getheader(POD_HEADER)
                if response.status != 200 or pod is None:
                    tally.failures.append(f"status {response.status}, {POD_HEADER}: {pod}")
                    continue
                tally.pods[pod] += 1
                seen.append(pod)
        except (OSError, http.client.HTTPException) as exc:
            tally.failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()
        if seen:
            tally.per_connection.append(seen)
    tally.seconds = time.monotonic() - started
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--requests-per-connection", type=int, default=1)
    parser.add_argument("--source")
    parser.add_argument("--max-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    tally = count(
        args.url, args.connections, args.requests_per_connection, args.source, args.max_seconds
    )
    json.dump(tally.to_json(), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
