"""`podtally verify URL`: parse options, call the library, print the report.

Progress goes to stderr (a bar, only on a terminal and only for runs longer than a second);
the report or the ``--json`` document goes to stdout; the exit code is the verdict's
(:mod:`podtally.cli.watching`). The option groups here are shared: `demo` takes the load,
judging and output options (:func:`load_options`, :data:`JUDGE_OPTIONS`,
:data:`OUTPUT_OPTIONS`), `cloud verify` all of :data:`VERIFY_OPTIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from podtally.cli.common import require_extra
from podtally.cli.params import Command, option, path_option, stacked
from podtally.cli.report import HTML_OPTION, JSON_OPTION
from podtally.cli.signals import capture_signals
from podtally.cli.watching import outputs_of, until_interrupted, watching
from podtally.verify.options import (
    DEFAULT_ALPHA,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_REQUESTS,
    DEFAULT_STREAMS,
    DEFAULT_TIMEOUT,
    DEFAULT_TOLERANCE,
    VerifyOptions,
)

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


def load_options(default_requests: int | None) -> Callable[[F], F]:
    """-n, --duration, -c, --rate, --timeout, --keep-alive: how much load, and how."""
    shown = (
        "auto: until the verdict is known"
        if default_requests is None
        else f"{default_requests}, or unlimited with --duration"
    )
    return stacked(
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


JUDGE_OPTIONS = stacked(
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

OUTPUT_OPTIONS = stacked(
    JSON_OPTION,
    path_option(
        "--observations",
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


def verify_settings(
    requests: int | None,
    duration: str | None,
    timeout: str,
    max_error_rate: str,
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

    if expect_split is not None:
        settings["expect_split"] = parse_expect_split(expect_split)
    if max_duration is not None:
        settings["max_duration"] = parse_duration(max_duration, "max_duration")
    return {
        **settings,
        "requests": requests,
        "duration": parse_duration(duration, "duration") if duration else None,
        "timeout": parse_duration(timeout, "timeout"),
        "max_error_rate": parse_rate_fraction(max_error_rate, "max_error_rate"),
        "resolve": tuple(parse_resolve(value) for value in resolve),
        "headers": tuple(parse_header(value) for value in headers),
    }


# Everything `verify` takes besides the URL (`cloud verify` takes these too).
VERIFY_OPTIONS = stacked(
    load_options(None),
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
    JUDGE_OPTIONS,
    path_option("--cacert", metavar="FILE", help="trust this CA (PEM) for https and grpcs"),
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
    OUTPUT_OPTIONS,
)


def verify_url(url: str, **settings: Any) -> int:
    """Verify ``url`` with the options of :data:`VERIFY_OPTIONS`; print; return the exit code."""
    require_extra("verify", "httptools", "scipy")
    from podtally.verify import run

    outputs = outputs_of(settings)
    options = VerifyOptions(url, **verify_settings(**settings))
    if options.protocol == "grpc":
        require_extra("grpc", "grpc", "google.protobuf")
    elif options.protocol == "http2":
        require_extra("verify", "h2")
    split = options.expect_split
    # SIGTERM (`timeout 60 podtally verify ...`, a CI job cancelled) stops the run as Ctrl-C
    # does: the partial report, and the observations file's end line.
    with (
        capture_signals("interrupt"),
        watching(options.expect_pods, options.alpha, expect_split=split, **outputs) as watch,
    ):
        watch.judged_by(options)
        result = watch.result = until_interrupted(
            lambda: run(options, progress=watch.progress, on_observation=watch.observe())
        )
    return watch.report(result, "podtally verify")


@click.command(
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
)
@click.argument("url")
@VERIFY_OPTIONS
def verify_command(url: str, **settings: Any) -> int:
    return verify_url(url, **settings)


COMMANDS: dict[str, click.Command] = {"verify": verify_command}
