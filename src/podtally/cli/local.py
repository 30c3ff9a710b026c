"""`podtally up | status | restart | scale | down`: the local stack (replicas behind HAProxy)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

from podtally.cli.common import err
from podtally.errors import PodtallyError, UsageError

if TYPE_CHECKING:
    from podtally.local import Stack

_DEFAULTS_NOTE = (
    "State lives in $PODTALLY_STATE_DIR/<name> (default ~/.local/state/podtally/<name>); "
    "set PODTALLY_HAPROXY to use another haproxy binary."
)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: roll back or stop what was started, exit 130."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """While the block runs, SIGTERM raises like Ctrl-C does, so that the same cleanup runs."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _local_command(
    func: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """What every local-stack command shares: SIGTERM is handled like Ctrl-C; stdout is flushed
    before the exit code is decided; a file or process error the library did not explain still
    ends as one line, exit 3."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            with _sigterm_as_ctrl_c():
                code = func(args)
                _flush()
                return code
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            reason = (exc.strerror or str(exc)).lower()
            raise PodtallyError(f"podtally {args.command}: {reason}{where}") from exc

    return wrapper


def _stdout_to_devnull() -> None:
    """The reader of stdout went away (``podtally status | head -1``): that is not a failure of
    the command. Later output, and the flush at exit, go to /dev/null instead of failing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _out(text: str) -> None:
    """Write to stdout; a closed pipe does not change the command's outcome."""
    try:
        sys.stdout.write(text)
    except BrokenPipeError:
        _stdout_to_devnull()


def _flush() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()


def _add_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name",
        default="podtally",
        help="the stack's name; stacks with different names run side by side (default: podtally)",
    )


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add up, status, restart, scale and down."""
    p = sub.add_parser(
        "up",
        help="start replicas of the identity service behind a local HAProxy",
        description="Start --replicas copies of `podtally serve`, each on its own loopback "
        "address with a pod-like identity, behind a real HAProxy: HTTP redirecting to HTTPS "
        "(certificate from a local CA), round robin, health checks on /readyz, a stats page. "
        "Returns once every replica is ready and HAProxy answers. " + _DEFAULTS_NOTE,
    )
    _add_name(p)
    p.add_argument("--replicas", type=int, default=3, help="number of replicas (default: 3)")
    p.add_argument(
        "--nodes",
        type=int,
        default=None,
        help="spread replicas over K fake nodes (default: one each)",
    )
    p.add_argument(
        "--namespace", default="podtally", help="the pods' namespace (default: podtally)"
    )
    p.add_argument(
        "--http-port", type=int, default=8080, help="HTTP port on 127.0.0.1 (default: 8080)"
    )
    p.add_argument(
        "--https-port", type=int, default=8443, help="HTTPS port on 127.0.0.1 (default: 8443)"
    )
    p.add_argument(
        "--stats-port",
        type=int,
        default=8404,
        help="HAProxy stats page (/stats) and Prometheus metrics (/metrics) (default: 8404)",
    )
    p.add_argument("--no-tls", action="store_true", help="plain HTTP only, no redirect, no CA")
    p.add_argument("--host", default=None, help="an extra DNS name for the certificate")
    p.add_argument(
        "--drain-seconds",
        type=float,
        default=2.0,
        help="how long a stopping replica keeps answering after SIGTERM, 0 to 300 (default: 2)",
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=30.0,
        help="give up if a replica or HAProxy is not ready after this many seconds, at most "
        "3600 (default: 30)",
    )
    p.add_argument(
        "--foreground",
        action="store_true",
        help="stay attached; Ctrl-C or SIGTERM tears the whole stack down",
    )
    p.set_defaults(func=_local_command(_up))

    p = sub.add_parser(
        "status",
        help="show the local stack's replicas and HAProxy's view of them",
        description="Each replica (pod, node, zone, address, pid, HAProxy's UP/DOWN) and the "
        "URLs. Exit 0 when every replica is UP; 1 (a check failed) when the stack is degraded, "
        "some replicas not UP; 3 when the stack is not up.",
    )
    _add_name(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_local_command(_status))

    p = sub.add_parser(
        "restart",
        help="rolling restart: a new replica UP before each old one drains",
        description="Like `kubectl rollout restart`: one replica at a time, a new pod (new "
        "template hash) starts and is UP in HAProxy before the old one drains and stops. "
        "No request through the balancer fails; replicas that died are replaced too. Exit 0 "
        "when every replica is UP at the end, 1 when some are not, 3 when the stack is not up.",
    )
    _add_name(p)
    p.set_defaults(func=_local_command(_restart))

    p = sub.add_parser(
        "scale",
        help="change the number of replicas without failing a request",
        description="Like a ReplicaSet: brings the stack to N running replicas. New replicas "
        "join once HAProxy sees them UP; replicas that died are replaced and removed; scaling "
        "down removes the replicas that are not UP first, then the highest ordinals, drained in "
        "HAProxy before they get SIGTERM. Exit 0 when every replica is UP at the end, 1 when "
        "some are not, 3 when the stack is not up.",
    )
    p.add_argument("replicas", type=int, help="the new number of replicas")
    _add_name(p)
    p.set_defaults(func=_local_command(_scale))

    p = sub.add_parser(
        "down",
        help="stop the local stack and remove its state",
        description="HAProxy soft-stops, replicas get SIGTERM and drain, SIGKILL after a bound; "
        "the run directory is removed. Safe to run when nothing is up. Ctrl-C stops waiting: "
        "what still runs is killed and the run directory removed all the same.",
    )
    _add_name(p)
    p.set_defaults(func=_local_command(_down))


# --- output ------------------------------------------------------------------------------------


def _print_urls(stack: Stack) -> None:
    if stack.https_url:
        _out(f"  url:     {stack.https_url}\n")
        _out(f"  http:    {stack.http_url} (redirects to HTTPS)\n")
    else:
        _out(f"  url:     {stack.http_url}\n")
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


def _print_table(stack: Stack) -> None:
    headers = ("POD", "NODE", "ZONE", "ADDRESS", "PID", "HAPROXY")
    rows = [
        (
            r.pod,
            r.node,
            r.zone,
            f"{r.address}:{r.port}",
            str(r.pid) if r.running else f"{r.pid} (exited)",
            r.health,
        )
        for r in stack.replicas
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        _out(line.rstrip() + "\n")


def _summary(stack: Stack) -> str:
    up_count = sum(1 for r in stack.replicas if r.running and r.health == "UP")
    return (
        f"stack {stack.config.name!r}: {up_count}/{len(stack.replicas)} replicas UP "
        f"(namespace {stack.config.namespace})"
    )


# --- commands ----------------------------------------------------------------------------------


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
    if key == "run_dir":
        return f"run directory {value}"
    if isinstance(value, float):
        value = f"{value:g}"
    return f"--{key.replace('_', '-')} {value}"


def _as_option(key: str, running: Any, asked: Any) -> str:
    """``--replicas 2 (asked: --replicas 4)``: one difference of ``up``, in the CLI's words."""
    return f"{_option(key, running)} (asked: {_option(key, asked)})"


