"""The identity service over real HTTP: formats, headers, status codes, metrics, bad requests."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import urllib.request
from typing import Any

import pytest

IDENTITY_HEADERS = (
    "x-pod-name",
    "x-node-name",
    "x-pod-namespace",
    "x-pod-ip",
    "x-zone",
    "x-pod-version",
)
ENV = {
    "POD_NAME": "podtally-7d4b9c8f6d-x2k9p",
    "NODE_NAME": "ip-10-0-1-23.ec2.internal",
    "POD_NAMESPACE": "podtally",
    "POD_IP": "10.0.1.57",
    "ZONE": "eu-west-1a",
    "POD_VERSION": "2.4.1",
}


@pytest.fixture
def replica(serve: Any) -> Any:
    return serve(host="127.0.0.23", env=ENV)


def assert_identity_headers(headers: dict[str, str]) -> None:
    assert headers["x-pod-name"] == ENV["POD_NAME"]
    assert headers["x-node-name"] == ENV["NODE_NAME"]
    assert headers["x-pod-namespace"] == ENV["POD_NAMESPACE"]
    assert headers["x-pod-ip"] == ENV["POD_IP"]
    assert headers["x-zone"] == ENV["ZONE"]
    assert headers["x-pod-version"] == ENV["POD_VERSION"]


def test_text_is_the_seed_format_byte_for_byte(replica: Any) -> None:
    status, headers, body = replica.get("/", {"Accept": "*/*", "User-Agent": "curl/8.5.0"})
    assert status == 200
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert body == (
        b"Pod: podtally-7d4b9c8f6d-x2k9p\n"
        b"Node: ip-10-0-1-23.ec2.internal\n"
        b"Namespace: podtally\n"
        b"IP: 10.0.1.57\n"
        b"Zone: eu-west-1a\n"
        b"Version: 2.4.1\n"
    )
    assert headers["cache-control"] == "no-store"


def test_html_page_is_self_contained_and_coloured_by_pod(replica: Any, serve: Any) -> None:
    status, headers, body = replica.get("/", {"Accept": "text/html,application/xhtml+xml"})
    page = body.decode()
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert ENV["POD_NAME"] in page and ENV["ZONE"] in page
    assert f"<th>Version</th><td>{ENV['POD_VERSION']}</td>" in page
    # no external assets: the one href is the empty icon (no request for /favicon.ico)
    assert re.findall(r"(?:src|href)=[^>]*", page) == ['href="data:,"'], "no external assets"
    assert "http-equiv" not in page
    colour = re.search(r"background:(hsl\([^)]*\))", page)
    assert colour
    # The same pod name gives the same colour in another process; another pod, another one.
    twin = serve(host="127.0.0.23", env=ENV).get("/", {"Accept": "text/html"})[2].decode()
    assert f"background:{colour.group(1)}" in twin
    other = serve(host="127.0.0.23", env={**ENV, "POD_NAME": "podtally-7d4b9c8f6d-zzzzz"})
    assert (
        f"background:{colour.group(1)}" not in other.get("/", {"Accept": "text/html"})[2].decode()
    )
    refreshing = replica.get("/?refresh=2", {"Accept": "text/html"})[2].decode()
    assert '<meta http-equiv="refresh" content="2">' in refreshing


def test_html_escapes_identity_values(serve: Any) -> None:
    replica = serve(host="127.0.0.23", env={**ENV, "NODE_NAME": "<script>x</script>"})
    page = replica.get("/", {"Accept": "text/html"})[2].decode()
    assert "<script>" not in page and "&lt;script&gt;" in page


@pytest.mark.parametrize(("path", "accept"), [("/api/identity", "*/*"), ("/", "application/json")])
def test_json_identity_with_sources(replica: Any, path: str, accept: str) -> None:
    status, headers, body = replica.get(path, {"Accept": accept})
    assert status == 200
    assert headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc["pod"] == {"value": ENV["POD_NAME"], "source": "env"}
    assert doc["zone"] == {"value": ENV["ZONE"], "source": "env"}
    assert doc["version"] == {"value": ENV["POD_VERSION"], "source": "env"}
    # The identity's fields by their contract names; podtally's own version apart from them.
    assert set(doc) == {
        "pod",
        "node",
        "namespace",
        "ip",
        "zone",
        "version",
        "podtally_version",
        "started_at",
    }
    assert doc["podtally_version"] == "0.1.0"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", doc["started_at"])


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 200),
        ("HEAD", "/", 200),
        ("GET", "/livez", 200),
        ("GET", "/readyz", 200),
        ("GET", "/metrics", 200),
        ("GET", "/nope", 404),
        ("HEAD", "/nope", 404),
        ("POST", "/", 405),
        ("DELETE", "/api/identity", 405),
    ],
)
def test_identity_headers_on_every_response(
    replica: Any, method: str, path: str, status: int
) -> None:
    got, headers, body = replica.get(path, method=method)
    assert got == status
    assert_identity_headers(headers)
    if method == "HEAD":
        assert body == b""
        assert int(headers["content-length"]) > 0, "HEAD keeps the GET's length"
    if status == 405:
        assert headers["allow"] == "GET, HEAD"


def test_metrics_count_requests_by_route_and_status(replica: Any) -> None:
    for _ in range(3):
        replica.get("/")
    replica.get("/missing")
    replica.get("/", method="POST")
    text = replica.get("/metrics")[2].decode()
    assert 'podtally_requests_total{route="/",status="200"} 3.0' in text
    assert 'podtally_requests_total{route="other",status="404"} 1.0' in text
    assert 'podtally_requests_total{route="/",status="405"} 1.0' in text
    assert "podtally_ready 1.0" in text
    assert "podtally_draining 0.0" in text
    assert "podtally_requests_in_flight 1.0" in text  # this scrape itself
    assert f'pod="{ENV["POD_NAME"]}"' in text
    assert f'version="{ENV["POD_VERSION"]}"' in text
    assert 'podtally_version="0.1.0"' in text


def _raw(host: str, port: int, payload: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    return b"".join(chunks)


TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) * 4, None),
        (b"GARBAGE GARBAGE GARBAGE\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", TOO_LARGE),
        (
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(500)) + b"\r\n",
            TOO_LARGE,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", None),
    ],
    ids=["tls-bytes", "garbage", "huge-header", "many-headers", "bad-length"],
)
def test_malformed_requests_get_4xx_or_close_and_others_are_served(
    replica: Any, payload: bytes, expected: bytes | None
) -> None:
    """Garbage gets a 4xx or a closed connection; oversized headers get exactly 431."""
    stop = threading.Event()
    failures: list[BaseException] = []
    served = [0]

    def good_client() -> None:
        for _ in range(2000):  # bounded in count; the event bounds it in time
            if stop.is_set():
                return
            try:
                with urllib.request.urlopen(replica.url + "/", timeout=5) as response:
                    assert response.status == 200
                    served[0] += 1
            except Exception as exc:  # noqa: BLE001 - any failure of a good client counts
                failures.append(exc)
                return

    thread = threading.Thread(target=good_client)
    thread.start()
    try:
        for _ in range(5):
            answer = _raw(replica.host, replica.port, payload)
            status = answer.split(b"\r\n", 1)[0]
            if expected is None:
                assert answer == b"" or re.match(rb"HTTP/1\.[01] 4\d\d", status), answer[:200]
            else:
                assert status == expected, answer[:200]
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not failures
    assert served[0] > 0
    assert replica.get("/")[0] == 200
    assert replica.proc.poll() is None


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, "text/plain"),
        ("*/*", "text/plain"),
        ("text/*", "text/plain"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"),
        ("TEXT/HTML", "text/html"),
        ("application/json", "application/json"),
        ("application/json, text/html;q=0.1", "application/json"),
        ("text/html;q=0", "text/plain"),
        ("not a media range", "text/plain"),
    ],
)
def test_get_root_negotiates_by_accept_with_q_values(
    replica: Any, accept: str | None, content_type: str
) -> None:
    status, headers, _ = replica.get("/", {"Accept": accept} if accept else {})
    assert status == 200
    assert headers["content-type"].split(";")[0] == content_type
    assert headers["vary"] == "accept"


def test_the_refreshing_page_asks_for_a_new_connection(replica: Any) -> None:
    """So that a browser behind a connection-level balancer sees the pods rotate too."""
    conn = http.client.HTTPConnection(replica.host, replica.port, timeout=5)  # keep-alive
    try:
        conn.request("GET", "/", headers={"Accept": "text/html"})
        plain = conn.getresponse()
        plain.read()
        assert plain.getheader("connection") is None and not plain.will_close
        conn.request("GET", "/?refresh=2", headers={"Accept": "text/html"})
        refreshing = conn.getresponse()
        refreshing.read()
        assert refreshing.getheader("connection") == "close" and refreshing.will_close
    finally:
        conn.close()
