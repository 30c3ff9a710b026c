"""The routes' pure parts in-process: content negotiation, the HTML page, the route table.

`test_routes.py` proves the same behaviour over real HTTP; these pin each decision down without
a server, in milliseconds, and cover cases a socket test would not bother with.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest

from podtally.identity import Field, Identity
from podtally.service.lifecycle import Lifecycle, Phase
from podtally.service.metrics import Metrics
from podtally.service.routes import KNOWN_ROUTES, App, negotiate, pod_colour, render_html

WHO = Identity(
    pod=Field("web-0", "env"),
    node=Field("node-a", "env"),
    namespace=Field("shop", "file"),
    ip=Field("10.0.0.7", "fallback"),
    zone=Field("zone-1", "imds"),
    version=Field("canary", "env"),
)


class Headers(dict[str, str]):
    """granian's RSGI headers: a mapping that also lists every value of a repeated name."""

    def __init__(self, fields: dict[str, str], hosts: tuple[str, ...]) -> None:
        super().__init__(fields)
        self.hosts = hosts
        if hosts:
            self["host"] = hosts[0]

    def get_all(self, name: str) -> list[str]:
        if name == "host":
            return list(self.hosts)
        return [self[name]] if name in self else []


@dataclass
class Scope:
    """The attributes of granian's RSGI scope the routes read."""

    path: str
    method: str = "GET"
    query_string: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    client: str = "127.0.0.1:5000"
    http_version: str = "1.1"
    hosts: tuple[str, ...] = ("web",)

    def __post_init__(self) -> None:
        self.headers = Headers(self.headers, self.hosts)


@dataclass
class Protocol:
    answers: list[tuple[int, list[tuple[str, str]], bytes]] = field(default_factory=list)

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.answers.append((status, headers, body))


def make_app(phase: Phase = Phase.READY) -> App:
    lifecycle = Lifecycle()
    lifecycle.phase = phase
    started = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
    return App(WHO, lifecycle, Metrics(WHO, lifecycle, "0.1.0"), "0.1.0", started_at=started)


def answer(app: App, scope: Scope) -> tuple[int, dict[str, str], bytes]:
    protocol = Protocol()
    asyncio.run(app.__rsgi__(scope, protocol))
    status, headers, body = protocol.answers[0]
    return status, dict(headers), body


# --- negotiation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("", "text/plain"),
        ("*/*", "text/plain"),
        ("text/*", "text/plain"),
        ("text/html", "text/html"),
        ("TEXT/HTML", "text/html"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"),
        ("application/json", "application/json"),
        ("application/*", "application/json"),
        ("application/json, text/html;q=0.1", "application/json"),
        ("application/json, text/html", "text/html"),  # a tie: HTML over JSON
        ("text/html;q=0.5, application/json;q=0.6", "application/json"),
        ("text/html;q=0", "text/plain"),
        ("image/png", "text/plain"),  # nothing acceptable: text anyway
        ("not a media range", "text/plain"),
        ("text/html;q=abc", "text/html"),  # an unreadable q counts as 1, not as 0
    ],
)
def test_negotiate(accept: str, chosen: str) -> None:
    assert negotiate(accept) == chosen


# --- HTML ---------------------------------------------------------------------------------------
def test_the_page_has_one_row_per_field_in_the_contracts_order() -> None:
    page = render_html(WHO, None)
    rows = re.findall(r"<tr><th>([^<]*)</th><td>([^<]*)</td></tr>", page)
    assert rows == [
        ("Pod", "web-0"),
        ("Node", "node-a"),
        ("Namespace", "shop"),
        ("IP", "10.0.0.7"),
        ("Zone", "zone-1"),
        ("Version", "canary"),
    ]
    assert "<title>web-0</title>" in page
    assert f"background:{pod_colour('web-0')}" in page
    assert "http-equiv" not in page


def test_the_page_escapes_every_value() -> None:
    hostile = replace(WHO, version=Field('"><script>x</script>', "env"))
    page = render_html(hostile, None)
    assert "<script>" not in page and "&quot;&gt;&lt;script&gt;" in page


def test_refresh_adds_the_meta_tag() -> None:
    assert '<meta http-equiv="refresh" content="7">' in render_html(WHO, 7)


def test_pod_colour_is_stable_and_differs_between_pods() -> None:
    assert pod_colour("web-0") == pod_colour("web-0")
    assert re.fullmatch(r"hsl\(\d{1,3}, 65%, 42%\)", pod_colour("web-0"))
    assert len({pod_colour(f"web-{i}") for i in range(20)}) > 10


# --- the route table ----------------------------------------------------------------------------
IDENTITY = {
    "x-pod-name": "web-0",
    "x-node-name": "node-a",
    "x-pod-namespace": "shop",
    "x-pod-ip": "10.0.0.7",
    "x-zone": "zone-1",
    "x-pod-version": "canary",
}


