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
import ssl
import time
from collections.abc import Coroutine
from typing import Any, Unpack

from podtally.contract import FIELDS, header_keys
from podtally.errors import MissingDependencyError, PodtallyError
from podtally.verify.clients.runner import Hooks, Runner
from podtally.verify.clients.transport import Failure, unverified_context
from podtally.verify.options import VerifyOptions
from podtally.verify.probe import NO_IDENTITY, IdentitySource, Sink
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
        sink: Sink,
        *,
        target: GrpcTarget | None = None,
        new_channel: bool | None = None,
        **hooks: Unpack[Hooks],
    ) -> None:
        super().__init__(options, sink, **hooks)
        # ``target`` and ``new_channel`` default to the options' own (a grpc(s):// URL).
        self.target = target if target is not None else parse_grpc_url(options.url)
        self.new_channel = options.new_channel if new_channel is None else new_channel
        self._grpc, self._pb2 = _import_grpc()
        self._credentials: Any = None
        self._channels: set[Any] = set()
        self._name = self.target.host  # the name the server's certificate must show

    async def _prepare(self) -> None:
        target = self.target
        grpc = self._grpc
        await self._addresses_for(target.host, target.port)
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
        address, peer = self._addresses[(target.host, target.port)][0]
        context = unverified_context()
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
        return [self._lane() for _ in range(self._lane_count())]

    async def _close(self) -> None:
        for channel, _serial, _peer in list(self._channels):
            await channel.close(None)
        self._channels.clear()

    def _open(self) -> tuple[Any, int, str]:
        """A new channel: its own connection to the next address in turn."""
        grpc = self._grpc
        target = self.target
        serial, address, peer = self._new_connection(target.host, target.port)
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
        entry = (channel, serial, peer)
        self._channels.add(entry)
        return entry

    async def _lane(self) -> None:
        entry: tuple[Any, int, str] | None = None
        while (claimed := await self._next()) is not None:
            if entry is None:
                entry = self._open()
            index, started = claimed
            await self._call(index, started, *entry)
            if self.new_channel:
                self._channels.discard(entry)
                await entry[0].close(None)
                entry = None

    async def _call(self, index: int, started: float, channel: Any, serial: int, peer: str) -> None:
        grpc = self._grpc
        pb2 = self._pb2
        method = channel.unary_unary(
            GET_METHOD,
            request_serializer=pb2.GetRequest.SerializeToString,
            response_deserializer=pb2.IdentityReply.FromString,
        )
        values: list[str | None] = list(NO_IDENTITY)
        source: IdentitySource | None = None
        failure: Failure | None = None
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
                failure = Failure("no-identity", "reply carried neither x-pod-* metadata nor a pod")
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            status = code.value[0]
            failure = _classify(code.name, exc.details() or "", peer, self.options.timeout)
        latency = time.perf_counter() - started
        # The outcome as (identity, failure, status, source, connection, peer).
        self._record(index, started, latency, values, failure, status, source, serial, peer)


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


def _classify(code: str, details: str, peer: str, timeout: float) -> Failure:
    """A failed call's error kind: transport failures by what happened, the rest by status code."""
    lowered = details.lower()
    if code == "DEADLINE_EXCEEDED":
        return Failure(
            "timeout", f"no response from {peer} within {timeout:g}s (gRPC DEADLINE_EXCEEDED)"
        )
    if code == "UNAVAILABLE":
        if "refused" in lowered:
            return Failure("refused", f"connection refused to {peer}")
        if "hostname verification" in lowered or "peer name" in lowered:
            return Failure("tls", f"TLS certificate of {peer} does not name the host asked for")
        if "certificate_verify_failed" in lowered:
            return Failure(
                "tls", f"TLS certificate of {peer} not trusted (CERTIFICATE_VERIFY_FAILED)"
            )
        if "ssl" in lowered or "handshake" in lowered or "certificate" in lowered:
            return Failure("tls", f"TLS handshake with {peer} failed: {details}")
        if "reset" in lowered or "socket closed" in lowered or "goaway" in lowered:
            return Failure("reset", f"connection to {peer} reset ({details})")
    if code == "CANCELLED":
        # This client never cancels a call it counts: the server or a proxy cut it off (a
        # stream reset), as a replica does with calls still arriving when it stops.
        return Failure("reset", f"{peer} cancelled the call ({details or 'CANCELLED'})")
    return Failure("http-status", f"gRPC {code}: {details}" if details else f"gRPC {code}")
