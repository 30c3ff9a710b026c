"""What the HTTP/1.1 and HTTP/2 engines share: TLS set-up, connecting, and reading a response.

A response names its pod in the ``X-Pod-*`` headers or, failing that, in the body's ``Pod:``
lines (the contract's text format); anything but a 2xx status is an ``http-status`` error that
keeps the redirect's location, and a 2xx response that names no pod is ``no-identity``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import TypeVar

from podtally.contract import FIELDS, header_keys
from podtally.verify.clients.runner import Runner
from podtally.verify.clients.transport import (
    Connection,
    Failure,
    certificate_failure,
    classify,
    is_local_ca,
    ssl_context,
)
from podtally.verify.probe import (
    BODY_LIMIT,
    NO_IDENTITY,
    REDIRECT_STATUSES,
    IdentitySource,
    parse_identity_text,
)

# Identity header (lower-case bytes) -> its slot in FIELDS order.
IDENTITY_HEADERS = {key: FIELDS.index(name) for key, name in header_keys().items()}
NO_POD = "response carried neither X-Pod-* headers nor 'Pod:' lines"

C = TypeVar("C", bound=Connection)


class HttpResponse:
    """A response as it is read: the status, the identity headers, the location, the body."""

    __slots__ = ("body", "body_size", "identity", "location", "status")

    def __init__(self) -> None:
        self.status = 0
        self.identity: list[bytes | None] = list(NO_IDENTITY)
        self.location: bytes | None = None
        self.body: list[bytes] = []
        self.body_size = 0

    def add_body(self, data: bytes) -> None:
        """Keep the body up to :data:`BODY_LIMIT`; the rest is read and dropped."""
        if self.body_size < BODY_LIMIT:
            self.body.append(data)
            self.body_size += len(data)


class HttpRunner(Runner):
    """A :class:`Runner` for ``options.target`` over HTTP: ``alpn`` is what TLS offers."""

    alpn: tuple[str, ...] = ()
    _ssl: ssl.SSLContext | None = None
    _local_ca: bool | None = None  # does the cacert file hold the local stack's CA? (asked once)

    async def _prepare(self) -> None:
        self._strings: dict[bytes, str] = {}
        target = self.options.target
        if target.tls:
            self._ssl = ssl_context(self.options)
            if self.alpn:
                self._ssl.set_alpn_protocols(list(self.alpn))
        await self._addresses_for(target.host, target.port)  # a DNS failure is one error, not N

    async def _connect(
        self, factory: Callable[[int, str], C], host: str, port: int, tls: bool
    ) -> C:
        """A new connection to the next of HOST:PORT's addresses; raises :class:`Failure`."""
        if (host, port) not in self._addresses:
            await self._addresses_for(host, port)
        serial, address, peer = self._new_connection(host, port)
        connection = factory(serial, peer)
        context = self._ssl if tls else None
        if tls and context is None:
            context = self._ssl = ssl_context(self.options)  # a redirect from http to https
        try:
            await asyncio.get_running_loop().create_connection(
                lambda: connection,
                address,
                port,
                ssl=context,
                server_hostname=host if tls else None,
            )
        except BaseException as exc:
            connection.abort()
            if isinstance(exc, Exception) and not isinstance(exc, TimeoutError):
                raise self._connect_failure(exc, host, peer) from None
            raise
        return connection

    def _connect_failure(self, exc: Exception, host: str, peer: str) -> Failure:
        if not isinstance(exc, ssl.SSLCertVerificationError):
            return classify(exc, peer)
        if self._local_ca is None:
            self._local_ca = self._ssl is not None and is_local_ca(self._ssl)
        cacert = self.options.cacert
        return certificate_failure(
            exc,
            peer,
            host=host,
            cacert=str(cacert) if cacert is not None else None,
            local_ca=self._local_ca,
        )

    def _text(self, value: bytes | None) -> str | None:
        """Decode a header value, sharing one str per distinct value (there are few pods)."""
        if value is None:
            return None
        cache = self._strings
        text = cache.get(value)
        if text is None:
            text = value.decode("utf-8", "replace").strip()
            if len(cache) < 10_000:
                cache[value] = text
        return text

    def _record_response(
        self,
        index: int,
        started: float,
        latency: float,
        response: HttpResponse,
        connection: Connection,
        redirects: int = 0,
    ) -> None:
        """A response read to its end, judged by its status and the identity it carries."""
        raw = response.identity
        values: list[str | None] | tuple[None, ...] = NO_IDENTITY
        source: IdentitySource | None = None
        if raw[0] is not None:
            known, text = self._strings.get, self._text  # a dict hit first: the hot path
            values = [known(v) or text(v) for v in raw]  # type: ignore[arg-type]
            source = "headers"
        elif response.body and (parsed := parse_identity_text(b"".join(response.body))) is not None:
            values = parsed
            source = "body"
        status = response.status
        failure: Failure | None = None
        location = self._text(response.location) if status in REDIRECT_STATUSES else None
        if not 200 <= status < 300:
            detail = f"HTTP {status}"
            if location is not None:
                detail = f"HTTP {status}: redirected to {location}"
            failure = Failure("http-status", detail)
        elif source is None:
            failure = Failure("no-identity", NO_POD)
        self._record(
            index,
            started,
            latency,
            values,
            failure,
            status=status,
            source=source,
            connection=connection.serial,
            peer=connection.peer,
            location=location,
            redirects=redirects,
        )
