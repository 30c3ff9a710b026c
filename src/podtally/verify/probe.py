"""What every engine records: :class:`Observation`, :class:`Progress`, :class:`ProbeSummary`.

The engines themselves live in :mod:`podtally.verify.clients`, one a protocol (HTTP/1.1, HTTP/2,
gRPC) on one shared loop (:mod:`podtally.verify.clients.runner`). Each sends requests through a
URL and hands one :class:`Observation` a request to a ``sink`` callable, in the order they
complete. Nothing here counts or judges: :mod:`podtally.verify.tally` turns observations into
counts, and the reports read them back from files as the same records.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from podtally.contract import FIELDS, parse_text

ErrorKind = Literal["refused", "timeout", "tls", "reset", "no-identity", "http-status", "other"]
ERROR_KINDS: tuple[ErrorKind, ...] = (
    "refused",
    "timeout",
    "tls",
    "reset",
    "no-identity",
    "http-status",
    "other",
)
IdentitySource = Literal["headers", "body"]
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``async (host, port) -> addresses``; raises :class:`socket.gaierror` for an unknown name."""

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
BODY_LIMIT = 64 * 1024  # enough for any identity page; the rest of a body is read and dropped
PROGRESS_INTERVAL = 0.1  # seconds between progress callbacks

NO_IDENTITY: tuple[None, ...] = (None,) * len(FIELDS)  # an observation that names no pod


@dataclass(frozen=True, slots=True)
class Observation:
    """One request, as seen from the client. Times are seconds; ``start`` is since the run began."""

    index: int
    start: float
    latency: float
    status: int | None
    pod: str | None
    node: str | None
    namespace: str | None
    ip: str | None
    zone: str | None
    version: str | None
    source: IdentitySource | None
    error: ErrorKind | None
    detail: str | None
    connection: int | None
    peer: str | None
    location: str | None
    redirects: int

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def of(cls, identity: Sequence[str | None], **rest: Any) -> Observation:
        """An observation whose identity fields come in the contract's order (:data:`FIELDS`),
        as every engine collects them; ``rest`` names the other fields."""
        fields: dict[str, Any] = dict(zip(FIELDS, identity, strict=True))
        return cls(**fields, **rest)


Sink = Callable[[Observation], None]
"""Where an engine hands each observation, as the request completes."""


@dataclass(frozen=True, slots=True)
class Progress:
    """Passed to the ``progress`` callback about ten times a second."""

    done: int
    errors: int
    elapsed: float
    total: int | None  # the request bound, if any (auto mode: the most it will send)
    duration: float | None  # the time bound, if any
    status: str | None = None  # auto mode: the intervals and verdict so far, in one line

    @property
    def fraction(self) -> float:
        """How far the run is, 0..1, by whichever bound ends it first."""
        parts = []
        if self.total:
            parts.append(self.done / self.total)
        if self.duration:
            parts.append(self.elapsed / self.duration)
        return min(1.0, max(parts)) if parts else 0.0


@dataclass(frozen=True, slots=True)
class ProbeSummary:
    """What the engine knows beyond the observations: time taken, connections, addresses."""

    started_at: float  # wall clock (epoch seconds)
    elapsed: float
    sent: int
    connections: int
    addresses: tuple[str, ...]  # every address:port connected to, in first-use order


def parse_identity_text(body: bytes) -> list[str | None] | None:
    """The identity lines of a body (the contract's parser), in FIELDS order, if it has them."""
    parsed = parse_text(body)
    return None if parsed is None else [parsed.get(name) for name in FIELDS]


async def system_addresses(host: str, port: int) -> list[str]:
    """The system resolver (``getaddrinfo``, through the event loop): every TCP address."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop (a core dependency: about twice the request rate), else the stdlib loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a core dependency
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
