"""gRPC client: ``grpc://HOST:PORT`` and ``grpcs://HOST:PORT``, one ``Identity/Get`` per request.

By default each concurrency slot opens one channel and reuses it for every call, as a real client
does: that is the case a connection-level balancer pins. With ``new_channel`` every call opens a
channel of its own (and closes it), which any balancer can spread. Each channel is one TCP
connection (a local subchannel pool: grpcio would otherwise share one connection between
channels to the same address), and its serial number is the observation's ``connection``.

The identity comes from the response metadata (``x-pod-name`` ...), or failing that from the
reply's fields. A call that ends with a status other than OK is an error counted by its status
code: the observation's ``status`` is the gRPC code's number (0 is OK).
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any

from podtally.contract import FIELDS, header_keys
from podtally.errors import MissingDependencyError, PodtallyError
from podtally.verify.clients.runner import Runner, resolve_addresses
from podtally.verify.options import VerifyOptions
from podtally.verify.probe import (
    ErrorKind,
    IdentitySource,
    Observation,
    Progress,
    Resolver,
    system_addresses,
)
from podtally.verify.target import GRPC_SCHEMES, Target, parse_grpc_url

GET_METHOD = "/podtally.v1.Identity/Get"
_IDENTITY_KEYS = {key.decode("ascii"): FIELDS.index(name) for key, name in header_keys().items()}


GrpcTarget = Target  # a gRPC target is a Target with scheme grpc or grpcs and no path
SCHEMES = GRPC_SCHEMES


def _import_grpc() -> tuple[Any, Any]:
    try:
        import grpc

        from podtally.proto import identity_pb2
    except ImportError as exc:
        raise MissingDependencyError(
            f"gRPC targets need grpcio and protobuf ({exc}): pip install 'podtally[grpc]'"
        ) from None
    return grpc, identity_pb2


class GrpcEngine(Runner):
    """``Identity/Get`` calls to ``target`` over ``options.concurrency`` slots."""

    def __init__(
        self,
        options: VerifyOptions,
        sink: Callable[[Observation], None],
        progress: Callable[[Progress], None] | None = None,
        resolver: Resolver | None = None,
        *,
        target: GrpcTarget | None = None,
        new_channel: bool | None = None,
    ) -> None:
        super().__init__(options, sink, progress)
        # ``target`` and ``new_channel`` default to the options' own (a grpc(s):// URL).
        self.target = target if target is not None else parse_grpc_url(options.url)
        self.new_channel = options.new_channel if new_channel is None else new_channel
        self._resolver = resolver if resolver is not None else system_addresses
        self._grpc, self._pb2 = _import_grpc()
        self._credentials: Any = None
        self._addresses: list[tuple[str, str]] = []
        self._turn = itertools.count()
        self._serial = itertools.count(1)
        self._channels: set[Any] = set()
        self._name = self.target.host  # the name the server's certificate must show

    async def _prepare(self) -> None:
        target = self.target
        grpc = self._grpc
        self._addresses = await resolve_addresses(
            self.options, self._resolver, target.host, target.port
        )
        if target.tls:
            if self.options.insecure:
                root: bytes | None = await self._presented_certificate()
            elif self.options.cacert is not None:
                root = self.options.cacert.read_bytes()
            else:
                root = None  # the system's CAs, as grpcio finds them
            self._credentials = grpc.ssl_channel_credentials(root_certificates=root)

    async def _presented_certificate(self) -> bytes:
        """``insecure``: the certificate the server presents, fetched without checks, to be
        trusted as it is. grpcio has no switch to skip verification; trusting what the server
        shows (and the name it shows it for) is what skipping amounts to. Behind a balancer
        every connection meets the same certificate; replicas with certificates of their own
        are trusted by the first one only."""
        target = self.target
        address, peer = self._addresses[0]
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.options.timeout):
                transport, _ = await loop.create_connection(
                    asyncio.Protocol, address, target.port, ssl=context, server_hostname=target.host
                )
        except TimeoutError:
            raise PodtallyError(f"no TLS handshake with {peer} within the timeout") from None
        except OSError as exc:
            raise PodtallyError(f"cannot fetch the certificate of {peer}: {exc}") from None
        try:
            tls = transport.get_extra_info("ssl_object")
            der = tls.getpeercert(binary_form=True) if tls is not None else None
        finally:
            transport.close()
        if not der:
            raise PodtallyError(f"{peer} presented no certificate")
        self._name = _name_in(der, target.host)
        pem: str = ssl.DER_cert_to_PEM_cert(der)
        return pem.encode()

    def _authority(self) -> str:
        if self._name == self.target.host:
            return self.target.authority
        return f"{self._name}:{self.target.port}"

    def _lanes(self) -> list[Coroutine[Any, Any, None]]:
        lanes = self.options.concurrency
        if self.options.request_limit is not None:
            lanes = min(lanes, self.options.request_limit)
        return [self._lane() for _ in range(lanes)]

    async def _close(self) -> None:
        for channel, _serial, _peer in list(self._channels):
            await channel.close(None)
        self._channels.clear()

    def _open(self) -> tuple[Any, int, str]:
        """A new channel: its own connection to the next address in turn."""
        grpc = self._grpc
        target = self.target
        address, peer = self._addresses[next(self._turn) % len(self._addresses)]
        self._peers.setdefault(peer)
        self._opened += 1
        where = (
            f"ipv6:[{address}]:{target.port}" if ":" in address else f"ipv4:{address}:{target.port}"
        )
        options: list[tuple[str, Any]] = [
            ("grpc.use_local_subchannel_pool", 1),
            # grpcio checks the call's authority against the name the certificate is checked
            # for: when insecure picked another name from the certificate, that name goes on
            # the wire too.
            ("grpc.default_authority", self._authority()),
            ("grpc.enable_retries", 0),
        ]
        if target.tls:
            options.append(("grpc.ssl_target_name_override", self._name))
            channel = grpc.aio.secure_channel(where, self._credentials, options=options)
        else:
            channel = grpc.aio.insecure_channel(where, options=options)
        entry = (channel, next(self._serial), peer)
        self._channels.add(entry)
        return entry

    async def _lane(self) -> None:
        entry: tuple[Any, int, str] | None = None
        while (claimed := await self._next()) is not None:
            index, started = claimed
            if entry is None:
                entry = self._open()
            channel, serial, peer = entry
            observation = await self._call(index, started, channel, serial, peer)
            self._emit(observation)
            if self.new_channel:
                self._channels.discard(entry)
                await channel.close(None)
                entry = None

    async def _call(
        self, index: int, started: float, channel: Any, serial: int, peer: str
    ) -> Observation:
        grpc = self._grpc
        pb2 = self._pb2
        method = channel.unary_unary(
            GET_METHOD,
            request_serializer=pb2.GetRequest.SerializeToString,
            response_deserializer=pb2.IdentityReply.FromString,
        )
        values: list[str | None] = [None] * len(FIELDS)
        source: IdentitySource | None = None
        error: ErrorKind | None = None
        detail: str | None = None
        status: int | None = None
        try:
            call = method(pb2.GetRequest(), timeout=self.options.timeout)
            reply = await call
            metadata = await call.initial_metadata()
            status = 0
            for key, value in metadata or ():
                slot = _IDENTITY_KEYS.get(key)
                if slot is not None:
                    values[slot] = (
                        value if isinstance(value, str) else value.decode("utf-8", "replace")
                    )
            if values[0]:
                source = "headers"
            elif reply.pod:
                values = [getattr(reply, name, None) or None for name in FIELDS]
                source = "body"
            else:
                error, detail = "no-identity", "reply carried neither x-pod-* metadata nor a pod"
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            status = code.value[0]
            error, detail = _classify(code.name, exc.details() or "", peer, self.options.timeout)
        latency = time.perf_counter() - started
        return Observation.of(
            values,
            index=index,
            start=started - self._t0,
            latency=latency,
            status=status,
            source=source,
            error=error,
            detail=detail,
            connection=serial,
            peer=peer,
            location=None,
            redirects=0,
        )


def _name_in(der: bytes, wanted: str) -> str:
    """A DNS name the certificate shows: ``wanted`` if it is one of them (or the certificate
    cannot be read: ``cryptography`` is optional), else the first."""
    try:
        from cryptography import x509
    except ImportError:
        return wanted
    try:
        names = (
            x509.load_der_x509_certificate(der)
            .extensions.get_extension_for_class(x509.SubjectAlternativeName)
            .value.get_values_for_type(x509.DNSName)
        )
    except (ValueError, x509.ExtensionNotFound):
        return wanted
    return wanted if wanted in names or not names else names[0]


def _classify(code: str, details: str, peer: str, timeout: float) -> tuple[ErrorKind, str]:
    """A failed call's error kind: transport failures by what happened, the rest by status code."""
    lowered = details.lower()
    if code == "DEADLINE_EXCEEDED":
        return "timeout", f"no response from {peer} within {timeout:g}s (gRPC DEADLINE_EXCEEDED)"
    if code == "UNAVAILABLE":
        if "refused" in lowered:
            return "refused", f"connection refused to {peer}"
        if "hostname verification" in lowered or "peer name" in lowered:
            return "tls", f"TLS certificate of {peer} does not name the host asked for"
        if "certificate_verify_failed" in lowered:
            return "tls", f"TLS certificate of {peer} not trusted (CERTIFICATE_VERIFY_FAILED)"
        if "ssl" in lowered or "handshake" in lowered or "certificate" in lowered:
            return "tls", f"TLS handshake with {peer} failed: {details}"
        if "reset" in lowered or "socket closed" in lowered or "goaway" in lowered:
            return "reset", f"connection to {peer} reset ({details})"
    if code == "CANCELLED":
        # This client never cancels a call it counts: the server or a proxy cut it off (a
        # stream reset), as a replica does with calls still arriving when it stops.
        return "reset", f"{peer} cancelled the call ({details or 'CANCELLED'})"
    return "http-status", f"gRPC {code}: {details}" if details else f"gRPC {code}"
