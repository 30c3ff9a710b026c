"""`podtally verify URL` and `podtally demo`: parse options, call the library, print the report.

Progress goes to stderr (a bar, only on a terminal and only for runs longer than a second);
the report or the ``--json`` document goes to stdout; the exit code is the verdict's.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from podtally.cli.common import err, require_extra, stderr_is_tty
from podtally.cli.params import IMAGE_OPTION, Command, flag_namer, option
from podtally.cli.progress import progress_bar
from podtally.cli.report import HTML_OPTION, check_html, write_html
from podtally.cli.signals import capture_signals
from podtally.errors import Phrase, PodtallyError, Setting, UsageError, worded
from podtally.local.demo import (
    CANARY_REPLICAS,
    CANARY_SPLIT,
    CANARY_WEIGHT,
    DEMO_PORTS,
    DEMO_REPLICAS,
    DEMO_REQUESTS,
)
from podtally.verify.options import (
    DEFAULT_ALPHA,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_REQUESTS,
    DEFAULT_STREAMS,
    DEFAULT_TIMEOUT,
    DEFAULT_TOLERANCE,
    VerifyOptions,
)

if TYPE_CHECKING:
    from podtally.verify import Observation, Progress, VerifyResult

F = Callable[..., Any]

VERIFY_EPILOG = """\b
verdicts (each wrong with probability at most --alpha):
  even          every pod's share is shown within --tolerance of its expected share
  uneven        some pod's share is shown outside it
  inconclusive  neither yet; the report says how many requests would most likely decide it
Without -n or --duration, requests are sent until the verdict is even or uneven (anytime-valid
intervals, checked after every batch), at most --max-requests / --max-duration.

\b
exit codes:
  0  even, every expected pod answered, and errors are within --max-error-rate
  1  uneven, inconclusive, no identity, a pod of --expect-pods or --expect-split never
     answered, or errors over budget
  2  bad usage (a malformed URL, --resolve, --expect-split, a negative -n, ...)
  3  nothing answered at all (one line on stderr says why), or another operational failure

\b
examples:
  podtally verify http://127.0.0.1:8080/ --expect-pods 3
  podtally verify http://127.0.0.1:8080/ --expect-split version=stable:90,canary:10
  podtally verify http://127.0.0.1:8080/ -n 1000 --tolerance 0.1
  podtally verify https://app.example.com/ --duration 30s -c 50 --json > result.json
  podtally verify https://app.example.com/ --resolve app.example.com:443:10.0.0.7 --cacert ca.pem
  PODTALLY_CACERT=ca.pem podtally verify https://app.example.com/
  podtally verify https://app.example.com/ --http2 -c 4 --streams 20 --expect-pods 3
  podtally verify grpc://127.0.0.1:9090 --expect-pods 3
  podtally verify grpcs://api.example.com:443 --new-channel --cacert ca.pem
