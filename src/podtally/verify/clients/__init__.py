"""Clients beyond the HTTP/1.1 engine (:mod:`podtally.verify.probe`): HTTP/2 and gRPC.

Each one is an engine with the same surface as :class:`podtally.verify.probe.Engine`
(``await run()``, ``started``, ``summary()``) and emits the same
:class:`~podtally.verify.probe.Observation` records, so the tally, the decision and the reports
work unchanged for every protocol.
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
    if scheme in ("grpc", "grpcs"):
        if http2:
            raise UsageError(
                "gRPC always runs over HTTP/2: drop it for a grpc:// or grpcs:// URL",
                setting="http2",
                value=True,
            )
        return "grpc"
    if scheme in ("http", "https"):
        if new_channel:
            raise UsageError(
                "channels are gRPC's: it needs a grpc:// or grpcs:// URL",
                setting="new_channel",
                value=True,
            )
        return "http2" if http2 else "http1"
    raise UsageError(
        "must start with http://, https://, grpc:// or grpcs://", setting="url", value=url
    )
