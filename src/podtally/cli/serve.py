"""`podtally serve`: run one replica of the identity service."""

from __future__ import annotations

import argparse
from typing import Any

from podtally.service.config import DEFAULT_DRAIN_SECONDS, DEFAULT_PORT, DEFAULT_SHUTDOWN_TIMEOUT

SERVE_EPILOG = """\
routes:
  GET /               the identity: text (curl), HTML (browsers, ?refresh=N) or JSON, by Accept
  GET /api/identity   JSON: every field with its source, the version and the start time
  GET /livez          200 while the process runs
  GET /readyz         200 when ready; 503 while starting or draining
  GET /metrics        Prometheus text

identity (downward API):
  POD_NAME, NODE_NAME, POD_NAMESPACE, POD_IP, ZONE (or K8_POD_NAME, K8_NODE_NAME,
  K8_POD_NAMESPACE, K8_POD_IP); without ZONE, the node's zone label through the Kubernetes API,
  then AWS IMDSv2, within about 1 s (PODTALLY_IMDS_ENDPOINT=off never asks IMDS)

exit codes:
  0 stopped after a signal (drained)     2 bad usage (host, port, port in use)
  3 the server failed                    128+N a second signal N
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "serve",
        help="run one replica of the identity service",
        description="Answer every request with this replica's identity (pod, node, namespace, "
        "IP, zone). /readyz turns 503 on SIGTERM; the replica keeps answering for "
        "--drain-seconds, then stops accepting and exits 0.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--host",
        default="0.0.0.0",
        help="IP address to listen on: 0.0.0.0, :: or an address of this machine "
        "(default: 0.0.0.0)",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: 8080)")
    p.add_argument(
        "--drain-seconds",
        type=float,
        default=DEFAULT_DRAIN_SECONDS,
        help="after SIGTERM, keep answering this long with /readyz at 503 (default: 5)",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        default=DEFAULT_SHUTDOWN_TIMEOUT,
        help="after the drain, how long in-flight requests may take (default: 10)",
    )
    p.add_argument("--access-log", action="store_true", help="one JSON line per request on stderr")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from podtally.service import ServeConfig, serve

    return serve(
        ServeConfig(
            host=args.host,
            port=args.port,
            drain_seconds=args.drain_seconds,
            shutdown_timeout=args.shutdown_timeout,
            access_log=args.access_log,
        )
    )
