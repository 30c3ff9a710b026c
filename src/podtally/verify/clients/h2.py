"""HTTP/2 client: ``-c`` connections, each carrying many concurrent streams.

Over TLS the connection offers only ``h2`` in ALPN (a server that picks HTTP/1.1 is an error, not
a silent downgrade); over plain TCP it speaks h2c with prior knowledge, as
``curl --http2-prior-knowledge`` does. The protocol is the ``h2`` library's state machine on an
asyncio transport. Each connection keeps its serial number in the observations, so the report
shows the spread per connection, as for ``keep_alive`` over HTTP/1.1: an L4 balancer pins a
connection, an L7 one spreads its streams.

A connection that the server closes (or sends GOAWAY on) is replaced for the requests that follow.
Redirects are reported as they are (``http-status`` with the location), never followed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, Unpack

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from podtally import __version__
from podtally.errors import Phrase, PodtallyError, Setting
from podtally.verify.clients.http import IDENTITY_HEADERS, HttpResponse, HttpRunner
from podtally.verify.clients.runner import Hooks
from podtally.verify.clients.transport import Connection, Failure, classify
from podtally.verify.options import DEFAULT_STREAMS, MAX_STREAMS, VerifyOptions
from podtally.verify.probe import NO_IDENTITY, Sink

__all__ = ["DEFAULT_STREAMS", "H2Engine"]  # DEFAULT_STREAMS: VerifyOptions' own, re-exported


class _Connection(Connection):
    """One HTTP/2 connection and its open streams."""

    def __init__(self, serial: int, peer: str) -> None:
        super().__init__(serial, peer)
        self.goaway = False
        self._h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(
                client_side=True,
                header_encoding=None,
                # The request headers are built once and checked by VerifyOptions; skipping
                # h2's per-frame header checks roughly doubles the request rate (measured).
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
            )
        )
        self._streams: dict[int, tuple[HttpResponse, asyncio.Future[HttpResponse]]] = {}
        self._room = asyncio.Event()  # set while another stream may open
        self._flush_due = False
        self._room.set()

    @property
    def usable(self) -> bool:
        return not (self.lost or self.goaway)

    # --- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._h2.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.goaway = True  # never start another stream here
            if self._h2.state_machine.state is h2.connection.ConnectionState.CLOSED:
                # A GOAWAY came in this read, then a frame h2 refuses after it (a PING):
                # the server is going away, which is a reset, not a protocol error.
                failure = Failure("reset", f"{self.peer} closed the connection (GOAWAY)")
            else:
                failure = Failure("other", f"HTTP/2 protocol error from {self.peer}: {exc}")
            self._fail_all(failure)
            self.abort()
            return
        for event in events:
            self._handle(event)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._room.set()
        failure = (
            classify(exc, self.peer)
            if exc is not None
            else Failure("reset", f"connection to {self.peer} closed mid-stream")
        )
        self._fail_all(failure)

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            entry = self._streams.get(event.stream_id)
            if entry is None:
                return
            response = entry[0]
            for name, value in event.headers:
                key = bytes(name)
                if key == b":status":
                    response.status = int(value)
                elif (slot := IDENTITY_HEADERS.get(key)) is not None:
                    response.identity[slot] = bytes(value)
                elif key == b"location":
                    response.location = bytes(value)
        elif isinstance(event, h2.events.DataReceived):
            self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            entry = self._streams.get(event.stream_id)
            if entry is not None and event.data:
                entry[0].add_body(event.data)
        elif isinstance(event, h2.events.StreamEnded):
            self._finish(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self._fail(
                event.stream_id,
                Failure("reset", f"{self.peer} reset the stream (HTTP/2 error {event.error_code})"),
            )
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = True
            last = event.last_stream_id or 0
            for stream_id in [s for s in self._streams if s > last]:
                self._fail(stream_id, Failure("reset", f"{self.peer} sent GOAWAY"))
        if isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
            self._room.set()

    # --- used by the engine --------------------------------------------------------------------
    async def request(self, headers: list[tuple[bytes, bytes]]) -> HttpResponse:
        while self.usable and (
            self._h2.open_outbound_streams >= self._h2.remote_settings.max_concurrent_streams
        ):
            self._room.clear()
            await self._room.wait()
        if not self.usable:
            raise Failure("reset", f"connection to {self.peer} already closed")
        stream_id = self._h2.get_next_available_stream_id()
        response = HttpResponse()
        waiter: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()
        self._streams[stream_id] = (response, waiter)
        try:
            self._h2.send_headers(stream_id, headers, end_stream=True)
        except h2.exceptions.ProtocolError as exc:
            del self._streams[stream_id]
            self.goaway = True
            if self._h2.state_machine.state is h2.connection.ConnectionState.CLOSED:
                raise Failure("reset", f"{self.peer} closed the connection (GOAWAY)") from None
            raise Failure("other", f"HTTP/2 on {self.peer}: {exc}") from None
        # One write for all the streams opened in this turn of the event loop: a write per
        # request (a system call each) was most of the client's time (profiled).
        self._schedule_flush()
        try:
            return await waiter
        except asyncio.CancelledError:  # a timeout or Ctrl-C: tell the server we gave up
            self.cancel(stream_id)
            raise

    def cancel(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)
        if self.usable:
            try:
                self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            except h2.exceptions.ProtocolError:
                return
            self._flush()

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            try:
                self._h2.close_connection()
                self._flush()
            except h2.exceptions.ProtocolError:
                pass
            self.transport.close()

    def _schedule_flush(self) -> None:
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        data = self._h2.data_to_send()
        if data and self.transport is not None and not self.lost:
            self.transport.write(data)

    def _finish(self, stream_id: int) -> None:
        entry = self._streams.pop(stream_id, None)
        if entry is not None and not entry[1].done():
            entry[1].set_result(entry[0])

    def _fail(self, stream_id: int, failure: Failure) -> None:
        entry = self._streams.pop(stream_id, None)
        if entry is not None and not entry[1].done():
            entry[1].set_exception(failure)

    def _fail_all(self, failure: Failure) -> None:
        for stream_id in list(self._streams):
            self._fail(stream_id, failure)


class _Slot:
    """One of the ``-c`` connections; replaced when it closes, shared by its streams."""

    __slots__ = ("connection", "lock")

    def __init__(self) -> None:
        self.connection: _Connection | None = None
        self.lock = asyncio.Lock()


class H2Engine(HttpRunner):
    """HTTP/2 over ``options.target``: ``options.concurrency`` connections, ``streams`` each."""

    alpn = ("h2",)

    def __init__(
        self,
        options: VerifyOptions,
        sink: Sink,
        *,
        streams: int | None = None,
        **hooks: Unpack[Hooks],
    ) -> None:
        super().__init__(options, sink, **hooks)
        streams = options.streams if streams is None else streams
        if not 1 <= streams <= MAX_STREAMS:
            raise PodtallyError(
                f"must be between 1 and {MAX_STREAMS}", setting="streams", value=streams
            )
        self.streams = streams
        self._slots: list[_Slot] = []
        target = options.target
        headers = [
            (b":method", b"GET"),
            (b":scheme", target.scheme.encode()),
            (b":authority", target.host_header.encode("latin-1")),
            (b":path", target.path.encode("latin-1")),
            (b"user-agent", f"podtally/{__version__}".encode()),
            (b"accept", b"text/plain, */*"),
        ]
        for name, value in options.headers:
            key = name.lower()
            if key == "host":
                headers[2] = (b":authority", value.encode("latin-1"))
            else:
                headers.append((key.encode("latin-1"), value.encode("latin-1")))
        self._headers = headers

    def _lanes(self) -> list[Coroutine[Any, Any, None]]:
        self._slots = [_Slot() for _ in range(self._lane_count())]
        return [self._lane(slot) for slot in self._slots for _ in range(self.streams)]

    async def _close(self) -> None:
        for slot in self._slots:
            if slot.connection is not None:
                slot.connection.close()

    async def _connect_h2(self) -> _Connection:
        target = self.options.target
        connection = await self._connect(_Connection, target.host, target.port, target.tls)
        if target.tls:
            transport = connection.transport
            tls = transport.get_extra_info("ssl_object") if transport is not None else None
            chosen = tls.selected_alpn_protocol() if tls is not None else None
            if chosen != "h2":
                connection.abort()
                raise Failure(
                    "tls",
                    f"{connection.peer} did not agree to HTTP/2 in TLS ALPN (it chose "
                    f"{chosen or 'nothing'})",
                )
        return connection

    async def _connection(self, slot: _Slot) -> _Connection:
        async with slot.lock:
            if slot.connection is None or not slot.connection.usable:
                if slot.connection is not None:
                    slot.connection.close()
                slot.connection = None
                slot.connection = await self._connect_h2()
            return slot.connection

    async def _lane(self, slot: _Slot) -> None:
        target = self.options.target
        while (claimed := await self._next()) is not None:
            index, started = claimed
            connection: _Connection | None = None
            try:
                async with asyncio.timeout(self.options.timeout):
                    connection = await self._connection(slot)
                    response = await connection.request(self._headers)
            except (TimeoutError, Failure) as exc:
                latency = time.perf_counter() - started
                peer = (
                    connection.peer
                    if connection is not None
                    else self._peer_label(target.host, target.port)
                )
                if isinstance(exc, TimeoutError):  # worded as the HTTP/1.1 engine words it
                    said = peer or f"{target.host}:{target.port}"
                    within = f"no response from {said} within {self.options.timeout:g}s ("
                    exc = Failure("timeout", Phrase(within, Setting("timeout"), ")"))
                self._record(
                    index,
                    started,
                    latency,
                    NO_IDENTITY,
                    exc,
                    connection=connection.serial if connection is not None else None,
                    peer=peer,
                )
                continue
            latency = time.perf_counter() - started
            self._record_response(index, started, latency, response, connection)