"""


def _options(*decorators: Callable[[Any], Any]) -> Callable[[F], click.Command]:
    """Decorators as if stacked in this order (the first is the outermost)."""

    def apply(func: F) -> click.Command:
        decorated: Any = func
        for decorator in reversed(decorators):
            decorated = decorator(decorated)
        command: click.Command = decorated
        return command

    return apply


def _load_options(default_requests: int | None) -> tuple[Callable[[F], F], ...]:
    shown = (
        "auto: until the verdict is known"
        if default_requests is None
        else f"{default_requests}, or unlimited with --duration"
    )
    return (
        option(
            "-n",
            "--requests",
            type=int,
            default=None,
            show_default=shown,
            help="requests to send, then judge once",
        ),
        option(
            "-d",
            "--duration",
            default=None,
            help="run this long instead (30, 30s, 500ms, 2m); with -n, the first",
        ),
        option("-c", "--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="in flight"),
        option(
            "--rate",
            type=float,
            default=None,
            show_default="no limit",
            help="at most this many requests per second in total",
        ),
        option(
            "--timeout",
            default=f"{DEFAULT_TIMEOUT:g}s",
            help="per request, connect to last byte",
        ),
        option(
            "--keep-alive",
            is_flag=True,
            help="reuse connections (default: a new connection per request, as curl in a "
            "loop); per-connection balancers then pin each connection to one pod",
        ),
    )


_JUDGE_OPTIONS: tuple[Callable[[F], F], ...] = (
    option(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help="error rate of each verdict (simultaneous intervals at 1 - alpha)",
    ),
    option(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="relative: 0.2 means each share must be shown within ±20% of its expected share",
    ),
    option(
        "--expect-pods",
        type=int,
        default=None,
        metavar="K",
        help="K pods should share evenly; fail unless all K answered",
    ),
    option(
        "--expect-split",
        default=None,
        metavar="FIELD=VALUE:WEIGHT,...",
        help="the split expected instead of an even one; FIELD is pod, node, zone or version "
        "(version=stable:90,canary:10); within a value, its pods share its weight evenly",
    ),
    option(
        "--max-error-rate",
        default=f"{VerifyOptions.__dataclass_fields__['max_error_rate'].default:g}",
        metavar="RATE",
        help="fail when more requests than this fail (0.01 or 1%)",
    ),
)

_OUTPUT_OPTIONS: tuple[Callable[[F], F], ...] = (
    option("--json", is_flag=True, help="print one JSON document instead"),
    option(
        "--observations",
        type=click.Path(dir_okay=True, path_type=Path),
        default=None,
        metavar="FILE",
        help="write one JSON line per request; '-' for stdout (the report then goes to stderr)",
    ),
    option("--no-progress", is_flag=True, help="never draw the progress bar"),
    HTML_OPTION,
    option(
        "--live",
        is_flag=True,
        help="on a terminal, a live view: per pod a bar with its share and interval, "
        "requests/s, errors, the verdict as it forms (elsewhere: the usual output)",
    ),
)


def _verify_settings(
    requests: int | None,
    duration: str | None,
    timeout: str,
    max_error_rate: str,
    default_requests: int | None,
    resolve: tuple[str, ...] = (),
    headers: tuple[str, ...] = (),
    expect_split: str | None = None,
    max_duration: str | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """The command line's text → :class:`VerifyOptions`' keyword arguments (library parsers)."""
    from podtally.verify import (
        parse_duration,
        parse_expect_split,
        parse_header,
        parse_rate_fraction,
        parse_resolve,
    )

    seconds = parse_duration(duration, "duration") if duration else None
    if requests is None and seconds is None:
        requests = default_requests
    if expect_split is not None:
        settings["expect_split"] = parse_expect_split(expect_split)
    if max_duration is not None:
        settings["max_duration"] = parse_duration(max_duration, "max_duration")
    return {
        **settings,
        "requests": requests,
        "duration": seconds,
        "timeout": parse_duration(timeout, "timeout"),
        "max_error_rate": parse_rate_fraction(max_error_rate, "max_error_rate"),
        "resolve": tuple(parse_resolve(value) for value in resolve),
        "headers": tuple(parse_header(value) for value in headers),
    }


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
        raise UsageError(
            f"cannot write it: {exc.strerror}", setting="observations", value=path
        ) from None
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
            raise PodtallyError(str(exc.strerror), setting="observations", value=path) from None

    try:
        yield write
    finally:
        try:
            handle.close()
        except OSError as exc:
            raise PodtallyError(str(exc.strerror), setting="observations", value=path) from None
        finally:
            if not started and not existed and regular:
                path.unlink(missing_ok=True)


def _is_stdout(path: Path | None) -> bool:
    return path is not None and str(path) == "-"


def _check_outputs(json: bool, observations: Path | None) -> None:
    """Two documents cannot share stdout: ``--observations -`` sends the text report to stderr,
    and there is no sensible place for a ``--json`` document next to it."""
    if json and _is_stdout(observations):
        raise UsageError(
            Phrase(
                Setting("observations"),
                " - and ",
                Setting("json"),
                " would both write to stdout: give ",
                Setting("observations"),
                " a file, or leave ",
                Setting("json"),
                " out",
            )
        )


def _print_report(result: VerifyResult, json: bool, observations: Path | None) -> int:
    """Print the report (or the JSON document); return the exit code.

    An interrupted run's report is marked as such, then :class:`KeyboardInterrupt` is raised
    (``error: interrupted``, exit 130).
    """
    from podtally.verify.report import render_json, render_text

    flag_name = flag_namer(click.get_current_context().command)
    # The report goes to stdout, unless stdout carries the observations.
    out = sys.stderr if _is_stdout(observations) else sys.stdout
    if json:
        out.write(render_json(result, flag_name))
    elif result.interrupted or result.verdict.result != "unreachable":
        out.write(render_text(result, flag_name))
    out.flush()
    sys.stdout.flush()
    if result.interrupted:
        raise KeyboardInterrupt
    if result.verdict.result == "unreachable":
        err(f"error: {worded(result.verdict.failures[0], flag_name)}")
    return result.exit_code


class _Watch:
    """Where the run's progress and observations go: the bar or the live view, the
    ``--observations`` file, and a list for ``--html``."""

    def __init__(self, write: Callable[[Observation], None] | None, html: Path | None) -> None:
        self.observations: list[Observation] = []
        self.sinks = [sink for sink in (write, self.observations.append if html else None) if sink]
        self.progress: Callable[[Progress], None] | None = None
        self.say: Callable[[str], None] = err
        self.result: VerifyResult | None = None  # the live view's last frame shows its verdict

    def observe(self) -> Callable[[Observation], None] | None:
        sinks = self.sinks
        if not sinks:
            return None

        def observe(observation: Observation) -> None:
            for sink in sinks:
                sink(observation)

        return observe


@contextmanager
def _watching(
    observations: Path | None,
    html: Path | None,
    no_progress: bool,
    live: bool,
    expect_pods: int | None,
    alpha: float,
) -> Iterator[_Watch]:
    """The bar (as before), or with ``--live`` on a terminal the live view, on stderr.
    ``--live`` draws on stderr, ``--no-progress`` asks for nothing there: together, bad usage."""
    if live and no_progress:
        raise UsageError(
            Phrase(
                Setting("live"), " and ", Setting("no_progress"), " contradict each other; pick one"
            )
        )
    with _observation_writer(observations) as write:
        watch = _Watch(write, html)
        if live and stderr_is_tty():
            from rich.console import Console
            from rich.live import Live

            from podtally.verify.live import LiveTally

            tally = LiveTally(expect_pods=expect_pods, alpha=alpha)
            watch.sinks.append(tally.add)
            with Live(tally.view(), console=Console(stderr=True), auto_refresh=False) as screen:

                def tick(progress: Progress) -> None:
                    tally.tick(progress)
                    screen.update(tally.view(), refresh=True)

                watch.progress = tick
                watch.say = screen.console.print
                try:
                    yield watch
                finally:
                    flag_name = flag_namer(click.get_current_context().command)
                    screen.update(tally.view(watch.result, flag_name), refresh=True)
            return
        with progress_bar(no_progress) as bar:
            if bar is not None:
                watch.progress = bar.update

                def say(line: str) -> None:
                    bar.clear()
                    err(line)

                watch.say = say
            yield watch


def _until_interrupted(call: Callable[[], VerifyResult]) -> VerifyResult:
    """``call()``'s result; after Ctrl-C, the partial result (none at all: Ctrl-C goes on)."""
    from podtally.verify import VerifyInterrupted

    try:
        return call()
    except VerifyInterrupted as exc:
        if exc.result is None:  # interrupted before any request completed: nothing to report
            raise KeyboardInterrupt from None
        return exc.result


