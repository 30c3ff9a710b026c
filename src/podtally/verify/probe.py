"""The request engine: send GET requests through a URL and record one :class:`Observation` each.

An asyncio client on raw transports with the ``httptools`` (llhttp) response parser and the
stdlib ``ssl`` module. By default every request opens its own connection and says
``Connection: close`` (as ``curl`` in a loop does, and as connection-level balancers need to
spread at all); with ``keep_alive`` each worker reuses its connection for as long as the server
allows.

Nothing here counts or judges: observations go to a ``sink`` callable, one per request, in the
order they complete. :mod:`podtally.verify.tally` turns them into counts.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httptools

from podtally import __version__
from podtally.contract import FIELDS, LOCAL_CA_ORGANIZATION, header_keys, parse_text
from podtally.errors import PodtallyError
from podtally.verify.options import MAX_REDIRECTS, VerifyOptions
from podtally.verify.target import Target

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

# Identity header (lower-case bytes, as httptools hands them over) -> its slot in FIELDS order.
_IDENTITY_HEADERS = {key: FIELDS.index(name) for key, name in header_keys().items()}
_NO_IDENTITY: tuple[None, ...] = (None,) * len(FIELDS)


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


class _Failure(Exception):
    """A request failed; ``kind`` is one of :data:`ERROR_KINDS`."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(detail)
        self.kind: ErrorKind = kind
        self.detail = detail


class _Response:
    __slots__ = (
        "body",
        "body_size",
        "chunked",
        "has_length",
        "headers_done",
        "identity",
        "keep_alive",
        "location",
        "status",
    )

    def __init__(self) -> None:
        self.status = 0
        self.identity: list[bytes | None] = list(_NO_IDENTITY)
        self.location: bytes | None = None
        self.body: list[bytes] = []
        self.body_size = 0
        self.headers_done = False
        self.keep_alive = False
        self.has_length = False
        self.chunked = False


