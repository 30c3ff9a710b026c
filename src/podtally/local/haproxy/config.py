"""HAProxy's configuration for the local stack, written from a :class:`Layout` (ports, certificate,
replica addresses): section by section, each a pure function of the layout.

The configuration always declares a fixed number of server slots in every backend. Replicas come
and go during ``restart`` and ``scale`` through the runtime API (:mod:`.runtime`), so HAProxy
never reloads and no request is lost to a reload.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from podtally.errors import PodtallyError, UsageError

BACKEND = "pods"  # the ALB path's HTTP backend: HTTP/1.1 to the replicas' HTTP ports, per request
GRPC_BACKEND = "grpc"  # the ALB path's gRPC backend: h2 to the replicas' gRPC ports, per request
SERVICE_BACKEND = "service"  # the Service path: TCP, balance random, per connection (HTTP ports)
SERVICE_GRPC_BACKEND = "service_grpc"  # the same to the replicas' gRPC ports
# Every backend has the same server slots; a replica holds the same slot in each, and the
# others track the health checks of its slot in BACKEND.
BACKENDS = (BACKEND, GRPC_BACKEND, SERVICE_BACKEND, SERVICE_GRPC_BACKEND)
GRPC_BACKENDS = frozenset({GRPC_BACKEND, SERVICE_GRPC_BACKEND})
# kube-proxy keeps an established connection's conntrack entry for days; a connection through
# the Service path stays on its replica for as long as either end keeps it open (bounded here).
SERVICE_IDLE_TIMEOUT = "1h"
GRPC_IDLE_TIMEOUT = "60s"
SERVER_PREFIX = "pod"
# How long browsers keep the HTTPS-only promise. Short on purpose: the name is usually
# `localhost`, and a year-long HSTS entry for localhost upsets every other local dev server.
HSTS_MAX_AGE = 3600
# Placeholder address of an empty slot: never contacted, the slot stays in maintenance.
_EMPTY_ADDRESS = "127.0.0.1"
_EMPTY_PORT = 9


def server_name(slot: int) -> str:
    """The HAProxy server name of a backend slot (1-based)."""
    return f"{SERVER_PREFIX}{slot}"


@dataclass(frozen=True)
class Slot:
    """One backend server line: a replica's address, or an empty slot when ``address`` is None."""

    number: int
    address: str | None = None
    port: int | None = None
    weight: int = 1  # HAProxy's server weight, 1..256 (the tracks' split)
    grpc_port: int | None = None  # the replica's gRPC port (None: no gRPC)

    def port_for(self, backend: str) -> int | None:
        """The replica's port that ``backend`` sends to (HTTP or gRPC)."""
        return self.grpc_port if backend in GRPC_BACKENDS else self.port


@dataclass(frozen=True)
class Layout:
    """Everything the configuration depends on."""

    http_port: int
    https_port: int | None  # None: plain HTTP only (TLS off)
    stats_port: int
    socket_path: Path
    cert_path: Path | None
    slots: Sequence[Slot]
    bind_address: str = "127.0.0.1"
    grpc_port: int | None = None  # the ALB path's gRPC port (TLS when https_port is set)
    service_port: int | None = None  # the Service path's HTTP port (TCP, per connection)
    service_grpc_port: int | None = None  # the Service path's gRPC port (TCP, per connection)


def check_path(path: Path) -> None:
    """Refuse paths HAProxy's configuration parser would rewrite (``$VAR``, quotes, escapes)."""
    text = str(path)
    bad = sorted({c for c in text if c in "$'\"\\#" or not c.isprintable()})
    if bad:
        raise UsageError(
            f"the run directory {text!r} contains {' '.join(bad)!r}, which HAProxy's "
            "configuration cannot hold; set PODTALLY_STATE_DIR to a plainer path"
        )


def _quote(path: Path) -> str:
    """A path as one HAProxy argument (quoted, so that spaces are fine)."""
    check_path(path)
    return f"'{path}'"


def _redirect_location(https_port: int) -> str:
    # Keep the name the client used (localhost, 127.0.0.1, --host), swap the port for HTTPS's.
    port = "" if https_port == 443 else f":{https_port}"
    return f"https://%[req.hdr(host),regsub(:[0-9]+$,)]{port}%[capture.req.uri]"


Section = list[str]