# --- commands -----------------------------------------------------------------------------------
# Everything `verify` takes besides the URL (`cloud verify` takes these too).
VERIFY_OPTIONS: tuple[Callable[[F], F], ...] = (
    *_load_options(None),
    option(
        "--max-requests",
        type=int,
        default=DEFAULT_MAX_REQUESTS,
        help="auto mode (no -n, no --duration): send at most this many",
    ),
    option(
        "--max-duration",
        default=None,
        show_default="no limit",
        help="auto mode: run at most this long (30s, 2m)",
    ),
    *_JUDGE_OPTIONS,
    option(
        "--cacert",
        type=click.Path(path_type=Path),
        default=None,
        metavar="FILE",
        help="trust this CA (PEM) for https and grpcs",
    ),
    option("-k", "--insecure", is_flag=True, help="do not verify the TLS certificate"),
    option(
        "--resolve",
        multiple=True,
        metavar="HOST:PORT:ADDR",
        help="connect to ADDR for HOST:PORT, as curl does (Host header and TLS name stay "
        "HOST); repeatable",
    ),
    option(
        "-H",
        "--header",
        "headers",
        multiple=True,
        metavar="'NAME: VALUE'",
        help="extra request header; repeatable",
    ),
    option("-L", "--follow", is_flag=True, help="follow redirects (not followed otherwise)"),
    option(
        "--http2",
        is_flag=True,
        help="HTTP/2 for an http(s) URL (TLS with ALPN h2, or h2c in the clear): -c "
        "connections, each carrying --streams requests at a time; per-connection balancers "
        "pin each connection to one pod",
    ),
    option(
        "--streams",
        type=int,
        default=DEFAULT_STREAMS,
        help="with --http2: concurrent streams per connection",
    ),
    option(
        "--new-channel",
        is_flag=True,
        help="grpc(s):// URL: a new channel per call (default: one channel per -c slot, "
        "reused for every call, as a real client does; per-connection balancers pin it)",
    ),
    *_OUTPUT_OPTIONS,
)


def verify_url(
    url: str,
    json: bool,
    observations: Path | None,
    no_progress: bool,
    html: Path | None,
    live: bool,
    **settings: Any,
) -> int:
    """Verify ``url`` with the options of :data:`VERIFY_OPTIONS`; print; return the exit code."""
    require_extra("verify", "httptools", "scipy")
    from podtally.verify import run

    values = _verify_settings(default_requests=None, **settings)
    options = VerifyOptions(url, **values)
    if options.protocol == "grpc":
        require_extra("grpc", "grpc", "google.protobuf")
    elif options.protocol == "http2":
        require_extra("verify", "h2")
    _check_outputs(json, observations)
    check_html(html)
    with _watching(
        observations, html, no_progress, live, options.expect_pods, options.alpha
    ) as watch:
        result = watch.result = _until_interrupted(
            lambda: run(options, progress=watch.progress, on_observation=watch.observe())
        )
    write_html(html, result, watch.observations, "podtally verify")
    return _print_report(result, json, observations)


