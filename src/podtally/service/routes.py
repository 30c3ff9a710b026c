"""The replica's HTTP routes, as an RSGI application.

Every response body and header list is prepared once from the frozen :class:`Identity`; a request
only picks one. Nothing is shared and mutated between requests but the metrics counters.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import sys
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs

import mimeparse

from podtally.contract import TEXT_LABELS
from podtally.identity import Identity
from podtally.service.lifecycle import Lifecycle
from podtally.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from podtally.service.metrics import Metrics

Headers = list[tuple[str, str]]

TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"
JSON = "application/json"
KNOWN_ROUTES = ("/", "/api/identity", "/livez", "/readyz", "/metrics")
# The server's read buffer: a request head larger than this gets 431 from granian itself.
MAX_HEAD_BYTES = 64 * 1024
# A request target (path and query) longer than this gets 414 from the app.
MAX_TARGET_BYTES = 16 * 1024


# In rising order of preference: with ``*/*`` (curl) or no Accept header, text wins.
_OFFERED = ("application/json", "text/html", "text/plain")
CLOSE = ("connection", "close")


@lru_cache(maxsize=256)
def negotiate(accept: str) -> str:
    """Which of text/plain, text/html and application/json ``GET /`` answers an Accept header.

    Media ranges and q-values are weighed by python-mimeparse; browsers send a handful of distinct
    headers, so the answer is cached. Anything unparsable, or nothing acceptable, gets text.
    """
    try:
        return mimeparse.best_match(_OFFERED, accept.lower()) or "text/plain"
    except (mimeparse.MimeTypeParseException, ValueError):
        return "text/plain"


def pod_colour(pod: str) -> str:
    """A colour derived stably from the pod name: the same pod always gets the same hue."""
    digest = hashlib.sha256(pod.encode()).digest()
    hue = int.from_bytes(digest[:2], "big") % 360
    return f"hsl({hue}, 65%, 42%)"


def render_html(identity: Identity, refresh: int | None) -> str:
    """The identity page: one row per field, in the pod's own colour; ``refresh`` reloads it."""
    esc = {k: html.escape(f.value) for k, f in identity.fields().items()}
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    rows = "".join(
        f"<tr><th>{TEXT_LABELS[key]}</th><td>{value}</td></tr>" for key, value in esc.items()
    )
    return (
        # an empty icon: the browser does not ask for /favicon.ico (a 404, a console error)
        '<!doctype html><html lang=en><head><meta charset=utf-8><link rel="icon" href="data:,">'
        f"<title>{esc['pod']}</title>{meta}<style>"
        "body{margin:0;font:16px/1.5 system-ui,sans-serif;color:#fff;"
        f"background:{pod_colour(identity.pod.value)};min-height:100vh;display:grid;"
        "place-items:center}table{border-collapse:collapse;background:rgba(0,0,0,.25);"
        "border-radius:8px}th,td{padding:.5em 1em;text-align:left}th{opacity:.8}"
        "p{text-align:center;opacity:.8}</style></head><body><main><table>"
        f"{rows}</table><p>podtally · add ?refresh=1 to watch the pods rotate</p></main>"
        "</body></html>\n"
    )


