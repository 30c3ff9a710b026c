"""What a balancer fixture hands a test: where to send requests, the backends, and the truth."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests.balancers import counting
from tests.support import REPO, clean_env, run_captured

# What one independent draw is: each request (an L7 proxy choosing per request), each new
# connection (kube-proxy's DNAT, kept by conntrack), or each client address (ip_hash, source).
Unit = Literal["request", "connection", "client"]

COUNTING_SCRIPT = Path(counting.__file__).resolve()


@dataclass(frozen=True)
class Backend:
    """One server line of the balancer: the pod behind it (and its identity), weight, state."""

    pod: str
    host: str
    port: int
    weight: int = 1
    down: bool = False
    node: str = ""
    zone: str = ""
    version: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Truth:
    """The distribution the balancer must produce, by construction of its configuration.

    ``shares``: the long-run share of draws per pod (0 for a pod the balancer must never pick);
    None where each client sticks to one pod but which one depends on a hash of its address.
    ``exact``: a deterministic schedule, so every full cycle gives each pod exactly its share.
    """

    unit: Unit
    shares: Mapping[str, float] | None
    exact: bool = False
    one_pod_per_client: bool = False
    one_pod_per_connection: bool = False
    summary: str = ""

    @classmethod
    def per_client(cls, summary: str) -> Truth:
        """A hash of the client address picks the pod: one client, one pod, no shares."""
        return cls(unit="client", shares=None, one_pod_per_client=True, summary=summary)

    @classmethod
    def per_request(cls, backends: Sequence[Backend], summary: str, exact: bool) -> Truth:
        """A choice per request by the servers' weights (``exact``: a fixed schedule)."""
        shares = shares_from_weights(backends)
        return cls(unit="request", shares=shares, exact=exact, summary=summary)


def shares_from_weights(backends: Sequence[Backend]) -> dict[str, float]:
    """Weight over the total weight of the servers that are up; 0 for a server marked down."""
    total = sum(b.weight for b in backends if not b.down)
    return {b.pod: (0.0 if b.down else b.weight / total) for b in backends}


@dataclass(frozen=True)
class Balancer:
    """A running balancer. ``prefix`` runs a command where its URL is reachable (a namespace)."""

    name: str
    url: str
    backends: tuple[Backend, ...]
    truth: Truth
    prefix: tuple[str, ...] = ()
    config: str = ""  # the configuration or rules as written, for failure messages

    @classmethod
    def http(
        cls, name: str, host: str, port: int, backends: Sequence[Backend], truth: Truth, config: str
    ) -> Balancer:
        """A balancer that listens for plain HTTP on ``host:port``, reachable from here."""
        return cls(name, f"http://{host}:{port}/", tuple(backends), truth, config=config)

    @property
    def pods(self) -> tuple[str, ...]:
        return tuple(b.pod for b in self.backends)

    def expected_shares(
        self, field: Literal["pod", "node", "zone", "version"] = "pod"
    ) -> dict[str, float] | None:
        """The truth's shares summed by an identity field (``--expect-split FIELD=...``)."""
        if self.truth.shares is None:
            return None
        out: dict[str, float] = {}
        for b in self.backends:
            key = str(getattr(b, field))
            out[key] = out.get(key, 0.0) + self.truth.shares[b.pod]
        return out

    def run(
        self, argv: Sequence[str], timeout: float = 60.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` where the client must run (inside the namespace, if any)."""
        done = run_captured([*self.prefix, *argv], timeout=timeout, env=clean_env(), cwd=REPO)
        if check:
            done.check_returncode()
        return done

    def podtally(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """``podtally ARGS`` as a user would run it, from where the URL is reachable."""
        return self.run([sys.executable, "-m", "podtally", *args], timeout=timeout)

    def count(
        self,
        connections: int,
        requests_per_connection: int = 1,
        source: str | None = None,
        max_seconds: float = 30.0,
    ) -> counting.Tally:
        """The plain counting client, in this process or, behind a namespace, in a subprocess."""
        if not self.prefix:
            return counting.count(
                self.url, connections, requests_per_connection, source, max_seconds
            )
        argv = [
            sys.executable,
            str(COUNTING_SCRIPT),
            self.url,
            "--connections",
            str(connections),
            "--requests-per-connection",
            str(requests_per_connection),
            "--max-seconds",
            str(max_seconds),
        ]
        if source:
            argv += ["--source", source]
        done = self.run(argv, timeout=max_seconds + 30, check=False)
        if done.returncode != 0:
            raise AssertionError(f"counting client failed: {done.stderr.strip()}")
        return counting.Tally.from_json(json.loads(done.stdout))
