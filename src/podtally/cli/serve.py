"""`podtally serve`: run one replica of the identity service."""

from __future__ import annotations

import click

from podtally.cli.params import Command, defaults_of, option
from podtally.service.config import ServeConfig

DEFAULTS = defaults_of(ServeConfig)

SERVE_EPILOG = """\b
routes:
  GET /               the identity: text (curl), HTML (browsers, ?refresh=N) or JSON, by Accept
  GET /api/identity   JSON: every field with its source, the version and the start time
  GET /livez          200 while the process runs
  GET /readyz         200 when ready; 503 while starting or draining
  GET /metrics        Prometheus text

\b
identity (downward API):
  POD_NAME, NODE_NAME, POD_NAMESPACE, POD_IP, ZONE (or K8_POD_NAME, K8_NODE_NAME,
  K8_POD_NAMESPACE, K8_POD_IP); without ZONE, the node's zone label through the Kubernetes API,
  then AWS IMDSv2, within about 1 s (PODTALLY_IMDS_ENDPOINT=off never asks IMDS)

\b
exit codes:
  0 stopped after a signal (drained)     2 bad usage (host, port, port in use)
  3 the server failed                    128+N a second signal N
"""


@click.command(
    "serve",
    cls=Command,
    short_help="run one replica of the identity service",
    help="Answer every request with this replica's identity (pod, node, namespace, IP, zone). "
    "/readyz turns 503 on SIGTERM; the replica keeps answering for --drain-seconds, then stops "
    "accepting and exits 0.",
    epilog=SERVE_EPILOG,
)
@option(
    "--host",
    default=DEFAULTS["host"],
    help="IP address to listen on: 0.0.0.0, :: or an address of this machine",
)
@option("--port", type=int, default=DEFAULTS["port"], help="port")
@option(
    "--drain-seconds",
    type=float,
    default=DEFAULTS["drain_seconds"],
    help="after SIGTERM, keep answering this long with /readyz at 503",
)
@option(
    "--shutdown-timeout",
    type=float,
    default=DEFAULTS["shutdown_timeout"],
    help="after the drain, how long in-flight requests may take",
)
@option(
    "--keep-alive-timeout",
    type=float,
    default=DEFAULTS["keep_alive_timeout"],
    help="close a keep-alive connection idle this long (keep it above the idle timeout of any "
    "load balancer in front: an ALB's is 60 s); it also bounds the wait for a request's headers",
)
@option(
    "--silent-timeout",
    type=float,
    default=DEFAULTS["silent_timeout"],
    help="close a new connection that has sent nothing for this long",
)
@option("--access-log", is_flag=True, help="one JSON line per request on stderr")
def serve_command(
    host: str,
    port: int,
    drain_seconds: float,
    shutdown_timeout: float,
    keep_alive_timeout: float,
    silent_timeout: float,
    access_log: bool,
) -> int:
    from podtally.service import ServeConfig, serve

    return serve(
        ServeConfig(
            host=host,
            port=port,
            drain_seconds=drain_seconds,
            shutdown_timeout=shutdown_timeout,
            keep_alive_timeout=keep_alive_timeout,
            silent_timeout=silent_timeout,
            access_log=access_log,
        )
    )


COMMANDS: dict[str, click.Command] = {"serve": serve_command}