class App:
    """RSGI application: ``__rsgi__(scope, protocol)`` answers one request."""

    def __init__(
        self,
        identity: Identity,
        lifecycle: Lifecycle,
        metrics: Metrics,
        version: str,
        started_at: datetime | None = None,
        access_log: bool = False,
    ) -> None:
        self.identity = identity
        self.lifecycle = lifecycle
        self.metrics = metrics
        self.access_log = access_log
        started = started_at or datetime.now(UTC)
        ident = identity.headers()

        def headers(content_type: str, *extra: tuple[str, str]) -> Headers:
            return [("content-type", content_type), ("cache-control", "no-store"), *ident, *extra]

        vary = ("vary", "accept")
        text = identity.text().encode()
        document: dict[str, object] = {
            **{k: {"value": f.value, "source": f.source} for k, f in identity.fields().items()},
            "podtally_version": version,
            "started_at": started.isoformat(timespec="seconds"),
        }
        as_json = (json.dumps(document, indent=2) + "\n").encode()
        self.json = (headers(JSON), as_json)
        # GET / picks one of three by the Accept header, so caches are told it varies.
        self.root = {
            "text/plain": (headers(TEXT, vary), text),
            "text/html": (headers(HTML, vary), render_html(identity, None).encode()),
            "application/json": (headers(JSON, vary), as_json),
        }
        self.html = self.root["text/html"]
        # A page that refreshes itself asks for a new connection each time, so that a browser
        # behind a connection-level balancer (an NLB, kube-proxy) sees the pods rotate too.
        self.refresh_headers = headers(HTML, vary, CLOSE)
        self.ok = (headers(TEXT), b"ok\n")
        self.starting = (headers(TEXT), b"starting\n")
        self.draining = (headers(TEXT), b"draining\n")
        self.not_found = (headers(TEXT), b"not found\n")
        self.not_allowed = (headers(TEXT, ("allow", "GET, HEAD")), b"method not allowed\n")
        self.metrics_headers = headers(METRICS_CONTENT_TYPE)
        self.bad_request = (headers(TEXT, CLOSE), b"bad request: exactly one Host header\n")
        self.uri_too_long = (headers(TEXT, CLOSE), b"URI too long\n")

    def _malformed(self, scope: Any) -> tuple[str, int, Headers, bytes] | None:
        """What RFC 9112 makes an error before any route: 400 without exactly one Host (HTTP/1.1;
        HTTP/2 carries :authority), 414 for a request target over MAX_TARGET_BYTES."""
        if len(scope.path) + len(scope.query_string) > MAX_TARGET_BYTES:
            return "other", 414, *self.uri_too_long
        if scope.http_version == "1.1" and len(scope.headers.get_all("host")) != 1:
            return "other", 400, *self.bad_request
        return None

    # --- dispatch ---------------------------------------------------------------------------
    def _answer(self, scope: Any) -> tuple[str, int, Headers, bytes]:
        if (error := self._malformed(scope)) is not None:
            return error
        path = scope.path
        if scope.method not in ("GET", "HEAD"):
            route = path if path in KNOWN_ROUTES else "other"
            return route, 405, *self.not_allowed
        if path == "/":
            kind = negotiate(scope.headers.get("accept") or "")
            if kind == "text/html" and scope.query_string:
                return "/", 200, *self._html_with_refresh(scope.query_string)
            return "/", 200, *self.root[kind]
        if path == "/readyz":
            phase_ok = self.lifecycle.ready
            if phase_ok:
                return path, 200, *self.ok
            return path, 503, *(self.draining if self.lifecycle.draining else self.starting)
        if path == "/livez":
            return path, 200, *self.ok
        if path == "/api/identity":
            return path, 200, *self.json
        if path == "/metrics":
            return path, 200, self.metrics_headers, self.metrics.render()
        return "other", 404, *self.not_found

    def _html_with_refresh(self, query: str) -> tuple[Headers, bytes]:
        values = parse_qs(query).get("refresh", [])
        try:
            refresh = min(max(int(values[0]), 1), 3600) if values else None
        except ValueError:
            refresh = None
        if refresh is None:
            return self.html
        return self.refresh_headers, render_html(self.identity, refresh).encode()

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        metrics = self.metrics
        metrics.in_flight += 1
        start = time.perf_counter() if self.access_log else 0.0
        try:
            route, status, headers, body = self._answer(scope)
            if self.lifecycle.draining:
                # Ask keep-alive clients to reconnect, so that they move to a replica that stays.
                headers = [*headers, CLOSE]
            protocol.response_bytes(status, headers, body)  # the server drops it for HEAD
            metrics.count(route, status)
        finally:
            metrics.in_flight -= 1
        if self.access_log:
            _write_access(scope, status, time.perf_counter() - start)

    def __rsgi_init__(self, loop: Any) -> None:
        return None

    def __rsgi_del__(self, loop: Any) -> None:
        return None


def _write_access(scope: Any, status: int, seconds: float) -> None:
    line = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": "access",
        "method": scope.method,
        "path": scope.path,
        "status": status,
        "client": scope.client,
        "ms": round(seconds * 1000, 3),
    }
    with contextlib.suppress(OSError, ValueError):  # a log reader that went away
        sys.stderr.write(json.dumps(line) + "\n")