def _global(layout: Layout) -> Section:
    lines = [
        "global",
        # In the foreground HAProxy writes its alerts and server state changes (UP, DOWN,
        # drain) to stderr, which is logs/haproxy.log; no access log on purpose.
        f"    stats socket {_quote(layout.socket_path)} mode 600 level admin",
        "    stats timeout 10s",
        "    hard-stop-after 10s",
    ]
    if layout.https_port is not None:
        lines += [
            "    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets",
            "    ssl-default-bind-ciphers "
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            "    ssl-default-bind-ciphersuites "
            "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
        ]
    return lines


def _defaults(layout: Layout) -> Section:
    return [
        "defaults",
        "    mode http",
        "    timeout connect 1s",
        "    timeout client 30s",
        # A replica answers in about a millisecond; one that has not answered in 1 s is frozen
        # (kill -STOP, a stalled host), and the request is retried on another replica well
        # before a client with a 5 s timeout gives up (30 s never let response-timeout fire).
        "    timeout server 1s",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 10s",
        "    timeout queue 10s",
        # With inter 500ms and fall 2, a frozen replica is out of rotation in about 1 s.
        "    timeout check 500ms",
        # A refused, reset, empty or timed-out answer from one replica is retried on another.
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response junk-response response-timeout 0rtt-rejected",
    ]


def _http_frontend(layout: Layout) -> Section:
    """Plain HTTP: a redirect to HTTPS when TLS is on, else the service itself."""
    bind = layout.bind_address
    if layout.https_port is not None:
        return [
            "frontend http",
            f"    bind {bind}:{layout.http_port}",
            f"    http-request redirect location {_redirect_location(layout.https_port)}"
            " code 301 if { req.hdr(host) -m found }",
            f"    http-request redirect location https://{bind}:{layout.https_port}"
            "%[capture.req.uri] code 301",
        ]
    return [
        "frontend http",
        f"    bind {bind}:{layout.http_port}",
        "    option forwardfor",
        "    http-request set-header X-Forwarded-Proto http",
        f"    default_backend {BACKEND}",
    ]


def _https_frontend(layout: Layout) -> Section:
    """HTTPS with the stack's certificate, HTTP/2 by ALPN, and HSTS; nothing when TLS is off."""
    if layout.https_port is None:
        return []
    if layout.cert_path is None:
        raise PodtallyError("HTTPS needs a certificate")
    return [
        "frontend https",
        f"    bind {layout.bind_address}:{layout.https_port} ssl crt {_quote(layout.cert_path)}"
        " alpn h2,http/1.1",
        "    option forwardfor",
        "    http-request set-header X-Forwarded-Proto https",
        f'    http-response set-header Strict-Transport-Security "max-age={HSTS_MAX_AGE}"',
        *_grpc_route(layout),
        f"    default_backend {BACKEND}",
    ]


def _grpc_route(layout: Layout) -> Section:
    """gRPC on the HTTPS port too: a request whose content type is gRPC's goes to the gRPC
    backend (per request, as an ALB's gRPC target group does)."""
    if layout.grpc_port is None:
        return []
    return [
        f"    use_backend {GRPC_BACKEND} if {{ req.hdr(content-type) -m beg application/grpc }}"
    ]


def _grpc_frontend(layout: Layout) -> Section:
    """The ALB path's gRPC port: TLS with ALPN h2 (h2c with prior knowledge when TLS is off),
    each call balanced on its own over the replicas' gRPC ports."""
    if layout.grpc_port is None:
        return []
    bind = f"    bind {layout.bind_address}:{layout.grpc_port}"
    if layout.https_port is not None:
        if layout.cert_path is None:
            raise PodtallyError("HTTPS needs a certificate")
        bind += f" ssl crt {_quote(layout.cert_path)} alpn h2"
    else:
        bind += " proto h2"
    return [
        "frontend grpc",
        bind,
        f"    timeout client {GRPC_IDLE_TIMEOUT}",
        "    option forwardfor",
        f"    default_backend {GRPC_BACKEND}",
    ]


def _service_frontend(name: str, port: int | None, backend: str, layout: Layout) -> Section:
    if port is None:
        return []
    return [
        f"frontend {name}",
        "    mode tcp",
        f"    bind {layout.bind_address}:{port}",
        f"    timeout client {SERVICE_IDLE_TIMEOUT}",
        f"    default_backend {backend}",
    ]


