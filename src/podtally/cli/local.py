"""`podtally up | status | restart | scale | down`: the local stack (replicas behind HAProxy)."""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from podtally.cli.common import err
from podtally.cli.params import IMAGE_OPTION, Command, defaults_of, option
from podtally.cli.progress import steps
from podtally.cli.signals import capture_signals
from podtally.errors import PodtallyError, UsageError
from podtally.local import StackConfig
from podtally.local.models import GRPC_PORT, SERVICE_GRPC_PORT, SERVICE_PORT

if TYPE_CHECKING:
    from podtally.local import Stack

DEFAULTS = defaults_of(StackConfig)
_DEFAULTS_NOTE = (
    "State lives in $PODTALLY_STATE_DIR/<name> (default ~/.local/state/podtally/<name>); "
    "set PODTALLY_HAPROXY to use another haproxy binary."
)


def _local_command(func: Callable[..., int]) -> Callable[..., int]:
    """What every local-stack command shares: SIGTERM is handled like Ctrl-C (the same
    rollback or teardown runs); stdout is flushed before the exit code is decided; a file or
    process error the library did not explain still ends as one line, exit 3."""

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> int:
        try:
            with capture_signals("interrupt"):
                code = func(**kwargs)
                sys.stdout.flush()
                return code
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            reason = (exc.strerror or str(exc)).lower()
            name = click.get_current_context().info_name
            raise PodtallyError(f"podtally {name}: {reason}{where}") from exc

    return wrapper


def _out(text: str) -> None:
    sys.stdout.write(text)


def _flush() -> None:
    sys.stdout.flush()


def _checked_name(ctx: click.Context, param: click.Parameter, name: str) -> str:
    """A stack name the library accepts (``--name ''`` is bad usage for every command)."""
    StackConfig(name=name)
    return name


def _port_or_off(ctx: click.Context, param: click.Parameter, port: int) -> int | None:
    """``0`` leaves a listener out (the library's None)."""
    return None if port == 0 else port


def _name_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return option(
        "--name",
        default=DEFAULTS["name"],
        callback=_checked_name,
        help="the stack's name; stacks with different names run side by side",
    )(func)


def _command(name: str, help: str) -> Callable[[Callable[..., Any]], click.Command]:
    from podtally.cli.app import COMMANDS

    return click.command(name, cls=Command, short_help=COMMANDS[name][2], help=help)


# --- output ------------------------------------------------------------------------------------


def _print_urls(stack: Stack) -> None:
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


def _print_tracks(stack: Stack) -> None:
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


def _print_table(stack: Stack) -> None:
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


def _print_supervision(stack: Stack) -> None:
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


def _supervision_dict(stack: Stack) -> dict[str, object]:
    from podtally.local.supervisor import report

    health = report(stack.run_dir)
    return {
        "pid": health.pid,
        "running": health.running,
        "healthy": health.healthy,
        "restarts": health.restarts,
        "haproxy_restarts": health.haproxy_restarts,
        "replicas": {
            r.pod: {"restarts": health.replica_restarts.get(r.pod, 0), "age": health.age(r.pod)}
            for r in stack.replicas
        },
    }


def _summary(stack: Stack) -> str:
    up_count = sum(1 for r in stack.replicas if r.running and r.health == "UP")
    return (
        f"stack {stack.config.name!r}: {up_count}/{len(stack.replicas)} replicas UP "
        f"(namespace {stack.config.namespace})"
    )


# --- what the commands do ------------------------------------------------------------------


def _degraded(stack: Stack, after: str) -> int:
    """Exit 1 with one line when ``restart`` or ``scale`` leaves replicas that are not UP."""
    if stack.ready:
        return 0
    from podtally.local import command_hint

    bad = [
        f"{r.pod} {r.health}" + ("" if r.running else " (exited)")
        for r in stack.replicas
        if not (r.running and r.health == "UP")
    ]
    up_count = len(stack.replicas) - len(bad)
    err(
        f"error: stack {stack.config.name!r} is degraded after {after}: "
        f"{up_count}/{len(stack.replicas)} replicas UP, not UP: {', '.join(bad)} "
        f"(see {command_hint('status', stack.config.name, stack.run_dir)})"
    )
    return 1


def _option(key: str, value: Any) -> str:
    """One configuration value as the ``podtally up`` option that sets it."""
    if key == "tls":
        return "TLS" if value else "--no-tls"
    if key == "nodes" and value is None:
        return "one node per replica"
    if key == "host" and value is None:
        return "no --host"
    if key in ("canary_weight", "image") and value is None:
        return f"no --{key.replace('_', '-')}"
    if key in ("grpc_port", "service_port", "service_grpc_port") and value is None:
        return f"--{key.replace('_', '-')} 0"
    if key == "run_dir":
        return f"run directory {value}"
    if isinstance(value, float):
        value = f"{value:g}"
    return f"--{key.replace('_', '-')} {value}"