def _up(args: argparse.Namespace) -> int:
    from podtally.local import AlreadyUpError, StackConfig, command_hint, down, status, up

    config = StackConfig(
        name=args.name,
        replicas=args.replicas,
        nodes=args.nodes,
        namespace=args.namespace,
        http_port=args.http_port,
        https_port=args.https_port,
        stats_port=args.stats_port,
        tls=not args.no_tls,
        host=args.host,
        drain_seconds=args.drain_seconds,
        ready_timeout=args.ready_timeout,
    )
    try:
        stack = up(config, progress=err)
    except AlreadyUpError as exc:
        if args.foreground:
            raise
        differences = [_as_option(*d) for d in exc.differences]
        if differences:
            raise UsageError(
                f"stack {config.name!r} is already up with {', '.join(differences)}: "
                f"{command_hint('down', config.name)} it first "
                f"(or {command_hint('scale N', config.name)} for the replicas)"
            ) from None
        err(f"stack {config.name!r} is already up")
        _print_urls(exc.stack)
        return 0
    _out(f"stack {config.name!r} is up: {len(stack.replicas)} replicas behind HAProxy\n")
    _print_urls(stack)
    _flush()
    if not args.foreground:
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
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        down(config.name, progress=err)
        err(f"stack {config.name!r} is down")
        return 0


def _status(args: argparse.Namespace) -> int:
    from podtally.local import status

    stack = status(args.name)
    if args.json:
        _out(json.dumps(stack.to_dict(), indent=2) + "\n")
    else:
        _out(_summary(stack) + "\n")
        _print_table(stack)
        _print_urls(stack)
    return 0 if stack.ready else 1


def _restart(args: argparse.Namespace) -> int:
    from podtally.local import restart

    started = time.monotonic()
    stack = restart(args.name, progress=err)
    err(f"restarted {len(stack.replicas)} replica(s) in {time.monotonic() - started:.1f} s")
    _out(_summary(stack) + "\n")
    _print_table(stack)
    _flush()
    return _degraded(stack, "the restart")


def _scale(args: argparse.Namespace) -> int:
    from podtally.local import scale

    stack = scale(args.replicas, args.name, progress=err)
    _out(_summary(stack) + "\n")
    _print_table(stack)
    _flush()
    return _degraded(stack, "scaling")


def _down(args: argparse.Namespace) -> int:
    from podtally.local import down

    if down(args.name, progress=err):
        err(f"stack {args.name!r} is down")
    else:
        err(f"stack {args.name!r} was not running")
    return 0
