"""Real ``podtally serve`` replicas, started together (they take 1-3 s each on a busy machine).

A replica is ready when it logs its ``ready`` event: that works the same on the host's loopback
and inside a private network namespace, where this process cannot connect.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.processes import die_with_parent
from tests.support import clean_env, log_events, serve_argv, wait_until

READY_SECONDS = 30.0


@dataclass(frozen=True)
class PodSpec:
    """One replica's identity (the downward-API environment) and where it listens."""

    pod: str
    host: str
    port: int
    node: str = "node-1"
    zone: str = "zone-a"
    version: str = "stable"
    namespace: str = "balancers"

    def env(self) -> dict[str, str]:
        return {
            "POD_NAME": self.pod,
            "NODE_NAME": self.node,
            "POD_NAMESPACE": self.namespace,
            "POD_IP": self.host,
            "ZONE": self.zone,
            "POD_VERSION": self.version,
        }


def web_pods(hosts: Sequence[str], ports: Sequence[int]) -> list[PodSpec]:
    """Pods web-a, web-b, ... on node-1, node-2, ...; web-a in zone-a, the rest in zone-b; the
    last of three or more is the canary. So a split by zone or by version differs from the
    split by pod: with three, stable is web-a + web-b and zone-b is web-b + web-c."""
    count = len(hosts)
    return [
        PodSpec(
            pod=f"web-{chr(ord('a') + k)}",
            host=host,
            port=port,
            node=f"node-{k + 1}",
            zone="zone-a" if k == 0 else "zone-b",
            version="canary" if count >= 3 and k == count - 1 else "stable",
        )
        for k, (host, port) in enumerate(zip(hosts, ports, strict=True))
    ]


@dataclass(frozen=True)
class Replica:
    spec: PodSpec
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self) -> bool:
        return any(event.get("event") == "ready" for event in log_events(self.log_path))


def _stop(replicas: Sequence[Replica]) -> None:
    for replica in replicas:
        if replica.proc.poll() is None:
            replica.proc.kill()
    for replica in replicas:
        with contextlib.suppress(subprocess.TimeoutExpired):
            replica.proc.wait(timeout=10)


@contextlib.contextmanager
def running(
    tmp: Path, specs: Sequence[PodSpec], prefix: Sequence[str] = ()
) -> Iterator[list[Replica]]:
    """Start every replica at once, wait until all are ready, and kill them all on exit.

    ``prefix`` runs each one elsewhere, e.g. ``nsenter --target PID --net``.
    """
    replicas: list[Replica] = []
    try:
        for spec in specs:
            log_path = tmp / f"serve-{spec.pod}.log"
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    [*die_with_parent(), *prefix, *serve_argv(spec.host, spec.port, 0)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    env=clean_env(spec.env()),
                )
            replicas.append(Replica(spec, proc, log_path))
        # All were started at once: one deadline for the lot.
        deadline = time.monotonic() + READY_SECONDS
        for replica in replicas:
            wait_until(
                replica.ready,
                f"{replica.spec.pod} ready",
                seconds=max(0.0, deadline - time.monotonic()),
                proc=replica.proc,
                log=replica.log_path,
            )
        yield replicas
    finally:
        _stop(replicas)
