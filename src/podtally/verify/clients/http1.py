"""HTTP/1.1 client: the fast path, on raw asyncio transports with the ``httptools`` parser.

An asyncio client on raw transports with the ``httptools`` (llhttp) response parser and the
stdlib ``ssl`` module. By default every request opens its own connection and says
``Connection: close`` (as ``curl`` in a loop does, and as connection-level balancers need to
spread at all); with ``keep_alive`` each lane reuses its connection for as long as the server
allows. Redirects are followed with ``follow`` (up to ``MAX_REDIRECTS``), on new connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import httptools

from podtally import __version__
from podtally.errors import Phrase, PodtallyError, Setting
from podtally.verify.clients.http import IDENTITY_HEADERS, HttpResponse, HttpRunner
from podtally.verify.clients.transport import (
    Connection,
    Failure,
    classify,
)
from podtally.verify.options import MAX_REDIRECTS, VerifyOptions
from podtally.verify.probe import (
    NO_IDENTITY,
    REDIRECT_STATUSES,
)
from podtally.verify.target import Target


class _Response(HttpResponse):
    __slots__ = ("chunked", "has_length", "headers_done", "keep_alive")

    def __init__(self) -> None:
        super().__init__()
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


class _Connection(Connection):
    """One TCP (or TLS) connection: one request at a time, one or (keep-alive) more in a row."""

    def __init__(self, serial: int, peer: str) -> None:
        super().__init__(serial, peer)
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[_Response] | None = None
        self._response = _Response()

    # --- asyncio.Protocol ----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._finish()
        except httptools.HttpParserError as exc:
            self._fail(Failure("other", f"malformed HTTP response from {self.peer}: {exc}"))
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
            self._fail(classify(exc, self.peer))
        elif response.headers_done:
            self._fail(Failure("reset", f"connection to {self.peer} closed mid-response"))
        else:
            self._fail(Failure("reset", f"connection to {self.peer} closed without a response"))

    # --- httptools callbacks -------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower()
        slot = IDENTITY_HEADERS.get(key)
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
        self._response.add_body(body)

    def on_message_complete(self) -> None:
        self._finish()

    # --- used by the engine --------------------------------------------------------------------
    def request(self, payload: bytes) -> asyncio.Future[_Response]:
        waiter: asyncio.Future[_Response] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._response = _Response()
        if self.lost or self.transport is None:
            waiter.set_exception(Failure("reset", f"connection to {self.peer} already closed"))
        else:
            self.transport.write(payload)
        return waiter

    def _finish(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(self._response)

    def _fail(self, failure: Failure) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(failure)


def build_request(target: Target, options: VerifyOptions) -> bytes:
    """The request's bytes: GET, the Host (unless ``headers`` names one), then ``headers``."""
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


def _decode_location(value: bytes) -> str:
    """A ``Location`` header: UTF-8 when it is (parse_url then percent-encodes it), else Latin-1."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


class Engine(HttpRunner):
    """HTTP/1.1 over ``options.target``: ``options.concurrency`` lanes, one request at a time."""

    async def _prepare(self) -> None:
        self._requests: dict[tuple[str, str, int, str], bytes] = {}
        await super()._prepare()

    def _lanes(self) -> list[Coroutine[Any, Any, None]]:
        return [self._lane() for _ in range(self._lane_count())]

    async def _lane(self) -> None:
        kept: _Connection | None = None
        try:
            while (claimed := await self._next()) is not None:
                kept = await self._exchange(*claimed, kept)
        finally:
            if kept is not None:
                kept.close()

    def _payload(self, target: Target) -> bytes:
        key = (target.scheme, target.host, target.port, target.path)
        payload = self._requests.get(key)
        if payload is None:
            payload = self._requests[key] = build_request(target, self.options)
        return payload

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
                except Failure as exc:
                    if exc.kind != "reset":
                        raise
                    # The server closed an idle keep-alive connection as we reused it:
                    # retry once on a new one, as HTTP clients do.
                    connection.abort()
                    connection = None
            if connection is None:
                target = attempt.target
                connection = attempt.connection = await self._connect(
                    _Connection, target.host, target.port, target.tls
                )
                response = await connection.request(self._payload(target))
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
                raise Failure("other", str(exc)) from None
            attempt.redirects += 1

    async def _exchange(
        self, index: int, started: float, kept: _Connection | None
    ) -> _Connection | None:
        """Send request ``index``; return the connection to keep for the next one, if any."""
        options = self.options
        attempt = _Attempt(options.target)
        failure: Failure | None = None
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
            failure = Failure(
                "timeout",
                Phrase(
                    f"no response from {self._peer_of(attempt)} within {options.timeout:g}s (",
                    Setting("timeout"),
                    ")",
                ),
            )
        except Failure as exc:
            failure = exc
        except OSError as exc:
            failure = classify(exc, self._peer_of(attempt))
        latency = time.perf_counter() - started
        connection = attempt.connection

        if failure is not None or response is None or connection is None:
            if connection is not None:
                connection.abort()
            if attempt.keep is not None and attempt.keep is not connection:
                attempt.keep.close()
            self._record(
                index,
                started,
                latency,
                NO_IDENTITY,
                failure or Failure("other", "no response"),
                connection=connection.serial if connection is not None else None,
                peer=self._peer_of(attempt),
                redirects=attempt.redirects,
            )
            return None

        keep = attempt.keep
        if options.keep_alive and response.keep_alive and attempt.redirects == 0:
            keep = connection
        elif connection is not keep:
            connection.close()
        self._record_response(index, started, latency, response, connection, attempt.redirects)
        return keep

    def _peer_of(self, attempt: _Attempt) -> str:
        if attempt.connection is not None:
            return attempt.connection.peer
        target = attempt.target
        label = self._peer_label(target.host, target.port)
        if label is not None:
            return label
        host = f"[{target.host}]" if ":" in target.host else target.host
        return f"{host}:{target.port}"
