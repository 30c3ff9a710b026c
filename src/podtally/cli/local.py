"""`podtally up | status | restart | scale | down`: the local stack (replicas behind HAProxy).

Each command is one :func:`_stack_command` (its ``--name``, SIGTERM as Ctrl-C, one line for an
unexplained file error) over a body that calls :mod:`podtally.local`; what they print about a
stack is :mod:`podtally.cli.stack_view`'s. `up`'s options are one group, :data:`UP_OPTIONS`.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from podtally.cli.common import err
from podtally.cli.params import IMAGE_OPTION, Command, F, defaults_of, off_switch, option, stacked
from podtally.cli.progress import steps
from podtally.cli.signals import capture_signals
from podtally.cli.stack_view import (
    print_supervision,
    print_table,
    print_tracks,
    print_urls,
    summary,
)
from podtally.errors import PodtallyError, UsageError
from podtally.local import StackConfig
from podtally.local.models import GRPC_PORT, MAX_REPLICAS, SERVICE_GRPC_PORT, SERVICE_PORT

if TYPE_CHECKING:
    from podtally.local import AlreadyUpError, Stack

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


def _checked_name(ctx: click.Context, param: click.Parameter, name: str) -> str:
    """A stack name the library accepts (``--name ''`` is bad usage for every command)."""
    StackConfig(name=name)
    return name


def _port_or_off(ctx: click.Context, param: click.Parameter, port: int) -> int | None:
    """``0`` leaves a listener out (the library's None)."""
    return None if port == 0 else port


def _out(text: str) -> None:
    sys.stdout.write(text)


def _stack_command(name: str, help: str) -> Callable[[Callable[..., int]], click.Command]:
    """A local-stack command: its ``--name`` option first, then the options declared below it,
    the function run as :func:`_local_command` says."""
    from podtally.cli.app import COMMANDS

    def decorate(func: Callable[..., int]) -> click.Command:
        named = option(
            "--name",
            default=DEFAULTS["name"],
            callback=_checked_name,
            help="the stack's name; stacks with different names run side by side",
        )(_local_command(func))
        return click.command(name, cls=Command, short_help=COMMANDS[name][2], help=help)(named)

    return decorate


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


def _already_up(exc: AlreadyUpError, config: StackConfig) -> int:
    """``up`` on a running stack: shown as it is, unless the user asked for something else."""
    from podtally.local import command_hint

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
    _out(summary(exc.stack) + "\n")
    print_urls(exc.stack)
    return 0


def _foreground(config: StackConfig) -> int:
    """``up --foreground``: wait until Ctrl-C (then tear down) or the stack goes away."""
    from podtally.local import down, status

    err("running in the foreground: Ctrl-C stops the stack")
    run_dir = config.resolved_run_dir()
    try:
        while True:
            time.sleep(0.5)
            try:
                status(config.name, containers=False)
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


def _changed(stack: Stack, after: str) -> int:
    """What ``restart`` and ``scale`` print; exit 1 when some replicas are not UP after."""
    _out(summary(stack) + "\n")
    print_tracks(stack)
    print_table(stack)
    sys.stdout.flush()
    return _degraded(stack, after)


def replica_options(default: int) -> Callable[[F], F]:
    """``--replicas`` and ``--nodes``, as `up` and `demo` take them."""
    return stacked(
        option(
            "--replicas", type=int, default=default, help=f"replicas to start, 1 to {MAX_REPLICAS}"
        ),
        option(
            "--nodes",
            type=int,
            default=None,
            show_default="one each",
            metavar="K",
            help=f"spread the replicas over K simulated nodes, 1 to {MAX_REPLICAS}",
        ),
    )


# `up`'s options besides --name and --foreground: StackConfig's settings of the same names.
UP_OPTIONS = stacked(
    replica_options(DEFAULTS["replicas"]),
    option("--namespace", default=DEFAULTS["namespace"], help="the pods' namespace"),
    option("--http-port", type=int, default=DEFAULTS["http_port"], help="HTTP port on 127.0.0.1"),
    option(
        "--https-port", type=int, default=DEFAULTS["https_port"], help="HTTPS port on 127.0.0.1"
    ),
    option(
        "--stats-port",
        type=int,
        default=DEFAULTS["stats_port"],
        help="HAProxy stats page (/stats) and Prometheus metrics (/metrics)",
    ),
    option(
        "--grpc-port",
        type=int,
        default=GRPC_PORT,
        callback=_port_or_off,
        help="the ALB path's gRPC port (TLS; each call balanced on its own); 0 leaves it out",
    ),
    option(
        "--service-port",
        type=int,
        default=SERVICE_PORT,
        callback=_port_or_off,
        help="the Service path, as kube-proxy: each TCP connection to a random replica, where it "
        "stays (plain HTTP); 0 leaves it out",
    ),
    option(
        "--service-grpc-port",
        type=int,
        default=SERVICE_GRPC_PORT,
        callback=_port_or_off,
        help="the Service path for gRPC (a channel stays on one replica); 0 leaves it out",
    ),
    off_switch("--no-tls", "tls", "plain HTTP only, no redirect, no CA"),
    option("--host", default=DEFAULTS["host"], help="an extra DNS name for the certificate"),
    option(
        "--drain-seconds",
        type=float,
        default=DEFAULTS["drain_seconds"],
        help="how long a stopping replica keeps answering after SIGTERM, 0 to 300",
    ),
    option(
        "--ready-timeout",
        type=float,
        default=DEFAULTS["ready_timeout"],
        help="give up if a replica or HAProxy is not ready after this many seconds, at most 3600",
    ),
    option(
        "--canary-replicas",
        type=int,
        default=DEFAULTS["canary_replicas"],
        metavar="K",
        help="also start K replicas of a canary track (POD_VERSION=canary; the others are stable)",
    ),
    option(
        "--canary-weight",
        type=float,
        default=DEFAULTS["canary_weight"],
        show_default="none",
        metavar="PERCENT",
        help="percent of requests HAProxy sends to the canary track, more than 0 and less than "
        "100, whatever the replica counts; needs --canary-replicas",
    ),
    IMAGE_OPTION,
)


# --- commands ----------------------------------------------------------------------------------


@_stack_command(
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
@UP_OPTIONS
@option(
    "--foreground",
    is_flag=True,
    help="stay attached; Ctrl-C or SIGTERM tears the whole stack down",
)
def up_command(foreground: bool, **settings: Any) -> int:
    from podtally.local import AlreadyUpError, up

    config = StackConfig(**settings)
    try:
        with steps(f"starting stack {config.name!r}") as say:
            stack = up(config, progress=say)
    except AlreadyUpError as exc:
        if foreground:
            raise
        return _already_up(exc, config)
    _out(f"stack {config.name!r} is up: {len(stack.replicas)} replicas behind HAProxy\n")
    print_tracks(stack)
    print_urls(stack)
    sys.stdout.flush()
    return _foreground(config) if foreground else 0


@_stack_command(
    "status",
    "Each replica (pod, node, zone, address, pid, HAProxy's UP/DOWN) and the URLs of both "
    "paths (ALB: HTTPS, gRPC; Service: HTTP, gRPC); with a "
    "canary, each track's weight and the share HAProxy's weights give it. Exit 0 when "
    "every replica is UP; 1 (a check failed) when the stack is degraded, some replicas not UP; "
    "3 when the stack is not up.",
)
@option("--json", "as_json", is_flag=True, help="machine-readable output")
def status_command(name: str, as_json: bool) -> int:
    from podtally.local import status
    from podtally.local.supervisor import report

    stack = status(name)
    if as_json:
        supervisor = report(stack.run_dir).to_dict(r.pod for r in stack.replicas)
        _out(json.dumps({**stack.to_dict(), "supervisor": supervisor}, indent=2))
        _out("\n")
    else:
        _out(summary(stack) + "\n")
        print_tracks(stack)
        print_table(stack)
        print_urls(stack)
        print_supervision(stack)
    return 0 if stack.ready else 1


@_stack_command(
    "restart",
    "Like `kubectl rollout restart`: one replica at a time, a new pod (new template hash) "
    "starts and is UP in HAProxy before the old one drains and stops. No request through the "
    "balancer fails; replicas that died are replaced too. Exit 0 when every replica is UP at "
    "the end, 1 when some are not, 3 when the stack is not up.",
)
def restart_command(name: str) -> int:
    from podtally.local import restart

    started = time.monotonic()
    with steps(f"restarting stack {name!r}") as say:
        stack = restart(name, progress=say)
    err(f"restarted {len(stack.replicas)} replica(s) in {time.monotonic() - started:.1f} s")
    return _changed(stack, "the restart")


@_stack_command(
    "scale",
    "Like a ReplicaSet: brings the stack to REPLICAS running stable replicas (a canary track "
    "keeps its replicas and its share of the requests). New replicas join once "
    "HAProxy sees them UP; replicas that died are replaced and removed; scaling down removes "
    "the replicas that are not UP first, then the highest ordinals, drained in HAProxy before "
    "they get SIGTERM. Exit 0 when every replica is UP at the end, 1 when some are not, 3 when "
    "the stack is not up.",
)
@click.argument("replicas", type=int)
def scale_command(replicas: int, name: str) -> int:
    from podtally.local import scale

    with steps(f"scaling stack {name!r} to {replicas}") as say:
        stack = scale(replicas, name, progress=say)
    return _changed(stack, "scaling")


@_stack_command(
    "down",
    "HAProxy soft-stops, replicas get SIGTERM and drain, SIGKILL after a bound; the run "
    "directory is removed. Safe to run when nothing is up. Ctrl-C stops waiting: what still "
    "runs is killed and the run directory removed all the same.",
)
def down_command(name: str) -> int:
    from podtally.local import down

    if down(name, progress=err):
        err(f"stack {name!r} is down")
    else:
        err(f"stack {name!r} was not running")
    return 0


COMMANDS: dict[str, click.Command] = {
    "up": up_command,
    "status": status_command,
    "restart": restart_command,
    "scale": scale_command,
    "down": down_command,
}