def _service_frontends(layout: Layout) -> Section:
    """The Service path: plain TCP, as kube-proxy forwards a Service's port; HTTP and gRPC
    each on a port of their own, as a Service's ports each have their target port."""
    http = _service_frontend("service", layout.service_port, SERVICE_BACKEND, layout)
    grpc = _service_frontend("service_grpc", layout.service_grpc_port, SERVICE_GRPC_BACKEND, layout)
    return http + ([""] if http and grpc else []) + grpc


def _stats_frontend(layout: Layout) -> Section:
    return [
        "frontend stats",
        f"    bind {layout.bind_address}:{layout.stats_port}",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    stats enable",
        "    stats uri /stats",
        "    stats refresh 5s",
        "    stats show-legends",
    ]


def _servers(layout: Layout, backend: str, extra: str = "") -> Section:
    """One server line per slot; ``extra`` goes on every line (``proto h2``, ``track ...``)."""
    lines = []
    for slot in layout.slots:
        name = server_name(slot.number)
        port = slot.port_for(backend)
        track = f" track {BACKEND}/{name}" if backend != BACKEND else ""
        if slot.address is None or not port:
            lines.append(f"    server {name} {_EMPTY_ADDRESS}:{_EMPTY_PORT} disabled{extra}{track}")
        else:
            weight = f" weight {slot.weight}" if slot.weight != 1 else ""
            lines.append(f"    server {name} {slot.address}:{port}{weight}{extra}{track}")
    return lines


def _backend(layout: Layout) -> Section:
    return [
        f"backend {BACKEND}",
        "    balance roundrobin",
        "    option httpchk",
        "    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost",
        "    http-check expect status 200",
        # Out of rotation ~1 s after a replica stops being ready, back ~1 s after it is.
        "    default-server check inter 500ms fastinter 250ms downinter 500ms fall 2 rise 2",
        *_servers(layout, BACKEND),
    ]


def _grpc_backend(layout: Layout) -> Section:
    """The replicas' gRPC ports over h2, a backend per call (round robin, the tracks' weights);
    each server follows its slot's /readyz checks in the HTTP backend."""
    if layout.grpc_port is None:
        return []
    return [
        f"backend {GRPC_BACKEND}",
        "    balance roundrobin",
        # A Watch stream is quiet between two messages (a second by default): the 1 s server
        # timeout of the HTTP backend would cut it. An ALB's idle timeout is 60 s.
        f"    timeout server {GRPC_IDLE_TIMEOUT}",
        *_servers(layout, GRPC_BACKEND, " proto h2"),
    ]


def _service_backends(layout: Layout) -> Section:
    """kube-proxy's iptables mode: each new connection to a random ready replica (weighted by
    track), kept there for the connection's life; no retry and no per-request choice."""
    lines: Section = []
    for port, backend in (
        (layout.service_port, SERVICE_BACKEND),
        (layout.service_grpc_port, SERVICE_GRPC_BACKEND),
    ):
        if port is None:
            continue
        if lines:
            lines.append("")
        lines += [
            f"backend {backend}",
            "    mode tcp",
            "    balance random",
            f"    timeout server {SERVICE_IDLE_TIMEOUT}",
            "    retries 0",
            *_servers(layout, backend),
        ]
    return lines


# The configuration, section by section, in order. A new kind of frontend (a gRPC port, say)
# is one more function here; a section that does not apply to a layout returns no lines.
SECTIONS: tuple[Callable[[Layout], Section], ...] = (
    _global,
    _defaults,
    _http_frontend,
    _https_frontend,
    _grpc_frontend,
    _service_frontends,
    _stats_frontend,
    _backend,
    _grpc_backend,
    _service_backends,
)


def render(layout: Layout) -> str:
    """The haproxy.cfg text for a stack: each of :data:`SECTIONS`, a blank line between."""
    header = [
        "# Generated by podtally for the local stack. Edits are overwritten; the runtime API",
        "# (stats socket below) changes servers while it runs.",
    ]
    sections = [lines for lines in (section(layout) for section in SECTIONS) if lines]
    return "\n".join(header) + "\n" + "\n\n".join("\n".join(lines) for lines in sections) + "\n"
