"""HTTP conformance over real HTTP/1.1 (issue 15, point 7): RFC 9112's Host rule, and 414."""

from __future__ import annotations

import socket
from typing import Any

import pytest


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.support import start_serve

    server = start_serve(tmp_path_factory.mktemp("conformance"), host="127.0.0.26")
    yield server
    server.stop()


def status_line(replica: Any, head: bytes) -> bytes:
    with socket.create_connection((replica.host, replica.port), timeout=5) as sock:
        sock.sendall(head)
        answer = b""
        while b"\r\n" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"GET /livez HTTP/1.1\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET /livez HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET /livez HTTP/1.1\r\nHost: a\r\n\r\n", b"HTTP/1.1 200 OK"),
        (b"GET /livez HTTP/1.0\r\n\r\n", b"HTTP/1.0 200 OK"),
        (b"GET /" + b"a" * 17_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", b"HTTP/1.1 414 URI Too Long"),
        (
            b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large",
        ),
    ],
    ids=["no-host", "two-hosts", "one-host", "http10-no-host", "url-17k", "url-70k"],
)
def test_status_by_rfc_9112(replica: Any, head: bytes, expected: bytes) -> None:
    assert status_line(replica, head) == expected