def _as_option(key: str, running: Any, asked: Any) -> str:
    """``--replicas 2 (asked: --replicas 4)``: one difference of ``up``, in the CLI's words."""
    return f"{_option(key, running)} (asked: {_option(key, asked)})"


def _up(config: StackConfig, foreground: bool) -> int:
    from podtally.local import AlreadyUpError, command_hint, down, status, up

    try:
        with steps(f"starting stack {config.name!r}") as say:
            stack = up(config, progress=say)
    except AlreadyUpError as exc:
        if foreground:
            raise
        # Only what the user asked for can conflict: a default (or a scaled replica count) is
        # not a request, so `up` on a running stack without flags just shows it.
        ctx = click.get_current_context()
        differences = [
            _as_option(*d)
            for d in exc.differences
            if ctx.get_parameter_source(d[0])
            in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
        ]
        if differences:
            raise UsageError(
                f"stack {config.name!r} is already up with {', '.join(differences)}: "
                f"{command_hint('down', config.name)} it first "
                f"(or {command_hint('scale N', config.name)} for the replicas)"
            ) from None
        err(f"stack {config.name!r} is already up")
        _out(_summary(exc.stack) + "\n")
        _print_urls(exc.stack)
        return 0
    _out(f"stack {config.name!r} is up: {len(stack.replicas)} replicas behind HAProxy\n")
    _print_tracks(stack)
    _print_urls(stack)
    _flush()
    if not foreground:
        return 0
    err("running in the foreground: Ctrl-C stops the stack")
    run_dir = config.resolved_run_dir()
    try:
        while True:
            time.sleep(0.5)
            try:
                status(config.name)
            except PodtallyError as exc:  # the stack went away under us
                if not run_dir.exists():
                    err(f"stack {config.name!r} was stopped by another command")
                    return 0
                err(f"the stack stopped: {exc}")
                down(config.name, progress=err)
                return 3
    except KeyboardInterrupt:
        err("stopping the stack")
        with capture_signals("ignore"):  # a second Ctrl-C does not stop the teardown
            down(config.name, progress=err)
        err(f"stack {config.name!r} is down")
        return 0


def _status(name: str, as_json: bool) -> int:
    from podtally.local import status

    stack = status(name)
    if as_json:
        _out(json.dumps({**stack.to_dict(), "supervisor": _supervision_dict(stack)}, indent=2))
        _out("\n")
    else:
        _out(_summary(stack) + "\n")
        _print_tracks(stack)
        _print_table(stack)
        _print_urls(stack)
        _print_supervision(stack)
    return 0 if stack.ready else 1


def _restart(name: str) -> int:
    from podtally.local import restart

    started = time.monotonic()
    with steps(f"restarting stack {name!r}") as say:
        stack = restart(name, progress=say)
    err(f"restarted {len(stack.replicas)} replica(s) in {time.monotonic() - started:.1f} s")
    _out(_summary(stack) + "\n")
    _print_tracks(stack)
    _print_table(stack)
    _flush()
    return _degraded(stack, "the restart")


def _scale(replicas: int, name: str) -> int:
    from podtally.local import scale

    with steps(f"scaling stack {name!r} to {replicas}") as say:
        stack = scale(replicas, name, progress=say)
    _out(_summary(stack) + "\n")
    _print_tracks(stack)
    _print_table(stack)
    _flush()
    return _degraded(stack, "scaling")


def _down(name: str) -> int:
    from podtally.local import down

    if down(name, progress=err):
        err(f"stack {name!r} is down")
    else:
        err(f"stack {name!r} was not running")
    return 0


# --- commands ----------------------------------------------------------------------------------


