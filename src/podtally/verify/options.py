"""What to verify and how: :class:`VerifyOptions`, its defaults and limits, validated once, with
one-line usage errors; and the parsers of the values it takes that have a text form of their own
(durations, error budgets, request headers, the CA file).

The target URL and ``resolve`` entries are parsed in :mod:`podtally.verify.target`, the expected
split in :mod:`podtally.verify.expected_split`. Plain data and parsing; no sockets. Errors name the
setting at fault (``setting="timeout"``, the keyword of :class:`VerifyOptions`) and its value; a
command line words them with its own flags.
"""

from __future__ import annotations

import math
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from podtally.errors import Phrase, Setting, UsageError
from podtally.verify.clients import Protocol, protocol_for
from podtally.verify.expected_split import ExpectedSplit
from podtally.verify.target import Resolve, Target, parse_grpc_url, parse_url

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_REQUESTS",
    "DEFAULT_REQUESTS",
    "DEFAULT_STREAMS",
    "DEFAULT_TIMEOUT",
    "DEFAULT_TOLERANCE",
    "MAX_CONCURRENCY",
    "MAX_REDIRECTS",
    "MAX_STREAMS",
    "VerifyOptions",
    "check_cacert",
    "check_header",
    "parse_duration",
    "parse_header",
    "parse_rate_fraction",
]

DEFAULT_REQUESTS = 100  # what a fixed-size caller (the demo) sends when it names no amount
DEFAULT_MAX_REQUESTS = 20_000  # auto mode: the most it sends before giving up on a verdict
DEFAULT_CONCURRENCY = 10
DEFAULT_TIMEOUT = 5.0
DEFAULT_ALPHA = 0.001
DEFAULT_TOLERANCE = 0.2
MAX_REDIRECTS = 10
MAX_CONCURRENCY = 10_000
DEFAULT_STREAMS = 10  # HTTP/2: concurrent streams per connection
MAX_STREAMS = 1000

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


POSITIVE = "must be a finite number more than zero"


def _positive(value: float) -> bool:
    """More than zero and finite (``inf`` is no rate, duration or timeout: it has no JSON)."""
    return value > 0 and math.isfinite(value)


def parse_duration(value: str, setting: str = "duration") -> float:
    """``30``, ``30s``, ``500ms``, ``2m``, ``1h`` → seconds (positive).

    Anything else (text, a negative number, zero) is one and the same usage error, naming
    ``setting`` (such as ``"timeout"``).
    """
    match = _DURATION.match(value)
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)] if match else 0.0
    if not seconds > 0 or not math.isfinite(seconds):
        raise UsageError(
            "must be a duration more than zero (examples: 30, 30s, 500ms, 2m)",
            setting=setting,
            value=value,
        )
    return seconds


def parse_rate_fraction(value: str, setting: str = "max_error_rate") -> float:
    """An error budget: ``0.01`` or ``1%`` → 0.01, within 0..1."""
    text = value.strip()
    try:
        number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise UsageError(
            "is not a number (examples: 0, 0.01, 1%)", setting=setting, value=value
        ) from None
    if not 0.0 <= number <= 1.0 or math.isnan(number):
        raise UsageError("must be between 0 and 1 (or 0% and 100%)", setting=setting, value=value)
    return number


def check_header(name: str, value: str, given: str | None = None) -> None:
    """A request header podtally can send as is: a token name, a Latin-1 value without control
    characters (HTTP/1.1 header fields are bytes; nothing is encoded on the user's behalf).

    Errors name the ``headers`` setting with ``given`` (the header as written) as its value.
    """

    def fail(problem: str) -> UsageError:
        return UsageError(problem, setting="headers", value=given or f"{name}: {value}")

    if not _TOKEN.match(name):
        raise fail(
            f"header name {name!r} is not valid (ASCII letters, digits and !#$%&'*+-.^_`|~ only)"
        )
    if name.lower() in ("connection", "content-length", "transfer-encoding"):
        raise fail(
            Phrase(
                f"header {name!r} is set by podtally (use ",
                Setting("keep_alive"),
                " for Connection)",
            )
        )
    if "\r" in value or "\n" in value:
        raise fail(f"header {name!r} contains a line break")
    for char in value:
        if ord(char) > 0xFF:
            raise fail(
                f"header {name!r} contains {char!r}, which is not Latin-1: HTTP header values "
                "are bytes, encode it first (percent-encoding, for example)"
            )
        if char != "\t" and (ord(char) < 0x20 or ord(char) == 0x7F):
            raise fail(f"header {name!r} contains a control character ({char!r})")


