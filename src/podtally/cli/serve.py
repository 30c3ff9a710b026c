"""`podtally serve`: run one replica of the identity service."""

from __future__ import annotations

from typing import Any

import click

from podtally.cli.params import Command, defaults_of, grpc_port_option, option
from podtally.contract import DEFAULT_GRPC_PORT
from podtally.errors import MissingDependencyError
from podtally.service.config import ServeConfig

DEFAULTS = defaults_of(ServeConfig)
# What `--grpc-port` starts: the gRPC extra's three distributions, by their import names.
GRPC_MODULES = ("grpc", "grpc_health.v1.health_pb2", "grpc_reflection.v1alpha.reflection")

SERVE_EPILOG = """\b
routes:
  GET /               the identity: text (curl), HTML (browsers, ?refresh=N) or JSON, by Accept
  GET /api/identity   JSON: every field with its source, the version and the start time
  GET /livez          200 while the process runs
  GET /readyz         200 when ready; 503 while starting or draining
  GET /metrics        Prometheus text
  HTTP/1.1 and HTTP/2 (h2c, prior knowledge) on the same port

\b
gRPC (--grpc-port, 0 turns it off; needs podtally[grpc], which the image has):
  podtally.v1.Identity  Get (unary), Watch (one reply per interval)
  grpc.health.v1.Health SERVING when ready; NOT_SERVING while starting or draining
  server reflection     grpcurl -plaintext HOST:PORT list
  Without the grpc extra and without --grpc-port (or PODTALLY_GRPC_PORT), the replica serves
  HTTP only and logs a "grpc" event saying so; asked for explicitly, it is an error (exit 3).

\b
identity (downward API):
  POD_NAME, NODE_NAME, POD_NAMESPACE, POD_IP, ZONE (or K8_POD_NAME, K8_NODE_NAME,
  K8_POD_NAMESPACE, K8_POD_IP); without ZONE, the node's zone label through the Kubernetes API,
  then AWS IMDSv2, within about 1 s (PODTALLY_IMDS_ENDPOINT=off never asks IMDS)

\b
exit codes:
  0 stopped after a signal (drained)     2 bad usage (host, port, port in use)
  3 the server failed, or --grpc-port    128+N a second signal N
    was given without podtally[grpc]
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
@grpc_port_option(DEFAULT_GRPC_PORT, "gRPC port (Identity, Health, reflection)")
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
@click.pass_context
def serve_command(ctx: click.Context, /, **settings: Any) -> int:
    import dataclasses

    from podtally.service import ServeConfig, serve

    config = ServeConfig(**settings)
    if config.grpc_port and not _grpc_installed():
        if _given(ctx, "grpc_port"):
            raise MissingDependencyError(
                "gRPC needs grpcio, grpcio-health-checking and grpcio-reflection: "
                "pip install 'podtally[grpc]' (or --grpc-port 0)",
                setting="grpc_port",
                value=config.grpc_port,
            )
        # The default only: an install without the extra still serves HTTP, and says so.
        from podtally.service.server import log_event

        log_event(
            "grpc",
            {"listen": None, "reason": "off: the grpc extra is not installed (podtally[grpc])"},
        )
        config = dataclasses.replace(config, grpc_port=0)
    return serve(config)


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the user set parameter ``name`` (flag or environment), not its default."""
    source = ctx.get_parameter_source(name)
    return source not in (None, click.core.ParameterSource.DEFAULT)


def _grpc_installed() -> bool:
    import importlib

    try:
        for module in GRPC_MODULES:
            importlib.import_module(module)
    except ImportError:
        return False
    return True


COMMANDS: dict[str, click.Command] = {"serve": serve_command}
