"""HAProxy as an HTTP balancer, in the foreground (``-db``) with a configuration in a temp dir.

``mode http`` chooses a server per request, also on a kept-alive client connection (no
``option prefer-last-server``); ``balance source`` hashes the client address instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from tests.balancers.truth import Backend, Balancer, Truth
from tests.processes import binary, die_with_parent, listening
from tests.support import free_port

Method = Literal["roundrobin", "random", "leastconn", "source"]

LISTEN_HOST = "127.0.0.1"


def render(port: int, method: Method, backends: Sequence[Backend]) -> str:
    servers = "".join(
        f"    server {b.pod} {b.address} weight {b.weight}" + (" disabled" if b.down else "") + "\n"
        for b in backends
    )
    return (
        "global\n"
        "    maxconn 512\n"
        "defaults\n"
        "    mode http\n"
        "    timeout connect 2s\n"
        "    timeout client 10s\n"
        "    timeout server 10s\n"
        "    retries 0\n"
        "frontend web\n"
        f"    bind {LISTEN_HOST}:{port}\n"
        "    default_backend pods\n"
        "backend pods\n"
        f"    balance {method}\n"
        f"{servers}"
    )


def truth_of(method: Method, backends: Sequence[Backend]) -> Truth:
    weights = ":".join(str(b.weight) for b in backends)
    if method == "source":
        return Truth.per_client(
            f"HAProxy balance source (weights {weights}): one client address, one pod"
        )
    summary = f"HAProxy balance {method} (weights {weights}), a choice per request"
    return Truth.per_request(backends, summary, exact=method == "roundrobin")


@contextlib.contextmanager
def backend(
    tmp: Path, backends: Sequence[Backend], method: Method = "roundrobin"
) -> Iterator[Balancer]:
    """HAProxy in front of ``backends`` with ``balance METHOD``; stopped on exit."""
    haproxy = binary("haproxy", "haproxy")
    port = free_port(LISTEN_HOST)
    directory = tmp / f"haproxy-{method}-{port}"
    directory.mkdir(parents=True)
    config = render(port, method, backends)
    (directory / "haproxy.cfg").write_text(config)
    argv = [*die_with_parent(), haproxy, "-db", "-f", str(directory / "haproxy.cfg")]
    truth = truth_of(method, backends)
    with listening(argv, LISTEN_HOST, port, directory / "haproxy.log"):
        yield Balancer.http(f"haproxy-{method}", LISTEN_HOST, port, backends, truth, config)