def parse_header(value: str) -> tuple[str, str]:
    """``Name: value``, one of the ``headers`` setting."""
    name, sep, text = value.partition(":")
    name, text = name.strip(), text.strip()
    if not sep or not name:
        raise UsageError("must be 'Name: value'", setting="headers", value=value)
    check_header(name, text, given=value)
    return name, text


def check_cacert(path: Path) -> None:
    """A CA file that loads: checked up front, so a bad one is bad input, not a failed run."""

    def fail(problem: str) -> UsageError:
        return UsageError(problem, setting="cacert", value=path)

    if not path.exists():
        raise fail("no such file")
    if not path.is_file():
        raise fail("not a file")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        raise fail(
            f"cannot load it as PEM ({reason}): give the CA certificate(s), "
            "-----BEGIN CERTIFICATE-----"
        ) from None
    except OSError as exc:
        raise fail(f"cannot read it: {exc.strerror or exc}") from None


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    """One verification run. Construct it directly (library) or from the CLI; both validate.

    ``requests`` and ``duration`` bound the run: with only ``duration`` set the run sends as many
    requests as it can in that time; with both, whichever comes first ends it; the verdict is
    judged once, at the end (fixed mode). With neither (``requests=None``, the default) the run
    is in auto mode: it keeps sending until the verdict is ``even`` or ``uneven`` (checked after
    every batch, with anytime-valid intervals), at most ``max_requests`` requests and
    ``max_duration`` seconds.

    The protocol follows the URL and two switches: ``http(s)://`` is HTTP/1.1, or with
    ``http2`` HTTP/2 (ALPN ``h2`` over TLS, h2c with prior knowledge in the clear) over
    ``concurrency`` connections of ``streams`` concurrent streams each; ``grpc(s)://HOST:PORT``
    is gRPC, one channel per concurrency slot reused for every call, or with ``new_channel`` a
    channel per call.
    """

    url: str
    requests: int | None = None
    duration: float | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    rate: float | None = None
    timeout: float = DEFAULT_TIMEOUT
    keep_alive: bool = False
    follow: bool = False
    cacert: Path | None = None
    insecure: bool = False
    resolve: tuple[Resolve, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    alpha: float = DEFAULT_ALPHA
    expect_pods: int | None = None
    max_error_rate: float = 0.0
    expect_split: ExpectedSplit | None = None
    tolerance: float = DEFAULT_TOLERANCE
    max_requests: int = DEFAULT_MAX_REQUESTS
    max_duration: float | None = None
    http2: bool = False
    streams: int = DEFAULT_STREAMS
    new_channel: bool = False
    target: Target = field(init=False)
    protocol: Protocol = field(init=False)

    def __post_init__(self) -> None:
        protocol = protocol_for(self.url, http2=self.http2, new_channel=self.new_channel)
        object.__setattr__(self, "protocol", protocol)
        target = parse_grpc_url(self.url) if protocol == "grpc" else parse_url(self.url)
        object.__setattr__(self, "target", target)
        if isinstance(self.streams, bool) or not 1 <= self.streams <= MAX_STREAMS:
            raise UsageError(
                f"must be between 1 and {MAX_STREAMS}", setting="streams", value=self.streams
            )
        if self.streams != DEFAULT_STREAMS and protocol != "http2":
            raise UsageError(
                Phrase("streams share an HTTP/2 connection: it needs ", Setting("http2")),
                setting="streams",
                value=self.streams,
            )
        if self.keep_alive and protocol != "http1":
            raise UsageError(
                "is for HTTP/1.1: HTTP/2 connections and gRPC channels are always reused",
                setting="keep_alive",
                value=True,
            )
        if protocol == "grpc":
            if self.follow:
                raise UsageError(
                    "is for HTTP: a gRPC call has no redirects", setting="follow", value=True
                )
            if self.headers:
                name, text = self.headers[0]
                raise UsageError(
                    "is an HTTP header: gRPC calls send none",
                    setting="headers",
                    value=f"{name}: {text}",
                )
        if self.requests is not None and self.requests < 1:
            raise UsageError("must be at least 1", setting="requests", value=self.requests)
        if self.duration is not None and not _positive(self.duration):
            raise UsageError(POSITIVE, setting="duration", value=self.duration)
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise UsageError(
                f"must be between 1 and {MAX_CONCURRENCY}",
                setting="concurrency",
                value=self.concurrency,
            )
        if self.rate is not None and not _positive(self.rate):
            raise UsageError(POSITIVE, setting="rate", value=self.rate)
        if not _positive(self.timeout):
            raise UsageError(POSITIVE, setting="timeout", value=self.timeout)
        if not 0.0 < self.alpha < 1.0:
            raise UsageError("must be between 0 and 1", setting="alpha", value=self.alpha)
        if self.expect_pods is not None and self.expect_pods < 1:
            raise UsageError("must be at least 1", setting="expect_pods", value=self.expect_pods)
        if isinstance(self.tolerance, bool) or not 0.0 < self.tolerance < 1.0:
            raise UsageError(
                "must be between 0 and 1 (a relative tolerance: 0.2 is ±20%)",
                setting="tolerance",
                value=self.tolerance,
            )
        if self.max_requests < 1:
            raise UsageError("must be at least 1", setting="max_requests", value=self.max_requests)
        if self.max_duration is not None and not _positive(self.max_duration):
            raise UsageError(POSITIVE, setting="max_duration", value=self.max_duration)
        if self.expect_split is not None and self.expect_pods is not None:
            raise UsageError(
                Phrase(
                    "give ", Setting("expect_pods"), " or ", Setting("expect_split"), ", not both"
                ),
                setting="expect_split",
                value=str(self.expect_split),
            )
        if not 0.0 <= self.max_error_rate <= 1.0:
            raise UsageError(
                "must be within 0..1", setting="max_error_rate", value=self.max_error_rate
            )
        for name, value in self.headers:
            check_header(name, value)
        if self.cacert is not None:
            if self.insecure:
                raise UsageError(
                    Phrase("and ", Setting("insecure"), " contradict each other; pick one"),
                    setting="cacert",
                    value=self.cacert,
                )
            check_cacert(self.cacert)

    @property
    def auto(self) -> bool:
        """Auto mode: no ``requests`` and no ``duration``; stop when the verdict is known."""
        return self.requests is None and self.duration is None

    @property
    def reuses_connections(self) -> bool:
        """Do requests share connections (keep-alive, HTTP/2, reused gRPC channels)? Then a
        connection-level balancer pins them, and the spread is judged per connection."""
        if self.protocol == "grpc":
            return not self.new_channel
        return self.protocol == "http2" or self.keep_alive

    @property
    def request_limit(self) -> int | None:
        """The most requests this run sends: ``requests``, or ``max_requests`` in auto mode."""
        return self.max_requests if self.auto else self.requests

    @property
    def time_limit(self) -> float | None:
        """The longest this run lasts: ``duration``, or ``max_duration`` in auto mode."""
        return self.max_duration if self.auto else self.duration

    def address_for(self, host: str, port: int) -> str | None:
        """The ``resolve`` address for HOST:PORT, if one was given."""
        key = host.lower().rstrip(".")
        for entry in self.resolve:
            if entry.host == key and entry.port == port:
                return entry.address
        return None