@_options(
    click.command(
        "verify",
        cls=Command,
        short_help="send requests through a URL and check which pods answered, and how evenly",
        help="Send requests through a load-balanced URL, read which pod answered each (X-Pod-* "
        "headers, or 'Pod:' lines in the body), and judge the spread: even, uneven or "
        "inconclusive, each with a stated error rate. The original `curl | sort | uniq -c` "
        "check, measured. URL is http(s)://... (HTTP/1.1, or HTTP/2 with --http2) or "
        "grpc(s)://HOST:PORT (podtally.v1.Identity/Get calls, the pod read from the "
        "response metadata).",
        epilog=VERIFY_EPILOG,
    ),
    click.argument("url"),
    *VERIFY_OPTIONS,
)
def verify_command(url: str, **settings: Any) -> int:
    return verify_url(url, **settings)


@_options(
    click.command(
        "demo",
        cls=Command,
        short_help="bring up the local stack, verify it, print the report, tear it down",
        help="The whole story in one command: start replicas of the identity service behind "
        "HAProxy (its own stack, apart from `podtally up`), verify the balancer through it "
        "with new connections, print the report, tear everything down. The exit code is the "
        "verifier's.",
        epilog="exit codes: as `podtally verify`; the stack is removed in every case.",
    ),
    option("--replicas", type=int, default=DEMO_REPLICAS, help="replicas to start, 1 to 64"),
    option(
        "--canary",
        is_flag=True,
        help=f"add {CANARY_REPLICAS} canary replica(s) that HAProxy sends {CANARY_WEIGHT:g}% of "
        f"the requests, and verify that split (--expect-split {CANARY_SPLIT}) until the "
        "verdict is known",
    ),
    option(
        "--grpc",
        is_flag=True,
        help="issue 12's failure instead: gRPC clients hold channels through the Service path "
        "(per connection) while the stack scales from 3 to 6 replicas; then the ALB path (per "
        "call) and a channel per call. Exit 0 when each of the three verdicts is the expected "
        "one (3 pods never answered; even; even)",
    ),
    option(
        "--nodes",
        type=int,
        default=None,
        show_default="one each",
        help="simulated nodes to spread them over, 1 to 64",
    ),
    option(
        "--http",
        is_flag=True,
        help="verify the plain-HTTP listener instead of HTTPS with the stack's own CA",
    ),
    option(
        "--ports",
        default=",".join(str(port) for port in DEMO_PORTS),
        metavar="HTTP,HTTPS,STATS",
        help="the demo stack's HAProxy ports",
    ),
    IMAGE_OPTION,
    option(
        "--run-dir",
        type=click.Path(path_type=Path),
        default=None,
        show_default="the state directory",
        help="where the stack keeps its state",
    ),
    *_load_options(DEMO_REQUESTS),
    *_JUDGE_OPTIONS,
    *_OUTPUT_OPTIONS,
)
def demo_command(
    replicas: int,
    canary: bool,
    grpc: bool,
    nodes: int | None,
    http: bool,
    ports: str,
    run_dir: Path | None,
    image: str | None,
    json: bool,
    observations: Path | None,
    no_progress: bool,
    html: Path | None,
    live: bool,
    **settings: Any,
) -> int:
    require_extra("local", "httptools", "scipy", "cryptography", "yaml")
    from podtally.local.demo import demo

    verify = _verify_settings(default_requests=None, **settings)
    if grpc:  # issue 12: its own scenario and report (podtally.cli.demo_grpc)
        from podtally.cli.demo_grpc import demo_grpc

        return demo_grpc(ports, run_dir, json=json, image=image, **verify)
    _check_outputs(json, observations)
    check_html(html)
    with (
        capture_signals("interrupt"),
        _watching(
            observations,
            html,
            no_progress,
            live,
            verify.get("expect_pods") or replicas,
            verify["alpha"],
        ) as watch,
    ):
        result = watch.result = _until_interrupted(
            lambda: demo(
                replicas=replicas,
                canary=canary,
                nodes=nodes,
                http=http,
                ports=ports,
                run_dir=run_dir,
                image=image,
                say=watch.say,
                progress=watch.progress,
                on_observation=watch.observe(),
                **verify,
            )
        )
    write_html(html, result, watch.observations, "podtally demo")
    return _print_report(result, json, observations)


COMMANDS: dict[str, click.Command] = {"verify": verify_command, "demo": demo_command}