class _Attempt:
    """The state of one request while it runs: where it is going, over which connection."""

    __slots__ = ("connection", "keep", "redirects", "target")

    def __init__(self, target: Target) -> None:
        self.target = target
        self.connection: _Connection | None = None
        self.keep: _Connection | None = None  # a keep-alive connection left behind by a redirect
        self.redirects = 0


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: one request at a time, one or (keep-alive) more in a row."""

    def __init__(self, serial: int, peer: str) -> None:
        self.serial = serial
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[_Response] | None = None
        self._response = _Response()

    # --- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._finish()
        except httptools.HttpParserError as exc:
            self._fail(_Failure("other", f"malformed HTTP response from {self.peer}: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost decides what the EOF meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        response = self._response
        if exc is None and response.headers_done and not (response.has_length or response.chunked):
            self._finish()  # a body delimited by the end of the connection (HTTP/1.0 style)
            return
        if exc is not None:
            self._fail(_classify(exc, self.peer))
        elif response.headers_done:
            self._fail(_Failure("reset", f"connection to {self.peer} closed mid-response"))
        else:
            self._fail(_Failure("reset", f"connection to {self.peer} closed without a response"))

    # --- httptools callbacks -------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower()
        slot = _IDENTITY_HEADERS.get(key)
        if slot is not None:
            self._response.identity[slot] = value
        elif key == b"location":
            self._response.location = value
        elif key == b"content-length":
            self._response.has_length = True
        elif key == b"transfer-encoding":
            self._response.chunked = True

    def on_headers_complete(self) -> None:
        response = self._response
        response.headers_done = True
        response.status = self._parser.get_status_code()
        response.keep_alive = self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        response = self._response
        if response.body_size < BODY_LIMIT:
            response.body.append(body)
            response.body_size += len(body)

    def on_message_complete(self) -> None:
        self._finish()

    # --- used by the engine --------------------------------------------------------------------
    def request(self, payload: bytes) -> asyncio.Future[_Response]:
        waiter: asyncio.Future[_Response] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._response = _Response()
        if self.lost or self.transport is None:
            waiter.set_exception(_Failure("reset", f"connection to {self.peer} already closed"))
        else:
            self.transport.write(payload)
        return waiter

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abort()

    def _finish(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(self._response)

    def _fail(self, failure: _Failure) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(failure)


def _classify(exc: BaseException, peer: str) -> _Failure:
    """Map an exception from connecting, TLS or reading to an error kind and a one-line detail."""
    if isinstance(exc, _Failure):
        return exc
    if isinstance(exc, ConnectionRefusedError):
        return _Failure("refused", f"connection refused to {peer}")
    if isinstance(exc, TimeoutError):
        return _Failure("timeout", f"timed out waiting for {peer}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return certificate_failure(exc, peer)
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        hint = " (is it plain HTTP? try http://)" if reason == "WRONG_VERSION_NUMBER" else ""
        return _Failure("tls", f"TLS handshake with {peer} failed: {reason}{hint}")
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return _Failure("reset", f"connection to {peer} reset")
    if isinstance(exc, OSError):
        if exc.errno == errno.EADDRNOTAVAIL:
            return _Failure("other", f"no local port free to connect to {peer}")
        reason = exc.strerror or str(exc)
        return _Failure("other", f"cannot connect to {peer}: {reason}")
    return _Failure("other", f"{type(exc).__name__}: {exc}")


# OpenSSL's verification results (X509_V_ERR_*) that need their own advice.
_NAME_MISMATCH = frozenset({62, 64})  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
# The chain ends at a CA this client does not know: DEPTH_ZERO_SELF_SIGNED_CERT,
# SELF_SIGNED_CERT_IN_CHAIN, UNABLE_TO_GET_ISSUER_CERT(_LOCALLY), UNABLE_TO_VERIFY_LEAF_SIGNATURE.
_UNKNOWN_CA = frozenset({2, 18, 19, 20, 21})


def certificate_failure(
    exc: ssl.SSLCertVerificationError,
    peer: str,
    host: str | None = None,
    cacert: str | None = None,
    local_ca: bool = False,
) -> _Failure:
    """A certificate that failed verification, with the advice that fits why it failed.

    ``host`` is the name asked for, ``cacert`` the ``--cacert`` file if one was given, and
    ``local_ca`` whether it is the local stack's CA (whose certificate names only localhost,
    127.0.0.1 and ``podtally up --host NAME``).
    """
    reason = exc.verify_message or exc.reason or str(exc)
    code = exc.verify_code
    if code in _NAME_MISMATCH:
        name = host or "the host asked for"
        what = "IP address" if code == 64 else "hostname"
        hint = f": restart the local stack with podtally up --host {host}" if local_ca else ""
        return _Failure(
            "tls", f"TLS certificate of {peer} does not name {name} ({what} mismatch){hint}"
        )
    if code in _UNKNOWN_CA:
        if cacert is not None:
            hint = f" (it is not signed by the CA in --cacert {cacert})"
        else:
            hint = " (use --cacert FILE)"
        return _Failure("tls", f"TLS certificate of {peer} not trusted: {reason}{hint}")
    return _Failure("tls", f"TLS certificate of {peer} not trusted: {reason}")


def _is_local_ca(context: ssl.SSLContext) -> bool:
    """Does ``context`` trust the local stack's CA (loaded from ``--cacert``)?"""
    for cert in context.get_ca_certs():
        subject = cert.get("subject", ())
        for rdn in subject if isinstance(subject, tuple) else ():
            if ("organizationName", LOCAL_CA_ORGANIZATION) in rdn:
                return True
    return False


