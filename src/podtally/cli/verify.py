"""`podtally verify URL` and `podtally demo`: parse options, call the library, print the report.

Progress goes to stderr (a bar, only on a terminal and only for runs longer than a second);
the report or the ``--json`` document goes to stdout; the exit code is the verdict's.
"""

from __future__ import annotations

import argparse
import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from podtally.cli.common import err, require_extra, stderr_is_tty
from podtally.errors import PodtallyError, UsageError

if TYPE_CHECKING:
    from podtally.verify import Observation, Progress, VerifyOptions, VerifyResult

DEMO_NAME = "podtally-demo"
DEMO_REQUESTS = 1000
DEMO_DRAIN_SECONDS = 0.5
DEMO_PORTS = (18080, 18443, 18404)  # apart from a user's own stack on 8080/8443/8404
BAR_AFTER = 1.0  # seconds: short runs never draw a bar
BAR_WIDTH = 24

VERIFY_EPILOG = """\
exit codes:
  0  the spread is even and errors are within --max-error-rate
  1  uneven, too few requests to judge, no identity, fewer pods than --expect-pods,
     or errors over budget
  2  bad usage (a malformed URL, --resolve, a negative -n, ...)
  3  nothing answered at all (one line on stderr says why), or another operational failure

examples:
  podtally verify http://127.0.0.1:8080/ -n 1000 --expect-pods 3
  podtally verify https://app.example.com/ --duration 30s -c 50 --json > result.json
  podtally verify https://app.example.com/ --resolve app.example.com:443:10.0.0.7 --cacert ca.pem
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "verify",
        help="send requests through a URL and check which pods answered, and how evenly",
        description="Send requests through a load-balanced URL, read which pod answered each\n"
        "(X-Pod-* headers, or 'Pod:' lines in the body), and judge the spread with a\n"
        "chi-square test: the original `curl | sort | uniq -c` check, measured.",
        epilog=VERIFY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", help="http:// or https:// URL to send GET requests to")
    _load_options(p)
    _judge_options(p)
    p.add_argument("--cacert", type=Path, metavar="FILE", help="trust this CA (PEM) for https")
    p.add_argument(
        "-k", "--insecure", action="store_true", help="do not verify the TLS certificate"
    )
    p.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="HOST:PORT:ADDR",
        help="connect to ADDR for HOST:PORT, as curl does (Host header and TLS name stay HOST); "
        "repeatable",
    )
    p.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header; repeatable",
    )
    p.add_argument(
        "-L", "--follow", action="store_true", help="follow redirects (not followed otherwise)"
    )
    _output_options(p)
    p.set_defaults(func=_verify)

    d = sub.add_parser(
        "demo",
        help="bring up the local stack, verify it, print the report, tear it down",
        description="The whole story in one command: start replicas of the identity service "
        "behind HAProxy (its own stack, apart from `podtally up`), verify the balancer through "
        "it with new connections, print the report, tear everything down. The exit code is "
        "the verifier's.",
        epilog="exit codes: as `podtally verify`; the stack is removed in every case.",
    )
    d.add_argument(
        "--replicas", type=int, default=3, help="replicas to start, 1 to 64 (default: 3)"
    )
    d.add_argument(
        "--nodes", type=int, default=None, help="simulated nodes to spread them over, 1 to 64"
    )
    d.add_argument(
        "--http",
        action="store_true",
        help="verify the plain-HTTP listener instead of HTTPS with the stack's own CA",
    )
    d.add_argument(
        "--ports",
        default=",".join(str(port) for port in DEMO_PORTS),
        metavar="HTTP,HTTPS,STATS",
        help="the demo stack's HAProxy ports (default: %(default)s)",
    )
    d.add_argument("--run-dir", type=Path, default=None, help="where the stack keeps its state")
    _load_options(d, default_requests=DEMO_REQUESTS)
    _judge_options(d)
    _output_options(d)
    d.set_defaults(func=_demo)


def _load_options(p: argparse.ArgumentParser, default_requests: int | None = None) -> None:
    shown = default_requests or 100
    p.add_argument(
        "-n",
        "--requests",
        type=int,
        default=None,
        help=f"requests to send (default: {shown}, or unlimited with --duration)",
    )
    p.add_argument(
        "-d", "--duration", help="run this long instead (30, 30s, 500ms, 2m); with -n, the first"
    )
    p.add_argument("-c", "--concurrency", type=int, default=10, help="in flight (default: 10)")
    p.add_argument("--rate", type=float, help="at most this many requests per second in total")
    p.add_argument(
        "--timeout", default="5s", help="per request, connect to last byte (default: 5s)"
    )
    p.add_argument(
        "--keep-alive",
        action="store_true",
        help="reuse connections (default: a new connection per request, as curl in a loop); "
        "per-connection balancers then pin each connection to one pod",
    )


def _judge_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--alpha",
        type=float,
        default=0.001,
        help="significance level: the spread is uneven when p < alpha (default: 0.001)",
    )
    p.add_argument(
        "--expect-pods", type=int, metavar="K", help="fail unless at least K pods answered"
    )
    p.add_argument(
        "--max-error-rate",
        default="0",
        metavar="RATE",
        help="fail when more requests than this fail (0.01 or 1%%; default: 0)",
    )


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document instead")
    p.add_argument(
        "--observations",
        type=Path,
        metavar="FILE",
        help="write one JSON line per request; '-' for stdout (the report then goes to stderr)",
    )
    p.add_argument("--no-progress", action="store_true", help="never draw the progress bar")


# --- helpers ------------------------------------------------------------------------------------
def _options(
    args: argparse.Namespace, url: str, default_requests: int = 100, **overrides: Any
) -> VerifyOptions:
    from podtally.verify import (
        VerifyOptions,
        parse_duration,
        parse_header,
        parse_rate_fraction,
        parse_resolve,
    )

    duration = parse_duration(args.duration, "--duration") if args.duration else None
    requests = args.requests
    if requests is None and duration is None:
        requests = default_requests
    values: dict[str, Any] = {
        "url": url,
        "requests": requests,
        "duration": duration,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "timeout": parse_duration(args.timeout, "--timeout"),
        "keep_alive": args.keep_alive,
        "follow": getattr(args, "follow", False),
        "cacert": getattr(args, "cacert", None),
        "insecure": getattr(args, "insecure", False),
        "resolve": tuple(parse_resolve(v) for v in getattr(args, "resolve", [])),
        "headers": tuple(parse_header(v) for v in getattr(args, "header", [])),
        "alpha": args.alpha,
        "expect_pods": args.expect_pods,
        "max_error_rate": parse_rate_fraction(args.max_error_rate),
    }
    values.update(overrides)
    return VerifyOptions(**values)


class _ProgressBar:
    """``[#####-----]  52%  523/1000  4.1k/s  0 errors`` on stderr, redrawn in place."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.drawn = False

    def update(self, progress: Progress) -> None:
        if progress.elapsed < BAR_AFTER:
            return
        fraction = progress.fraction
        filled = int(fraction * BAR_WIDTH)
        rate = progress.done / progress.elapsed if progress.elapsed else 0.0
        count = f"{progress.done}/{progress.total}" if progress.total else f"{progress.done}"
        if progress.duration and not progress.total:
            count += f" in {progress.elapsed:.1f}/{progress.duration:g}s"
        line = (
            f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {fraction:4.0%}  {count}  "
            f"{rate:,.0f}/s  {progress.errors} errors"
        )
        self.stream.write(f"\r{line}\x1b[K")
        self.stream.flush()
        self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


@contextmanager
def _observation_writer(path: Path | None) -> Iterator[Callable[[Observation], None] | None]:
    """Open ``--observations`` up front (a bad path is bad input: exit 2 before anything runs).

    The file is opened without truncating it and emptied at the first observation, so a run
    that never sends a request leaves an existing file as it was, and removes one it created.
    """
    if path is None:
        yield None
        return
    from podtally.verify.report import observation_line

    if _is_stdout(path):

        def to_stdout(observation: Observation) -> None:
            sys.stdout.write(observation_line(observation))

        yield to_stdout
        return
    existed = path.exists()
    try:
        handle = path.open("a", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--observations {path}: cannot write it: {exc.strerror}") from None
    # Only a regular file is emptied (not /dev/stdout, a pipe or a device).
    regular = stat.S_ISREG(os.fstat(handle.fileno()).st_mode)
    started = False

    def write(observation: Observation) -> None:
        nonlocal started
        try:
            if not started:
                started = True
                if regular:
                    handle.truncate(0)
            handle.write(observation_line(observation))
        except OSError as exc:
            raise PodtallyError(f"--observations {path}: {exc.strerror}") from None

    try:
        yield write
    finally:
        try:
            handle.close()
        except OSError as exc:
            raise PodtallyError(f"--observations {path}: {exc.strerror}") from None
        finally:
            if not started and not existed and regular:
                path.unlink(missing_ok=True)


def _is_stdout(path: Path | None) -> bool:
    return path is not None and str(path) == "-"


def _check_outputs(args: argparse.Namespace) -> None:
    """Two documents cannot share stdout: ``--observations -`` sends the text report to stderr,
    and there is no sensible place for a ``--json`` document next to it."""
    if args.json and _is_stdout(args.observations):
        raise UsageError(
            "--observations - and --json would both write to stdout: "
            "give --observations a file, or leave --json out"
        )


def _run_and_print(
    args: argparse.Namespace,
    options: VerifyOptions,
    on_observation: Callable[[Observation], None] | None,
) -> int:
    """Run, print the report (or the JSON document), return the exit code.

    Ctrl-C prints the report of what was collected so far, marked as interrupted, then
    raises :class:`KeyboardInterrupt` (``error: interrupted``, exit 130).
    """
    from podtally.verify import VerifyInterrupted, run
    from podtally.verify.report import render_json, render_text

    bar = _ProgressBar(sys.stderr) if stderr_is_tty() and not args.no_progress else None
    try:
        result: VerifyResult | None = run(
            options,
            progress=bar.update if bar is not None else None,
            on_observation=on_observation,
        )
    except VerifyInterrupted as exc:
        result = exc.result
    finally:
        if bar is not None:
            bar.clear()
    # The report goes to stdout, unless stdout carries the observations.
    out = sys.stderr if _is_stdout(args.observations) else sys.stdout
    if result is None:  # interrupted before any request completed: nothing to report
        raise KeyboardInterrupt
    if args.json:
        out.write(render_json(result))
    elif result.interrupted or result.verdict.result != "unreachable":
        out.write(render_text(result))
    out.flush()
    sys.stdout.flush()
    if result.interrupted:
        raise KeyboardInterrupt
    if result.verdict.result == "unreachable":
        err(f"error: {result.verdict.failures[0]}")
    return result.exit_code


# --- commands -----------------------------------------------------------------------------------
def _verify(args: argparse.Namespace) -> int:
    require_extra("verify", "httptools", "scipy")
    options = _options(args, args.url)
    _check_outputs(args)
    with _observation_writer(args.observations) as on_observation:
        return _run_and_print(args, options, on_observation)


def _parse_ports(text: str) -> tuple[int, int, int]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3:
        raise UsageError(
            f"--ports {text!r} must be three ports, HTTP,HTTPS,STATS (got {len(parts)})"
        )
    for what, part in zip(("HTTP", "HTTPS", "STATS"), parts, strict=True):
        if not (part.isascii() and part.isdigit()):
            raise UsageError(f"--ports {text!r}: the {what} port {part!r} is not a number")
        if not 1 <= int(part) <= 65535:
            raise UsageError(
                f"--ports {text!r}: the {what} port {part} must be between 1 and 65535"
            )
    http, https, stats = (int(p) for p in parts)
    if len({http, https, stats}) != 3:
        raise UsageError(f"--ports {text!r}: the three ports must differ")
    return http, https, stats


def _check_count(value: int | None, option: str, most: int) -> None:
    if value is not None and not 1 <= value <= most:
        raise UsageError(f"{option} must be between 1 and {most} (got {value})")


# `up` names the port options it has; the demo has one option for all three.
def _demo_usage(exc: UsageError) -> UsageError:
    """A usage error from the stack, in the demo's own words (its one --ports option)."""
    if exc.setting not in ("http_port", "https_port", "stats_port"):
        return exc
    if exc.what.endswith("pick another"):
        return UsageError(
            exc.what.removesuffix("another") + "other ports with --ports HTTP,HTTPS,STATS"
        )
    return UsageError(f"--ports: {exc.what}")


def _sigterm_as_sigint(signum: int, frame: FrameType | None) -> None:
    """SIGTERM does what Ctrl-C does: while requests run, the event loop cancels them cleanly
    (raising here could land inside a transport callback); either way `finally` tears down."""
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        raise KeyboardInterrupt  # SIGINT is ignored (a background job): stop all the same
    signal.raise_signal(signal.SIGINT)


def _demo(args: argparse.Namespace) -> int:
    require_extra("local", "httptools", "scipy", "cryptography", "yaml")
    from podtally.local import MAX_REPLICAS, StackConfig, up

    http_port, https_port, stats_port = _parse_ports(args.ports)
    _check_count(args.replicas, "--replicas", MAX_REPLICAS)
    _check_count(args.nodes, "--nodes", MAX_REPLICAS)
    config = StackConfig(
        name=DEMO_NAME,
        replicas=args.replicas,
        nodes=args.nodes,
        http_port=http_port,
        https_port=https_port,
        stats_port=stats_port,
        tls=not args.http,
        run_dir=args.run_dir,
        # Nothing sends traffic when the demo tears down: a short drain is enough.
        drain_seconds=DEMO_DRAIN_SECONDS,
    )
    # Check every option and open every output before anything starts, so a typo or a bad
    # path fails at once (exit 2) and leaves nothing behind.
    probe_options = _options(args, f"http://127.0.0.1:{http_port}/")
    _check_outputs(args)

    started = time.monotonic()
    previous = signal.signal(signal.SIGTERM, _sigterm_as_sigint)
    try:
        with _observation_writer(args.observations) as on_observation:
            try:
                stack = up(config, progress=err)
            except UsageError as exc:
                raise _demo_usage(exc) from None
            try:
                url = stack.http_url if args.http else stack.url
                options = _options(
                    args,
                    url,
                    default_requests=DEMO_REQUESTS,
                    cacert=None if args.http else stack.ca_path,
                    expect_pods=probe_options.expect_pods or args.replicas,
                )
                err(f"verifying {url} with {_describe(options)} ...")
                code = _run_and_print(args, options, on_observation)
            finally:
                _tear_down(args.run_dir)
    finally:
        signal.signal(signal.SIGTERM, previous)
    err(f"demo done in {time.monotonic() - started:.1f} s")
    return code


def _tear_down(run_dir: Path | None) -> None:
    """Remove the demo stack. Ctrl-C or SIGTERM meanwhile waits until it is gone, then counts."""
    from podtally.local import down

    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        err(f"tearing down {DEMO_NAME} ...")
        down(DEMO_NAME, run_dir=run_dir, progress=err)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if held:
        raise KeyboardInterrupt


def _describe(options: VerifyOptions) -> str:
    amount = f"{options.requests} requests" if options.requests else ""
    if options.duration:
        amount = (amount + " or " if amount else "") + f"{options.duration:g}s"
    mode = "keep-alive" if options.keep_alive else "a new connection each"
    return f"{amount}, {options.concurrency} at a time, {mode}"
