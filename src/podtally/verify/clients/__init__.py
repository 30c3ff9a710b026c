"""The verifier's clients, one a protocol, all on one loop (:mod:`.runner`).

:mod:`.http1` (HTTP/1.1, the fast path), :mod:`.h2` (HTTP/2) and :mod:`.grpc` each subclass
:class:`~podtally.verify.clients.runner.Runner` (``await run()``, ``started``, ``summary()``,
``stop()``) and emit the same :class:`~podtally.verify.probe.Observation` records, so the tally,
the decision and the reports work unchanged for every protocol. :mod:`.http` holds what both
HTTP versions share, :mod:`.transport` the TLS context, the connection and the failure.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from podtally.errors import UsageError

Protocol = Literal["http1", "http2", "grpc"]


def protocol_for(url: str, *, http2: bool = False, new_channel: bool = False) -> Protocol:
    """Which client a URL and the protocol settings call for; contradictions are usage errors.

    The hook for :class:`~podtally.verify.options.VerifyOptions` and the CLI: ``http(s)://``
    takes the HTTP/1.1 engine, or with ``http2`` :class:`~podtally.verify.clients.h2.H2Engine`;
    ``grpc(s)://`` takes :class:`~podtally.verify.clients.grpc.GrpcEngine`.
    """
    scheme = urlsplit(url.strip()).scheme.lower()
    protocol: Protocol
    if scheme in ("grpc", "grpcs"):
        protocol, setting, given = "grpc", "http2", http2
        why = "gRPC always runs over HTTP/2: drop it for a grpc:// or grpcs:// URL"
    elif scheme in ("http", "https"):
        protocol, setting, given = ("http2" if http2 else "http1"), "new_channel", new_channel
        why = "channels are gRPC's: it needs a grpc:// or grpcs:// URL"
    else:
        raise UsageError(
            "must start with http://, https://, grpc:// or grpcs://", setting="url", value=url
        )
    if given:
        raise UsageError(why, setting=setting, value=True)
    return protocol