def _build_request(target: Target, options: VerifyOptions) -> bytes:
    lines = [
        f"GET {target.path} HTTP/1.1",
        f"Host: {target.host_header}",
        f"User-Agent: podtally/{__version__}",
        "Accept: text/plain, */*",
    ]
    names = {name.lower() for name, _ in options.headers}
    if "host" in names:
        lines.pop(1)
    lines.extend(f"{name}: {value}" for name, value in options.headers)
    lines.append("Connection: keep-alive" if options.keep_alive else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _ssl_context(options: VerifyOptions) -> ssl.SSLContext:
    if options.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    cafile = str(options.cacert) if options.cacert is not None else None
    try:
        return ssl.create_default_context(cafile=cafile)
    except (ssl.SSLError, OSError) as exc:
        # VerifyOptions loaded it already; this is the file changing under a running verifier.
        raise PodtallyError(
            f"cannot load it as PEM: {exc}", setting="cacert", value=str(options.cacert)
        ) from None


def _decode_location(value: bytes) -> str:
    """A ``Location`` header: UTF-8 when it is (parse_url then percent-encodes it), else Latin-1."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _text(value: bytes | None, cache: dict[bytes, str]) -> str | None:
    """Decode a header value, sharing one str per distinct value (there are few pods)."""
    if value is None:
        return None
    text = cache.get(value)
    if text is None:
        text = value.decode("utf-8", "replace").strip()
        if len(cache) < 10_000:
            cache[value] = text
    return text


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


class Engine:
    """One run of the probe. Create it, then ``await engine.run()``; observations go to ``sink``."""

    def __init__(
        self,
        options: VerifyOptions,
        sink: Callable[[Observation], None],
        progress: Callable[[Progress], None] | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.options = options
        self._sink = sink
        self._progress = progress
        self._resolver = resolver if resolver is not None else system_addresses
        self._ssl: ssl.SSLContext | None = None
        self._local_ca: bool | None = None  # does --cacert hold the local stack's CA?
        self._requests: dict[tuple[str, str, int, str], bytes] = {}
        self._addresses: dict[tuple[str, int], list[tuple[str, str]]] = {}
        self._turn: dict[tuple[str, int], itertools.count[int]] = {}
        self._peers: dict[str, None] = {}
        self._strings: dict[bytes, str] = {}
        self._serial = itertools.count(1)
        self._opened = 0
        self._claimed = 0
        self._done = 0
        self._errors = 0
        # perf_counter() at the start: observation times, the rate schedule and the deadline
        # (uvloop's loop.time() ticks in whole milliseconds and is cached per loop iteration).
        self._t0 = 0.0
        self._started_at = 0.0
        self._deadline = float("inf")
        self._stopped = False
        self.status: str | None = None  # a caller's one-line state (auto mode: the verdict so far)

    def stop(self) -> None:
        """Send no more requests (those in flight complete): the answer is known."""
        self._stopped = True

    # --- set-up --------------------------------------------------------------------------------
    async def _addresses_for(self, target: Target) -> list[tuple[str, str]]:
        """(address, 'address:port' label) pairs for a target: --resolve, a literal, or DNS."""
        key = (target.host, target.port)
        known = self._addresses.get(key)
        if known is not None:
            return known
        forced = self.options.address_for(target.host, target.port)
        if forced is not None:
            found = [forced]
        else:
            try:
                found = list(dict.fromkeys(await self._resolver(target.host, target.port)))
            except socket.gaierror as exc:
                reason = exc.strerror or str(exc)
                raise PodtallyError(f"cannot resolve host {target.host}: {reason}") from None
            if not found:
                raise PodtallyError(f"cannot resolve host {target.host}: no address")
        pairs = [(a, f"[{a}]:{target.port}" if ":" in a else f"{a}:{target.port}") for a in found]
        self._addresses[key] = pairs
        self._turn[key] = itertools.count()
        return pairs

    def _payload(self, target: Target) -> bytes:
        key = (target.scheme, target.host, target.port, target.path)
        payload = self._requests.get(key)
        if payload is None:
            payload = self._requests[key] = _build_request(target, self.options)
        return payload

    async def _connect(self, target: Target) -> _Connection:
        pairs = self._addresses.get((target.host, target.port)) or await self._addresses_for(target)
        # New connections take the target's addresses in turn, so a DNS name with several
        # addresses (one per zone, as for an NLB) is exercised across all of them.
        address, peer = pairs[next(self._turn[(target.host, target.port)]) % len(pairs)]
        self._peers.setdefault(peer)
        connection = _Connection(next(self._serial), peer)
        self._opened += 1
        loop = asyncio.get_running_loop()
        try:
            if target.tls:
                if self._ssl is None:
                    self._ssl = _ssl_context(self.options)
                await loop.create_connection(
                    lambda: connection,
                    address,
                    target.port,
                    ssl=self._ssl,
                    server_hostname=target.host,
                )
            else:
                await loop.create_connection(lambda: connection, address, target.port)
        except BaseException as exc:
            connection.abort()
            if isinstance(exc, asyncio.CancelledError | TimeoutError):
                raise
            if isinstance(exc, ssl.SSLCertVerificationError):
                raise self._certificate_failure(exc, target, peer) from None
            if isinstance(exc, Exception):
                raise _classify(exc, peer) from None
            raise
        return connection

    def _certificate_failure(
        self, exc: ssl.SSLCertVerificationError, target: Target, peer: str
    ) -> _Failure:
        if self._local_ca is None:
            self._local_ca = self._ssl is not None and _is_local_ca(self._ssl)
        cacert = self.options.cacert
        return certificate_failure(
            exc,
            peer,
            host=target.host,
            cacert=str(cacert) if cacert is not None else None,
            local_ca=self._local_ca,
        )

    # --- one request ---------------------------------------------------------------------------
    async def _send(self, attempt: _Attempt, kept: _Connection | None) -> _Response:
        """The request and the redirects it follows; raises on any failure."""
        options = self.options
        while True:
            connection = kept if attempt.redirects == 0 and kept and not kept.lost else None
            kept = None
            if connection is not None:
                attempt.connection = connection
                try:
                    response = await connection.request(self._payload(attempt.target))
                except _Failure as exc:
                    if exc.kind != "reset":
                        raise
                    # The server closed an idle keep-alive connection as we reused it:
                    # retry once on a new one, as HTTP clients do.
                    connection.abort()
                    connection = None
            if connection is None:
                connection = attempt.connection = await self._connect(attempt.target)
                response = await connection.request(self._payload(attempt.target))
            location = response.location
            if not (
                options.follow
                and response.status in REDIRECT_STATUSES
                and location is not None
                and attempt.redirects < MAX_REDIRECTS
            ):
                return response
            if options.keep_alive and attempt.redirects == 0 and response.keep_alive:
                attempt.keep = connection
            else:
                connection.close()
            try:
                attempt.target = attempt.target.join(_decode_location(location))
            except PodtallyError as exc:
                raise _Failure("other", str(exc)) from None
            attempt.redirects += 1

    async def _exchange(
        self, index: int, started: float, kept: _Connection | None
    ) -> _Connection | None:
        """Send request ``index``; return the connection to keep for the next one, if any."""
        options = self.options
        attempt = _Attempt(options.target)
        failure: _Failure | None = None
        response: _Response | None = None
        try:
            async with asyncio.timeout(options.timeout):
                response = await self._send(attempt, kept)
        except asyncio.CancelledError:
            # The run was stopped (Ctrl-C): this request never completed and is not counted.
            for unfinished in {attempt.connection, attempt.keep, kept}:
                if unfinished is not None:
                    unfinished.abort()
            raise
        except TimeoutError:
            failure = _Failure(
                "timeout",
                f"no response from {self._peer_of(attempt)} within {options.timeout:g}s "
                "(--timeout)",
            )
        except _Failure as exc:
            failure = exc
        except OSError as exc:
            failure = _classify(exc, self._peer_of(attempt))
        latency = time.perf_counter() - started
        connection = attempt.connection

        if failure is not None or response is None or connection is None:
            if connection is not None:
                connection.abort()
            if attempt.keep is not None and attempt.keep is not connection:
                attempt.keep.close()
            failure = failure or _Failure("other", "no response")
            self._emit(self._failed(index, started, latency, failure, attempt))
            return None

        keep = attempt.keep
        if options.keep_alive and response.keep_alive and attempt.redirects == 0:
            keep = connection
        elif connection is not keep:
            connection.close()
        self._emit(self._observe(index, started, latency, response, connection, attempt.redirects))
        return keep

    def _failed(
        self, index: int, started: float, latency: float, failure: _Failure, attempt: _Attempt
    ) -> Observation:
        connection = attempt.connection
        return Observation.of(
            _NO_IDENTITY,
            index=index,
            start=started - self._t0,
            latency=latency,
            status=None,
            source=None,
            error=failure.kind,
            detail=failure.detail,
            connection=connection.serial if connection is not None else None,
            peer=self._peer_of(attempt),
            location=None,
            redirects=attempt.redirects,
        )

    def _observe(
        self,
        index: int,
        started: float,
        latency: float,
        response: _Response,
        connection: _Connection,
        redirects: int,
    ) -> Observation:
        cache = self._strings
        raw = response.identity
        values: list[str | None]
        source: IdentitySource | None
        if raw[0] is not None:
            values = [_text(v, cache) for v in raw]
            source = "headers"
        else:
            parsed = parse_identity_text(b"".join(response.body)) if response.body else None
            values = parsed if parsed is not None else list(_NO_IDENTITY)
            source = "body" if parsed is not None else None
        status = response.status
        error: ErrorKind | None = None
        detail: str | None = None
        location = _text(response.location, cache) if status in REDIRECT_STATUSES else None
        if not 200 <= status < 300:
            error = "http-status"
            detail = f"HTTP {status}"
            if location is not None:
                detail = f"HTTP {status}: redirected to {location}"
        elif source is None:
            error = "no-identity"
            detail = "response carried neither X-Pod-* headers nor 'Pod:' lines"
        return Observation.of(
            values,
            index=index,
            start=started - self._t0,
            latency=latency,
            status=status,
            source=source,
            error=error,
            detail=detail,
            connection=connection.serial,
            peer=connection.peer,
            location=location,
            redirects=redirects,
        )

    def _peer_of(self, attempt: _Attempt) -> str:
        if attempt.connection is not None:
            return attempt.connection.peer
        target = attempt.target
        pairs = self._addresses.get((target.host, target.port))
        if pairs and len(pairs) == 1:
            return pairs[0][1]
        host = f"[{target.host}]" if ":" in target.host else target.host
        return f"{host}:{target.port}"

    def _emit(self, observation: Observation) -> None:
        self._done += 1
        if observation.error is not None:
            self._errors += 1
        self._sink(observation)

    # --- the run -------------------------------------------------------------------------------
    def _claim(self) -> int | None:
        total = self.options.request_limit
        if self._stopped or (total is not None and self._claimed >= total):
            return None
        index = self._claimed
        self._claimed += 1
        return index

    async def _worker(self) -> None:
        rate = self.options.rate
        deadline = self._deadline
        kept: _Connection | None = None
        try:
            while True:
                index = self._claim()
                if index is None:
                    return
                if rate is not None:
                    # Request i starts no sooner than i/rate after the start (checked against
                    # the clock after each sleep: timers may fire a little early), and a wait
                    # never outlasts the --duration deadline.
                    due = min(self._t0 + index / rate, deadline)
                    while (delay := due - time.perf_counter()) > 0:
                        await asyncio.sleep(delay)
                # The start time and the deadline check are one reading of the clock: no
                # request starts at or after the deadline, however loaded the machine is.
                started = time.perf_counter()
                if started >= deadline:
                    return
                kept = await self._exchange(index, started, kept)
        finally:
            if kept is not None:
                kept.close()

    async def _report_progress(
        self, loop: asyncio.AbstractEventLoop, progress: Callable[[Progress], None]
    ) -> None:
        while True:
            progress(self._snapshot(loop))
            await asyncio.sleep(PROGRESS_INTERVAL)

    def _snapshot(self, loop: asyncio.AbstractEventLoop) -> Progress:
        return Progress(
            done=self._done,
            errors=self._errors,
            elapsed=time.perf_counter() - self._t0,
            total=self.options.request_limit,
            duration=self.options.time_limit,
            status=self.status,
        )

    async def run(self) -> ProbeSummary:
        loop = asyncio.get_running_loop()
        target = self.options.target
        if target.tls:
            self._ssl = _ssl_context(self.options)
        await self._addresses_for(target)  # a DNS failure is one error up front, not N
        self._started_at = time.time()
        self._t0 = time.perf_counter()
        limit = self.options.time_limit
        if limit is not None:
            self._deadline = self._t0 + limit
        workers = self.options.concurrency
        if self.options.request_limit is not None:
            workers = min(workers, self.options.request_limit)
        reporter = (
            asyncio.ensure_future(self._report_progress(loop, self._progress))
            if self._progress is not None
            else None
        )
        tasks = [asyncio.ensure_future(self._worker()) for _ in range(workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            if reporter is not None:
                reporter.cancel()
        summary = self.summary()
        if self._progress is not None:
            self._progress(self._snapshot(loop))
        return summary

    @property
    def started(self) -> bool:
        """Whether the first request was sent (name resolution and TLS set-up passed)."""
        return self._t0 > 0

    def summary(self) -> ProbeSummary:
        """The run so far: after :meth:`run` returned, or what an interrupted run got done."""
        return ProbeSummary(
            started_at=self._started_at,
            elapsed=time.perf_counter() - self._t0 if self.started else 0.0,
            sent=self._done,
            connections=self._opened,
            addresses=tuple(self._peers),
        )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop (a core dependency: about twice the request rate), else the stdlib loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a core dependency
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
