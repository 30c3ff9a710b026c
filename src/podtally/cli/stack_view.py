"""What `up`, `status`, `restart` and `scale` print about a local stack: its URLs, its tracks,
its replicas (a table; a rich one on a terminal), the supervisor's view, a one-line summary.
Only words and columns: every number comes from the library's :class:`~podtally.local.Stack`
and the supervisor's report."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from podtally.local import Stack


def _out(text: str) -> None:
    sys.stdout.write(text)


def print_urls(stack: Stack) -> None:
    if stack.https_url:
        _out(f"  url:     {stack.https_url}\n")
        _out(f"  http:    {stack.http_url} (redirects to HTTPS)\n")
    else:
        _out(f"  url:     {stack.http_url}\n")
    if stack.grpc_url:
        _out(f"  grpc:    {stack.grpc_url} (the ALB path: each call to any replica)\n")
    if stack.service_url:
        _out(f"  service: {stack.service_url} (the Service path: each connection to one replica)\n")
    if stack.service_grpc_url:
        _out(f"           {stack.service_grpc_url} (the Service path for gRPC, the same)\n")
    _out(f"  stats:   {stack.stats_url}   metrics: {stack.metrics_url}\n")
    if stack.ca_path:
        _out(f"  ca:      {stack.ca_path}\n")
        _out(f"  try:     curl --cacert {stack.ca_path} {stack.url}\n")
        host = stack.config.host
        if host:
            port = stack.config.https_port
            _out(
                f"           curl --cacert {stack.ca_path} --resolve {host}:{port}:127.0.0.1 "
                f"https://{host}:{port}/\n"
            )
    else:
        _out(f"  try:     curl {stack.url}\n")


def print_tracks(stack: Stack) -> None:
    """One line per track when there is more than one: configured weight, HAProxy's share."""
    tracks = stack.tracks()
    if len(tracks) < 2:
        return
    for track in tracks:
        _out(
            f"  track {track.name}: {track.up}/{track.replicas} replicas UP, version "
            f"{track.version}, weight {track.weight:g}% (HAProxy: server weight "
            f"{track.server_weight}, {track.share:.1f}% of requests)\n"
        )


def print_table(stack: Stack) -> None:
    tracked = len(stack.config.tracks()) > 1
    # GRPC: the replica's gRPC port on its address.
    headers: tuple[str, ...] = ("POD", "NODE", "ZONE", "ADDRESS", "PID", "HAPROXY", "GRPC")
    if tracked:
        headers += ("TRACK", "WEIGHT")
    rows = [
        (
            r.pod,
            r.node,
            r.zone,
            f"{r.address}:{r.port}",
            str(r.pid) if r.running else f"{r.pid} (exited)",
            r.health,
            str(r.grpc_port or "-"),
        )
        + ((r.track, str(r.weight)) if tracked else ())
        for r in stack.replicas
    ]
    if sys.stdout.isatty():  # a terminal: a rich table; elsewhere the plain columns below
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(*headers, box=None, header_style="bold", pad_edge=False)
        for row in rows:  # Text: a name is never read as markup
            table.add_row(*map(Text, row), style=None if row[5] == "UP" else "yellow")
        Console(highlight=False).print(table)
        return
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        _out(line.rstrip() + "\n")


# --- issue 15: the supervisor's view (restarts, ages, its own health) -----------------------


def _age(seconds: float | None) -> str:
    """An age as kubectl prints it: 42s, 5m, 3h, 2d."""
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def print_supervision(stack: Stack) -> None:
    from podtally.local.supervisor import report

    health = report(stack.run_dir)
    if not health.running:
        state = "not running (the next restart or scale starts it)"
    else:
        state = "healthy" if health.healthy else "running, not yet watched"
        state += f" (pid {health.pid}, up {_age(health.age_of_supervisor())}"
        state += f", restarted {health.restarts}x; HAProxy restarted {health.haproxy_restarts}x)"
    _out(f"  supervisor: {state}\n")
    rows = [("POD", "RESTARTS", "AGE")]
    rows += [
        (r.pod, str(health.replica_restarts.get(r.pod, 0)), _age(health.age(r.pod)))
        for r in stack.replicas
    ]
    width = max(len(row[0]) for row in rows)
    for pod, restarts, age in rows:
        _out(f"  {pod.ljust(width)}  {restarts.ljust(8)}  {age}\n")


def summary(stack: Stack) -> str:
    up_count = sum(1 for r in stack.replicas if r.running and r.health == "UP")
    return (
        f"stack {stack.config.name!r}: {up_count}/{len(stack.replicas)} replicas UP "
        f"(namespace {stack.config.namespace})"
    )
