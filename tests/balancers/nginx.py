"""nginx (Debian's nginx-light) as an HTTP balancer, run in the foreground from a temp prefix.

One worker process, so round robin and least_conn keep one schedule (each nginx worker keeps
its own). ``proxy_next_upstream off``: a failing pod shows as a 502, never as a quiet retry on
another pod that would bend the counts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from tests.balancers.truth import Backend, Balancer, Truth
from tests.processes import binary, die_with_parent, listening
from tests.support import free_port

# "round_robin" is nginx's default (no directive in the upstream block).
Method = Literal["round_robin", "random", "least_conn", "ip_hash"]

LISTEN_HOST = "127.0.0.1"


def render(prefix: Path, port: int, method: Method, backends: Sequence[Backend]) -> str:
    directive = "" if method == "round_robin" else f"        {method};\n"
    servers = "".join(
        f"        server {b.address}"
        + (f" weight={b.weight}" if b.weight != 1 else "")
        + (" down" if b.down else "")
        + ";\n"
        for b in backends
    )
    temp = "".join(
        f"    {kind}_temp_path {prefix / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        "daemon off;\n"
        "worker_processes 1;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} warn;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        "    access_log off;\n"
        f"{temp}"
        "    upstream pods {\n"
        f"{directive}{servers}"
        "    }\n"
        "    server {\n"
        f"        listen {LISTEN_HOST}:{port};\n"
        "        location / {\n"
        "            proxy_pass http://pods;\n"
        "            proxy_next_upstream off;\n"
        "        }\n"
        "    }\n"
        "}\n"
    )


def truth_of(method: Method, backends: Sequence[Backend]) -> Truth:
    weights = ":".join(str(b.weight) for b in backends)
    down = [b.pod for b in backends if b.down]
    detail = f"weights {weights}" + (f", {', '.join(down)} down" if down else "")
    if method == "ip_hash":
        # ip_hash hashes the first three octets of an IPv4 client: one client, one pod.
        return Truth.per_client(
            f"nginx ip_hash ({detail}): every request of one client address to one pod"
        )
    summary = f"nginx {method.replace('_', ' ')} ({detail}), a choice per request"
    # Smooth weighted round robin is a fixed schedule; least_conn with one request at a time
    # always sees a tie (no open connections) and breaks it by that same round robin.
    return Truth.per_request(backends, summary, exact=method in ("round_robin", "least_conn"))


@contextlib.contextmanager
def upstream(
    tmp: Path, backends: Sequence[Backend], method: Method = "round_robin"
) -> Iterator[Balancer]:
    """nginx in front of ``backends`` with the given balancing method; stopped on exit."""
    nginx = binary("nginx", "nginx-light")
    prefix = tmp / f"nginx-{method}-{free_port(LISTEN_HOST)}"
    prefix.mkdir(parents=True)
    port = free_port(LISTEN_HOST)
    config = render(prefix, port, method, backends)
    (prefix / "nginx.conf").write_text(config)
    log = prefix / "error.log"
    # SIGTERM, not SIGKILL, if this process dies: the master then takes its worker down too.
    argv = [
        *die_with_parent("TERM"),
        nginx,
        "-p",
        str(prefix),
        "-c",
        str(prefix / "nginx.conf"),
        "-e",
        str(log),
    ]
    truth = truth_of(method, backends)
    with listening(argv, LISTEN_HOST, port, log, output_to_log=False):
        yield Balancer.http(f"nginx-{method}", LISTEN_HOST, port, backends, truth, config)