@_command(
    "up",
    "Start --replicas copies of `podtally serve`, each on its own loopback address with a "
    "pod-like identity, behind a real HAProxy, by two paths as in a cluster. The ALB path: HTTP "
    "redirecting to HTTPS (certificate from a local CA, HTTP/2 by ALPN), gRPC on --grpc-port "
    "and on the HTTPS port, each request or call balanced round robin, health checks on "
    "/readyz. The Service path (--service-port, --service-grpc-port): plain TCP, each "
    "connection to a random replica, as kube-proxy does. A stats page. With --canary-replicas "
    "and --canary-weight, a canary track beside the stable one gets that percent of the "
    "requests through HAProxy's server weights. Returns once every replica "
    "is ready and HAProxy answers. " + _DEFAULTS_NOTE,
)
@_name_option
@option("--replicas", type=int, default=DEFAULTS["replicas"], help="number of replicas")
@option(
    "--nodes",
    type=int,
    default=None,
    show_default="one each",
    help="spread replicas over K fake nodes",
)
@option("--namespace", default=DEFAULTS["namespace"], help="the pods' namespace")
@option("--http-port", type=int, default=DEFAULTS["http_port"], help="HTTP port on 127.0.0.1")
@option("--https-port", type=int, default=DEFAULTS["https_port"], help="HTTPS port on 127.0.0.1")
@option(
    "--stats-port",
    type=int,
    default=DEFAULTS["stats_port"],
    help="HAProxy stats page (/stats) and Prometheus metrics (/metrics)",
)
@option(
    "--grpc-port",
    type=int,
    default=GRPC_PORT,
    callback=_port_or_off,
    help="the ALB path's gRPC port (TLS; each call balanced on its own); 0 leaves it out",
)
@option(
    "--service-port",
    type=int,
    default=SERVICE_PORT,
    callback=_port_or_off,
    help="the Service path, as kube-proxy: each TCP connection to a random replica, where it "
    "stays (plain HTTP); 0 leaves it out",
)
@option(
    "--service-grpc-port",
    type=int,
    default=SERVICE_GRPC_PORT,
    callback=_port_or_off,
    help="the Service path for gRPC (a channel stays on one replica); 0 leaves it out",
)
@option(
    "--no-tls",
    "tls",
    is_flag=True,
    flag_value=False,
    default=DEFAULTS["tls"],
    show_default=False,
    help="plain HTTP only, no redirect, no CA",
)
@option("--host", default=DEFAULTS["host"], help="an extra DNS name for the certificate")
@option(
    "--drain-seconds",
    type=float,
    default=DEFAULTS["drain_seconds"],
    help="how long a stopping replica keeps answering after SIGTERM, 0 to 300",
)
@option(
    "--ready-timeout",
    type=float,
    default=DEFAULTS["ready_timeout"],
    help="give up if a replica or HAProxy is not ready after this many seconds, at most 3600",
)
@option(
    "--canary-replicas",
    type=int,
    default=DEFAULTS["canary_replicas"],
    metavar="K",
    help="also start K replicas of a canary track (POD_VERSION=canary; the others are stable)",
)
@option(
    "--canary-weight",
    type=float,
    default=DEFAULTS["canary_weight"],
    show_default="none",
    metavar="PERCENT",
    help="percent of requests HAProxy sends to the canary track, more than 0 and less than "
    "100, whatever the replica counts; needs --canary-replicas",
)
@IMAGE_OPTION
@option(
    "--foreground",
    is_flag=True,
    help="stay attached; Ctrl-C or SIGTERM tears the whole stack down",
)
@_local_command
def up_command(foreground: bool, **settings: Any) -> int:
    return _up(StackConfig(**settings), foreground)


@_command(
    "status",
    "Each replica (pod, node, zone, address, pid, HAProxy's UP/DOWN) and the URLs of both "
    "paths (ALB: HTTPS, gRPC; Service: HTTP, gRPC); with a "
    "canary, each track's weight and the share HAProxy's weights give it. Exit 0 when "
    "every replica is UP; 1 (a check failed) when the stack is degraded, some replicas not UP; "
    "3 when the stack is not up.",
)
@_name_option
@option("--json", "as_json", is_flag=True, help="machine-readable output")
@_local_command
def status_command(name: str, as_json: bool) -> int:
    return _status(name, as_json)


@_command(
    "restart",
    "Like `kubectl rollout restart`: one replica at a time, a new pod (new template hash) "
    "starts and is UP in HAProxy before the old one drains and stops. No request through the "
    "balancer fails; replicas that died are replaced too. Exit 0 when every replica is UP at "
    "the end, 1 when some are not, 3 when the stack is not up.",
)
@_name_option
@_local_command
def restart_command(name: str) -> int:
    return _restart(name)


@_command(
    "scale",
    "Like a ReplicaSet: brings the stack to REPLICAS running stable replicas (a canary track "
    "keeps its replicas and its share of the requests). New replicas join once "
    "HAProxy sees them UP; replicas that died are replaced and removed; scaling down removes "
    "the replicas that are not UP first, then the highest ordinals, drained in HAProxy before "
    "they get SIGTERM. Exit 0 when every replica is UP at the end, 1 when some are not, 3 when "
    "the stack is not up.",
)
@click.argument("replicas", type=int)
@_name_option
@_local_command
def scale_command(replicas: int, name: str) -> int:
    return _scale(replicas, name)


@_command(
    "down",
    "HAProxy soft-stops, replicas get SIGTERM and drain, SIGKILL after a bound; the run "
    "directory is removed. Safe to run when nothing is up. Ctrl-C stops waiting: what still "
    "runs is killed and the run directory removed all the same.",
)
@_name_option
@_local_command
def down_command(name: str) -> int:
    return _down(name)


COMMANDS: dict[str, click.Command] = {
    "up": up_command,
    "status": status_command,
    "restart": restart_command,
    "scale": scale_command,
    "down": down_command,
}