@pytest.mark.parametrize(
    ("method", "path", "status", "content_type"),
    [
        ("GET", "/", 200, "text/plain; charset=utf-8"),
        ("HEAD", "/", 200, "text/plain; charset=utf-8"),
        ("GET", "/api/identity", 200, "application/json"),
        ("GET", "/livez", 200, "text/plain; charset=utf-8"),
        ("GET", "/readyz", 200, "text/plain; charset=utf-8"),
        ("GET", "/metrics", 200, "text/plain; version=1.0.0; charset=utf-8"),
        ("GET", "/nope", 404, "text/plain; charset=utf-8"),
        ("POST", "/", 405, "text/plain; charset=utf-8"),
        ("PUT", "/nope", 405, "text/plain; charset=utf-8"),
    ],
)
def test_route_table(method: str, path: str, status: int, content_type: str) -> None:
    got, headers, _ = answer(make_app(), Scope(path, method))
    assert got == status
    assert headers["content-type"].startswith(content_type.split(";", maxsplit=1)[0])
    assert {k: headers[k] for k in IDENTITY} == IDENTITY
    if status == 405:
        assert headers["allow"] == "GET, HEAD"


def test_every_known_route_answers() -> None:
    app = make_app()
    assert all(answer(app, Scope(path))[0] == 200 for path in KNOWN_ROUTES)


def test_root_text_and_json_bodies() -> None:
    app = make_app()
    _, headers, text = answer(app, Scope("/"))
    assert text.decode().splitlines() == [
        "Pod: web-0",
        "Node: node-a",
        "Namespace: shop",
        "IP: 10.0.0.7",
        "Zone: zone-1",
        "Version: canary",
    ]
    assert headers["vary"] == "accept"
    _, _, body = answer(app, Scope("/", headers={"accept": "application/json"}))
    doc = json.loads(body)
    assert doc["version"] == {"value": "canary", "source": "env"}
    assert doc["namespace"] == {"value": "shop", "source": "file"}
    assert doc["podtally_version"] == "0.1.0"
    assert doc["started_at"] == "2026-11-28T07:00:00+00:00"


@pytest.mark.parametrize(
    ("phase", "status", "body"),
    [
        (Phase.STARTING, 503, b"starting\n"),
        (Phase.READY, 200, b"ok\n"),
        (Phase.DRAINING, 503, b"draining\n"),
    ],
)
def test_readiness_follows_the_lifecycle(phase: Phase, status: int, body: bytes) -> None:
    got, headers, text = answer(make_app(phase), Scope("/readyz"))
    assert (got, text) == (status, body)
    # While draining every answer asks the client to reconnect elsewhere.
    assert (headers.get("connection") == "close") is (phase is Phase.DRAINING)
    assert answer(make_app(phase), Scope("/livez"))[0] == 200


@pytest.mark.parametrize(
    ("query", "refresh"),
    [("refresh=5", "5"), ("refresh=0", "1"), ("refresh=99999", "3600"), ("refresh=x", None)],
)
def test_refresh_is_clamped_and_asks_for_a_new_connection(query: str, refresh: str | None) -> None:
    _, headers, body = answer(
        make_app(), Scope("/", query_string=query, headers={"accept": "text/html"})
    )
    if refresh is None:
        assert b"http-equiv" not in body and "connection" not in headers
    else:
        assert f'content="{refresh}"'.encode() in body
        assert headers["connection"] == "close"


def test_requests_are_counted_by_route_and_status() -> None:
    app = make_app()
    for path in ("/", "/", "/nope"):
        answer(app, Scope(path))
    answer(app, Scope("/", "DELETE"))
    assert app.metrics.counts == {("/", 200): 2, ("other", 404): 1, ("/", 405): 1}
    assert app.metrics.in_flight == 0


def test_each_response_is_built_once_and_never_mutated() -> None:
    """The anti-example's shared dict: here two answers are equal and independent."""
    app = make_app()
    first = answer(app, Scope("/"))
    answer(app, Scope("/readyz"))
    assert answer(app, Scope("/")) == first


@pytest.mark.parametrize(
    ("hosts", "version", "status"),
    [
        ((), "1.1", 400),
        (("a", "b"), "1.1", 400),
        (("a",), "1.1", 200),
        ((), "1.0", 200),  # HTTP/1.0 has no Host requirement
        ((), "2", 200),  # HTTP/2 carries :authority instead
    ],
)
def test_http11_needs_exactly_one_host(hosts: tuple[str, ...], version: str, status: int) -> None:
    """RFC 9112 section 3.2: a server MUST answer 400 to HTTP/1.1 without or with two Host."""
    got, headers, _ = answer(make_app(), Scope("/livez", hosts=hosts, http_version=version))
    assert got == status
    assert headers["x-pod-name"] == "web-0"


def test_a_request_target_over_16_kb_gets_414() -> None:
    assert answer(make_app(), Scope("/" + "a" * 16 * 1024))[0] == 414
    assert answer(make_app(), Scope("/", query_string="q=" + "a" * 16 * 1024))[0] == 414
    assert answer(make_app(), Scope("/livez", query_string="q=" + "a" * 8000))[0] == 200
